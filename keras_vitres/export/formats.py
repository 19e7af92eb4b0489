"""`export_model`: one classifier, any deployment format, the same contract (`export.contract`).

| format | files | runtime | precisions | extra |
|---|---|---|---|---|
| saved_model | saved_model.pb, variables/ | TensorFlow, TF Serving | f32 | (none) |
| onnx | model.onnx | ONNX Runtime | f32, int8 | onnx |
| openvino | model.xml, model.bin | OpenVINO | f32, bf16, f16, int8 | openvino |
| litert | model.tflite | LiteRT | f32, f16, int8 | litert |

Every format is written as a version folder, `export_dir/<version>/` (TF Serving's layout, which OpenVINO Model
Server and Triton share), with the sidecar `keras_vitres.json` (`export.metadata`) and, when the classes are named,
`labels.txt`. Each is converted from the same float serving graph (`export.signatures`), so each takes raw RGB
pixels of the model's size with the preprocessing inside.
"""

import os

from keras_vitres.export.calibration import check_calibration
from keras_vitres.export.catalog import FORMATS, check_format
from keras_vitres.export.contract import resolve_contract
from keras_vitres.export.decoding import DEFAULT_MAX_PIXELS
from keras_vitres.export.extras import import_extra
from keras_vitres.export.litert import write_litert
from keras_vitres.export.metadata import build_metadata, write_metadata
from keras_vitres.export.onnx import write_onnx
from keras_vitres.export.openvino import write_openvino
from keras_vitres.export.saved_model import check_tensorflow_backend, write_saved_model
from keras_vitres.export.versions import resolve_version, staged_version

WRITERS = {"onnx": write_onnx, "openvino": write_openvino, "litert": write_litert}  # saved_model: its own metadata


def check_installed(format, precision):
    """Raises an ImportError naming the extra to install unless the libraries `format` needs are importable."""
    info = FORMATS[format]
    for module in info.requires + (info.int8_requires if precision == "int8" else ()):
        import_extra(module, f"The {format} export")


def export_model(
    model,
    export_dir,
    format="saved_model",
    precision="f32",
    *,
    version=None,
    class_names=None,
    top_k=5,
    preprocessing=None,
    image_size=None,
    output="auto",
    resize_method=None,
    antialias=True,
    max_pixels=DEFAULT_MAX_PIXELS,
    calibration=None,
    overwrite=False,
    preset=None,
    weights=None,
):
    """Exports a classifier in a deployment format, as `export_dir/<version>/` with its sidecar metadata.

    Every format takes raw RGB pixels of the model's size (float32 (batch, H, W, 3) in [0, 255]) with the
    preprocessing inside, and returns `probabilities`, top-k `classes` and `scores`, and `class_names` where the
    format carries strings (SavedModel, ONNX, LiteRT; OpenVINO's are in `labels.txt`). The SavedModel also has the
    encoded-image signature `serving_bytes` (`export_saved_model`). `load_exported` runs any of them.

    Args:
        model: a `keras.Model` classifier with one (batch, H, W, C) input (TensorFlow backend).
        export_dir: folder of the versions.
        format: "saved_model", "onnx", "openvino" or "litert" (see the module's table).
        precision: "f32" (every format), "bf16" (OpenVINO), "f16" (OpenVINO, LiteRT: float16 weights) or "int8"
            (ONNX, OpenVINO, LiteRT: the runtime's own post-training quantizer).
        version: positive int, or None for the next free version (1 in a new folder).
        class_names: None or one string per class; adds a `class_names` output.
        top_k: int. Classes returned in `classes` / `scores` (at most the number of classes).
        preprocessing: None, a convention name ("raw", "unit", "inception", "imagenet", "caffe"), a dict of
            `Preprocessing` fields or a `keras_vitres.layers.Preprocessing`. Must be None when the model has its
            own preprocessing layer (as the package's runner trains it), whose description the export states and
            follows; None for another model means it takes raw pixels as they are (like the CIFAR presets).
        image_size: (H, W) or int; required when the model accepts any size, else must match it.
        output: "auto" (softmax ending -> probabilities, linear ending -> logits), "probabilities" or "logits".
            Logits go through a softmax in the graph, so `probabilities` always sum to one.
        resize_method: how `serving_bytes` resizes decoded images (a `tf.image.resize` method); default the
            preprocessing description's `interpolation`.
        antialias: whether that resize is antialiased.
        max_pixels: int. `serving_bytes` refuses, before decoding, any image whose header declares more than
            this many pixels (height x width; images are decoded one at a time, so this bounds a request's memory).
        overwrite: bool. Replace an existing `version`.
        calibration: int8 only: the images to calibrate on, ideally from the training data: a folder (16 of its
            JPEG and PNG files), a list of image files, or raw pixels (N, H, W, C); default crops of scikit-learn's
            sample photos (`export.calibration`).
        preset, weights: str or None. Where the model came from, recorded in the metadata.

    Returns:
        str: the path of the version folder written.

    Raises:
        ValueError: a bad argument (named, with what would be valid), or an op the format cannot run.
        ImportError: the format's libraries are not installed (the message names the extra to install).

    Examples:
        >>> import tempfile, keras_vitres
        >>> from keras_vitres.export import read_export_metadata
        >>> path = export_model(keras_vitres.ResNet(8, stem="cifar"), tempfile.mkdtemp(), format="saved_model")
        >>> read_export_metadata(path)["format"], read_export_metadata(path)["precision"]
        ('saved_model', 'f32')
    """
    check_tensorflow_backend("export_model" if format != "saved_model" else "export_saved_model")
    check_format(format, precision)
    check_installed(format, precision)
    contract = resolve_contract(model, class_names=class_names, top_k=top_k, preprocessing=preprocessing,
                                image_size=image_size, output=output, resize_method=resize_method,
                                antialias=antialias, max_pixels=max_pixels)
    if precision == "int8":
        calibration = check_calibration(calibration, contract)
    export_dir = os.fspath(export_dir)
    version = resolve_version(export_dir, version, overwrite)
    provenance = dict(preset=preset, weights=weights)
    with staged_version(export_dir, version) as staging:
        if format == "saved_model":
            write_saved_model(model, contract, staging, version, **provenance)
        else:
            fields = WRITERS[format](model, contract, staging, precision, calibration)
            write_metadata(staging, build_metadata(contract, model_name=model.name, format=format,
                                                   precision=precision, version=version, **fields, **provenance))
    return os.path.join(export_dir, str(version))


def export_saved_model(model, export_dir, version=None, **options):
    """Exports a classifier as a SavedModel in TF Serving's layout: `export_model(..., format="saved_model")`.

    The export has two signatures (see `export.saved_model`): `serving_default` takes raw float pixels named
    `images`, `serving_bytes` takes JPEG/PNG files named `image_bytes`; both return `probabilities`, top-k
    `classes` and `scores`, and `class_names` when given. `options` are `export_model`'s.

    Returns:
        str: the path of the version folder written.
    """
    return export_model(model, export_dir, "saved_model", version=version, **options)
