"""keras-vitres: ResNet (arXiv:1512.03385) and Vision Transformer (arXiv:2010.11929) for Keras 3.

This module only re-exports the public names, lazily: `import keras_vitres` imports neither Keras nor a backend,
and each name imports its module the first time it is used (`keras_vitres.ResNet50()`, `keras_vitres.layers`).
`__all__` and `__dir__` list every name for tools and IDEs. The named builders (ResNet20 ... ResNet1202,
PlainNet20 ..., ResNet18 ... ResNet152, ViTB16, ...) come from the preset table, which is read without Keras.

Loading a `.keras` file in a new process needs `import keras_vitres.serialization` first, which registers the
package's classes with Keras (the CLI's commands need nothing).
"""

import importlib

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
    "export_model": "keras_vitres.export",
    "export_saved_model": "keras_vitres.export",
    "build_model": "keras_vitres.presets.build",
    "get_preset": "keras_vitres.presets",
    "list_presets": "keras_vitres.presets",
    "preset_weights": "keras_vitres.presets",
}
# Subpackages reachable as attributes (`keras_vitres.layers.ClassToken`) without importing them first.
_SUBPACKAGES = ("analysis", "benchmark", "data", "export", "layers", "models", "presets", "training", "weights")

__all__ = [
    "BiTResNet",
    "HybridViT",
    "ResNet",
    "VisionTransformer",
    "__version__",
    "build_model",
    "data",
    "export_model",
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

