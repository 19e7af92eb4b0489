"""Weight-standardised convolution and the group-norm bottleneck (BiT, arXiv:1912.11370), against NumPy."""

import keras
import numpy as np
import pytest

from keras_vitres.layers import GroupNormBottleneck, StandardizedConv2D
from tests.helpers import FLOAT32_EPS, assert_close
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
    # 27 products of a kernel standardised in float32, against float64 (measured 1.5 ulps).
    assert_close(y, expected, 32, name="convolution")
    plain = conv(x, kernel, 2, "valid") + 1.0  # a plain convolution is far from it: the test can tell them apart
    assert np.abs(plain - expected).max() > 0.1


class _StraightThroughConv2D(StandardizedConv2D):
    """A real break of the layer: it applies the standardised kernel forward but passes the gradient straight to the
    stored kernel, as if the standardisation were outside the backward pass."""

    def standardized_kernel(self, kernel=None):
        kernel = self.kernel if kernel is None else kernel
        return kernel + keras.ops.stop_gradient(super().standardized_kernel(kernel) - kernel)


def _kernel_step(layer_class):
    """One SGD step (learning rate 1) on a seeded model through the layer, with the kernel's output channels given
    scales 2, 3, 0.5, 7 and offsets 1, -2, 0, 5 first. Returns the output before and after that affine change, the
    stored kernel and the step it took (-gradient)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    layer = layer_class(4, 3, use_bias=False, padding="same", kernel_initializer=keras.initializers.GlorotUniform(0))
    before = numpy_of(layer(x))
    kernel = numpy_of(layer.kernel)
    layer.kernel.assign(kernel * np.array([2.0, 3.0, 0.5, 7.0], "float32") + np.array([1.0, -2.0, 0.0, 5.0], "float32"))
    after = numpy_of(layer(x))
    head = keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(1))
    model = keras.Sequential([keras.Input((6, 6, 3)), layer, keras.layers.Flatten(), head])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    stored = numpy_of(layer.kernel).copy()
    model.train_on_batch(x, np.ones((2, 1), "float32"))
    return before, after, stored, numpy_of(layer.kernel) - stored


def _channel_means_vanish(stored, step):
    """Whether each output channel's step has zero mean up to float32 rounding.

    The step is (stored - lr * g) - stored, so each element carries a few rounding errors of the larger of |stored|
    and |step| (the update's rounding, and the gradient's own, whose terms are of the step's size); their mean is
    bounded by the same. Four float32 ulps of that size per channel is 25x what was measured (AVX2 and AVX-512).
    """
    scale = np.abs(stored).max(axis=(0, 1, 2)) + np.abs(step).max(axis=(0, 1, 2))
    return bool(np.all(np.abs(step.mean(axis=(0, 1, 2))) <= 4 * FLOAT32_EPS * scale))


def test_standardisation_runs_at_call_time_and_training_sees_it():
    """Output channels are invariant to an affine change of their kernel, and the gradient reaching the stored
    kernel has zero mean per output channel (what differentiating through the standardisation gives)."""
    before, after, stored, step = _kernel_step(StandardizedConv2D)
    # Each output sums 27 products of unit-sized standardised weights: a few ulps of the largest output.
    np.testing.assert_allclose(after, before, atol=64 * FLOAT32_EPS * np.abs(before).max(), rtol=0)
    assert np.abs(step).max() > 1.0  # the step is large, so a mean of zero is a property, not a small number
    assert _channel_means_vanish(stored, step)


def test_zero_mean_check_fails_when_the_backward_pass_skips_the_standardisation():
    before, after, stored, step = _kernel_step(_StraightThroughConv2D)
    np.testing.assert_allclose(after, before, atol=64 * FLOAT32_EPS * np.abs(before).max(), rtol=0)  # same forward
    assert not _channel_means_vanish(stored, step)


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
    # Four standardised convolutions and three group norms against float64 (measured 2.3 ulps).
    assert_close(actual, expected, 64, name="block")


def test_post_activation_block_starts_as_the_identity_path():
    """norm3's scale starts at zero in the ViT repository's block, so a block without projection is relu(x)."""
    block = GroupNormBottleneck(8, groups=4, preactivation=False, padding="same")
    x = np.random.default_rng(3).normal(size=(1, 4, 4, 32)).astype("float32")
    # relu(x) through a block whose last norm scales by 0: exact (measured 0).
    assert_close(block(x), relu(x), 4, name="identity path")
