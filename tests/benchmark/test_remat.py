"""Rematerialised blocks compute and train exactly as the plain model (BatchNorm statistics included)."""

import keras
import numpy as np
import pytest

from keras_vitres.benchmark.remat import RematBlock, block_names, rematerialize
from keras_vitres.models.resnet import ResNet
from keras_vitres.models.vit import VisionTransformer


def _tiny(kind):
    if kind == "resnet":
        return ResNet(8, stem="cifar", classifier_activation=None)
    return VisionTransformer(patch_size=8, hidden_dim=32, num_layers=2, num_heads=2, mlp_dim=64,
                             input_shape=(32, 32, 3), classes=10, classifier_activation=None)  # fmt: skip


def _train_step(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    return model.train_on_batch(x, y)


@pytest.mark.backend_agnostic  # CI also runs it on JAX, where the BatchNorm statistics take another path
@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_remat_model_trains_exactly_like_the_plain_one(kind):
    plain, twin = _tiny(kind), _tiny(kind)
    twin.set_weights(plain.get_weights())
    remat = rematerialize(twin)
    wrapped = [layer for layer in remat.layers if isinstance(layer, RematBlock)]
    assert [layer.layer.name for layer in wrapped] == block_names(plain) and len(wrapped) == (3 if kind == "resnet" else 2)
    assert remat.count_params() == plain.count_params()
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32, 3), dtype="float32")
    y = rng.integers(0, 10, 4)
    np.testing.assert_allclose(remat.predict_on_batch(x), plain.predict_on_batch(x), atol=1e-5)

    loss_plain, loss_remat = _train_step(plain, x, y), _train_step(remat, x, y)
    assert loss_remat == pytest.approx(loss_plain, rel=1e-5)
    for a, b in zip(plain.weights, twin.weights):  # `remat` shares `twin`'s variables
        # BatchNorm moving statistics too: the recomputation must not update them a second time.
        np.testing.assert_allclose(keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a), atol=1e-5,
                                   err_msg=a.path)  # fmt: skip


def test_remat_names_are_checked():
    model = _tiny("resnet")
    with pytest.raises(ValueError, match="unknown: \\['stage9_block1'\\]"):
        rematerialize(model, ["stage9_block1"])
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no residual block"):
        rematerialize(plain)
    only_last = rematerialize(model, ["stage3_block1"])
    assert [layer.name for layer in only_last.layers if isinstance(layer, RematBlock)] == ["stage3_block1_remat"]
