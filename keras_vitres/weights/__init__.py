"""Loading published checkpoints: official ViT `.npz`, keras.applications ResNet `.h5`, timm/torchvision
`.safetensors`, and verified downloads.

Importing this package registers its loaders in `keras_vitres.models.common.WEIGHT_LOADERS`, so every builder's
`weights=` accepts these files. PyTorch pickles (`.pth`, `.pt`, `.bin`, `.ckpt`) are refused with the command that
converts them to safetensors.
"""

from keras_vitres.models.common import WEIGHT_LOADERS
from keras_vitres.weights.download import download, sha256_of
from keras_vitres.weights.loaders import load_h5, load_keras_applications, load_npz, load_safetensors
from keras_vitres.weights.readers import PICKLE_SUFFIXES, refuse_pickle

WEIGHT_LOADERS.update({".npz": load_npz, ".safetensors": load_safetensors, ".h5": load_h5})
WEIGHT_LOADERS.update({suffix: refuse_pickle for suffix in PICKLE_SUFFIXES})

__all__ = [
    "download",
    "load_h5",
    "load_keras_applications",
    "load_npz",
    "load_safetensors",
    "refuse_pickle",
    "sha256_of",
]
