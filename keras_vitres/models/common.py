"""Pieces every builder shares: argument checks, the ImageNet stem, residual stages, the keras.applications head,
and `load_weights` (`keras_vitres.weights`: the models call the loaders, the loaders never import the models).
"""

import dataclasses

import keras

from keras_vitres.data.checks import is_positive_int
from keras_vitres.layers.preprocessing import Preprocessing
from keras_vitres.weights.loaders import load_weights as load_weights  # the builders call it from here

POOLINGS = (None, "avg", "max")
IMAGE_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA: a first dimension like these and a last one unlike is channels-first


def check_input_shape(input_shape, *, require_size=False, min_size=None):
    """Returns an (H, W, C) `input_shape` as a tuple, or raises naming the value: a channels-first one such as
    (3, 224, 224) too (it would build a net for 224-channel images), or one below `min_size` in height or width."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    ok = shape is not None and len(shape) == 3 and all(d is None or is_positive_int(d) for d in shape)
    if not ok or shape[2] is None:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive ints (height and width may be None for "
            f"convolutional nets) and channels last; received input_shape={input_shape!r}."
        )
    if shape[0] in IMAGE_CHANNELS and shape[2] not in IMAGE_CHANNELS:
        raise ValueError(
            f"`input_shape` looks channels-first: received input_shape={input_shape!r}, read as height {shape[0]}, "
            f"width {shape[1]} and {shape[2]} channels. The models take (height, width, channels), as Keras' "
            f"channels_last: pass input_shape={(shape[1], shape[2], shape[0])!r}."
        )
    if require_size and (shape[0] is None or shape[1] is None):
        raise ValueError(f"`input_shape` must give the image height and width for this model; received input_shape={input_shape!r}.")
    if min_size is not None and any(d is not None and d < min_size for d in shape[:2]):
        raise ValueError(f"`input_shape` must be at least {min_size}x{min_size} for this model; received input_shape={input_shape!r}.")
    return shape


def preprocess_inputs(inputs, preprocessing):
    """`inputs` through an `ImagePreprocessing` layer named "preprocessing" (float32) for `preprocessing` (anything
    `Preprocessing.resolve` takes), or unchanged when it is None. The layer records the model's input size as its
    `image_size`, so a saved or exported model states what it applies."""
    if preprocessing is None:
        return inputs
    height, width, channels = inputs.shape[1:]
    description = dataclasses.replace(
        Preprocessing.resolve(preprocessing), image_size=None if None in (height, width) else (height, width)
    ).check_channels(channels)
    return description.layer(name="preprocessing", dtype="float32")(inputs)


def check_head_args(include_top, pooling, classes, classifier_activation, poolings=POOLINGS):
    """Validates keras.applications' head arguments."""
    if not isinstance(include_top, bool):
        raise TypeError(f"`include_top` must be a bool; received include_top={include_top!r}.")
    if pooling not in poolings:
        raise ValueError(f"`pooling` must be one of {poolings}; received pooling={pooling!r}.")
    if include_top and not is_positive_int(classes):
        raise ValueError(f"`classes` must be a positive int when include_top=True; received classes={classes!r}.")
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as error:  # Keras' message does not say which argument it was
        raise ValueError(
            "`classifier_activation` must be None, an activation name (e.g. 'softmax', 'linear') or a callable; "
            f"received classifier_activation={classifier_activation!r}."
        ) from error


def check_per_stage(name, values, *, stages=None, max_stages=None):
    """Returns `values`, one positive int per stage, as a tuple: `stages` of them, or 1 to `max_stages` (any number
    when None); else raises a ValueError naming `name`."""
    low, high = (stages, stages) if stages is not None else (1, max_stages)
    if not (isinstance(values, (list, tuple)) and low <= len(values) <= (high or len(values))
            and all(map(is_positive_int, values))):  # fmt: skip
        count = f"{low}" if low == high else f"{low} to {high}" if high else "one or more"
        raise ValueError(f"`{name}` must be a list or tuple of {count} positive ints, one per stage; received "
                         f"{name}={values!r}.")  # fmt: skip
    return tuple(values)


def imagenet_stem(x, conv, norm=None, *, symmetric=True):
    """The ImageNet stem (arXiv:1512.03385 §3.4): `conv` (a 7x7/2 convolution layer), then `norm` and a ReLU when
    given, then a 3x3/2 max-pool. `symmetric` zero-pads the convolution's input by 3 and the pool's by 1 (PyTorch,
    BiT); otherwise `conv` and the pool pad as "SAME" (the pool with -inf)."""
    if symmetric:
        x = keras.layers.ZeroPadding2D(3, name="stem_conv_pad")(x)
    x = conv(x)
    if norm is not None:
        x = keras.layers.Activation("relu", name="stem_relu")(norm(x))
    if symmetric:
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid" if symmetric else "same", name="stem_pool")(x)


def stack_stages(x, block_class, stage_blocks, stage_filters, **block_args):
    """Stacks residual stages of `block_class` blocks named `stage{s}_block{b}`; the first block of every stage
    after the first has a stride of 2 (arXiv:1512.03385 §3.3)."""
    for s, (num_blocks, filters) in enumerate(zip(stage_blocks, stage_filters), start=1):
        for b in range(1, num_blocks + 1):
            strides = 2 if b == 1 and s > 1 else 1
            x = block_class(filters, strides=strides, name=f"stage{s}_block{b}", **block_args)(x)
    return x


def classifier(x, classes, classifier_activation, name="predictions", **dense_args):
    """The classification layer. It always computes in float32, so logits stay float32 under mixed precision."""
    return keras.layers.Dense(classes, activation=classifier_activation, dtype="float32", name=name, **dense_args)(x)


def convnet_head(x, include_top, pooling, classes, classifier_activation, **dense_args):
    """keras.applications' head of a convolutional net: global average pooling and the classifier with
    `include_top`, else the feature map pooled as `pooling` says ("avg", "max" or None)."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return classifier(x, classes, classifier_activation, **dense_args)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x
