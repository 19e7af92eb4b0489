"""keras-vitres: ResNet (arXiv:1512.03385) and Vision Transformer (arXiv:2010.11929) for Keras 3.

This module only re-exports the public names.
"""

from keras_vitres import data, layers, training, weights  # importing weights registers its file converters
from keras_vitres.export import export_saved_model
from keras_vitres.models import HybridViT, ResNet, VisionTransformer, feature_extractor, resize_vit
from keras_vitres.presets import NAMED_BUILDERS, build_model, get_preset, list_presets
from keras_vitres.version import __version__

globals().update(NAMED_BUILDERS)  # ResNet20 ... ResNet1202, PlainNet20 ..., ResNet18 ... ResNet152, ViTB16, ...

__all__ = [
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
    "resize_vit",
    "training",
    "weights",
    *sorted(NAMED_BUILDERS),
]
