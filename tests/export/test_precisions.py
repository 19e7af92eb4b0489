"""The reduced precisions of each runtime: files that run, computing as their metadata says.

One tiny hybrid (convolutions, BatchNorm, attention, GELU) in every precision its formats offer. What the
precisions cost in accuracy on trained models is a benchmark's measurement (docs/deployment.md), not asserted here.
"""

import os

import numpy as np
import pytest

import keras_vitres
from keras_vitres.export import export_model, load_exported, read_export_metadata
from tests.export.test_formats import TINY_HYBRID, assert_matches_logits, keras_logits, randomized
from tests.helpers import write_photo_folder

for runtime_module in ("tf2onnx", "onnxruntime", "openvino", "nncf", "ai_edge_litert"):
    pytest.importorskip(runtime_module)

# The runtimes' extras; also slow (about 25 s of exports on one core), so that the default suite leaves them to CI's
# slow+extras step even where the runtimes are installed.
pytestmark = [pytest.mark.extras, pytest.mark.slow]

PREPROCESSING = "inception"
VARIANTS = [("onnx", "int8"), ("openvino", "bf16"), ("openvino", "f16"), ("openvino", "int8"), ("litert", "f16"),
            ("litert", "int8")]


@pytest.fixture(scope="module")
def model_and_pixels():
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    model = randomized(keras_vitres.HybridViT(**TINY_HYBRID, approximate_gelu=False, classifier_activation=None), 0,
                       pixels, PREPROCESSING)
    return model, pixels, keras_logits(model, pixels, PREPROCESSING)


@pytest.fixture(scope="module")
def exports(model_and_pixels, tmp_path_factory):
    """The float32 export of each runtime and every reduced variant; int8 calibrates on a folder of real photo crops
    (as `--calibration FOLDER` does) for ONNX and OpenVINO, on the default sample photos for LiteRT."""
    model = model_and_pixels[0]
    root = tmp_path_factory.mktemp("precisions")
    photos = root / "photos"
    write_photo_folder(photos, ["chelsea", "coffee"], per_class=4, sizes=(40, 60))
    paths = {}
    for fmt, precision in [(fmt, "f32") for fmt in ("onnx", "openvino", "litert")] + VARIANTS:
        calibration = str(photos) if precision == "int8" and fmt != "litert" else None
        paths[fmt, precision] = export_model(model, root / f"{fmt}_{precision}", fmt, precision,
                                             preprocessing=PREPROCESSING, calibration=calibration)
    return paths


def test_openvino_computes_in_float32_unless_bf16_is_asked_for(model_and_pixels, exports):
    """The f32 export runs within float32's error of Keras, although on a CPU with bfloat16 instructions OpenVINO's
    default is bfloat16; the bf16 one, on such a CPU, is off by bfloat16 roundings (a relative 2**-8 each): more
    than float32 allows, less than 0.1 of the logits' scale (without them OpenVINO computes it in float32)."""
    import openvino

    _, pixels, logits = model_and_pixels
    f32, bf16 = (load_exported(exports["openvino", p]) for p in ("f32", "bf16"))
    assert f32.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    assert_matches_logits(f32.predict(pixels)["probabilities"], logits, "openvino f32")
    error = assert_matches_logits(bf16.predict(pixels)["probabilities"], logits, "openvino bf16", tolerance=0.1)
    if "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert bf16.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"
        assert error > 1e-4, f"bf16 ran as float32 ({error:.3g} of the logits' scale)"
    assert read_export_metadata(exports["openvino", "bf16"])["runtime"] == {"INFERENCE_PRECISION_HINT": "bf16"}


def test_float16_weights_halve_the_weights_and_stay_close(model_and_pixels, exports):
    """float16 weights (a relative 2**-11 each), computed in float32: within 0.05 of the logits' scale; OpenVINO's
    weights file is half the float32 one, LiteRT's file (graph included) holds float16 tensors and is smaller."""
    from ai_edge_litert.interpreter import Interpreter

    _, pixels, logits = model_and_pixels
    sizes = [os.path.getsize(os.path.join(exports["openvino", p], "model.bin")) for p in ("f32", "f16")]
    assert 0.45 < sizes[1] / sizes[0] < 0.55, sizes
    litert = [os.path.join(exports["litert", p], "model.tflite") for p in ("f32", "f16")]
    assert os.path.getsize(litert[1]) < 0.8 * os.path.getsize(litert[0])
    assert any(t["dtype"] == np.float16 for t in Interpreter(litert[1]).get_tensor_details())
    for fmt in ("openvino", "litert"):
        assert_matches_logits(load_exported(exports[fmt, "f16"]).predict(pixels)["probabilities"], logits,
                              f"{fmt} f16", tolerance=0.05)


def test_int8_exports_run_quantized_graphs(model_and_pixels, exports):
    """Each int8 file runs, returns probabilities that sum to 1, holds quantized operations, and records how it was
    calibrated."""
    _, pixels, _ = model_and_pixels
    for fmt in ("onnx", "openvino", "litert"):
        path = exports[fmt, "int8"]
        answer = load_exported(path).predict(pixels)
        np.testing.assert_allclose(answer["probabilities"].sum(-1), 1.0, atol=1e-5)
        assert answer["classes"].shape == (4, 5)
        meta = read_export_metadata(path)
        assert meta["precision"] == "int8"
        assert meta["quantization"]["calibration_images"] == (8 if fmt != "litert" else 16), meta["quantization"]
    import onnx

    onnx_ops = {node.op_type for node in onnx.load(os.path.join(exports["onnx", "int8"], "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= onnx_ops
    with open(os.path.join(exports["openvino", "int8"], "model.xml")) as f:
        assert 'type="FakeQuantize"' in f.read()
    from ai_edge_litert.interpreter import Interpreter

    tensors = Interpreter(os.path.join(exports["litert", "int8"], "model.tflite")).get_tensor_details()
    assert any(t["dtype"] == np.int8 for t in tensors)


def test_the_commands_export_a_run_calibrated_on_its_data_and_predict_with_it(model_and_pixels, tmp_path, capsys):
    """`keras-vitres export RUN --format onnx --precision int8` calibrates on the run's image folder (its
    config.json's data_path), and `keras-vitres predict` runs the result on those images."""
    import json

    from keras_vitres.cli.main import main

    photos = tmp_path / "photos"
    write_photo_folder(photos, ["chelsea", "rocket"], per_class=3, sizes=(40, 60))
    run = tmp_path / "run"
    run.mkdir()
    model_and_pixels[0].save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"recipe": {"preset": "tiny_hybrid"}, "data_path": str(photos)}))
    assert main(["export", str(run), str(tmp_path / "out"), "--format", "onnx", "--precision", "int8",
                 "--preprocessing", PREPROCESSING]) == 0
    assert "(onnx, int8)" in capsys.readouterr().out
    meta = read_export_metadata(tmp_path / "out" / "1")
    assert meta["quantization"]["calibration_images"] == 6 and meta["preset"] == "tiny_hybrid"
    assert main(["predict", "--model", str(tmp_path / "out"), str(photos), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["format"], answer["precision"], len(answer["images"])) == ("onnx", "int8", 6)
    assert all(len(image["predictions"]) == 5 for image in answer["images"])
