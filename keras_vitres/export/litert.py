"""LiteRT (TensorFlow Lite) export: the float serving graph converted with builtin ops only.

`model.tflite` has one signature, `serving_default`, taking `images` (float32 raw pixels) and returning
`probabilities`, `classes`, `scores` and, when the classes are named, `class_names` (LiteRT has string tensors).

The converter is told to use LiteRT's builtin ops only (`TFLITE_BUILTINS`): an op without a builtin kernel fails the
export with an error naming it, instead of a file that needs the Flex (TF Select) delegate and fails to load in
LiteRT. The exact GELU of the ViTs is written so that the converter fuses it into the builtin `GELU`
(`keras_vitres.layers.gelu`). "f16" stores the weights as float16 (half the file; computed in float32 on CPUs);
"int8" is the converter's full-integer post-training quantization with float32 inputs and outputs, calibrated on
the calibration images, except the softmax, top-k and class-name lookup at the end, which stay float32 (quantized,
the probabilities would come in steps of 1/256 and tie in the top-k).
"""

import os
import re
import tempfile
import warnings

from keras_vitres.export.extras import import_extra
from keras_vitres.export.signatures import FLOAT_SIGNATURE, OUTPUTS, float_archive, float_function

MODEL_FILE = "model.tflite"
FLOAT_OPS = ("SOFTMAX", "TOPK_V2", "GATHER")  # kept float32 in int8 exports: the outputs' resolution


def _converter(model, contract, staging, precision, calibration):
    import tensorflow as tf

    classify = float_function(model, contract)
    float_archive(model, classify).write_out(staging, verbose=False)  # the signature names survive this way
    converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=[FLOAT_SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "f16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
    return converter


def _quantized(converter, calibration):
    """Full-integer quantization with `FLOAT_OPS` left in float32 (through the converter's quantization debugger,
    the API that takes a list of ops to leave out)."""
    import tensorflow as tf

    with warnings.catch_warnings():  # it runs the calibration through TensorFlow's deprecated tf.lite.Interpreter
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([image[None]] for image in calibration),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_OPS)),
        )
        return debugger.get_nondebug_quantized_model()


def _convert(converter, model, precision, calibration):
    """Converts, turning the converter's report of ops without builtin kernels into a short ValueError."""
    try:
        return _quantized(converter, calibration) if precision == "int8" else converter.convert()
    except Exception as error:  # ConverterError, or a RuntimeError from the MLIR passes
        message = str(error)
        select = re.search(r"TF Select ops: ([^\n]+)", message)
        if select is None:
            raise
        raise ValueError(
            f"Model {model.name!r} cannot be exported to LiteRT with builtin ops only: it uses "
            f"{select.group(1).strip()}, which LiteRT runs only through the Flex (TF Select) delegate. The export "
            "is refused rather than writing a file that fails to load; use --format onnx or openvino for it."
        ) from None


def write_litert(model, contract, folder, precision, calibration):
    """Writes `folder/model.tflite` with builtin ops only, and checks that LiteRT loads it and allocates its
    tensors; returns the metadata fields of the format."""
    interpreter = import_extra("ai_edge_litert.interpreter", "The LiteRT export")
    with tempfile.TemporaryDirectory(prefix="keras_vitres_litert_") as staging:
        flatbuffer = _convert(_converter(model, contract, staging, precision, calibration), model, precision,
                              calibration)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, MODEL_FILE)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    interpreter.Interpreter(model_path=path).allocate_tensors()
    outputs = [*OUTPUTS, *(["class_names"] if contract.class_names else [])]
    quantized = {"quantizer": "TFLiteConverter full-integer post-training quantization (float32 inputs and outputs)",
                 "float_ops": list(FLOAT_OPS), "calibration_images": len(calibration)} if precision == "int8" else None
    return dict(files={"model": MODEL_FILE}, outputs=outputs, runtime={}, quantization=quantized)
