"""ONNX export for ONNX Runtime: the float serving graph converted with tf2onnx, int8 through onnxruntime's quantizer.

The file `model.onnx` takes `images` (float32 raw pixels) and returns `probabilities`, `classes`, `scores` and, when
the classes are named, `class_names` (ONNX has string tensors). int8 is onnxruntime's static post-training
quantization in QDQ form, per output channel, of the convolutions and matrix products (`Conv`, `MatMul`, `Gemm`),
with activation ranges measured on the calibration images; the softmax and top-k stay float32.
"""

import logging
import os

from keras_vitres.export.extras import import_extra
from keras_vitres.export.signatures import OUTPUTS, float_function

MODEL_FILE = "model.onnx"
OPSET = 17
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def _quantize(path, calibration):
    """Replaces the float32 file at `path` with its int8 (QDQ) quantization, calibrated on `calibration`."""
    quantization = import_extra("onnxruntime.quantization", "The ONNX int8 export")

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": image[None]} for image in calibration])

        def get_next(self):
            return next(self.batches, None)

    float_path = path + ".float32"
    os.replace(path, float_path)
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its advice to pre-process goes to the root logger
    try:
        quantization.quantize_static(
            float_path, path, Reader(), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            op_types_to_quantize=list(QUANTIZED_OPS), activation_type=quantization.QuantType.QInt8,
            weight_type=quantization.QuantType.QInt8,
        )
    finally:
        root.setLevel(level)
        os.remove(float_path)


def write_onnx(model, contract, folder, precision, calibration):
    """Writes `folder/model.onnx` ("f32" or "int8") and checks that ONNX Runtime loads it; returns the metadata
    fields of the format."""
    tf2onnx = import_extra("tf2onnx", "The ONNX export")
    onnxruntime = import_extra("onnxruntime", "The ONNX export")
    classify = float_function(model, contract)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, MODEL_FILE)
    tf2onnx.convert.from_function(classify, input_signature=classify.input_signature, opset=OPSET, output_path=path)
    if precision == "int8":
        _quantize(path, calibration)
    onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])  # refuses a file it cannot run
    outputs = [*OUTPUTS, *(["class_names"] if contract.class_names else [])]
    quantized = {"quantizer": "onnxruntime.quantization (static, QDQ, per channel)", "ops": list(QUANTIZED_OPS),
                 "calibration_images": len(calibration)} if precision == "int8" else None
    return dict(files={"model": MODEL_FILE}, outputs=outputs, runtime={}, quantization=quantized)
