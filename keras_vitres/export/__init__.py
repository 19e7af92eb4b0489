"""Deployment exports: SavedModel for TF Serving, ONNX, OpenVINO and LiteRT (`formats.export_model`), the runtimes
that run them (`runtimes.load_exported`), and the image decoding they share with serving (`decoding`, `images`).

The names are re-exported lazily, so that the runtimes, the metadata and the NumPy image code can be imported
without Keras (`keras-vitres predict` on an ONNX file starts without a framework); see docs/deployment.md.
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "PREPROCESSING_CONVENTIONS": "preprocessing",
    "apply_preprocessing_numpy": "preprocessing",
    "model_preprocessing": "preprocessing",
    "resolve_preprocessing": "preprocessing",
    "DEFAULT_MAX_PIXELS": "images",
    "declared_image_size": "decoding",
    "decode_image_batch": "decoding",
    "resize_like_serving": "decoding",
    "BYTES_INPUT": "signatures",
    "BYTES_SIGNATURE": "signatures",
    "FLOAT_INPUT": "signatures",
    "FLOAT_SIGNATURE": "signatures",
    "classifier_output_kind": "contract",
    "export_saved_model": "formats",
    "next_version": "versions",
    "read_export_metadata": "metadata",
    "FORMATS": "catalog",
    "export_model": "formats",
    "load_exported": "runtimes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})
