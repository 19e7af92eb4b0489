"""Run as a script in a fresh Python process: runs exports in ONNX Runtime, OpenVINO or LiteRT alone.

Usage: python runtime_client.py RUNTIME REQUESTS.npz RESULTS.npz EXPORT_DIR [EXPORT_DIR ...]

RUNTIME is "onnx", "openvino" or "litert". Each export is run with the runtime's own API and nothing of this
package, reading only the files the export wrote (the model, keras_vitres.json, labels.txt), as a deployment would.
For export i the requests file holds `pixels_i` (float32 raw pixels); the results file gets `i_<output>` for every
output the model has, `i_labels` (labels.txt), and `imported`: the modules of Keras, keras_vitres or TensorFlow
loaded at the end, which must be none (the script asserts that "keras" and "tensorflow" are not in sys.modules).
"""

import json
import os
import sys

import numpy as np


def run_onnx(folder, meta, pixels):
    import onnxruntime

    session = onnxruntime.InferenceSession(os.path.join(folder, meta["files"]["model"]),
                                           providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"images": pixels})))


def run_openvino(folder, meta, pixels):
    import openvino

    # The precision the export states: without it OpenVINO computes in bfloat16 on CPUs that have it.
    compiled = openvino.Core().compile_model(os.path.join(folder, meta["files"]["model"]), "CPU", meta["runtime"])
    return {output.get_any_name(): value for output, value in compiled({"images": pixels}).items()}


def run_litert(folder, meta, pixels):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.path.join(folder, meta["files"]["model"]))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    outputs = interpreter.get_signature_runner("serving_default")(images=pixels)
    return {**outputs, "ops": np.array(sorted(ops))}


def as_saveable(array):
    """String outputs come back as object arrays of bytes; store them as unicode so no pickle is needed."""
    array = np.asarray(array)
    return array.astype(bytes).astype(str) if array.dtype == object else array


def main(runtime, requests_path, results_path, folders):
    run = {"onnx": run_onnx, "openvino": run_openvino, "litert": run_litert}[runtime]
    requests = np.load(requests_path, allow_pickle=False)
    results = {}
    for i, folder in enumerate(folders):
        with open(os.path.join(folder, "keras_vitres.json")) as f:
            meta = json.load(f)
        for key, value in run(folder, meta, requests[f"pixels_{i}"]).items():
            results[f"{i}_{key}"] = as_saveable(value)
        with open(os.path.join(folder, "labels.txt")) as f:
            results[f"{i}_labels"] = np.array(f.read().splitlines())
    imported = sorted(m for m, module in sys.modules.items()
                      if module is not None and m.split(".")[0] in ("keras", "keras_vitres", "tensorflow"))
    results["imported"] = np.array(imported, dtype=str)
    np.savez(results_path, **results)
    assert "keras" not in sys.modules and "tensorflow" not in sys.modules, imported
    assert not imported, imported


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
