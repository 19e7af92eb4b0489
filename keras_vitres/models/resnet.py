"""ResNet and its plain twin (He et al., "Deep Residual Learning for Image Recognition", arXiv:1512.03385).

The "cifar" stem (§4.2): a 3x3 convolution, three stages of 2n basic blocks at 16/32/64 filters, depth 6n+2,
shortcut A. The "imagenet" stem (§3.4, Table 1): a 7x7/2 convolution and a 3x3/2 max-pool, four stages at
64/128/256/512 filters, basic blocks for 18/34 layers and bottlenecks for 50/101/152, shortcut B. Layers are named
`stem_*`, `stage{s}_block{b}` (1-based), `avg_pool` and `predictions`: features and weights map onto them by name.
"""

import keras

from keras_vitres.data.checks import is_positive_int
from keras_vitres.layers.normalization import FusedBatchNormalization
from keras_vitres.layers.residual import BOTTLENECK_VERSIONS, BasicBlock, BottleneckBlock, check_shortcut
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

STEMS = ("cifar", "imagenet")
BLOCKS = ("basic", "bottleneck")
IMAGENET_STAGE_BLOCKS = {  # paper Table 1
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_FILTERS = {"cifar": (16, 32, 64), "imagenet": (64, 128, 256, 512)}
DEFAULTS = {  # per stem: input shape, classes, shortcut option as in the paper's experiments
    "cifar": dict(input_shape=(32, 32, 3), classes=10, shortcut="A"),
    "imagenet": dict(input_shape=(224, 224, 3), classes=1000, shortcut="B"),
}
MIN_SIZE = {"imagenet": 32}  # the smallest input keras.applications takes for its ResNets (stride 32 in all)


def depth_to_stages(depth, stem):
    """Returns (block, stage_blocks) for a paper depth, or raises a ValueError naming `depth`."""
    if stem == "cifar":
        if not is_positive_int(depth) or depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"`depth` of a CIFAR ResNet must be 6n+2 with n >= 1 (the paper uses 20, 32, 44, 56, 110, 1202); "
                f"received depth={depth!r}."
            )
        n = (depth - 2) // 6
        return "basic", (n, n, n)
    if not is_positive_int(depth) or depth not in IMAGENET_STAGE_BLOCKS:
        raise ValueError(
            f"`depth` of an ImageNet ResNet must be one of {sorted(IMAGENET_STAGE_BLOCKS)} (or pass `stage_blocks`); "
            f"received depth={depth!r}."
        )
    return IMAGENET_STAGE_BLOCKS[depth]


def resnet_stem(x, stem, filters, *, use_bias=False, bn_epsilon=1e-5, bn_momentum=0.9, kernel_regularizer=None):
    """The stem: "cifar" is conv3x3-BN-ReLU; "imagenet" is conv7x7/2-BN-ReLU-maxpool3x3/2, padded as PyTorch."""
    conv_args = dict(use_bias=use_bias, kernel_initializer="he_normal", kernel_regularizer=kernel_regularizer)
    norm = FusedBatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name="stem_bn")
    if stem == "imagenet":
        return imagenet_stem(x, keras.layers.Conv2D(filters, 7, strides=2, name="stem_conv", **conv_args), norm)
    x = keras.layers.Conv2D(filters, 3, padding="same", name="stem_conv", **conv_args)(x)
    return keras.layers.Activation("relu", name="stem_relu")(norm(x))


def resnet_stages(x, block, stage_blocks, stage_filters, **block_args):
    """Stacks the stages; the first block of every stage after the first halves the resolution."""
    return stack_stages(x, BasicBlock if block == "basic" else BottleneckBlock, stage_blocks, stage_filters,
                        **block_args)  # fmt: skip


def resolve_architecture(depth, stem, block, stage_blocks, stage_filters, shortcut, version):
    """Checks `ResNet`'s architecture arguments and fills in the paper's defaults for `stem`; returns (depth, block,
    stage_blocks, stage_filters, shortcut) or raises a ValueError naming the argument."""
    if stem not in STEMS:
        raise ValueError(f"`stem` must be one of {STEMS}; received stem={stem!r}.")
    if stage_blocks is None:
        if depth is None:
            raise ValueError("Pass `depth` or `stage_blocks`; received depth=None and stage_blocks=None.")
        depth_block, stage_blocks = depth_to_stages(depth, stem)
        block = block or depth_block
    block = block or "basic"
    if block not in BLOCKS:
        raise ValueError(f"`block` must be one of {BLOCKS}; received block={block!r}.")
    stage_blocks = check_per_stage("stage_blocks", stage_blocks)
    stage_filters = check_per_stage("stage_filters", STAGE_FILTERS[stem] if stage_filters is None else stage_filters,
                                    stages=len(stage_blocks))  # fmt: skip
    if version not in BOTTLENECK_VERSIONS:
        raise ValueError(f"`version` must be one of {BOTTLENECK_VERSIONS}; received version={version!r}.")
    shortcut = DEFAULTS[stem]["shortcut"] if shortcut == "auto" else shortcut
    check_shortcut(shortcut)
    if depth is None:
        depth = sum(stage_blocks) * (2 if block == "basic" else 3) + 2
    return depth, block, stage_blocks, stage_filters, shortcut


def ResNet(
    depth=None,
    *,
    stem="cifar",
    block=None,
    stage_blocks=None,
    stage_filters=None,
    shortcut="auto",
    version="v1",
    expansion=4,
    use_bias=False,
    bn_epsilon=1e-5,
    bn_momentum=0.9,
    kernel_regularizer=None,
    remat=False,
    include_top=True, weights=None, input_shape=None, pooling=None,  # keras.applications' arguments
    classes=None, classifier_activation="softmax",
    preprocessing=None,
    name=None,
):  # fmt: skip
    """Builds a ResNet, or its plain twin, as a functional `keras.Model` (arXiv:1512.03385).

    Args:
        depth: weighted layers: 6n+2 with the "cifar" stem, 18/34/50/101/152 with "imagenet"; None with `stage_blocks`.
        stem: "cifar" or "imagenet" (the module docstring).
        block, stage_blocks, stage_filters: "basic" or "bottleneck", and blocks and filters per stage; by default
            the paper's for `depth` and `stem`.
        shortcut: "A", "B", "C" (§4.1), None (the plain net), or "auto": A with the CIFAR stem, B with ImageNet's.
        version: "v1" (a bottleneck strides its 1x1, the paper) or "v1.5" (its 3x3, torchvision).
        expansion, use_bias, bn_epsilon, bn_momentum: bottleneck expansion, convolution biases (keras.applications
            has them, the paper not), BatchNormalization settings.
        kernel_regularizer: of every convolution kernel (the paper's weight decay as L2).
        remat: recompute each block in the backward pass: less memory for more time (docs/benchmarks.md).
        include_top, weights, input_shape, pooling, classes, classifier_activation: as keras.applications.
            `weights` is None, a local file (`.weights.h5`, `.keras` or a converted format) or a keras-hub
            `ResNetBackbone`; named weights come through the presets (`ResNet50(weights="imagenet")`).
            `input_shape` is (32, 32, 3) or (224, 224, 3) by default, H and W may be None; `classes` 10 or 1000.
        preprocessing: None, or what the model applies to raw [0, 255] RGB pixels as its first layer (an
            `ImagePreprocessing` named "preprocessing"): anything `Preprocessing.resolve` takes ("caffe", ...).
        name: by default "resnet{depth}" or "plain{depth}".

    Examples:
        >>> model = ResNet(20, stem="cifar")
        >>> model.count_params()
        271098
        >>> model.output_shape
        (None, 10)
    """
    depth, block, stage_blocks, stage_filters, shortcut = resolve_architecture(
        depth, stem, block, stage_blocks, stage_filters, shortcut, version
    )
    input_shape = check_input_shape(input_shape or DEFAULTS[stem]["input_shape"], min_size=MIN_SIZE.get(stem))
    classes = DEFAULTS[stem]["classes"] if classes is None else classes
    check_head_args(include_top, pooling, classes, classifier_activation)

    common = dict(use_bias=use_bias, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum,
                  kernel_regularizer=kernel_regularizer)  # fmt: skip
    block_args = dict(shortcut=shortcut, remat=remat, **common)
    if block == "bottleneck":
        block_args.update(expansion=expansion, version=version)
    inputs = keras.Input(input_shape, name="images")
    x = resnet_stem(preprocess_inputs(inputs, preprocessing), stem, stage_filters[0], **common)
    x = resnet_stages(x, block, stage_blocks, stage_filters, **block_args)
    x = convnet_head(x, include_top, pooling, classes, classifier_activation, kernel_regularizer=kernel_regularizer)
    model = keras.Model(inputs, x, name=name or f"{'resnet' if shortcut else 'plain'}{depth}")
    return load_weights(model, weights)
