"""Loading published checkpoints: official ViT `.npz`, keras.applications ResNet `.h5`, timm/torchvision
`.safetensors`, keras-hub backbones, and verified downloads.

Every builder's `weights=` calls `load_weights`, which picks the loader by the file's suffix (or converts a keras-hub
model with `load_keras_hub`). PyTorch pickles (`.pth`, `.pt`, `.bin`, `.ckpt`) are refused with the command that
converts them to safetensors. Named weights are declared by the preset rows (`keras_vitres.presets`) and fetched and
verified by `fetch_weights` (`download` for URLs, keras-hub and huggingface_hub for the hubs).
"""

from keras_vitres.weights.download import download, sha256_of
from keras_vitres.weights.keras_hub import load_keras_hub
from keras_vitres.weights.loaders import (
    LOADERS,
    load_h5,
    load_keras_applications,
    load_npz,
    load_safetensors,
    load_weights,
)
from keras_vitres.weights.named import fetch_weights
from keras_vitres.weights.readers import refuse_pickle

__all__ = [
    "LOADERS",
    "download",
    "fetch_weights",
    "load_h5",
    "load_keras_hub",
    "load_keras_applications",
    "load_npz",
    "load_safetensors",
    "load_weights",
    "refuse_pickle",
    "sha256_of",
]
