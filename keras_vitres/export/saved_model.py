"""SavedModel export for TF Serving: a float-pixel signature and an encoded-image signature.

The export directory follows TF Serving's layout, `export_dir/<version>/saved_model.pb` with integer versions; the
server serves the highest version and picks up new ones as they appear (`export.versions`).

Signatures (inputs -> outputs; `export.signatures`):
    serving_default: `images` float32 (batch, H, W, C), raw [0, 255] RGB pixels
        -> `probabilities` float32 (batch, classes), `classes` int32 (batch, k), `scores` float32 (batch, k),
           and `class_names` string (batch, k) when class names are given.
    serving_bytes: `image_bytes` string (batch,), JPEG or PNG files -> the same outputs. The graph checks the
        format (magic bytes) and the declared size (header) against `max_pixels` before decoding, decodes to
        RGB, resizes and centre-crops to (H, W) as the evaluation pipeline does (`data.geometry.resize_and_crop`, the
        model's `Preprocessing.crop_fraction`) and then runs exactly the float path.
Preprocessing is inside the graph either way: the model's own (its `ImagePreprocessing` layer, as the package's
runner trains it) or the `preprocessing=` given to the export, one `keras_vitres.layers.Preprocessing` in both cases;
the bytes signature also crops and resizes as that description says. The metadata file
(`assets.extra/keras_vitres.json`) states the description, where it came from and its formula. The export needs
only TensorFlow to load. `export.formats.export_saved_model` writes it.
"""

import keras

from keras_vitres.export.contract import classifier_output_kind
from keras_vitres.export.metadata import build_metadata, read_export_metadata, write_metadata
from keras_vitres.export.signatures import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    FLOAT_INPUT,
    FLOAT_SIGNATURE,
    OUTPUTS,
    bytes_function,
    float_archive,
    float_function,
)
from keras_vitres.export.versions import next_version

__all__ = [
    "BYTES_INPUT", "BYTES_SIGNATURE", "FLOAT_INPUT", "FLOAT_SIGNATURE", "check_tensorflow_backend",
    "classifier_output_kind", "next_version", "read_export_metadata", "saved_model_metadata", "write_saved_model",
]


def check_tensorflow_backend(what):
    """Raises a RuntimeError unless Keras runs on TensorFlow, which every export converts from."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"{what} needs the TensorFlow backend (KERAS_BACKEND=tensorflow); the Keras backend is "
            f"{keras.backend.backend()!r}. Save the model as .keras and export it from a TensorFlow-backend process "
            "(e.g. `keras-vitres export model.keras DIR`)."
        )


def saved_model_metadata(contract, model, version, **provenance):
    """The SavedModel's metadata: the common fields, and both signatures."""
    height, width = contract.image_size
    outputs = [*OUTPUTS, *(["class_names"] if contract.class_names else [])]
    metadata = build_metadata(contract, model_name=model.name, format="saved_model", precision="f32",
                              version=version, files={"model": "saved_model.pb"}, outputs=outputs, **provenance)
    metadata["signatures"] = {
        FLOAT_SIGNATURE: {
            "inputs": {FLOAT_INPUT: f"float32 (batch, {height}, {width}, {contract.channels})"},
            "applies": contract.applies,
        },
        BYTES_SIGNATURE: {
            "inputs": {BYTES_INPUT: f"string (batch,): JPEG or PNG files of at most {contract.max_pixels} pixels"},
            "applies": metadata["decode"],
        },
    }
    return metadata


def write_saved_model(model, contract, folder, version, **provenance):
    """Writes the SavedModel (both signatures) and its metadata into `folder`."""
    classify = float_function(model, contract)
    archive = float_archive(model, classify)
    archive.add_endpoint(BYTES_SIGNATURE, bytes_function(classify, contract))
    archive.write_out(folder, verbose=False)
    write_metadata(folder, saved_model_metadata(contract, model, version, **provenance), saved_model=True)
