"""Batch normalization (Ioffe & Szegedy, arXiv:1502.03167) with TensorFlow's fused kernel where it applies.

Keras 3's `BatchNormalization` computes the batch moments and the normalization from separate `keras.ops` calls on
every backend. On TensorFlow that is about ten element-wise passes over the activations (and as many again in the
backward pass) instead of TensorFlow's fused `FusedBatchNormV3` kernel, which Keras 2 used and which oneDNN (CPU)
and cuDNN (GPU) implement in one or two passes. Measured on 2 CPU cores (`docs/benchmarks.md`), the fused kernel
makes a ResNet-50 training step 1.2x to 1.7x faster than Keras' layer does (float32 with conv biases, bfloat16).

`FusedBatchNormalization` here is Keras' layer with the same arguments, variables, variable names and update rule, so
checkpoints and converters are unchanged; only how a 4-D, channels-last input is computed on the TensorFlow backend
differs. Every other case (JAX, PyTorch, other ranks or axes, masks, renorm, synchronized statistics) runs Keras'
own implementation.

`call_after_bias` serves a convolution with a bias followed by this layer (the keras.applications ResNet layout):
in inference it folds the bias into the kernel's offset, so that TensorFlow's remapper fuses the convolution, the
normalization and the ReLU after it into one kernel (ResNet-50 with conv biases: about 7% faster inference on CPU).
"""

import keras

from keras_vitres.layers.former_names import register_former_name

FUSED_DTYPES = ("float16", "bfloat16", "float32")  # the input types of TensorFlow's FusedBatchNormV3 kernel


@keras.saving.register_keras_serializable(package="keras_vitres")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that uses TensorFlow's fused kernel for 4-D channels-last inputs.

    In training it normalizes with the batch's mean and (biased) variance and updates the moving statistics as
    `moving = moving * momentum + batch * (1 - momentum)`, exactly as Keras does; in inference it uses the moving
    statistics.

    Args:
        fused: None (default) to use the fused kernel wherever it applies (TensorFlow backend, 4-D input,
            normalization over the last axis, no mask, no renorm, not synchronized, float16/bfloat16/float32);
            False to always use Keras' implementation; True to require the fused kernel (a ValueError when the layer
            is built in a case it does not cover).
        **kwargs: the arguments of `keras.layers.BatchNormalization` (`axis`, `momentum`, `epsilon`, ...).

    Examples:
        >>> import numpy as np
        >>> layer = FusedBatchNormalization(epsilon=1e-5)
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, (8, 4, 4, 16)).astype("float32")
        >>> y = keras.ops.convert_to_numpy(layer(x, training=True))
        >>> bool(abs(y.mean()) < 1e-4), bool(abs(y.std() - 1.0) < 1e-3)
        (True, True)
    """

    def __init__(self, fused=None, **kwargs):
        super().__init__(**kwargs)
        if fused not in (None, True, False):
            raise ValueError(f"`fused` must be None, True or False; received fused={fused!r}.")
        self.fused = fused

    def build(self, input_shape):
        super().build(input_shape)
        if self.fused and not self._fused_applies(len(input_shape), self.compute_dtype):
            raise ValueError(
                "`fused=True` needs the TensorFlow backend, a 4-D input normalized over its last axis, "
                "float16/bfloat16/float32, and renorm=False, synchronized=False; received "
                f"backend={keras.backend.backend()!r}, input_shape={tuple(input_shape)!r}, axis={self.axis}, "
                f"dtype={self.compute_dtype!r}, renorm={self.renorm}, synchronized={self.synchronized}."
            )

    def _fused_applies(self, rank, dtype):
        return (
            self.fused is not False
            and keras.backend.backend() == "tensorflow"
            and rank == 4
            and self.axis in (-1, 3)
            and not self.renorm
            and not self.synchronized
            and keras.backend.standardize_dtype(dtype) in FUSED_DTYPES
        )

    def call(self, inputs, training=None, mask=None):
        if mask is not None or not self._fused_applies(len(inputs.shape), inputs.dtype):
            return super().call(inputs, training=training, mask=mask)
        return self._fused_call(inputs, training=bool(training) and self.trainable)

    def folds_bias(self, inputs, training):
        """Whether `call_after_bias(inputs, bias, training)` computes the inference kernel with the bias folded in."""
        return not training and self._fused_applies(len(inputs.shape), inputs.dtype)

    def call_after_bias(self, inputs, bias, training=None):
        """`self(inputs + bias)` for a per-channel `bias`, e.g. that of the convolution before this layer.

        In inference on the fused path the bias is folded into the kernel's offset,
        `beta + gamma * bias / sqrt(moving_variance + epsilon)` (the same affine map, differentiable in every
        variable), so that TensorFlow fuses the bias-free convolution before it, this kernel and a ReLU after it
        into one oneDNN/cuDNN call. Otherwise it is `self(inputs + bias, training=training)`.
        """
        if not self.folds_bias(inputs, training):
            return self(inputs + keras.ops.cast(bias, inputs.dtype), training=training)
        return self._fused_call(inputs, training=False, bias=bias)

    def _fused_call(self, x, training, bias=None):
        import tensorflow as tf  # only reached on the TensorFlow backend

        channels = x.shape[-1]
        # The kernel takes float32 scale, offset and statistics whatever x's type (its attribute U); the variables
        # are bfloat16 under the "bfloat16" policy, so they are read as float32, as Keras' layer computes in float32.
        gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels], "float32")
        beta = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels], "float32")
        moving_mean, moving_variance = (tf.cast(v, "float32") for v in (self.moving_mean, self.moving_variance))
        if bias is not None:
            inv = gamma * tf.math.rsqrt(moving_variance + self.epsilon)
            beta = beta + tf.cast(bias, "float32") * inv
        if not training:
            y = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=moving_mean, variance=moving_variance, epsilon=self.epsilon,
                data_format="NHWC", is_training=False,
            )[0]
            return tf.cast(y, self.compute_dtype)
        empty = tf.zeros([0], "float32")
        y, mean, variance = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon, data_format="NHWC",
            is_training=True,
        )[:3]
        # The kernel returns the unbiased (n - 1) batch variance; Keras keeps the biased one, as it normalizes with.
        count = tf.cast(tf.size(x) // channels, "float32")
        variance = tf.where(count > 1.0, variance * (count - 1.0) / tf.maximum(count, 1.0), tf.zeros_like(variance))
        self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(y, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["fused"] = self.fused
        return config


# Files saved before the rename (keras-vitres 0.1.0) name this class "keras_vitres>BatchNormalization".
register_former_name(FusedBatchNormalization, "BatchNormalization")
