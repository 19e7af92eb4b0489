"""`keras-vitres predict` on a SavedModel: the same answers as its `serving_bytes` signature on real photos, the
hostile files refused, the argument errors; and the missing-runtime errors of both commands."""

import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_vitres
from keras_vitres.cli.main import main
from keras_vitres.export import export_model
from tests.helpers import sample_photos
from tests.reliability.images import png_declaring

CLASSES = ["cat", "dog", "bird", "fish", "frog"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A small ResNet exported with a crop and bicubic resizing (so both show), and a folder of real photos: JPEG
    at full size, PNG at 48x40, one of each of three photos."""
    root = tmp_path_factory.mktemp("predict")
    keras.utils.set_random_seed(0)
    model = keras_vitres.ResNet(8, stem="cifar", classes=5, classifier_activation=None)
    head = model.get_layer("predictions")
    rng = np.random.default_rng(0)
    head.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in head.get_weights()])
    path = export_model(model, root / "served", class_names=CLASSES, top_k=3,
                        preprocessing={"scale": 1 / 255, "crop_fraction": 0.875, "interpolation": "bicubic"})
    photos = root / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee", "astronaut"):
        image = Image.fromarray(sample_photos()[name])
        image.save(photos / f"{name}.jpg", quality=90)
        image.resize((40, 48)).save(photos / f"{name}_small.png")
    return path, photos


def predict_json(capsys, *argv):
    code = main(["predict", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_predict_answers_as_the_bytes_signature_on_real_photos(export, capsys):
    path, photos = export
    code, answer = predict_json(capsys, "--model", os.path.dirname(path), str(photos))  # the folder of versions
    assert code == 0 and answer["format"] == "saved_model" and answer["precision"] == "f32"
    files = sorted(os.listdir(photos))
    assert [os.path.basename(a["image"]) for a in answer["images"]] == files
    serve_bytes = tf.saved_model.load(path).signatures["serving_bytes"]
    expected = serve_bytes(image_bytes=tf.constant([(photos / f).read_bytes() for f in files]))
    probabilities = expected["probabilities"].numpy()
    assert 0.3 < probabilities.max() < 0.95, "outputs saturated or uniform: the comparison would prove little"
    for image, classes, top in zip(answer["images"], expected["classes"].numpy(), expected["scores"].numpy()):
        assert [p["index"] for p in image["predictions"]] == classes.tolist()
        assert [p["name"] for p in image["predictions"]] == [CLASSES[c] for c in classes]
        # pixels within 2e-4 of serving's (the resize's summation order): probabilities within float32's reach
        np.testing.assert_allclose([p["probability"] for p in image["predictions"]], top, rtol=1e-5, atol=0)
    # Without TensorFlow's decoder the JPEG pixels differ by a few levels (PIL's accurate IDCT): the answers move by
    # about as much as such a change of the input; PNG files are decoded the same.
    _, pil = predict_json(capsys, "--model", path, str(photos), "--jpeg-decoder", "pil")
    for exact, other in zip(answer["images"], pil["images"]):
        first, second = ([p["probability"] for p in x["predictions"]] for x in (exact, other))
        if exact["image"].endswith(".png"):
            assert first == second
        else:
            np.testing.assert_allclose(first, second, atol=1e-2)


def test_predict_prints_top_k_and_refuses_hostile_files_without_stopping(export, tmp_path, capsys):
    path, photos = export
    (tmp_path / "huge.png").write_bytes(png_declaring(20_000, 20_000))
    (tmp_path / "notes.png").write_bytes(b"<html>not an image</html>")
    cut = (photos / "coffee.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(cut[: len(cut) // 2])
    images = [str(photos / "chelsea.jpg"), *(str(tmp_path / n) for n in ("huge.png", "notes.png", "cut.jpg"))]
    assert main(["predict", "--model", path, *images, "--top-k", "2"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"{path} (saved_model, f32)" and lines[1] == images[0]
    assert lines[2].startswith("  1. ") and lines[3].startswith("  2. ") and lines[4] == images[1]
    assert "refused: The image declares a size of (height, width) = (20000, 20000)" in out
    assert "refused: The image bytes are neither JPEG nor PNG" in out
    assert "refused: The JPEG file is truncated or corrupt" in out


def test_predict_argument_errors_exit_2_with_a_message(export, tmp_path, capsys):
    path, photos = export
    photo = str(photos / "chelsea.jpg")
    for argv, message in [
        (["--model", str(tmp_path / "none"), photo], "--model not found"),
        (["--model", str(tmp_path), photo], "is not an export"),
        (["--model", path, str(tmp_path / "none.jpg")], "IMAGE not found"),
        (["--model", path, str(tmp_path)], "holds no JPEG or PNG files"),
        (["--model", path, photo, "--top-k", "0"], "--top-k must be a positive int"),
    ]:
        assert main(["predict", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_a_missing_runtime_names_the_extra_to_install(export, tmp_path, monkeypatch, capsys):
    """Simulated by making the runtimes' modules unimportable: predict on an ONNX, OpenVINO or LiteRT folder, and
    export to those formats (before anything is written), each say which `pip install` to run."""
    path, photos = export
    blocked = ("onnxruntime", "openvino", "ai_edge_litert", "tf2onnx", "nncf")
    for module in [m for m in sys.modules if m.split(".")[0] in blocked] + list(blocked):
        monkeypatch.setitem(sys.modules, module, None)  # submodules too: an earlier test may have imported them
    for fmt, model_file in (("onnx", "model.onnx"), ("openvino", "model.xml"), ("litert", "model.tflite")):
        folder = tmp_path / fmt / "1"
        folder.mkdir(parents=True)
        (folder / model_file).write_bytes(b"")
        (folder / "keras_vitres.json").write_text(json.dumps({"format": fmt, "files": {"model": model_file},
                                                              "image_size": [32, 32]}))
        assert main(["predict", "--model", str(folder), str(photos / "chelsea.jpg")]) == 2
        assert f'pip install "keras-vitres[{fmt}]"' in capsys.readouterr().err
    model_file = tmp_path / "model.keras"
    keras_vitres.ResNet(8, stem="cifar", classes=3).save(model_file)
    for fmt, precision in (("onnx", "f32"), ("openvino", "f32"), ("openvino", "int8"), ("litert", "f32")):
        out = tmp_path / f"out_{fmt}_{precision}"
        assert main(["export", str(model_file), str(out), "--format", fmt, "--precision", precision]) == 2
        assert f'pip install "keras-vitres[{fmt}]"' in capsys.readouterr().err
        assert not out.exists()
