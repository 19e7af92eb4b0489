"""What a model expects of its input images, as one description, and the layer that applies it.

`Preprocessing` is the single description of a model's input: training builds it into the model as its first
layer (`ImagePreprocessing`, whose `get_config` is the description), evaluation and export read it back from that
layer, the SavedModel's metadata states it, and a served model applies it. Pixels go in raw, [0, 255] RGB, and
the layer computes, in this order:

    x = x[..., ::-1]                 if channel_order == "bgr"
    x = x * scale + offset
    x = (x - mean) / std             mean: one number, one per channel, or one per pixel and channel (H, W, C)
                                     (the ResNet paper's CIFAR "per-pixel mean subtracted", arXiv:1512.03385
                                     §4.2); std: one number or one per channel

The geometry fields say how an image of another size becomes a model input; the model's callers apply them (the
SavedModel's `serving_bytes` signature, data pipelines), not the layer: keep the central `crop_fraction` of the
height and width, then resize to `image_size` with `interpolation` (antialiased when shrinking).

Named conventions (`PREPROCESSING_CONVENTIONS`) cover the usual published checkpoints: "raw", "unit" ([0, 1]),
"inception" ([-1, 1], the official ViT checkpoints), "imagenet" (torchvision/timm mean and std) and "caffe"
(keras.applications ResNet: BGR minus the ImageNet mean in [0, 255]).
"""

import dataclasses
import json
import math

import keras
import numpy as np

PREPROCESSING_CONVENTIONS = {
    # Raw pixels in, as the CIFAR presets expect.
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
CHANNEL_ORDERS = ("rgb", "bgr")
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")


def _number(value, key, received):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(
        value
    ):
        raise ValueError(f"`preprocessing[{key!r}]` must be a finite number; received preprocessing={received!r}.")
    return float(value)


def _values(value, key, received, positive=False):
    """One number, or a (nested) tuple of numbers: the shape a mean or std may take."""
    if isinstance(value, (list, tuple, np.ndarray)):
        array = np.asarray(value, dtype=object)
        if array.ndim not in (1, 3) or array.size == 0:
            raise ValueError(
                f"`preprocessing[{key!r}]` must be one number, one per channel, or (for the mean) one per pixel "
                f"and channel (H, W, C); received a value of shape {array.shape} (preprocessing={received!r:.200})."
            )
        values = np.vectorize(lambda v: _number(v, key, received), otypes=[float])(array)
        if positive and values.min() <= 0:
            raise ValueError(f"`preprocessing[{key!r}]` must be positive numbers; received preprocessing={received!r}.")
        return values.tolist() if values.ndim == 3 else tuple(values.tolist())
    number = _number(value, key, received)
    if positive and number <= 0:
        raise ValueError(f"`preprocessing[{key!r}]` must be positive numbers; received preprocessing={received!r}.")
    return number


def _freeze(value):
    """Nested lists to nested tuples, so that a description stays hashable and immutable."""
    return tuple(_freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def _plain(value):
    """Nested tuples to nested lists, for JSON."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input images (see the module docstring for the order of the computation).

    Args:
        image_size: (height, width) the model takes, or None (any size, or not stated).
        channel_order: "rgb" or "bgr": the model's channel order; inputs are always RGB, "bgr" reverses them.
        scale, offset: `x * scale + offset` (scale must not be 0).
        mean: subtracted after scaling: one number, one per channel, or one per pixel and channel (H, W, C).
        std: divides after the mean: one positive number or one per channel.
        interpolation: how a caller resizes images to `image_size` (a `tf.image.resize` method).
        crop_fraction: float in (0, 1]: the central fraction of the height and width kept before resizing
            (timm's `crop_pct`; 1 keeps the whole image).

    Examples:
        >>> Preprocessing.resolve("inception").formula()
        'x * 0.00784314 - 1'
        >>> Preprocessing.from_dict({"mean": [1, 2, 3], "std": 2}).to_dict(compact=True)
        {'mean': [1.0, 2.0, 3.0], 'std': 2.0}
    """

    image_size: tuple | None = None
    channel_order: str = "rgb"
    scale: float = 1.0
    offset: float = 0.0
    mean: float | tuple = 0.0
    std: float | tuple = 1.0
    interpolation: str = "bilinear"
    crop_fraction: float = 1.0

    def __post_init__(self):
        # What was given, for the error messages: the fields that differ from their defaults.
        received = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                    if not (isinstance(getattr(self, f.name), (str, int, float, type(None)))
                            and getattr(self, f.name) == f.default)}
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen dataclass)
        if self.image_size is not None:
            size = (self.image_size,) * 2 if isinstance(self.image_size, int) else tuple(self.image_size)
            if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
                raise ValueError(
                    f"`preprocessing['image_size']` must be None or (height, width) of positive ints; received "
                    f"preprocessing={received!r:.200}."
                )
            set_("image_size", size)
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(
                f"`preprocessing['channel_order']` must be 'rgb' or 'bgr'; received preprocessing={received!r:.200}."
            )
        set_("scale", _number(self.scale, "scale", received))
        if self.scale == 0:
            raise ValueError(f"`preprocessing['scale']` must not be 0; received preprocessing={received!r:.200}.")
        set_("offset", _number(self.offset, "offset", received))
        set_("mean", _freeze(_values(self.mean, "mean", received)))
        std = _freeze(_values(self.std, "std", received, positive=True))
        if isinstance(std, tuple) and isinstance(std[0], tuple):
            raise ValueError(
                "`preprocessing['std']` must be one number or one per channel; received "
                f"preprocessing={received!r:.200}."
            )
        set_("std", std)
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"`preprocessing['interpolation']` must be one of {INTERPOLATIONS}; received "
                f"preprocessing={received!r:.200}."
            )
        crop = _number(self.crop_fraction, "crop_fraction", received)
        if not 0 < crop <= 1:
            raise ValueError(
                f"`preprocessing['crop_fraction']` must be in (0, 1]; received preprocessing={received!r:.200}."
            )
        set_("crop_fraction", crop)

    # --- reading and writing -------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, config):
        """A description from a dict with any of the fields (the others keep their defaults)."""
        if not isinstance(config, dict):
            raise TypeError(f"`preprocessing` must be a dict of {cls.fields()}; received preprocessing={config!r}.")
        unknown = sorted(set(config) - set(cls.fields()))
        if unknown:
            raise ValueError(
                f"`preprocessing` has unknown keys {unknown}; valid keys are {cls.fields()}; received "
                f"preprocessing={config!r:.200}."
            )
        return cls(**config)

    def to_dict(self, compact=False):
        """The description as JSON-ready data; `compact=True` leaves out the fields that have their default."""
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if compact:
            data = {f.name: data[f.name] for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}
        return data

    @classmethod
    def from_json(cls, text):
        """A description from `to_json()`'s text."""
        return cls.from_dict(json.loads(text))

    def to_json(self):
        """The compact description as a JSON string."""
        return json.dumps(self.to_dict(compact=True))

    @classmethod
    def fields(cls):
        """The names of the description's fields, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def resolve(cls, preprocessing):
        """A description from any accepted form, or a ValueError/TypeError naming what was received.

        Args:
            preprocessing: None or "raw" (pixels as they are), a name from `PREPROCESSING_CONVENTIONS` ("unit",
                "inception", "imagenet", "caffe"), a dict of fields, or a `Preprocessing`.
        """
        if isinstance(preprocessing, cls):
            return preprocessing
        if preprocessing is None:
            return cls()
        if isinstance(preprocessing, str):
            if preprocessing not in PREPROCESSING_CONVENTIONS:
                raise ValueError(
                    f"`preprocessing` must be one of {sorted(PREPROCESSING_CONVENTIONS)} or a dict with keys "
                    f"{cls.fields()}; received preprocessing={preprocessing!r}."
                )
            return cls(**PREPROCESSING_CONVENTIONS[preprocessing])
        if not isinstance(preprocessing, dict):
            raise TypeError(
                f"`preprocessing` must be None, a preset name, a dict with keys {cls.fields()} or a Preprocessing; "
                f"received preprocessing={preprocessing!r}."
            )
        return cls.from_dict(preprocessing)

    # --- what it computes ----------------------------------------------------------------------------------------

    @property
    def per_pixel_mean(self):
        """Whether the mean is an (H, W, C) image rather than one number per channel."""
        return isinstance(self.mean, tuple) and isinstance(self.mean[0], tuple)

    def check_channels(self, channels):
        """Returns the description after checking that it fits images of `channels` channels (and, for a per-pixel
        mean, of `image_size`)."""
        if self.channel_order == "bgr" and channels != 3:
            raise ValueError(f"channel_order='bgr' needs 3 channels; the model takes {channels}.")
        for key in ("mean", "std"):
            value = np.asarray(getattr(self, key))
            if value.ndim and value.shape[-1] != channels:
                raise ValueError(
                    f"`preprocessing[{key!r}]` must be one number or {channels} numbers (one per channel); received "
                    f"preprocessing={self.to_dict(compact=True)!r:.200}."
                )
        if self.per_pixel_mean and self.image_size is not None and np.shape(self.mean)[:2] != self.image_size:
            raise ValueError(
                f"`preprocessing['mean']` is a per-pixel mean of {np.shape(self.mean)[:2]}, but image_size is "
                f"{self.image_size}; they must match."
            )
        return self

    def for_channels(self, channels):
        """(mean, std) as float32 arrays that broadcast over (..., channels) images (after `check_channels`)."""
        self.check_channels(channels)
        mean = np.broadcast_to(np.asarray(self.mean, np.float32), np.shape(self.mean) if self.per_pixel_mean
                               else (channels,))
        return mean, np.broadcast_to(np.asarray(self.std, np.float32), (channels,))

    @property
    def is_identity(self):
        """Whether the pixel arithmetic leaves pixels unchanged (the geometry fields aside)."""
        zero_mean = not np.any(np.asarray(self.mean))
        unit_std = bool(np.all(np.asarray(self.std) == 1.0))
        return self.channel_order == "rgb" and self.scale == 1.0 and self.offset == 0.0 and zero_mean and unit_std

    def formula(self):
        """The pixel arithmetic as a short formula on raw pixels `x`."""
        x = "x[..., ::-1]" if self.channel_order == "bgr" else "x"
        if self.scale != 1.0:
            x = f"{x} * {self.scale:.6g}"
        if self.offset != 0.0:
            x = f"{x} {'-' if self.offset < 0 else '+'} {abs(self.offset):.6g}"
        if np.any(np.asarray(self.mean)):
            mean = (f"{self.mean:.6g}" if not isinstance(self.mean, tuple)
                    else "mean (per pixel and channel)" if self.per_pixel_mean else "mean (per channel)")
            x = f"{x} - {mean}"
        if not np.all(np.asarray(self.std) == 1.0):
            std = f"{self.std:.6g}" if not isinstance(self.std, tuple) else "std (per channel)"
            x = f"({x}) / {std}" if x != "x" else f"x / {std}"
        return x

    def apply_numpy(self, images):
        """Applies the pixel arithmetic to (..., H, W, C) images in NumPy float32 (for clients and tests)."""
        x = np.asarray(images, np.float32)
        mean, std = self.for_channels(x.shape[-1])
        if self.channel_order == "bgr":
            x = x[..., ::-1]
        x = x * np.float32(self.scale) + np.float32(self.offset)
        return (x - mean) / std

    def layer(self, **kwargs):
        """An `ImagePreprocessing` layer that applies this description (`kwargs`: name, dtype, ...)."""
        return ImagePreprocessing(**self.to_dict(), **kwargs)


@keras.saving.register_keras_serializable(package="keras_vitres")
class ImagePreprocessing(keras.layers.Layer):
    """Applies a `Preprocessing` description to raw [0, 255] RGB pixels, as a model's first layer.

    Its configuration is the description itself, so a saved model states what it expects of its input, and
    evaluation, export and serving read it from there (`find_preprocessing`). The arithmetic follows the module
    docstring (per-pixel mean subtraction: arXiv:1512.03385 §4.2); the geometry fields are recorded, not applied.
    The layer has no weights; give it `dtype="float32"` to keep it in float32 under mixed precision.

    Args:
        image_size, channel_order, scale, offset, mean, std, interpolation, crop_fraction: the fields of
            `Preprocessing`.
        **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """

    def __init__(self, image_size=None, channel_order="rgb", scale=1.0, offset=0.0, mean=0.0, std=1.0,
                 interpolation="bilinear", crop_fraction=1.0, **kwargs):
        super().__init__(**kwargs)
        self.preprocessing = Preprocessing(image_size=image_size, channel_order=channel_order, scale=scale,
                                           offset=offset, mean=mean, std=std, interpolation=interpolation,
                                           crop_fraction=crop_fraction)

    def build(self, input_shape):
        mean, std = self.preprocessing.for_channels(input_shape[-1])
        if self.preprocessing.per_pixel_mean and tuple(input_shape[1:3]) != mean.shape[:2]:
            raise ValueError(f"The per-pixel mean is {mean.shape[:2]} but the layer's input is {input_shape}.")
        self._mean, self._std = np.array(mean), np.array(std)

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        p = self.preprocessing
        if p.channel_order == "bgr":
            x = keras.ops.flip(x, axis=-1)
        if p.scale != 1.0 or p.offset != 0.0:
            x = x * p.scale + p.offset
        if np.any(self._mean):
            x = x - keras.ops.convert_to_tensor(self._mean, self.compute_dtype)
        if np.any(self._std != 1.0):
            x = x / keras.ops.convert_to_tensor(self._std, self.compute_dtype)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.preprocessing.to_dict()}


def find_preprocessing(model):
    """The `ImagePreprocessing` layer of `model`, at its top level or inside a nested model (a model built with
    named weights carries one, and stays a sub-model when wrapped for fine-tuning), or None."""
    found, stack = [], list(model.layers)
    while stack:
        layer = stack.pop(0)
        if isinstance(layer, ImagePreprocessing):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            stack.extend(layer.layers)
    if len(found) > 1:
        raise ValueError(
            f"Model {model.name!r} has {len(found)} ImagePreprocessing layers ({', '.join(layer.name for layer in found)}); it "
            "must have at most one, or its inputs would be normalised twice."
        )
    return found[0] if found else None
