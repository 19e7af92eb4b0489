"""keras-vitres: ResNet (arXiv:1512.03385) and Vision Transformer (arXiv:2010.11929) for Keras 3.

This module only re-exports the public names, lazily: `import keras_vitres` imports neither Keras nor a backend,
and each name imports its module the first time it is used (`keras_vitres.ResNet50()`, `keras_vitres.layers`).
`__all__` and `__dir__` list every name for tools and IDEs. The named builders (ResNet20 ... ResNet1202,
PlainNet20 ..., ResNet18 ... ResNet152, ViTB16, ...) come from the preset table, which is read without Keras.

Keras finds the package's serialisable classes (layers, `CutMix`, learning-rate schedules) by the registration
their modules make when imported. So that `keras.saving.load_model` reads a `.keras` file after only
`import keras_vitres`, they are imported as soon as Keras is: at once if Keras was imported first, else right
after Keras' own import (see `register_serializables`).
"""

import importlib
import importlib.util
import sys

from keras_vitres.presets import NAMED_BUILDERS
from keras_vitres.version import __version__

# Public name -> the module that defines it.
_EXPORTS = {
    "BiTResNet": "keras_vitres.models",
    "HybridViT": "keras_vitres.models",
    "ResNet": "keras_vitres.models",
    "VisionTransformer": "keras_vitres.models",
    "feature_extractor": "keras_vitres.models",
    "resize_vit": "keras_vitres.models",
    "export_saved_model": "keras_vitres.export",
    "build_model": "keras_vitres.presets",
    "get_preset": "keras_vitres.presets",
    "list_presets": "keras_vitres.presets",
    "preset_weights": "keras_vitres.presets",
}
# Subpackages reachable as attributes (`keras_vitres.layers.ClassToken`) without importing them first.
_SUBPACKAGES = ("analysis", "benchmark", "data", "export", "layers", "models", "presets", "training", "weights")
# The modules whose import registers a class with `keras.saving.register_keras_serializable`.
SERIALIZABLE_MODULES = ("keras_vitres.layers", "keras_vitres.data.augment", "keras_vitres.training.schedules")

__all__ = [
    "BiTResNet",
    "HybridViT",
    "ResNet",
    "VisionTransformer",
    "__version__",
    "build_model",
    "data",
    "export_saved_model",
    "feature_extractor",
    "get_preset",
    "layers",
    "list_presets",
    "preset_weights",
    "resize_vit",
    "training",
    "weights",
    *sorted(NAMED_BUILDERS),
]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in NAMED_BUILDERS:
        value = NAMED_BUILDERS[name]
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__():
    return sorted({*globals(), *__all__, *_SUBPACKAGES})


def register_serializables():
    """Imports the modules that register the package's serialisable classes with Keras (`SERIALIZABLE_MODULES`),
    so that `keras.saving.load_model` finds them. Imports Keras; the package's own loading functions import what
    they need themselves."""
    for module in SERIALIZABLE_MODULES:
        importlib.import_module(module)


def _package_is_importing():
    """Whether a module of this package is part-way through its own import (then registering now could meet it
    half-built; it registers what it defines itself)."""
    return any(
        getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
        if name.startswith(f"{__name__}.")
    )


class _RegisterAfterKeras:
    """A one-shot import hook: when `keras` is first imported, registers the serialisable classes right after it.

    It only wraps the loader that Python's own finders return for `keras`, and removes itself from
    `sys.meta_path` the first time it is asked about Keras.
    """

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(cls)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_keras = spec.loader.exec_module

        def exec_module(module):
            exec_keras(module)
            if not _package_is_importing():
                register_serializables()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:  # Keras is loaded already: registering costs no framework import
    register_serializables()
elif _RegisterAfterKeras not in sys.meta_path:
    sys.meta_path.insert(0, _RegisterAfterKeras)
