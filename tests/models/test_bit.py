"""BiT ResNets (arXiv:1912.11370): parameter counts from a closed form, the keras.applications arguments, saving."""

import keras
import numpy as np
import pytest

import keras_vitres
from keras_vitres import BiTResNet
from keras_vitres.presets import PRESETS
from tests.helpers import assert_keras_round_trip

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def bit_params(stage_blocks, width, classes):
    """The parameter count of a BiT ResNet, summed layer by layer from the architecture (bit_jax/models.py):
    a 7x7 stem convolution of 64w filters (no bias, no norm); per block with input width c, bottleneck width m
    (64w * 2**stage) and output 4m: group norms (scale and offset) on c, m and m, convolutions c*m, 9*m*m and
    m*4m without biases, and a c*4m projection in each stage's first block; a final group norm, then a dense head.
    Group norms keep no moving statistics, so every parameter is trainable. For R50x1 with 1,000 classes this gives
    25,549,352, the count timm prints for `resnetv2_50x1_bit` (timm is not installed here: computed by hand from
    the same architecture)."""
    count = 7 * 7 * 3 * 64 * width
    c = 64 * width
    for stage, blocks in enumerate(stage_blocks):
        m = 64 * width * 2**stage
        for block in range(blocks):
            count += 2 * c + c * m + 2 * m + 9 * m * m + 2 * m + m * 4 * m + (c * 4 * m if block == 0 else 0)
            c = 4 * m
    return count + 2 * c + (c * classes + classes if classes else 0)


@pytest.mark.parametrize("depth, width", [(50, 1), (50, 3), (101, 1), (101, 3), (152, 2), (152, 4)])
def test_preset_counts_equal_the_closed_form(depth, width):
    row = PRESETS[f"bit_r{depth}x{width}"]
    assert row["params"] == row["trainable_params"] == bit_params(STAGE_BLOCKS[depth], width, 1000)
    assert row["config"] == dict(depth=depth, width_multiplier=width)


def test_closed_form_matches_timm_and_the_built_model():
    assert bit_params(STAGE_BLOCKS[50], 1, 1000) == 25_549_352  # timm resnetv2_50x1_bit
    for blocks, width, classes in (((1, 2), 1, 7), ((2, 1, 1), 2, 0)):
        model = BiTResNet(stage_blocks=blocks, width_multiplier=width, input_shape=(32, 32, 3), classes=classes or 1,
                          include_top=bool(classes))  # fmt: skip
        assert model.count_params() == bit_params(blocks, width, classes)


def test_r50x1_layout_and_heads():
    model = keras_vitres.BiTR50x1()
    assert model.name == "bit_r50x1" and model.output_shape == (None, 1000)
    assert sum(layer.name.startswith("stage") for layer in model.layers) == 16
    assert model.get_layer("stage2_block1").strides == 2 and model.get_layer("stage1_block1").strides == 1
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("predictions").kernel))  # BiT's zero head
    features = BiTResNet(50, include_top=False, input_shape=(None, None, 3))
    assert features.output_shape == (None, None, None, 2048)
    assert BiTResNet(50, include_top=False, pooling="max").output_shape == (None, 2048)
    stages = keras_vitres.feature_extractor(BiTResNet(stage_blocks=(1, 1), input_shape=(64, 64, 3), include_top=False))
    assert {k: tuple(v.shape) for k, v in stages.output.items()} == {"stage1": (None, 16, 16, 256),
                                                                     "stage2": (None, 8, 8, 512)}


@pytest.mark.backend_agnostic  # the counts and layout do not depend on the backend; saving and training do
def test_keras_round_trip_and_a_training_step(tmp_path):
    model = BiTResNet(stage_blocks=(1, 1), input_shape=(32, 32, 3), classes=3, head_kernel_initializer="glorot_uniform")
    x = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
    stem = keras.ops.convert_to_numpy(model.get_layer("stem_conv").kernel).copy()
    history = model.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(stem, keras.ops.convert_to_numpy(model.get_layer("stem_conv").kernel))
    assert_keras_round_trip(model, x, tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=34), "depth=34"),
    (dict(width_multiplier=0), "width_multiplier=0"),
    (dict(stage_blocks=(1, 1, 1, 1, 1)), "stage_blocks=(1, 1, 1, 1, 1)"),
    (dict(stage_blocks=(1, 0)), "stage_blocks=(1, 0)"),
    (dict(pooling="min", include_top=False), "pooling='min'"),
])  # fmt: skip
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BiTResNet(**kwargs)
