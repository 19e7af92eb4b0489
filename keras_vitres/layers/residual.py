"""Residual blocks and shortcut connections of the ResNet paper (He et al., arXiv:1512.03385, §3.3 and §4).

Shortcut options (paper §4.1, Table 3):
    "A": identity; where the shape changes, subsample with stride 2 and zero-pad the new channels. No parameters.
    "B": identity, and a projection (1x1 convolution + BN) only where the shape changes.
    "C": a projection on every block.
    None: no shortcut at all, the "plain" network of the degradation experiment (paper Fig. 1, 4, 6).

Strided 3x3 convolutions pad one pixel on every side and then run "valid", as PyTorch does: this is what
torchvision/timm weights assume, and `padding="same"` (which pads only bottom/right for even inputs) does not
reproduce it. Unstrided convolutions use "same", which is the same symmetric padding.

Strided 1x1 convolutions (the B/C projections, the v1 bottleneck's first convolution) are computed on TensorFlow as
a subsample `x[:, ::s, ::s]` followed by a stride-1 convolution: the same arithmetic and the same weights, but it
avoids TensorFlow 2.21's oneDNN kernel for the gradient of a strided 1x1 "valid" convolution, which corrupts the heap
(the process aborts) for odd batch sizes on even-sized maps. On the other backends, which that bug does not touch,
they are strided convolutions, as in keras-hub and torchvision: on JAX the subsample compiles to a strided slice of
the block's input ahead of the convolution (one per downsampling projection of ResNet-50), an operation keras-hub's
compiled ResNet-50 does not have, where a strided convolution reads only the pixels it uses.
"""

import keras
from keras import ops

from keras_vitres.layers.convolution import StandardizedConv2D
from keras_vitres.layers.normalization import FusedBatchNormalization
from keras_vitres.layers.remat import check_remat, rematerialized

SHORTCUT_OPTIONS = ("A", "B", "C", None)
BOTTLENECK_VERSIONS = ("v1", "v1.5")


def check_shortcut(shortcut):
    """Raises a ValueError naming `shortcut` unless it is one of the paper's options."""
    if shortcut not in SHORTCUT_OPTIONS:
        raise ValueError(
            f"`shortcut` must be 'A' (zero-padding identity), 'B' (projection where the shape changes), "
            f"'C' (projection everywhere) or None (plain network); received shortcut={shortcut!r}."
        )


def _down(size, strides):
    """Spatial size after a stride of `strides` with symmetric padding (None stays None)."""
    return None if size is None else -(-size // strides)


def _serialize(obj, module):
    return None if obj is None else module.serialize(module.get(obj))


class _ConvBNMixin:
    """Creates the convolution + batch-norm pairs shared by shortcuts and blocks, with fixed names.

    A convolution comes with what runs before it: None, a `ZeroPadding2D` (strided kxk, k > 1) or an int stride
    to subsample by (strided 1x1 on TensorFlow, see the module docstring). `self.strides` stays the block's stride.
    """

    def _set_conv_args(self, use_bias, bn_epsilon, bn_momentum, kernel_initializer, kernel_regularizer):
        self.use_bias = use_bias
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def _conv_args_config(self):
        return dict(
            use_bias=self.use_bias,
            bn_epsilon=self.bn_epsilon,
            bn_momentum=self.bn_momentum,
            kernel_initializer=_serialize(self.kernel_initializer, keras.initializers),
            kernel_regularizer=_serialize(self.kernel_regularizer, keras.regularizers),
        )

    def _make_conv(self, filters, kernel_size, strides, name):
        pad = None
        if strides > 1 and kernel_size > 1:
            pad = keras.layers.ZeroPadding2D(kernel_size // 2, dtype=self.dtype_policy, name=f"{name}_pad")
        elif strides > 1 and keras.backend.backend() == "tensorflow":  # TensorFlow's oneDNN bug: module docstring
            pad, strides = strides, 1
        conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="valid" if pad is not None or kernel_size == 1 else "same",
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )
        return pad, conv

    def _make_bn(self, name):
        return FusedBatchNormalization(
            momentum=self.bn_momentum, epsilon=self.bn_epsilon, dtype=self.dtype_policy, name=name
        )

    @staticmethod
    def _before_conv(pad, x):
        if isinstance(pad, int):
            return x[:, ::pad, ::pad, :]
        return x if pad is None else pad(x)

    @classmethod
    def _apply_conv(cls, pad, conv, x):
        return conv(cls._before_conv(pad, x))

    @classmethod
    def _conv_bn(cls, pad, conv, bn, x, training):
        """bn(conv(x)); in inference with conv biases, the bias goes into the BN kernel (see `call_after_bias`)."""
        x = cls._before_conv(pad, x)
        if conv.use_bias and bn.folds_bias(x, training):
            return bn.call_after_bias(conv.convolution_op(x, conv.kernel), conv.bias, training=training)
        return bn(conv(x), training=training)

    @staticmethod
    def _build_conv(pad, conv, input_shape):
        if isinstance(pad, int):
            batch, height, width, channels = input_shape
            input_shape = (batch, _down(height, pad), _down(width, pad), channels)
        elif pad is not None:
            pad.build(input_shape)
            input_shape = pad.compute_output_shape(input_shape)
        conv.build(input_shape)
        return conv.compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="keras_vitres")
class Shortcut(_ConvBNMixin, keras.layers.Layer):
    """The shortcut branch of a residual block, for the paper's options A, B and C (arXiv:1512.03385, §3.3).

    Args:
        filters: int. Channels of the block's output.
        strides: int. Spatial stride of the block.
        option: "A", "B" or "C" (see the module docstring).
        use_bias, bn_epsilon, bn_momentum, kernel_initializer, kernel_regularizer: as in the blocks.

    Which path is taken is decided from the input's channels when the layer is built: `mode` is then
    "identity", "zero_pad" or "projection".
    """

    def __init__(
        self,
        filters,
        strides=1,
        option="B",
        use_bias=False,
        bn_epsilon=1e-5,
        bn_momentum=0.9,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if option is None:
            raise ValueError("`option` of a Shortcut must be 'A', 'B' or 'C'; received option=None.")
        check_shortcut(option)
        self.filters = filters
        self.strides = strides
        self.option = option
        self._set_conv_args(use_bias, bn_epsilon, bn_momentum, kernel_initializer, kernel_regularizer)
        self.mode = None

    def build(self, input_shape):
        channels = input_shape[-1]
        reshapes = self.strides != 1 or channels != self.filters
        if self.option == "C" or (self.option == "B" and reshapes):
            self.mode = "projection"
            self.conv_pad, self.conv = self._make_conv(self.filters, 1, self.strides, "conv")
            self.bn = self._make_bn("bn")
            self.bn.build(self._build_conv(self.conv_pad, self.conv, input_shape))
        elif reshapes:
            if channels > self.filters:
                raise ValueError(
                    f"Shortcut option 'A' can only add channels; received {channels} input channels for "
                    f"filters={self.filters}."
                )
            self.mode = "zero_pad"
        else:
            self.mode = "identity"

    def call(self, x, training=None):
        if self.mode == "projection":
            return self._conv_bn(self.conv_pad, self.conv, self.bn, x, training)
        if self.mode == "zero_pad":
            if self.strides > 1:
                x = x[:, :: self.strides, :: self.strides, :]
            extra = self.filters - x.shape[-1]
            return ops.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], _down(input_shape[1], self.strides), _down(input_shape[2], self.strides), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides, option=self.option, **self._conv_args_config())
        return config


class _ResidualBlock(_ConvBNMixin, keras.layers.Layer):
    """Arguments and shortcut handling shared by the basic and bottleneck blocks."""

    def __init__(
        self,
        filters,
        strides=1,
        shortcut="B",
        use_bias=False,
        bn_epsilon=1e-5,
        bn_momentum=0.9,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        remat=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_shortcut(shortcut)
        if not isinstance(strides, int) or strides < 1:
            raise ValueError(f"`strides` must be a positive int; received strides={strides!r}.")
        self.filters = filters
        self.strides = strides
        self.shortcut = shortcut
        check_remat(remat)
        self.remat = remat
        self._set_conv_args(use_bias, bn_epsilon, bn_momentum, kernel_initializer, kernel_regularizer)
        self.shortcut_branch = None
        if shortcut is not None:
            self.shortcut_branch = Shortcut(
                self.output_filters,
                strides,
                option=shortcut,
                use_bias=use_bias,
                bn_epsilon=bn_epsilon,
                bn_momentum=bn_momentum,
                kernel_initializer=kernel_initializer,
                kernel_regularizer=kernel_regularizer,
                dtype=self.dtype_policy,
                name="shortcut",
            )

    @property
    def output_filters(self):
        return self.filters

    def call(self, inputs, training=None):
        if self.remat and training:
            return rematerialized(self, lambda x: self._forward(x, training), inputs)
        return self._forward(inputs, training)

    def _merge(self, inputs, residual, training):
        if self.shortcut_branch is not None:
            residual = residual + self.shortcut_branch(inputs, training=training)
        return ops.relu(residual)

    def compute_output_shape(self, input_shape):
        height, width = _down(input_shape[1], self.strides), _down(input_shape[2], self.strides)
        return (input_shape[0], height, width, self.output_filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides, shortcut=self.shortcut, remat=self.remat,
                      **self._conv_args_config())
        return config


@keras.saving.register_keras_serializable(package="keras_vitres")
class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions with a shortcut: relu(BN(conv(relu(BN(conv(x))))) + shortcut(x)) (paper Fig. 2, 5 left).

    Used by the CIFAR nets and ResNet-18/34.

    Args:
        filters: int. Output channels.
        strides: int. Stride of the first convolution (2 at the first block of a downsampling stage).
        shortcut: "A", "B", "C" or None (plain block).
        use_bias: bool. Biases on the convolutions (the paper's nets and torchvision have none).
        bn_epsilon, bn_momentum: BatchNormalization settings.
        kernel_initializer: initializer of the convolution kernels (He et al. 2015, "he_normal").
        kernel_regularizer: regularizer of the convolution kernels (the paper's weight decay).
        remat: bool. Recompute the block's activations in the backward pass instead of storing them (less training
            memory for about one more forward pass; see `keras_vitres.layers.remat`).
    """

    def __init__(self, filters, strides=1, shortcut="B", **kwargs):
        super().__init__(filters, strides=strides, shortcut=shortcut, **kwargs)
        self.conv1_pad, self.conv1 = self._make_conv(filters, 3, strides, "conv1")
        self.bn1 = self._make_bn("bn1")
        self.conv2_pad, self.conv2 = self._make_conv(filters, 3, 1, "conv2")
        self.bn2 = self._make_bn("bn2")

    def build(self, input_shape):
        shape = self._build_conv(self.conv1_pad, self.conv1, input_shape)
        self.bn1.build(shape)
        shape = self._build_conv(self.conv2_pad, self.conv2, shape)
        self.bn2.build(shape)
        if self.shortcut_branch is not None:
            self.shortcut_branch.build(input_shape)

    def _forward(self, inputs, training):
        x = ops.relu(self._conv_bn(self.conv1_pad, self.conv1, self.bn1, inputs, training))
        x = self._conv_bn(self.conv2_pad, self.conv2, self.bn2, x, training)
        return self._merge(inputs, x, training)


@keras.saving.register_keras_serializable(package="keras_vitres")
class BottleneckBlock(_ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand, with a shortcut (paper Fig. 5 right; ResNet-50/101/152).

    Args:
        filters: int. Channels of the 1x1 and 3x3 convolutions; the block outputs `filters * expansion`.
        strides: int. Stride of the block.
        expansion: int. Output width multiplier (4 in the paper).
        version: "v1" puts the stride on the first 1x1 convolution (the paper, keras.applications);
            "v1.5" puts it on the 3x3 convolution (torchvision, timm), which is slightly more accurate.
        shortcut, use_bias, bn_epsilon, bn_momentum, kernel_initializer, kernel_regularizer, remat: as in
            `BasicBlock`.
    """

    def __init__(self, filters, strides=1, shortcut="B", expansion=4, version="v1", **kwargs):
        if version not in BOTTLENECK_VERSIONS:
            raise ValueError(f"`version` must be 'v1' or 'v1.5'; received version={version!r}.")
        if not isinstance(expansion, int) or expansion < 1:
            raise ValueError(f"`expansion` must be a positive int; received expansion={expansion!r}.")
        self.expansion = expansion
        self.version = version
        super().__init__(filters, strides=strides, shortcut=shortcut, **kwargs)
        stride_1x1, stride_3x3 = (strides, 1) if version == "v1" else (1, strides)
        self.conv1_pad, self.conv1 = self._make_conv(filters, 1, stride_1x1, "conv1")
        self.bn1 = self._make_bn("bn1")
        self.conv2_pad, self.conv2 = self._make_conv(filters, 3, stride_3x3, "conv2")
        self.bn2 = self._make_bn("bn2")
        self.conv3_pad, self.conv3 = self._make_conv(filters * expansion, 1, 1, "conv3")
        self.bn3 = self._make_bn("bn3")

    @property
    def output_filters(self):
        return self.filters * self.expansion

    def build(self, input_shape):
        shape = input_shape
        for pad, conv, bn in (
            (self.conv1_pad, self.conv1, self.bn1),
            (self.conv2_pad, self.conv2, self.bn2),
            (self.conv3_pad, self.conv3, self.bn3),
        ):
            shape = self._build_conv(pad, conv, shape)
            bn.build(shape)
        if self.shortcut_branch is not None:
            self.shortcut_branch.build(input_shape)

    def _forward(self, inputs, training):
        x = ops.relu(self._conv_bn(self.conv1_pad, self.conv1, self.bn1, inputs, training))
        x = ops.relu(self._conv_bn(self.conv2_pad, self.conv2, self.bn2, x, training))
        x = self._conv_bn(self.conv3_pad, self.conv3, self.bn3, x, training)
        return self._merge(inputs, x, training)

    def get_config(self):
        config = super().get_config()
        config.update(expansion=self.expansion, version=self.version)
        return config


PADDINGS = ("symmetric", "same")


@keras.saving.register_keras_serializable(package="keras_vitres")
class GroupNormBottleneck(keras.layers.Layer):
    """Bottleneck with group norm (Wu & He, arXiv:1803.08494) and weight-standardised convolutions (Qiao et al.,
    arXiv:1903.10520): BiT's block (Kolesnikov et al., arXiv:1912.11370, §2.1) and the ViT hybrid's (arXiv:2010.11929,
    §3.1). The stride is on the 3x3 convolution; a 1x1 projection shortcut is added where the shape changes.

    With `preactivation=True` (BiT; ResNet v2, He et al. arXiv:1603.05027), p = relu(norm1(x)) and
        out = conv3(relu(norm3(conv2(relu(norm2(conv1(p))))))) + (shortcut_conv(p) or x).
    With `preactivation=False` (the ViT repository's hybrid trunk, `vit_jax/models_resnet.py`),
        out = relu(norm3(conv3(relu(norm2(conv2(relu(norm1(conv1(x))))))) + (shortcut_norm(shortcut_conv(x)) or x)),
    and norm3's scale starts at zero, as there, so that a new block starts as the identity.

    Args:
        filters: int. Channels of the 1x1 and 3x3 convolutions; the block outputs `filters * expansion`.
        strides: int. Stride of the 3x3 convolution and the projection.
        expansion: int. Output width multiplier (4).
        preactivation: bool. See above.
        groups: int. Group norm groups (32, as in BiT); every normalised width must be a multiple of it.
        norm_epsilon: float. Group norm epsilon (1e-5 in BiT, 1e-6 in the ViT repository's flax GroupNorm).
        weight_epsilon, weight_epsilon_on: the `epsilon` and `epsilon_on` of `StandardizedConv2D` (BiT: 1e-10 on the
            variance; the ViT repository: 1e-5 on the standard deviation).
        padding: "symmetric" pads the strided 3x3 convolution by one pixel on every side (BiT's fixed padding);
            "same" pads as TensorFlow/flax "SAME" does (the extra pixel bottom/right; the ViT repository).
        kernel_initializer, kernel_regularizer: of every convolution kernel.
        remat: bool. Recompute the block's activations in the backward pass (`keras_vitres.layers.remat`).
    """

    def __init__(
        self,
        filters,
        strides=1,
        expansion=4,
        preactivation=True,
        groups=32,
        norm_epsilon=1e-5,
        weight_epsilon=1e-10,
        weight_epsilon_on="variance",
        padding="symmetric",
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        remat=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("filters", filters), ("strides", strides), ("expansion", expansion), ("groups", groups)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int; received {name}={value!r}.")
        if padding not in PADDINGS:
            raise ValueError(f"`padding` must be one of {PADDINGS}; received padding={padding!r}.")
        if not isinstance(preactivation, bool):
            raise ValueError(f"`preactivation` must be a bool; received preactivation={preactivation!r}.")
        check_remat(remat)
        self.filters = filters
        self.strides = strides
        self.expansion = expansion
        self.preactivation = preactivation
        self.groups = groups
        self.norm_epsilon = norm_epsilon
        self.weight_epsilon = weight_epsilon
        self.weight_epsilon_on = weight_epsilon_on
        self.padding = padding
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.remat = remat
        self.norm1, self.norm2, self.norm3 = (
            self._make_norm(f"norm{k}", zero=not preactivation and k == 3) for k in (1, 2, 3)
        )
        self.conv1 = self._make_conv(filters, 1, 1, "conv1")
        self.conv2_pad = None
        if strides > 1 and padding == "symmetric":
            self.conv2_pad = keras.layers.ZeroPadding2D(1, dtype=self.dtype_policy, name="conv2_pad")
        self.conv2 = self._make_conv(filters, 3, strides, "conv2", padding="valid" if self.conv2_pad else "same")
        self.conv3 = self._make_conv(filters * expansion, 1, 1, "conv3")
        self.shortcut_conv = self.shortcut_norm = None
        self._subsample = 1  # strided 1x1 projection on TensorFlow: subsample, then a stride-1 convolution

    @property
    def output_filters(self):
        return self.filters * self.expansion

    def _make_norm(self, name, zero=False):
        return keras.layers.GroupNormalization(
            groups=self.groups,
            epsilon=self.norm_epsilon,
            gamma_initializer="zeros" if zero else "ones",
            dtype=self.dtype_policy,
            name=name,
        )

    def _make_conv(self, filters, kernel_size, strides, name, padding="same"):
        return StandardizedConv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=False,
            epsilon=self.weight_epsilon,
            epsilon_on=self.weight_epsilon_on,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        for width in (channels, self.filters, self.output_filters):
            if width % self.groups:
                raise ValueError(
                    f"Group norm needs widths that are multiples of `groups`; received groups={self.groups} for "
                    f"{width} channels (input {channels}, filters={self.filters}, expansion={self.expansion})."
                )
        if self.strides != 1 or channels != self.output_filters:
            strides = self.strides
            if strides > 1 and keras.backend.backend() == "tensorflow":  # oneDNN bug: the module docstring
                self._subsample, strides = strides, 1
            self.shortcut_conv = self._make_conv(self.output_filters, 1, strides, "shortcut_conv", padding="valid")
            sub = (input_shape[0], _down(input_shape[1], self._subsample), _down(input_shape[2], self._subsample))
            self.shortcut_conv.build((*sub, channels))
            if not self.preactivation:
                self.shortcut_norm = self._make_norm("shortcut_norm")
                self.shortcut_norm.build(self.compute_output_shape(input_shape))
        shape = tuple(input_shape)
        if self.preactivation:
            self.norm1.build(shape)
        shape = self.conv1.compute_output_shape(shape)
        self.conv1.build(input_shape)
        (self.norm2 if self.preactivation else self.norm1).build(shape)
        if self.conv2_pad is not None:
            self.conv2_pad.build(shape)
            shape = self.conv2_pad.compute_output_shape(shape)
        self.conv2.build(shape)
        shape = self.conv2.compute_output_shape(shape)
        (self.norm3 if self.preactivation else self.norm2).build(shape)
        self.conv3.build(shape)
        if not self.preactivation:
            self.norm3.build(self.conv3.compute_output_shape(shape))

    def call(self, inputs, training=None):
        if self.remat and training:
            return rematerialized(self, self._forward, inputs)
        return self._forward(inputs)

    def _shortcut(self, x):
        if self._subsample > 1:
            x = x[:, :: self._subsample, :: self._subsample, :]
        return self.shortcut_conv(x)

    def _conv2(self, x):
        return self.conv2(x if self.conv2_pad is None else self.conv2_pad(x))

    def _forward(self, inputs):
        if self.preactivation:
            x = ops.relu(self.norm1(inputs))
            shortcut = inputs if self.shortcut_conv is None else self._shortcut(x)
            x = self.conv1(x)
            x = self._conv2(ops.relu(self.norm2(x)))
            x = self.conv3(ops.relu(self.norm3(x)))
            return x + shortcut
        shortcut = inputs if self.shortcut_conv is None else self.shortcut_norm(self._shortcut(inputs))
        x = ops.relu(self.norm1(self.conv1(inputs)))
        x = ops.relu(self.norm2(self._conv2(x)))
        x = self.norm3(self.conv3(x))
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        height, width = _down(input_shape[1], self.strides), _down(input_shape[2], self.strides)
        return (input_shape[0], height, width, self.output_filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            expansion=self.expansion,
            preactivation=self.preactivation,
            groups=self.groups,
            norm_epsilon=self.norm_epsilon,
            weight_epsilon=self.weight_epsilon,
            weight_epsilon_on=self.weight_epsilon_on,
            padding=self.padding,
            kernel_initializer=_serialize(self.kernel_initializer, keras.initializers),
            kernel_regularizer=_serialize(self.kernel_regularizer, keras.regularizers),
            remat=self.remat,
        )
        return config
