"""Loading published checkpoints: official ViT `.npz`, keras.applications ResNet `.h5`, timm/torchvision
`.safetensors`, and verified downloads.

Every builder's `weights=` calls `load_weights`, which picks the loader by the file's suffix. PyTorch pickles
(`.pth`, `.pt`, `.bin`, `.ckpt`) are refused with the command that converts them to safetensors. Named checkpoints
are declared by the preset rows (`keras_vitres.presets`) and fetched with `download`.
"""

from keras_vitres.weights.download import download, sha256_of
from keras_vitres.weights.loaders import (
    LOADERS,
    load_h5,
    load_keras_applications,
    load_npz,
    load_safetensors,
    load_weights,
)
from keras_vitres.weights.readers import refuse_pickle

__all__ = [
    "LOADERS",
    "download",
    "load_h5",
    "load_keras_applications",
    "load_npz",
    "load_safetensors",
    "load_weights",
    "refuse_pickle",
    "sha256_of",
]
