"""The sidecar metadata of an export: what the artifact takes and returns, and where it came from.

Every export writes one JSON file (`keras_vitres.json`) beside its model file (a SavedModel keeps it in
`assets.extra/`, which TF Serving copies with the model), and a `labels.txt` with one class name per line when the
classes have names. Nothing here imports Keras or a framework: runtimes and `keras-vitres predict` read it alone.
"""

import datetime
import json
import os

METADATA_FILE = "keras_vitres.json"
SAVED_MODEL_METADATA = os.path.join("assets.extra", METADATA_FILE)
LABELS_FILE = "labels.txt"
SCHEMA = "keras_vitres.export/2"


def utc_now():
    """The export's date: UTC, to the second, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def metadata_path(version_dir):
    """Where the metadata of an export folder is: beside the model, or in a SavedModel's `assets.extra/`."""
    version_dir = os.fspath(version_dir)
    saved_model = os.path.join(version_dir, SAVED_MODEL_METADATA)
    return saved_model if os.path.isfile(saved_model) else os.path.join(version_dir, METADATA_FILE)


def write_metadata(folder, metadata, saved_model=False):
    """Writes the metadata file, and `labels.txt` when it names the classes; returns the metadata."""
    path = os.path.join(folder, SAVED_MODEL_METADATA if saved_model else METADATA_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(metadata, f, indent=2)
    if metadata.get("class_names"):
        with open(os.path.join(folder, LABELS_FILE), "w") as f:
            f.write("".join(f"{name}\n" for name in metadata["class_names"]))
    return metadata


def read_export_metadata(version_dir):
    """Returns the metadata dict that an export wrote into its version folder (any format).

    Raises:
        FileNotFoundError: the folder holds no metadata file (not a keras-vitres export).
        ValueError: the file is not valid JSON (corrupt).
    """
    path = metadata_path(version_dir)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No {METADATA_FILE} in {os.fspath(version_dir)!r} (nor in its assets.extra/): not a keras-vitres export."
        )
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as error:
        raise ValueError(f"The export metadata {path!r} is corrupt: {error}.") from None


def decode_steps(contract):
    """How the bytes signature (and `keras-vitres predict`) turns an encoded image into the pixels, in words."""
    size, crop = tuple(contract.image_size), contract.crop_fraction
    return (f"decode to RGB, resize ({contract.resize_method}, aspect ratio kept) to cover {size} / {crop:g} and keep "
            f"the central {size} (the central {crop:g} of the shorter side, as evaluation does), then {contract.applies}")


def build_metadata(contract, *, model_name, format, precision, version, files, outputs, preset=None, weights=None,
                   runtime=None, quantization=None):
    """The sidecar dict of an export: its contract (`ServingContract`), provenance and format.

    Args:
        contract: the export's `ServingContract`.
        model_name: str. The Keras model's name.
        format, precision: the artifact's format ("saved_model", "onnx", "openvino", "litert") and precision.
        version: int. The version folder.
        files: dict. The artifact's files by role ("model", "weights").
        outputs: list. The artifact's output names (`class_names` only where the format carries strings).
        preset, weights: where the model came from (a preset name, a weights name or file), when known.
        runtime: dict or None. Settings the runtime must be given to compute as exported (OpenVINO's precision).
        quantization: dict or None. How an int8 artifact was quantized (quantizer, calibration images).
    """
    from keras_vitres.version import __version__

    description, own_layer = contract.description, contract.own_layer
    source = "model layer" if own_layer is not None else ("none" if description.is_identity else "export")
    height, width = contract.image_size
    return dict(
        schema=SCHEMA, format=format, precision=precision, keras_vitres_version=__version__, model_name=model_name,
        version=version, created=utc_now(), preset=preset, weights=weights, files=files,
        inputs={"images": f"float32 (batch, {height}, {width}, {contract.channels}), raw RGB pixels in [0, 255]"},
        outputs=list(outputs), image_size=[height, width], channels=contract.channels,
        pixel_range="raw RGB pixels in [0, 255]",
        preprocessing=dict(description.to_dict() if description is not None else {}, source=source,
                           layer=type(own_layer).__name__ if own_layer is not None else None,
                           formula=contract.applies),
        model_output=contract.output, top_k=contract.top_k, class_names=contract.class_names,
        labels_file=LABELS_FILE if contract.class_names else None, resize_method=contract.resize_method,
        antialias=contract.antialias, crop_fraction=contract.crop_fraction, max_pixels=contract.max_pixels,
        decode=decode_steps(contract), runtime=runtime or {}, quantization=quantization,
    )
