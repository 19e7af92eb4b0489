"""Keras' int8 quantisation (`model.quantize("int8")`) of every family: what docs/models.md claims.

Every family quantises its dense layers (Keras 3.15 leaves convolutions in float), predicts, saves as .keras and
reloads under safe mode to the same outputs; a model on Keras' own MultiHeadAttention does not reload.
"""

import os

import keras
import numpy as np
import pytest

from tests.models.test_precision import FAMILIES

# Keras' int8 path rounds a dense layer's weights per output channel and its inputs per row, each to 1/254 of their
# largest magnitude; with magnitudes at most about 4x their mean square here that is 2 * 4 / 254, about 3% of a
# layer's output norm-wise: the budget per quantised layer on the longest path (the head alone in the convolutional
# nets; q/k/v, the attention output, both MLP layers and the head in a ViT: 5). Measured: 0.5-1.4% and 1.0-1.9%.
ROUNDING_PER_LAYER = 0.03
QUANTIZED_ON_PATH = {"resnet_cifar": 1, "resnet_imagenet": 1, "bit": 1, "vit": 5, "hybrid_bit": 5,
                     "hybrid_batchnorm": 5}  # fmt: skip
ON_JAX = [pytest.mark.backend_agnostic]  # the attention families: what the package adds to Keras


def _images(seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (4, 32, 32, 3)).astype("float32")


def _save_and_reload(model, tmp_path):
    path = os.path.join(tmp_path, f"{model.name}.keras")
    model.save(path)
    return keras.saving.load_model(path, safe_mode=True)


@pytest.mark.parametrize("family", [pytest.param(f, marks=ON_JAX if f == "vit" else []) for f in FAMILIES])
def test_family_quantizes_predicts_saves_and_reloads(family, tmp_path):
    build, preprocessing = FAMILIES[family]
    extra = {"head_kernel_initializer": "glorot_uniform"} if family == "bit" else {}  # BiT's zero head: zero logits
    model = build(classes=3, classifier_activation=None, preprocessing=preprocessing, **extra)
    x = _images()
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    model.quantize("int8")
    dense_types = (keras.layers.Dense, keras.layers.EinsumDense)
    dense = [layer for layer in model._flatten_layers() if isinstance(layer, dense_types)]
    quantized = [layer for layer in model._flatten_layers() if layer.quantization_mode is not None]
    assert quantized == dense and ("predictions" in {layer.name for layer in quantized})
    assert all(w.dtype == "int8" for layer in quantized for w in layer.weights if w.path.endswith("kernel"))

    actual = model.predict_on_batch(x)
    change = np.linalg.norm(actual - expected) / np.linalg.norm(expected)
    assert change <= ROUNDING_PER_LAYER * QUANTIZED_ON_PATH[family], f"logits moved by {change:.1%}"
    restored = _save_and_reload(model, tmp_path)
    assert [layer.quantization_mode for layer in restored._flatten_layers()] == [
        layer.quantization_mode for layer in model._flatten_layers()]  # fmt: skip
    np.testing.assert_array_equal(restored.predict_on_batch(x), actual)  # the same int8 weights, the same kernels


@pytest.mark.backend_agnostic
def test_keras_attention_does_not_reload_after_quantizing_and_ours_does(tmp_path):
    """Keras 3.15's MultiHeadAttention recreates its projections from its own (float) policy on loading, so their
    int8 weights find no variables; ours states their policies in its config (keras_vitres.layers.quantization)."""
    from keras_vitres.layers import ViTMultiHeadAttention

    x = np.random.default_rng(1).standard_normal((2, 5, 8)).astype("float32")
    for attention, loads in ((keras.layers.MultiHeadAttention, False), (ViTMultiHeadAttention, True)):
        inputs = keras.Input((5, 8))
        outputs = attention(2, 4, name="attention")(inputs, inputs)
        model = keras.Model(inputs, outputs, name=f"on_{attention.__module__.replace('.', '_')}")
        model.quantize("int8")
        if loads:
            np.testing.assert_array_equal(_save_and_reload(model, tmp_path)(x), model(x))
            continue
        with pytest.raises(ValueError, match="expected 2 variables, but received 0 variables during loading"):
            _save_and_reload(model, tmp_path)
