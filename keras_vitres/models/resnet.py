"""ResNet and its plain twin (He et al., "Deep Residual Learning for Image Recognition", arXiv:1512.03385).

Two stems, as in the paper:
    "cifar" (§4.2): a 3x3 convolution of 16 filters, then three stages of 2n layers each at 16/32/64 filters,
        depth 6n + 2 (ResNet-20/32/44/56/110/1202), basic blocks, shortcut option A.
    "imagenet" (§3.4, Table 1): a 7x7/2 convolution of 64 and a 3x3/2 max-pool, then four stages at
        64/128/256/512 filters: basic blocks for 18/34 layers, bottlenecks (expansion 4) for 50/101/152; option B.
Layers are named `stem_*`, `stage{s}_block{b}` (1-based) and `avg_pool`/`predictions`, so features and
published weights map onto them by name.
"""

import keras

from keras_vitres.layers.normalization import FusedBatchNormalization
from keras_vitres.layers.residual import BasicBlock, BottleneckBlock, check_shortcut
from keras_vitres.models.common import (
    check_head_args,
    check_input_shape,
    classifier,
    load_weights,
    preprocess_inputs,
    stack_stages,
)

STEMS = ("cifar", "imagenet")
BLOCKS = ("basic", "bottleneck")
VERSIONS = ("v1", "v1.5")  # where a bottleneck strides: its 1x1 (the paper) or its 3x3 (torchvision)
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


def _is_positive_ints(values):
    """Whether `values` is a non-empty list or tuple of ints >= 1 (bools excluded)."""
    return isinstance(values, (list, tuple)) and len(values) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    )


def depth_to_stages(depth, stem):
    """Returns (block, stage_blocks) for a paper depth, or raises a ValueError naming `depth`."""
    if stem == "cifar":
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"`depth` of a CIFAR ResNet must be 6n+2 with n >= 1 (the paper uses 20, 32, 44, 56, 110, 1202); "
                f"received depth={depth!r}."
            )
        n = (depth - 2) // 6
        return "basic", (n, n, n)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth not in IMAGENET_STAGE_BLOCKS:
        raise ValueError(
            f"`depth` of an ImageNet ResNet must be one of {sorted(IMAGENET_STAGE_BLOCKS)} (or pass `stage_blocks`); "
            f"received depth={depth!r}."
        )
    return IMAGENET_STAGE_BLOCKS[depth]


def resnet_stem(x, stem, filters, *, use_bias=False, bn_epsilon=1e-5, bn_momentum=0.9, kernel_regularizer=None):
    """The stem: "cifar" is conv3x3-BN-ReLU; "imagenet" is conv7x7/2-BN-ReLU-maxpool3x3/2, padded as PyTorch."""
    conv_args = dict(use_bias=use_bias, kernel_initializer="he_normal", kernel_regularizer=kernel_regularizer)
    if stem == "cifar":
        x = keras.layers.Conv2D(filters, 3, padding="same", name="stem_conv", **conv_args)(x)
    else:
        x = keras.layers.ZeroPadding2D(3, name="stem_conv_pad")(x)
        x = keras.layers.Conv2D(filters, 7, strides=2, name="stem_conv", **conv_args)(x)
    x = FusedBatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    if stem == "imagenet":
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    return x


def resnet_stages(x, block, stage_blocks, stage_filters, **block_args):
    """Stacks the stages; the first block of every stage after the first halves the resolution."""
    return stack_stages(x, BasicBlock if block == "basic" else BottleneckBlock, stage_blocks, stage_filters,
                        **block_args)  # fmt: skip


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
    include_top=True,
    weights=None,
    input_shape=None,
    pooling=None,
    classes=None,
    classifier_activation="softmax",
    preprocessing=None,
    name=None,
):
    """Builds a ResNet, or its plain twin, as a functional `keras.Model` (arXiv:1512.03385).

    Args:
        depth: int. Number of weighted layers: 6n+2 for the CIFAR stem, 18/34/50/101/152 for the ImageNet stem.
            May be None when `block` and `stage_blocks` are given.
        stem: "cifar" or "imagenet" (see the module docstring).
        block: "basic" or "bottleneck"; by default what the paper uses for `depth`.
        stage_blocks: tuple of ints, blocks per stage; by default from `depth`.
        stage_filters: tuple of ints, filters per stage; by default 16/32/64 or 64/128/256/512.
        shortcut: "A", "B", "C" (paper §4.1), None for the plain network, or "auto": A for the CIFAR stem,
            B for the ImageNet stem, as in the paper.
        version: "v1" (stride on the bottleneck's 1x1, the paper) or "v1.5" (stride on its 3x3, torchvision).
        expansion: int. Bottleneck expansion (4 in the paper).
        use_bias: bool. Biases on convolutions (keras.applications' ResNets have them; the paper's do not).
        bn_epsilon, bn_momentum: BatchNormalization settings.
        kernel_regularizer: regularizer for every convolution kernel (the paper's weight decay as L2).
        remat: bool. Recompute each residual block's activations in the backward pass instead of storing them: less
            training memory (56% less for ResNet-110 on CPU with TensorFlow, 88% of the activations of ResNet-1202;
            with JAX on one H200 GPU ResNet-110's compiled step at batch 128 needs 280 instead of 1,134 MiB of
            temporaries; docs/benchmarks.md) for about 1.5x the step time on CPU. Keras on JAX compiling for the CPU
            saves nothing.
        include_top: bool. Whether to end with global average pooling and the classifier.
        weights: None, the path of a local weights file (`.weights.h5`, `.keras`, or a converted format), or a
            keras-hub `ResNetBackbone` to convert. Named weights (`"imagenet"`) are the presets':
            `keras_vitres.ResNet50(weights="imagenet")`, `build_model("resnet50", weights="imagenet")`.
        input_shape: (H, W, C); by default (32, 32, 3) or (224, 224, 3). H and W may be None.
        pooling: None, "avg" or "max": pooling of the features when `include_top=False`.
        classes: int. Number of classes; by default 10 (CIFAR) or 1000 (ImageNet).
        classifier_activation: activation of the classifier ("softmax", or None for logits).
        preprocessing: None (the model takes its inputs as they are), or what it applies to raw [0, 255] RGB
            pixels as its first layer, an `ImagePreprocessing` named "preprocessing": a name ("caffe", "imagenet",
            "inception", "unit"), a dict of `Preprocessing` fields or a `Preprocessing`.
        name: model name; by default "resnet{depth}" or "plain{depth}".

    Returns:
        A `keras.Model`.

    Examples:
        >>> model = ResNet(20, stem="cifar")
        >>> model.count_params()
        271098
        >>> model.output_shape
        (None, 10)
    """
    if stem not in STEMS:
        raise ValueError(f"`stem` must be one of {STEMS}; received stem={stem!r}.")
    defaults = DEFAULTS[stem]
    if stage_blocks is None:
        if depth is None:
            raise ValueError("Pass `depth` or `stage_blocks`; received depth=None and stage_blocks=None.")
        depth_block, stage_blocks = depth_to_stages(depth, stem)
        block = block or depth_block
    block = block or "basic"
    if block not in BLOCKS:
        raise ValueError(f"`block` must be one of {BLOCKS}; received block={block!r}.")
    if stage_filters is None:
        stage_filters = STAGE_FILTERS[stem]
    if not _is_positive_ints(stage_filters):
        raise ValueError(
            f"`stage_filters` must be a non-empty list or tuple of positive ints, the filters of each stage; "
            f"received stage_filters={stage_filters!r}."
        )
    if not _is_positive_ints(stage_blocks) or len(stage_blocks) != len(stage_filters):
        raise ValueError(
            f"`stage_blocks` must hold one positive int per stage ({len(stage_filters)} stages, as in "
            f"stage_filters={tuple(stage_filters)!r}); received stage_blocks={stage_blocks!r}."
        )
    stage_filters, stage_blocks = tuple(stage_filters), tuple(stage_blocks)
    if version not in VERSIONS:
        raise ValueError(f"`version` must be one of {VERSIONS}; received version={version!r}.")
    if shortcut == "auto":
        shortcut = defaults["shortcut"]
    check_shortcut(shortcut)
    input_shape = check_input_shape(input_shape or defaults["input_shape"], min_size=MIN_SIZE.get(stem))
    classes = defaults["classes"] if classes is None else classes
    check_head_args(include_top, pooling, classes, classifier_activation)
    if depth is None:
        depth = sum(stage_blocks) * (2 if block == "basic" else 3) + 2
    name = name or f"{'resnet' if shortcut else 'plain'}{depth}"

    common = dict(use_bias=use_bias, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, kernel_regularizer=kernel_regularizer)
    block_args = dict(shortcut=shortcut, remat=remat, **common)
    if block == "bottleneck":
        block_args.update(expansion=expansion, version=version)

    inputs = keras.Input(input_shape, name="images")
    x = resnet_stem(preprocess_inputs(inputs, preprocessing), stem, stage_filters[0], **common)
    x = resnet_stages(x, block, stage_blocks, stage_filters, **block_args)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = classifier(x, classes, classifier_activation, kernel_regularizer=kernel_regularizer)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)
    return load_weights(model, weights)
