"""The preprocessing an export applies and states: the model's own, or the one given to `export_saved_model`.

Both are a `keras_vitres.layers.Preprocessing`, the package's one description of what a model expects of its input
(see `keras_vitres.layers.preprocessing` for the computation). A model trained by the package carries it as its
`ImagePreprocessing` layer; a model saved before that layer existed may carry a Keras `Rescaling`,
`Normalization` or `Identity` layer named "preprocessing", which `model_preprocessing` describes the same way.
"""

import numpy as np

from keras_vitres.layers.preprocessing import PREPROCESSING_CONVENTIONS, Preprocessing, find_preprocessing

__all__ = ["PREPROCESSING_CONVENTIONS", "apply_preprocessing_numpy", "model_preprocessing", "resolve_preprocessing"]

PREPROCESSING_LAYER = "preprocessing"


def resolve_preprocessing(preprocessing, channels=3):
    """Returns the preprocessing as a complete dict (every field of `Preprocessing`; a per-channel mean and std
    as one number per channel), or raises a ValueError naming what was received.

    Args:
        preprocessing: None or "raw" (identity), a convention name from `PREPROCESSING_CONVENTIONS` ("unit",
            "inception", "imagenet", "caffe"), a dict of `Preprocessing` fields (`channel_order` "rgb" or "bgr",
            `scale`, `offset`, `mean`, `std`, ...), or a `Preprocessing`.
        channels: int. Channels of the images.

    Examples:
        >>> resolve_preprocessing("inception")["offset"]
        -1.0
        >>> resolve_preprocessing({"mean": [1, 2, 3], "std": 2})["std"]
        (2.0, 2.0, 2.0)
    """
    description = Preprocessing.resolve(preprocessing).check_channels(channels)
    mean, std = description.for_channels(channels)
    resolved = description.to_dict()
    if not description.per_pixel_mean:
        resolved["mean"] = tuple(float(v) for v in mean)
    resolved["std"] = tuple(float(v) for v in std)
    return resolved


def apply_preprocessing_numpy(images, spec):
    """Applies a preprocessing (any form `Preprocessing.resolve` accepts) to raw pixels in NumPy float32, for
    clients and tests that prepare inputs outside the graph."""
    return Preprocessing.resolve(spec).apply_numpy(images)


def _describe_keras_layer(layer):
    """A `Preprocessing` for a Keras `Rescaling`, `Normalization` or `Identity` layer, or None when the layer does
    something a description cannot say."""
    import keras

    if isinstance(layer, keras.layers.Identity):
        return Preprocessing()
    if isinstance(layer, keras.layers.Rescaling) and np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0:
        return Preprocessing(scale=float(layer.scale), offset=float(layer.offset))
    if isinstance(layer, keras.layers.Normalization) and not layer.invert:
        mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), np.float64)
        std = np.sqrt(np.asarray(keras.ops.convert_to_numpy(layer.variance), np.float64))
        mean, std = mean.reshape(mean.shape[-3:] if mean.ndim > 3 else mean.shape), std.reshape(-1)
        per_pixel = mean.ndim == 3 and mean.shape[:2] != (1, 1)
        if per_pixel and not np.allclose(std, 1.0):
            return None  # a per-pixel standard deviation: not a description's
        mean = mean if per_pixel else mean.reshape(-1)
        return Preprocessing(mean=mean, std=1.0 if np.allclose(std, 1.0) else std.reshape(mean.shape[-1:]))
    return None


def model_preprocessing(model):
    """The preprocessing a model applies itself, as (description, layer).

    Returns:
        (the `Preprocessing`, the layer) for a model with an `ImagePreprocessing` layer or a Keras layer named
        "preprocessing" (description None when that layer cannot be described); (None, None) for a model that
        takes its inputs as they are given.
    """
    layer = find_preprocessing(model)
    if layer is not None:
        return layer.preprocessing, layer
    if PREPROCESSING_LAYER not in [layer.name for layer in model.layers]:
        return None, None
    layer = model.get_layer(PREPROCESSING_LAYER)
    return _describe_keras_layer(layer), layer
