"""OpenVINO IR export: the float serving graph converted with `openvino.convert_model`, int8 through NNCF.

`model.xml` and `model.bin` take `images` (float32 raw pixels) and return `probabilities`, `classes` and `scores`;
the class names are in `labels.txt` (OpenVINO's converter turns a string constant into the text of Python bytes
literals, so names are not put in the graph).

Precision is explicit. On a CPU with bfloat16 instructions OpenVINO computes in bfloat16 unless told otherwise, so
the metadata's `runtime` states the `INFERENCE_PRECISION_HINT` the artifact was exported for, and
`keras_vitres.export.load_exported` applies it: "f32" (the default: float32 weights, computed in float32), "bf16"
(float32 weights, computed in bfloat16 where the CPU can), "f16" (weights stored as float16, half the file; computed
in float32 on CPUs) and "int8" (NNCF's post-training quantization, calibrated on the calibration images; the
remaining float ops in float32).
"""

import contextlib
import io
import logging
import os

from keras_vitres.export.extras import import_extra
from keras_vitres.export.signatures import FLOAT_INPUT, OUTPUTS, float_function

MODEL_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"
PRECISION_HINTS = {"f32": "f32", "bf16": "bf16", "f16": "f32", "int8": "f32"}


def _quantize(ov_model, calibration):
    nncf = import_extra("nncf", "The OpenVINO int8 export")
    nncf.set_log_level(logging.ERROR)  # no progress bars on the console
    dataset = nncf.Dataset([image[None] for image in calibration])
    with contextlib.redirect_stdout(io.StringIO()):  # its progress bars, which no log level turns off
        return nncf.quantize(ov_model, dataset, subset_size=len(calibration))


def write_openvino(model, contract, folder, precision, calibration):
    """Writes `folder/model.xml` and `model.bin` and checks that OpenVINO compiles them for the CPU with the stated
    precision hint; returns the metadata fields of the format."""
    ov = import_extra("openvino", "The OpenVINO export")
    classify = float_function(model, contract, with_class_names=False)
    ov_model = ov.convert_model(classify.get_concrete_function())
    ov_model.inputs[0].get_node().set_friendly_name(FLOAT_INPUT)
    ov_model.inputs[0].get_tensor().set_names({FLOAT_INPUT})
    if precision == "int8":
        ov_model = _quantize(ov_model, calibration)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, MODEL_FILE)
    ov.save_model(ov_model, path, compress_to_fp16=precision == "f16")  # the default would store float16 weights
    runtime = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
    ov.Core().compile_model(path, "CPU", runtime)
    quantized = {"quantizer": f"NNCF {import_extra('nncf', 'The OpenVINO int8 export').__version__} "
                 "post-training quantization", "calibration_images": len(calibration)} if precision == "int8" else None
    return dict(files={"model": MODEL_FILE, "weights": WEIGHTS_FILE}, outputs=list(OUTPUTS), runtime=runtime,
                quantization=quantized)
