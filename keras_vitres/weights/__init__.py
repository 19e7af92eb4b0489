"""Loading published checkpoints into the package's models, and verified downloads of named weights.

Every builder's `weights=` calls `load_weights`, which picks the loader by the file's suffix or converts a keras-hub
model; `fetch_weights` fetches and verifies the named weights of the preset rows (`keras_vitres.presets`).
"""

import importlib

from keras_vitres.weights.download import download, sha256_of

# Imported on first use: the loaders import Keras and a backend (5.5 s of CPU in a fresh process, against 0.1 s
# without, Keras 3.15 on TensorFlow), which fetching and verifying a file (`named`, `hf_hub`, `download`) does not need.
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

__all__ = ["download", "sha256_of", *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
