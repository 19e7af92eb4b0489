"""The deployment formats, as data: the file that identifies each, the precisions it offers, what it needs.

Read without Keras or any framework (by `keras-vitres --help`, `predict` and the runtimes); the writers are in
`export.formats`, the runtimes in `export.runtimes`.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Format:
    """A deployment format.

    Attributes:
        model_file: the file that holds the model in a version folder (and tells the format).
        precisions: what `precision=` may be: "f32", "bf16", "f16", "int8".
        requires: the modules (of its setup.cfg extra) the export needs; `int8_requires`, what int8 needs besides.
        runtime: what runs it.
    """

    model_file: str
    precisions: tuple
    requires: tuple
    runtime: str
    int8_requires: tuple = ()


FORMATS = {
    "saved_model": Format("saved_model.pb", ("f32",), (), "TensorFlow, TF Serving"),
    "onnx": Format("model.onnx", ("f32", "int8"), ("tf2onnx", "onnx", "onnxruntime"), "ONNX Runtime"),
    "openvino": Format("model.xml", ("f32", "bf16", "f16", "int8"), ("openvino",), "OpenVINO", ("nncf",)),
    "litert": Format("model.tflite", ("f32", "f16", "int8"), ("ai_edge_litert",), "LiteRT"),
}
PRECISIONS = ("f32", "bf16", "f16", "int8")


def check_format(format, precision):
    """Raises a ValueError naming the valid values unless `format` is known and offers `precision`."""
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {tuple(FORMATS)}; received format={format!r}.")
    if precision not in FORMATS[format].precisions:
        raise ValueError(
            f"`precision` must be one of {FORMATS[format].precisions} for format={format!r}; received "
            f"precision={precision!r}."
        )
