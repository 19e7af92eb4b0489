"""Pieces every builder shares: argument checks, the keras.applications-style head, and weight loading."""

import os

import keras

POOLINGS = (None, "avg", "max")

# Loaders for weight files other than Keras' own, keyed by file suffix. The `keras_vitres.weights` package
# registers its converters here, so the builders accept published checkpoints without importing it.
WEIGHT_LOADERS = {}


def check_input_shape(input_shape, *, require_size=False, min_size=None):
    """Validates an (H, W, C) `input_shape` and returns it as a tuple, or raises naming the value."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    ok = shape is not None and len(shape) == 3 and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape
    )
    if not ok or shape[2] is None:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive ints (height and width may be None for "
            f"convolutional nets) and channels last; received input_shape={input_shape!r}."
        )
    if require_size and (shape[0] is None or shape[1] is None):
        raise ValueError(f"`input_shape` must give the image height and width for this model; received input_shape={input_shape!r}.")
    if min_size is not None and any(d is not None and d < min_size for d in shape[:2]):
        raise ValueError(f"`input_shape` must be at least {min_size}x{min_size} for this model; received input_shape={input_shape!r}.")
    return shape


def check_head_args(include_top, pooling, classes, classifier_activation, poolings=POOLINGS):
    """Validates keras.applications' head arguments."""
    if not isinstance(include_top, bool):
        raise TypeError(f"`include_top` must be a bool; received include_top={include_top!r}.")
    if pooling not in poolings:
        raise ValueError(f"`pooling` must be one of {poolings}; received pooling={pooling!r}.")
    if include_top and (not isinstance(classes, int) or isinstance(classes, bool) or classes < 1):
        raise ValueError(f"`classes` must be a positive int when include_top=True; received classes={classes!r}.")
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as error:  # Keras' message does not say which argument it was
        raise ValueError(
            "`classifier_activation` must be None, an activation name (e.g. 'softmax', 'linear') or a callable; "
            f"received classifier_activation={classifier_activation!r}."
        ) from error


def check_positive_int(name, value, *, allow_none=False):
    """Raises a ValueError naming `name` unless `value` is an int >= 1 (or None, with `allow_none`)."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int{' or None' if allow_none else ''}; received {name}={value!r}.")


def classifier(x, classes, classifier_activation, name="predictions", **dense_args):
    """The classification layer. It always computes in float32, so logits stay float32 under mixed precision."""
    return keras.layers.Dense(classes, activation=classifier_activation, dtype="float32", name=name, **dense_args)(x)


def load_weights(model, weights):
    """Loads `weights` (None, or a local file) into `model`, with an error that names the file on failure.

    Keras' own files (`.weights.h5`, `.keras`) load directly; other formats go through the converters
    registered in `WEIGHT_LOADERS` by suffix.
    """
    if weights is None:
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"`weights` must be None or the path of a local weights file; received weights={weights!r}.")
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`weights` file not found: weights={path!r}.")
    for suffix, loader in WEIGHT_LOADERS.items():
        if path.endswith(suffix):
            loader(model, path)
            return model
    if path.endswith(".keras"):
        source = keras.saving.load_model(path, safe_mode=True, compile=False)
        _copy_weights(source, model, path)
        return model
    if not path.endswith(".h5"):
        known = sorted([".weights.h5", ".keras", *WEIGHT_LOADERS])
        raise ValueError(f"`weights` has an unknown file type: weights={path!r}; expected one of {known}.")
    try:
        model.load_weights(path)
    except Exception as error:  # Keras raises several types for a file that does not fit the model
        raise ValueError(f"`weights` file {path!r} does not fit model {model.name!r}: {error}") from error
    return model


def _copy_weights(source, model, path):
    source_weights, target_weights = source.weights, model.weights
    if len(source_weights) != len(target_weights):
        raise ValueError(
            f"`weights` file {path!r} holds {len(source_weights)} tensors; model {model.name!r} has {len(target_weights)}."
        )
    for src, dst in zip(source_weights, target_weights):
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(
                f"`weights` file {path!r}: tensor {src.path!r} has shape {tuple(src.shape)}, but the model's "
                f"{dst.path!r} has shape {tuple(dst.shape)}."
            )
    model.set_weights(source.get_weights())
