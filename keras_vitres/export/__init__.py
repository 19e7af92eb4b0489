"""SavedModel export for TF Serving, with a float-pixel and an encoded-image signature (see `saved_model`)."""

from keras_vitres.export.decoding import (
    DEFAULT_MAX_PIXELS,
    declared_image_size,
    decode_image_batch,
    resize_like_serving,
)
from keras_vitres.export.preprocessing import (
    PREPROCESSING_PRESETS,
    apply_preprocessing_numpy,
    model_preprocessing,
    resolve_preprocessing,
)
from keras_vitres.export.saved_model import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    FLOAT_INPUT,
    FLOAT_SIGNATURE,
    classifier_output_kind,
    export_saved_model,
    next_version,
    read_export_metadata,
)

__all__ = [
    "BYTES_INPUT",
    "BYTES_SIGNATURE",
    "DEFAULT_MAX_PIXELS",
    "FLOAT_INPUT",
    "FLOAT_SIGNATURE",
    "PREPROCESSING_PRESETS",
    "apply_preprocessing_numpy",
    "classifier_output_kind",
    "declared_image_size",
    "decode_image_batch",
    "export_saved_model",
    "model_preprocessing",
    "next_version",
    "read_export_metadata",
    "resize_like_serving",
    "resolve_preprocessing",
]
