"""Runs an export in its own runtime: TensorFlow, ONNX Runtime, OpenVINO or LiteRT, one interface for all.

`load_exported(path)` finds the format from the path (a version folder, its model file, or the folder of versions,
whose highest version is taken), reads the sidecar metadata and returns an `Exported` whose `predict(pixels)` takes
raw float32 RGB pixels of the export's size and returns the export's outputs as NumPy arrays, class names included
(from the graph where the format carries them, else from `labels.txt`). Nothing here imports Keras; only the
SavedModel runtime imports TensorFlow. Benchmarks time `Exported.predict`, or `Exported.run`, which skips the
conversion of the outputs.
"""

import os

import numpy as np

from keras_vitres.export.catalog import FORMATS
from keras_vitres.export.extras import import_extra
from keras_vitres.export.metadata import LABELS_FILE, read_export_metadata
from keras_vitres.export.versions import latest_version

MODEL_FILES = {name: info.model_file for name, info in FORMATS.items()}  # the file that tells the format


class Exported:
    """An export loaded in its runtime.

    Attributes:
        folder: the version folder.
        metadata: its sidecar metadata (`keras_vitres.json`).
        format, precision: the artifact's.
        class_names: list of str, or None.
    """

    def __init__(self, folder, metadata):
        self.folder, self.metadata = folder, metadata
        self.format, self.precision = metadata["format"], metadata.get("precision", "f32")
        self.class_names = metadata.get("class_names") or _read_labels(folder)

    def run(self, pixels):
        """The runtime's raw outputs for a float32 (batch, H, W, C) batch, by output name."""
        raise NotImplementedError

    def predict(self, pixels):
        """Returns `probabilities`, `classes`, `scores` (NumPy arrays) and `class_names` (a (batch, k) array of str,
        when the classes are named) for raw float32 pixels of shape (batch, H, W, C)."""
        pixels = np.ascontiguousarray(pixels, np.float32)
        height, width = self.metadata["image_size"]
        expected = (height, width, self.metadata.get("channels", 3))
        if pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise ValueError(f"`pixels` must have shape (batch, {', '.join(map(str, expected))}); received {pixels.shape}.")
        outputs = {k: np.asarray(v) for k, v in self.run(pixels).items()}
        answer = {k: outputs[k] for k in ("probabilities", "classes", "scores")}
        answer["classes"] = answer["classes"].astype(np.int32)
        if self.class_names is not None:
            answer["class_names"] = np.asarray(self.class_names, dtype=str)[answer["classes"]]
        return answer


def _read_labels(folder):
    path = os.path.join(folder, LABELS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return [line.rstrip("\n") for line in f]


class SavedModelExport(Exported):
    def __init__(self, folder, metadata, threads=None):
        super().__init__(folder, metadata)
        import tensorflow as tf

        if threads and tf.config.threading.get_intra_op_parallelism_threads() != threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
            except RuntimeError:  # TensorFlow fixes its thread pools when it first runs anything
                raise ValueError(f"threads={threads} cannot be set: TensorFlow has already run in this process; "
                                 "load the SavedModel in a fresh process.") from None
        self.loaded = tf.saved_model.load(folder)
        self.signature = self.loaded.signatures["serving_default"]

    def run(self, pixels):
        return {k: v.numpy() for k, v in self.signature(images=pixels).items()}


class OnnxExport(Exported):
    def __init__(self, folder, metadata, threads=None, options=None):
        super().__init__(folder, metadata)
        onnxruntime = import_extra("onnxruntime", "Running an ONNX export")
        settings = onnxruntime.SessionOptions()
        if threads:
            settings.intra_op_num_threads = threads
        for name, value in (options or {}).items():  # e.g. graph_optimization_level, execution_mode
            setattr(settings, name, value)
        self.session = onnxruntime.InferenceSession(os.path.join(folder, metadata["files"]["model"]), settings,
                                                    providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]

    def run(self, pixels):
        return dict(zip(self.names, self.session.run(self.names, {"images": pixels})))


class OpenVinoExport(Exported):
    def __init__(self, folder, metadata, threads=None, options=None):
        super().__init__(folder, metadata)
        ov = import_extra("openvino", "Running an OpenVINO export")
        config = dict(metadata.get("runtime") or {"INFERENCE_PRECISION_HINT": "f32"})  # never OpenVINO's silent bf16
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        config.update(options or {})  # e.g. PERFORMANCE_HINT, NUM_STREAMS
        self.compiled = ov.Core().compile_model(os.path.join(folder, metadata["files"]["model"]), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, pixels):
        results = self.request.infer({"images": pixels})
        return {output.get_any_name(): value for output, value in results.items()}


class LiteRtExport(Exported):
    def __init__(self, folder, metadata, threads=None, options=None):
        super().__init__(folder, metadata)
        interpreter = import_extra("ai_edge_litert.interpreter", "Running a LiteRT export")
        self.interpreter = interpreter.Interpreter(model_path=os.path.join(folder, metadata["files"]["model"]),
                                                   num_threads=threads, **(options or {}))
        self.runner = self.interpreter.get_signature_runner("serving_default")

    def run(self, pixels):
        return self.runner(images=pixels)


RUNTIMES = {"saved_model": SavedModelExport, "onnx": OnnxExport, "openvino": OpenVinoExport, "litert": LiteRtExport}


def find_export(path):
    """(version folder, format) of an export path: a version folder, a model file in one, or a folder of versions."""
    path = os.fspath(path)
    if os.path.isfile(path):
        folder, name = os.path.split(os.path.abspath(path))
        formats = [f for f, file in MODEL_FILES.items() if file == name]
    elif os.path.isdir(path):
        folder = path
        if not any(os.path.isfile(os.path.join(path, file)) for file in MODEL_FILES.values()):
            folder = latest_version(path) or path  # the base folder of a server: its highest version
        formats = [f for f, file in MODEL_FILES.items() if os.path.isfile(os.path.join(folder, file))]
    else:
        raise FileNotFoundError(f"--model not found: {path!r} is neither an export folder nor a model file.")
    if len(formats) != 1:
        raise ValueError(
            f"{path!r} is not an export: expected a version folder holding one of "
            f"{sorted(MODEL_FILES.values())}, one of those files, or a folder of integer versions."
        )
    return folder, formats[0]


def load_exported(path, threads=None, options=None):
    """Loads an export in its runtime and returns an `Exported` (see the module docstring).

    Args:
        path: a version folder, its model file, or a folder of versions (the highest is loaded).
        threads: int or None. The runtime's intra-op threads (None: its default, every core).
        options: dict or None. Settings for the runtime: `onnxruntime.SessionOptions` attributes, OpenVINO
            compile properties (they override the metadata's precision hint), LiteRT `Interpreter` arguments.

    Raises:
        FileNotFoundError, ValueError: nothing there, or not an export; ImportError: the runtime is not installed.
    """
    folder, format = find_export(path)
    metadata = read_export_metadata(folder)
    if metadata.get("format") not in (format, None):
        raise ValueError(f"{folder!r} holds a {format} model, but its metadata says format={metadata['format']!r}.")
    metadata.setdefault("format", format)
    runtime = RUNTIMES[format]
    if format == "saved_model":
        return runtime(folder, metadata, threads)
    return runtime(folder, metadata, threads, options)
