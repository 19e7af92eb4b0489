"""Loading published checkpoints: official ViT `.npz`, keras.applications ResNet `.h5`, timm/torchvision
`.safetensors`, keras-hub backbones, and verified downloads.

Every builder's `weights=` calls `load_weights`, which picks the loader by the file's suffix (or converts a keras-hub
model with `load_keras_hub`). PyTorch pickles (`.pth`, `.pt`, `.bin`, `.ckpt`) are refused with the command that
converts them to safetensors. Named weights are declared by the preset rows (`keras_vitres.presets`) and fetched and
verified by `fetch_weights` (`download` for URLs, keras-hub and huggingface_hub for the hubs).

The loaders' names are imported on first use: they import Keras and a backend (about 4 s of CPU), which fetching
and verifying a file (`named`, `hf_hub`, `download`) does not need.
"""

import importlib

from keras_vitres.weights.download import download, sha256_of

# Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "LOADERS": "keras_vitres.weights.loaders",
    "load_h5": "keras_vitres.weights.loaders",
    "load_keras_applications": "keras_vitres.weights.loaders",
    "load_npz": "keras_vitres.weights.loaders",
    "load_safetensors": "keras_vitres.weights.loaders",
    "load_weights": "keras_vitres.weights.loaders",
    "load_keras_hub": "keras_vitres.weights.keras_hub",
    "fetch_weights": "keras_vitres.weights.named",
    "refuse_pickle": "keras_vitres.weights.readers",
}

__all__ = sorted(["download", "sha256_of", *_LAZY])


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
