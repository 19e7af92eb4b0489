"""Weight-standardised convolution and the group-norm bottleneck (BiT, arXiv:1912.11370), against NumPy."""

import keras
import numpy as np
import pytest

from keras_vitres.layers import GroupNormBottleneck, StandardizedConv2D
from tests.weights.bit_reference import conv, group_norm, relu, standardize

pytestmark = pytest.mark.backend_agnostic


def numpy_of(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("epsilon, epsilon_on", [(1e-10, "variance"), (1e-5, "std"), (0.5, "variance"), (0.5, "std")])
def test_standardized_conv_applies_the_standardised_kernel(epsilon, epsilon_on):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 7, 3)).astype("float32")
    layer = StandardizedConv2D(4, 3, strides=2, padding="valid", use_bias=True, bias_initializer="ones",
                               epsilon=epsilon, epsilon_on=epsilon_on)  # fmt: skip
    y = numpy_of(layer(x))
    kernel = numpy_of(layer.kernel)
    expected = conv(x, standardize(kernel, epsilon, epsilon_on), 2, "valid") + 1.0
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)
    plain = conv(x, kernel, 2, "valid") + 1.0  # a plain convolution is far from it: the test can tell them apart
    assert np.abs(plain - expected).max() > 0.1


def test_standardisation_runs_at_call_time_and_training_sees_it():
    """Output channels are invariant to an affine change of their kernel, and the gradient reaching the stored
    kernel has zero mean per output channel (what differentiating through the standardisation gives)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    layer = StandardizedConv2D(4, 3, use_bias=False, padding="same")
    before = numpy_of(layer(x))
    kernel = numpy_of(layer.kernel)
    layer.kernel.assign(kernel * np.array([2.0, 3.0, 0.5, 7.0], "float32") + np.array([1.0, -2.0, 0.0, 5.0], "float32"))
    np.testing.assert_allclose(numpy_of(layer(x)), before, atol=1e-4)
    model = keras.Sequential([keras.Input((6, 6, 3)), layer, keras.layers.Flatten(), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    stored = numpy_of(layer.kernel).copy()
    model.train_on_batch(x, np.ones((2, 1), "float32"))
    step = numpy_of(layer.kernel) - stored  # -lr * gradient
    assert np.abs(step).max() > 1e-6
    np.testing.assert_allclose(step.mean(axis=(0, 1, 2)), 0.0, atol=1e-6)


def _randomize(layer, rng):
    for weight in layer.weights:
        value = rng.normal(size=weight.shape).astype("float32")
        weight.assign(1 + 0.2 * value if weight.path.endswith("gamma") else value)


@pytest.mark.parametrize("preactivation, padding, size, strides, channels", [
    (True, "symmetric", 9, 2, 16), (True, "symmetric", 8, 1, 32), (True, "symmetric", 6, 1, 16),
    (False, "same", 9, 2, 16), (False, "same", 8, 2, 16), (False, "same", 6, 1, 32),
])  # fmt: skip
def test_group_norm_bottleneck_matches_numpy(preactivation, padding, size, strides, channels):
    rng = np.random.default_rng(2)
    settings = (1e-5, 1e-10, "variance") if preactivation else (1e-6, 1e-5, "std")
    block = GroupNormBottleneck(8, strides=strides, groups=4, preactivation=preactivation, padding=padding,
                                norm_epsilon=settings[0], weight_epsilon=settings[1], weight_epsilon_on=settings[2])
    x = rng.normal(size=(2, size, size, channels)).astype("float32")
    block.build(x.shape)
    _randomize(block, rng)
    w = {v.path.split("/", 1)[1]: numpy_of(v).astype("float64") for v in block.weights}

    def sconv(v, name, stride=1):
        return conv(v, standardize(w[f"{name}/kernel"], settings[1], settings[2]), stride, padding)

    def gn(v, name):
        return group_norm(v, w[f"{name}/gamma"], w[f"{name}/beta"], settings[0], groups=4)

    projects = strides != 1 or channels != 32
    assert (block.shortcut_conv is not None) == projects
    if preactivation:
        p = relu(gn(x, "norm1"))
        shortcut = sconv(p, "shortcut_conv", strides) if projects else x
        y = sconv(relu(gn(sconv(p, "conv1"), "norm2")), "conv2", strides)
        expected = sconv(relu(gn(y, "norm3")), "conv3") + shortcut
    else:
        shortcut = gn(sconv(x, "shortcut_conv", strides), "shortcut_norm") if projects else x
        y = relu(gn(sconv(relu(gn(sconv(x, "conv1"), "norm1")), "conv2", strides), "norm2"))
        expected = relu(gn(sconv(y, "conv3"), "norm3") + shortcut)
    actual = numpy_of(block(x))
    assert actual.shape == block.compute_output_shape(x.shape) == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_post_activation_block_starts_as_the_identity_path():
    """norm3's scale starts at zero in the ViT repository's block, so a block without projection is relu(x)."""
    block = GroupNormBottleneck(8, groups=4, preactivation=False, padding="same")
    x = np.random.default_rng(3).normal(size=(1, 4, 4, 32)).astype("float32")
    np.testing.assert_allclose(numpy_of(block(x)), relu(x), atol=1e-6)
