"""BiT: the ResNets of Big Transfer (Kolesnikov et al., arXiv:1912.11370), the ViT paper's convolutional baselines.

Pre-activation ResNet v2 bottlenecks (arXiv:1603.05027) whose batch norms are group norms of 32 groups
(arXiv:1803.08494) and whose convolutions are weight-standardised (arXiv:1903.10520), widened by a multiplier (R50x1
... R152x4, BiT §3.2). As google-research/big_transfer `bit_jax/models.py`: a stem without norm (the blocks are
pre-activation), the stride on each stage's first 3x3, and a final group norm and ReLU before the head. The same
stem and stages build the hybrid's "bit" trunk (post-activation, "SAME" padding; `keras_vitres.models.hybrid`).
Layers are named `stem_*`, `stage{s}_block{b}`, `post_norm`, `avg_pool` and `predictions`, for checkpoints to map onto.
"""

import keras

from keras_vitres.data.checks import check_positive_int
from keras_vitres.layers.convolution import StandardizedConv2D
from keras_vitres.layers.residual import GroupNormBottleneck
from keras_vitres.models.common import (
    check_head_args,
    check_input_shape,
    check_per_stage,
    convnet_head,
    imagenet_stem,
    load_weights,
    preprocess_inputs,
    stack_stages,
)

BIT_STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}  # BiT §3.2, as ResNet Table 1
# The two trunks' numerics, from the code that wrote their checkpoints: BiT (big_transfer bit_jax/models.py) and the
# ViT repository's hybrid (vision_transformer vit_jax/models_resnet.py, flax GroupNorm's default epsilon).
BIT_TRUNK = dict(preactivation=True, padding="symmetric", norm_epsilon=1e-5, weight_epsilon=1e-10,
                 weight_epsilon_on="variance")  # fmt: skip
VIT_HYBRID_TRUNK = dict(preactivation=False, padding="same", norm_epsilon=1e-6, weight_epsilon=1e-5,
                        weight_epsilon_on="std")  # fmt: skip


def standardized_stem(x, filters, *, preactivation, padding, norm_epsilon, weight_epsilon, weight_epsilon_on,
                      groups=32, kernel_regularizer=None):  # fmt: skip
    """`imagenet_stem` with a standardised convolution, padded "symmetric" (BiT) or "same" (the ViT repository's
    hybrid); a group norm and ReLU only without `preactivation`."""
    symmetric = padding == "symmetric"
    conv = StandardizedConv2D(filters, 7, strides=2, padding="valid" if symmetric else "same", use_bias=False,
                              epsilon=weight_epsilon, epsilon_on=weight_epsilon_on, kernel_initializer="he_normal",
                              kernel_regularizer=kernel_regularizer, name="stem_conv")  # fmt: skip
    norm = None if preactivation else keras.layers.GroupNormalization(groups, epsilon=norm_epsilon, name="stem_norm")
    return imagenet_stem(x, conv, norm, symmetric=symmetric)


def standardized_stages(x, stage_blocks, stage_filters, **block_args):
    """Stacks `GroupNormBottleneck` stages; each stage after the first starts with a stride of 2."""
    return stack_stages(x, GroupNormBottleneck, stage_blocks, stage_filters, **block_args)


def BiTResNet(
    depth=50,
    *,
    width_multiplier=1,
    stage_blocks=None,
    kernel_regularizer=None,
    remat=False,
    include_top=True, weights=None, input_shape=None, pooling=None,  # keras.applications' arguments
    classes=1000, classifier_activation="softmax",
    head_kernel_initializer="zeros",
    preprocessing=None,
    name=None,
):  # fmt: skip
    """Builds a BiT ResNet (arXiv:1912.11370) as a functional `keras.Model`.

    Args:
        depth: 50, 101 or 152 (R50, R101, R152); ignored when `stage_blocks` is given.
        width_multiplier: int. The "x1" ... "x4" of R50x1 ... R152x4.
        stage_blocks: 1 to 4 ints, bottlenecks per stage; by default from `depth`.
        kernel_regularizer, remat, include_top, input_shape, pooling, classes, classifier_activation, preprocessing:
            as in `ResNet` ("inception" preprocessing is BiT's [-1, 1]); `input_shape` is (224, 224, 3) by default.
        weights: None or a local file: a BiT `.npz` (big_transfer), a timm `resnetv2_*_bit` `.safetensors`, or a
            `.weights.h5`/`.keras` of this model.
        head_kernel_initializer: of the classifier kernel; BiT starts it at zero (§3.3).
        name: by default "bit_r{depth}x{width_multiplier}".

    Returns:
        A `keras.Model`; with `include_top=False` its features are those after the final group norm and ReLU.

    Examples:
        >>> model = BiTResNet(50, stage_blocks=(1, 1, 1, 1), input_shape=(64, 64, 3), classes=10)
        >>> model.output_shape
        (None, 10)
    """
    check_positive_int("width_multiplier", width_multiplier)
    if stage_blocks is None:
        if depth not in BIT_STAGE_BLOCKS or isinstance(depth, bool):
            raise ValueError(
                f"`depth` of a BiT ResNet must be one of {sorted(BIT_STAGE_BLOCKS)} (or pass `stage_blocks`); "
                f"received depth={depth!r}."
            )
        stage_blocks = BIT_STAGE_BLOCKS[depth]
    stage_blocks = check_per_stage("stage_blocks", stage_blocks, max_stages=4)
    input_shape = check_input_shape(input_shape or (224, 224, 3))
    check_head_args(include_top, pooling, classes, classifier_activation)
    width = 64 * width_multiplier
    stage_filters = tuple(width * 2**s for s in range(len(stage_blocks)))

    inputs = keras.Input(input_shape, name="images")
    x = standardized_stem(preprocess_inputs(inputs, preprocessing), width, kernel_regularizer=kernel_regularizer, **BIT_TRUNK)
    x = standardized_stages(x, stage_blocks, stage_filters, kernel_regularizer=kernel_regularizer, remat=remat,
                            **BIT_TRUNK)  # fmt: skip
    # Pre-activation blocks leave their sum un-normalised: one last group norm and ReLU (bit_jax "norm-pre-head").
    x = keras.layers.GroupNormalization(groups=32, epsilon=BIT_TRUNK["norm_epsilon"], name="post_norm")(x)
    x = keras.layers.Activation("relu", name="post_relu")(x)
    x = convnet_head(x, include_top, pooling, classes, classifier_activation,
                     kernel_initializer=head_kernel_initializer, kernel_regularizer=kernel_regularizer)  # fmt: skip
    model = keras.Model(inputs, x, name=name or f"bit_r{depth}x{width_multiplier}")
    return load_weights(model, weights)
