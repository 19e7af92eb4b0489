"""Weight-standardised convolution (Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight
Standardization", arXiv:1903.10520), the convolution of BiT (Kolesnikov et al., arXiv:1912.11370, §2.1) and of the
ViT paper's hybrid trunk (arXiv:2010.11929, §3.1).

Each output channel's kernel is standardised over its other axes (kh, kw, in) before it is applied:
    w_hat = (w - mean(w)) / sqrt(var(w) + epsilon)     epsilon_on="variance" (BiT: 1e-10, big_transfer bit_jax)
    w_hat = (w - mean(w)) / (std(w) + epsilon)         epsilon_on="std" (ViT repo's hybrid: 1e-5, models_resnet.py)
with the biased (population) variance. The standardisation runs at call time on the stored kernel, so gradients
flow through it in training and checkpoints store the raw kernel, as the official code does.
"""

import keras
from keras import ops

EPSILON_PLACES = ("variance", "std")


@keras.saving.register_keras_serializable(package="keras_vitres")
class StandardizedConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose kernel is standardised per output channel at call time (arXiv:1903.10520).

    Args:
        filters, kernel_size: as in `keras.layers.Conv2D`.
        epsilon: float. Added to the variance (or the standard deviation, see `epsilon_on`) of each output channel's
            kernel.
        epsilon_on: "variance" for (w - mean) / sqrt(var + epsilon) (BiT) or "std" for (w - mean) / (std + epsilon)
            (the ViT repository's hybrid trunk).
        **kwargs: the other arguments of `keras.layers.Conv2D` (`strides`, `padding`, `use_bias`, ...).

    Examples:
        >>> import numpy as np
        >>> layer = StandardizedConv2D(4, 3, use_bias=False)
        >>> y = layer(np.ones((1, 5, 5, 2), "float32"))
        >>> w = keras.ops.convert_to_numpy(layer.standardized_kernel())
        >>> bool(np.allclose(w.mean(axis=(0, 1, 2)), 0, atol=1e-6)), bool(np.allclose(w.std(axis=(0, 1, 2)), 1))
        (True, True)
    """

    def __init__(self, filters, kernel_size, epsilon=1e-10, epsilon_on="variance", **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon < 0:
            raise ValueError(f"`epsilon` must be a non-negative float; received epsilon={epsilon!r}.")
        if epsilon_on not in EPSILON_PLACES:
            raise ValueError(f"`epsilon_on` must be one of {EPSILON_PLACES}; received epsilon_on={epsilon_on!r}.")
        if self.data_format != "channels_last":
            raise ValueError(
                f"StandardizedConv2D supports data_format='channels_last' only; received data_format={self.data_format!r}."
            )
        self.epsilon = epsilon
        self.epsilon_on = epsilon_on

    def standardized_kernel(self, kernel=None):
        """The kernel the convolution applies: standardised over (kh, kw, in) per output channel, in float32 and
        cast back to the kernel's dtype."""
        kernel = self.kernel if kernel is None else kernel
        w = ops.cast(kernel, "float32")
        centred = w - ops.mean(w, axis=(0, 1, 2), keepdims=True)
        variance = ops.mean(ops.square(centred), axis=(0, 1, 2), keepdims=True)
        if self.epsilon_on == "variance":
            w = centred / ops.sqrt(variance + self.epsilon)
        else:
            w = centred / (ops.sqrt(variance) + self.epsilon)
        return ops.cast(w, kernel.dtype)

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, self.standardized_kernel(kernel))

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, epsilon_on=self.epsilon_on)
        return config
