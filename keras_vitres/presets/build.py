"""Builds a preset from its row: the row's builder and configuration, the caller's overrides, and named weights.

`build_model(name, weights="NAME")` builds with the options the named weights need (a caller's option that
contradicts one is a ValueError naming both) and their preprocessing as the model's first layer, fetches and
verifies them (`keras_vitres.weights.named`) and hands the file to the builder; any other `weights=` (a local path)
goes to the builder as it is.
"""

import dataclasses
import inspect

from keras_vitres.layers.preprocessing import Preprocessing
from keras_vitres.models import BiTResNet, HybridViT, ResNet, VisionTransformer
from keras_vitres.models.resnet import DEFAULTS as RESNET_DEFAULTS
from keras_vitres.presets.table import get_preset, resolve_weights
from keras_vitres.weights.named import fetch_weights

BUILDERS = {builder.__name__: builder for builder in (ResNet, BiTResNet, VisionTransformer, HybridViT)}
IMAGENET_SHAPE = (224, 224, 3)  # what BiTResNet builds without an `input_shape`


def builder_of(name):
    """The builder function of preset `name`."""
    return BUILDERS[get_preset(name)["builder"]]


def default_image_size(name):
    """The (height, width) preset `name` is built at without an `input_shape`."""
    row = get_preset(name)
    shape = row["config"].get("input_shape")
    if shape is None and row["builder"] == "ResNet":
        shape = RESNET_DEFAULTS[row["config"].get("stem", "imagenet")]["input_shape"]
    if shape is None:
        shape = inspect.signature(builder_of(name)).parameters["input_shape"].default or IMAGENET_SHAPE
    return tuple(int(s) for s in shape[:2])


def _same(a, b):
    """Whether two option values agree (a list and a tuple of the same items do)."""
    plain = lambda v: tuple(plain(x) for x in v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return plain(a) == plain(b)


def _check_options(name, weights, entry, overrides):
    """A caller's option that contradicts what the weights need is a ValueError naming both."""
    for key, needed in entry.get("config", {}).items():
        if key in overrides and not _same(overrides[key], needed):
            raise ValueError(
                f"weights={weights!r} of preset {name!r} need {key}={needed!r}; received {key}={overrides[key]!r}. "
                f"Leave `{key}` out, or load other weights."
            )
    if overrides.get("preprocessing") is None:
        return
    given, needed = (dataclasses.replace(Preprocessing.resolve(p), image_size=None)
                     for p in (overrides["preprocessing"], entry["preprocessing"]))  # fmt: skip
    if given != needed:
        raise ValueError(
            f"weights={weights!r} of preset {name!r} need preprocessing={needed.to_dict(compact=True)!r} (built in as "
            f"the model's first layer); received preprocessing={overrides['preprocessing']!r}. Leave `preprocessing` "
            "out."
        )


def build_model(name, **overrides):
    """Builds the preset `name`; keyword arguments override its configuration (e.g. `classes=10`).

    `weights` is None, a local file (any format the builders read), or the name of weights the preset declares
    (`preset_weights(name)`): the model is then built with the options and the preprocessing those need, at the
    input size they were trained at unless `input_shape` is given.

    Examples:
        >>> model = build_model("resnet20")
        >>> model.name, model.count_params()
        ('resnet20', 271098)
    """
    builder = builder_of(name)
    weights = overrides.get("weights")
    entry = resolve_weights(name, weights)
    config = {**get_preset(name)["config"], "name": name}
    if entry is None:
        return builder(**{**config, **overrides})
    _check_options(name, weights, entry, overrides)
    config.update(entry.get("config", {}))
    preprocessing = entry["preprocessing"]
    if preprocessing.get("image_size") and "input_shape" not in overrides:
        channels = (config.get("input_shape") or (None, None, 3))[2]
        config["input_shape"] = (*preprocessing["image_size"], channels)
    config.update(overrides)
    config["preprocessing"] = preprocessing
    config["weights"] = fetch_weights(entry, include_top=config.get("include_top", True))
    return builder(**config)
