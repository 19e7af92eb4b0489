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
only TensorFlow to load.
"""

import os

import keras

from keras_vitres.export.contract import classifier_output_kind, resolve_contract
from keras_vitres.export.decoding import DEFAULT_MAX_PIXELS
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
from keras_vitres.export.versions import next_version, resolve_version, staged_version

__all__ = [
    "BYTES_INPUT", "BYTES_SIGNATURE", "FLOAT_INPUT", "FLOAT_SIGNATURE", "check_tensorflow_backend",
    "classifier_output_kind", "export_saved_model", "next_version", "read_export_metadata", "saved_model_metadata",
    "write_saved_model",
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


def export_saved_model(
    model,
    export_dir,
    version=None,
    class_names=None,
    top_k=5,
    preprocessing=None,
    image_size=None,
    output="auto",
    resize_method=None,
    antialias=True,
    overwrite=False,
    max_pixels=DEFAULT_MAX_PIXELS,
    preset=None,
    weights=None,
):
    """Exports a classifier as a SavedModel in TF Serving's layout, `export_dir/<version>/`.

    The export has two signatures (see the module docstring): `serving_default` takes raw float pixels named
    `images`, `serving_bytes` takes JPEG/PNG files named `image_bytes`; both return `probabilities`, top-k
    `classes` and `scores`, and `class_names` when given. Preprocessing is part of the graph: a model with its own
    `ImagePreprocessing` layer (as trained by the package's runner; also a Keras layer named "preprocessing")
    already takes raw pixels, and its description is what the export states and the bytes signature follows; for
    any other model pass `preprocessing` (None means the model takes raw pixels as they are, like the CIFAR
    presets). `keras_vitres.export.export_model(..., format="saved_model")` is the same export.

    Args:
        model: a `keras.Model` classifier with one (batch, H, W, C) input (TensorFlow backend).
        export_dir: folder that holds the versions (the `model_base_path` of TF Serving).
        version: positive int, or None for the next free version (1 in a new folder).
        class_names: None or one string per class; adds a `class_names` output.
        top_k: int. Classes returned in `classes` / `scores` (at most the number of classes).
        preprocessing: None, a preset name ("raw", "unit", "inception", "imagenet", "caffe"), a dict of
            `Preprocessing` fields (`channel_order`, `scale`, `offset`, `mean`, `std`, `interpolation`,
            `crop_fraction`) or a `keras_vitres.layers.Preprocessing`. Must be None when the model has its own
            preprocessing layer.
        image_size: (H, W) or int; required when the model accepts any size, else must match it.
        output: "auto" (softmax ending -> probabilities, linear ending -> logits), "probabilities" or "logits".
            Logits go through a softmax in the graph, so `probabilities` always sum to one.
        resize_method: how `serving_bytes` resizes decoded images (a `tf.image.resize` method); default the
            preprocessing description's `interpolation` ("bilinear" unless it says otherwise).
        antialias: whether that resize is antialiased.
        overwrite: bool. Replace an existing `version`.
        max_pixels: int. `serving_bytes` refuses, before decoding, any image whose header declares more than
            this many pixels (height x width); default 16,000,000. Images are decoded one at a time, so this
            bounds the memory a request needs (about 16 bytes per pixel while decoding and resizing: 250 MiB at
            the default limit).
        preset, weights: str or None. Where the model came from, recorded in the metadata.

    Returns:
        str: the path of the version folder written.

    Examples:
        >>> import tempfile, keras_vitres
        >>> model = keras_vitres.ResNet(8, stem="cifar")
        >>> path = export_saved_model(model, tempfile.mkdtemp(), class_names=[str(i) for i in range(10)])
        >>> os.path.basename(path)
        '1'
    """
    check_tensorflow_backend("export_saved_model")
    contract = resolve_contract(model, class_names=class_names, top_k=top_k, preprocessing=preprocessing,
                                image_size=image_size, output=output, resize_method=resize_method,
                                antialias=antialias, max_pixels=max_pixels)
    export_dir = os.fspath(export_dir)
    version = resolve_version(export_dir, version, overwrite)
    with staged_version(export_dir, version) as staging:
        write_saved_model(model, contract, staging, version, preset=preset, weights=weights)
    return os.path.join(export_dir, str(version))
