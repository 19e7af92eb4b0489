"""`keras-vitres export`: a .keras file or a run folder -> a TF Serving version folder."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_vitres
from keras_vitres.cli.main import main
from keras_vitres.export import export_model, read_export_metadata


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "resnet8.keras"
    keras_vitres.ResNet(8, stem="cifar", classes=3).save(path)
    return str(path)


def test_export_a_keras_file(model_file, tmp_path, capsys):
    code = main(
        [
            "export",
            model_file,
            str(tmp_path / "served"),
            "--class-names",
            "cat, dog, bird",
            "--preprocessing",
            '{"scale": 0.00392156862745098}',
            "--top-k",
            "2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "serving_default" in out and "serving_bytes" in out and str(tmp_path / "served" / "1") in out
    meta = read_export_metadata(tmp_path / "served" / "1")
    assert meta["class_names"] == ["cat", "dog", "bird"] and meta["top_k"] == 2
    assert meta["preprocessing"]["scale"] == pytest.approx(1 / 255)
    served = tf.saved_model.load(str(tmp_path / "served" / "1")).signatures["serving_default"](
        images=tf.zeros((1, 32, 32, 3))
    )
    assert set(np.asarray(served["class_names"]).ravel()) <= {b"cat", b"dog", b"bird"}


def test_export_a_run_folder_takes_its_model_class_names_and_provenance(model_file, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    os.link(model_file, run / "model.keras")
    (run / "config.json").write_text(json.dumps({"recipe": {"preset": "resnet8"}, "weights": "init.weights.h5",
                                                 "resolved": {"class_names": ["a", "b", "c"]}}))
    assert main(["export", str(run), str(tmp_path / "served"), "--version", "7"]) == 0
    meta = read_export_metadata(tmp_path / "served" / "7")
    assert meta["class_names"] == ["a", "b", "c"] and meta["preprocessing"]["source"] == "none"
    assert (meta["preset"], meta["weights"], meta["format"], meta["precision"]) == (
        "resnet8", "init.weights.h5", "saved_model", "f32")
    assert (tmp_path / "served" / "7" / "labels.txt").read_text() == "a\nb\nc\n"
    assert main(["export", str(run), str(tmp_path / "served"), "--version", "7"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_errors_exit_2_with_a_message(model_file, tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.keras"), str(tmp_path / "out")]) == 2
    assert "neither a .keras file nor a run folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path), str(tmp_path / "out")]) == 2  # a folder without a model
    assert "no .keras model files" in capsys.readouterr().err
    assert main(["export", model_file, str(tmp_path / "out"), "--class-names", "a,b"]) == 2
    assert "list of 3 strings" in capsys.readouterr().err
    assert main(["export", model_file, str(tmp_path / "out"), "--preprocessing", "{bad json"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_max_pixels_sets_the_bytes_signature_pixel_limit(model_file, tmp_path, capsys):
    assert main(["export", model_file, str(tmp_path / "served"), "--max-pixels", "1024"]) == 0
    assert "at most 1024 pixels" in capsys.readouterr().out
    path = tmp_path / "served" / "1"
    assert read_export_metadata(path)["max_pixels"] == 1024
    serve = tf.saved_model.load(str(path)).signatures["serving_bytes"]
    small = tf.io.encode_png(tf.zeros((32, 32, 3), tf.uint8))  # 1,024 pixels: served
    assert serve(image_bytes=tf.stack([small]))["probabilities"].shape == (1, 3)
    large = tf.io.encode_png(tf.zeros((32, 33, 3), tf.uint8))  # 1,056 pixels: refused before decoding
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels=1024"):
        serve(image_bytes=tf.stack([large]))
    for bad in ("0", "-5"):
        assert main(["export", model_file, str(tmp_path / "other"), "--max-pixels", bad]) == 2
        assert f"--max-pixels={bad}" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()  # refused before anything was written


def test_format_and_precision_errors_name_what_is_valid(model_file, tmp_path, capsys):
    assert main(["export", model_file, str(tmp_path / "out"), "--format", "litert", "--precision", "bf16"]) == 2
    assert "--precision bf16 is not offered by --format litert; it offers f32, f16, int8" in capsys.readouterr().err
    assert main(["export", model_file, str(tmp_path / "out"), "--calibration", str(tmp_path)]) == 2
    assert "--calibration is for --precision int8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", model_file, str(tmp_path / "out"), "--format", "tflite"])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    model = keras_vitres.ResNet(8, stem="cifar")
    with pytest.raises(ValueError, match=r"`format` must be one of \('saved_model', 'onnx', 'openvino', 'litert'\)"):
        export_model(model, tmp_path / "out", format="tflite")
    with pytest.raises(ValueError, match=r"`precision` must be one of \('f32',\) for format='saved_model'"):
        export_model(model, tmp_path / "out", precision="int8")
    assert not (tmp_path / "out").exists()

