"""Pixel preprocessing baked into an export: clients send raw [0, 255] RGB pixels, the graph normalises them.

A preprocessing is a small dict applied in this order:

    x = x[..., ::-1]                 if channel_order == "bgr"
    x = x * scale + offset
    x = (x - mean) / std             per channel

Named presets cover the usual conventions; `resolve_preprocessing` turns any accepted form into that dict, and
`apply_preprocessing` runs it with TensorFlow ops inside the serving graph.
"""

import math

PREPROCESSING_PRESETS = {
    # Raw pixels in, as the CIFAR presets and models trained by the package's runner expect.
    "raw": dict(),
    # [0, 1]
    "unit": dict(scale=1 / 255),
    # [-1, 1]: the official ViT checkpoints (vision_transformer, big_vision) and Inception-style models.
    "inception": dict(scale=1 / 127.5, offset=-1.0),
    # torchvision / timm ImageNet models: [0, 1], then the ImageNet mean and standard deviation.
    "imagenet": dict(scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    # keras.applications ResNet weights (converted from Caffe): BGR, minus the ImageNet mean in [0, 255].
    "caffe": dict(channel_order="bgr", mean=(103.939, 116.779, 123.68)),
}
PREPROCESSING_KEYS = ("channel_order", "scale", "offset", "mean", "std")
CHANNEL_ORDERS = ("rgb", "bgr")


def _number(value, key, spec):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`preprocessing[{key!r}]` must be a finite number; received preprocessing={spec!r}.")
    return float(value)


def _per_channel(value, key, spec, channels, positive=False):
    values = [value] * channels if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        values = [_number(v, key, spec) for v in values]
    except TypeError:
        values = None
    if values is None or len(values) != channels or (positive and min(values) <= 0):
        need = "positive numbers" if positive else "numbers"
        raise ValueError(
            f"`preprocessing[{key!r}]` must be one number or {channels} {need} (one per channel); "
            f"received preprocessing={spec!r}."
        )
    return tuple(values)


def resolve_preprocessing(preprocessing, channels=3):
    """Returns the preprocessing as a complete dict, or raises a ValueError naming what was received.

    Args:
        preprocessing: None or "raw" (identity), a preset name from `PREPROCESSING_PRESETS` ("unit",
            "inception", "imagenet", "caffe"), or a dict with any of the keys `channel_order` ("rgb" or "bgr"),
            `scale`, `offset`, `mean`, `std` (`mean`/`std`: one number or one per channel).
        channels: int. Channels of the images.

    Returns:
        dict with every key of `PREPROCESSING_KEYS`.

    Examples:
        >>> resolve_preprocessing("inception")["offset"]
        -1.0
        >>> resolve_preprocessing({"mean": [1, 2, 3], "std": 2})["std"]
        (2.0, 2.0, 2.0)
    """
    spec = preprocessing
    if spec is None:
        spec = "raw"
    if isinstance(spec, str):
        if spec not in PREPROCESSING_PRESETS:
            raise ValueError(
                f"`preprocessing` must be one of {sorted(PREPROCESSING_PRESETS)} or a dict with keys "
                f"{PREPROCESSING_KEYS}; received preprocessing={preprocessing!r}."
            )
        spec = PREPROCESSING_PRESETS[spec]
    if not isinstance(spec, dict):
        raise TypeError(
            f"`preprocessing` must be None, a preset name or a dict with keys {PREPROCESSING_KEYS}; "
            f"received preprocessing={preprocessing!r}."
        )
    unknown = sorted(set(spec) - set(PREPROCESSING_KEYS))
    if unknown:
        raise ValueError(
            f"`preprocessing` has unknown keys {unknown}; valid keys are {PREPROCESSING_KEYS}; "
            f"received preprocessing={preprocessing!r}."
        )
    order = spec.get("channel_order", "rgb")
    if order not in CHANNEL_ORDERS:
        raise ValueError(
            f"`preprocessing['channel_order']` must be 'rgb' or 'bgr'; received preprocessing={preprocessing!r}."
        )
    if order == "bgr" and channels != 3:
        raise ValueError(f"channel_order='bgr' needs 3 channels; the model takes {channels}.")
    scale = _number(spec.get("scale", 1.0), "scale", preprocessing)
    if scale == 0:
        raise ValueError(f"`preprocessing['scale']` must not be 0; received preprocessing={preprocessing!r}.")
    return dict(
        channel_order=order,
        scale=scale,
        offset=_number(spec.get("offset", 0.0), "offset", preprocessing),
        mean=_per_channel(spec.get("mean", 0.0), "mean", preprocessing, channels),
        std=_per_channel(spec.get("std", 1.0), "std", preprocessing, channels, positive=True),
    )


def is_identity(spec):
    """Whether a resolved preprocessing leaves pixels unchanged."""
    return (
        spec["channel_order"] == "rgb"
        and spec["scale"] == 1.0
        and spec["offset"] == 0.0
        and all(m == 0.0 for m in spec["mean"])
        and all(s == 1.0 for s in spec["std"])
    )


def apply_preprocessing(images, spec):
    """Applies a resolved preprocessing to a float32 (batch, H, W, C) tensor with TensorFlow ops."""
    import tensorflow as tf

    x = images
    if spec["channel_order"] == "bgr":
        x = tf.reverse(x, axis=[-1])
    if spec["scale"] != 1.0 or spec["offset"] != 0.0:
        x = x * spec["scale"] + spec["offset"]
    if any(m != 0.0 for m in spec["mean"]):
        x = x - tf.constant(spec["mean"], tf.float32)
    if any(s != 1.0 for s in spec["std"]):
        x = x / tf.constant(spec["std"], tf.float32)
    return x


def apply_preprocessing_numpy(images, spec):
    """The same computation in NumPy (float32), for clients and tests that prepare inputs outside the graph."""
    import numpy as np

    x = np.asarray(images, np.float32)
    if spec["channel_order"] == "bgr":
        x = x[..., ::-1]
    x = x * np.float32(spec["scale"]) + np.float32(spec["offset"])
    return (x - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
