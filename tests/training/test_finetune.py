"""Fine-tuning on a folder of real photos (issue 18): the streamed folder reader, the evaluation crop shared with the
export, the configuration checks made before a run folder exists, recipe fields honoured or refused, run names,
and (slow) the whole command from a checkpoint of its own."""

import io
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_vitres.cli.arguments import parse_image_size
from keras_vitres.cli.main import main
from keras_vitres.data import load_dataset, make_pipeline
from keras_vitres.data.geometry import resize_and_crop
from keras_vitres.training import get_recipe, resolve_config
from keras_vitres.training.config import trained_name
from tests.helpers import sample_photos, write_photo_folder

CLASSES = ["astronaut", "chelsea", "coffee", "rocket"]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Four classes of 12 random crops each (40 to 90 pixels a side, JPEG and PNG in turn) and one corrupt file."""
    root = tmp_path_factory.mktemp("photos") / "photos"
    write_photo_folder(str(root), CLASSES, per_class=12, corrupt=1)
    return str(root)


# --- the streamed folder reader --------------------------------------------------------------------------------


def test_a_streamed_folder_keeps_paths_skips_corrupt_files_and_splits_by_class(photo_folder):
    with pytest.warns(UserWarning, match=r"skipped 1 of 49 files .*broken0\.jpg"):
        data = load_dataset("folder", photo_folder, validation_size=0.25, stream=True, seed=3)
    assert data.skipped == 1 and data.class_names == CLASSES and data.image_shape == (None, None, 3)
    x, y = data.train
    assert x.dtype.kind == "U" and all(os.path.isfile(f) for f in x)  # paths, nothing decoded in memory
    sizes = {Image.open(f).size for f in x}
    assert len(sizes) > 5 and {os.path.splitext(f)[1] for f in x} == {".jpg", ".png"}
    # 48 readable files: a stratified test fifth (10), then a quarter of the 38 left (10) for validation.
    assert (len(data.test[1]), len(data.validation[1]), len(y)) == (10, 10, 28)
    for split in (data.train, data.validation, data.test):
        assert set(np.unique(split[1])) == {0, 1, 2, 3}  # every class in every split
    all_files = set(x) | set(data.validation[0]) | set(data.test[0])
    assert len(all_files) == 48
    again = load_dataset("folder", photo_folder, validation_size=0.25, stream=True, seed=3)
    np.testing.assert_array_equal(again.validation[0], data.validation[0])  # seeded
    other = load_dataset("folder", photo_folder, validation_size=0.25, stream=True, seed=4)
    assert set(other.validation[0]) != set(data.validation[0])


def test_a_validation_folder_is_read_with_the_training_classes(photo_folder, tmp_path):
    write_photo_folder(str(tmp_path / "val"), CLASSES[:2], per_class=2, seed=5)
    data = load_dataset("folder", photo_folder, stream=True, validation_path=str(tmp_path / "val"))
    assert len(data.validation[1]) == 4 and set(data.validation[1]) == {0, 1}
    with pytest.raises(FileNotFoundError, match="validation_path"):
        load_dataset("folder", photo_folder, stream=True, validation_path=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="stream"):
        load_dataset("digits", stream=True)


def test_the_pipeline_streams_mixed_sizes_with_random_resized_crops_and_evaluation_crops(photo_folder):
    data = load_dataset("folder", photo_folder, stream=True)
    train = make_pipeline(*data.train, batch_size=8, training=True, image_size=(24, 32), augment="random_resized_crop",
                          seed=1, crop_area_range=(0.3, 1.0))
    first = [x.numpy() for x, _ in train.take(2)]
    assert first[0].shape == (8, 24, 32, 3) and 0 <= first[0].min() and first[0].max() <= 255
    again = [x.numpy() for x, _ in make_pipeline(*data.train, batch_size=8, training=True, image_size=(24, 32),
                                                 augment="random_resized_crop", seed=1,
                                                 crop_area_range=(0.3, 1.0)).take(2)]
    np.testing.assert_array_equal(first[1], again[1])  # seeded crops
    evaluation = make_pipeline(*data.test, batch_size=4, training=False, image_size=(24, 24), crop_fraction=0.875)
    images, labels = next(iter(evaluation))
    # The first test file, decoded and cropped here: the pipeline's first image.
    decoded = tf.cast(tf.io.decode_image(tf.io.read_file(data.test[0][0]), channels=3), tf.float32)
    np.testing.assert_allclose(images[0], resize_and_crop(decoded, (24, 24), 0.875), atol=1e-4)
    np.testing.assert_array_equal(labels, data.test[1][:4])
    with pytest.raises(ValueError, match="image_size"):
        make_pipeline(*data.test, batch_size=4, training=False)


def test_the_evaluation_crop_keeps_the_aspect_ratio_and_takes_the_centre():
    image = np.arange(40 * 80 * 3, dtype="float32").reshape(40, 80, 3) % 251
    out = resize_and_crop(tf.constant(image), (20, 20)).numpy()
    resized = tf.image.resize(image, (20, 40), antialias=True).numpy()  # the shorter side to 20, aspect kept
    np.testing.assert_allclose(out, resized[:, 10:30], atol=1e-4)
    # crop_fraction 0.5 on an image of twice the size: no resize at all, the exact central pixels.
    np.testing.assert_array_equal(resize_and_crop(tf.constant(image), (20, 40), 0.5).numpy(), image[10:30, 20:60])


def test_the_export_crops_a_non_square_jpeg_as_evaluation_does(tmp_path):
    from keras_vitres.export import export_saved_model
    from keras_vitres.layers import Preprocessing
    from keras_vitres.presets.build import build_model

    photo = sample_photos()["chelsea"]  # 300 x 451
    path = tmp_path / "cat.jpg"
    Image.fromarray(photo).save(path, quality=90)
    inputs = keras.Input((32, 32, 3))
    layer = Preprocessing(image_size=(32, 32), scale=1 / 127.5, offset=-1.0, crop_fraction=0.875).layer(
        name="preprocessing")
    model = keras.Model(inputs, build_model("resnet20", depth=8, classes=3)(layer(inputs)))
    export = export_saved_model(model, str(tmp_path / "export"), class_names=["a", "b", "c"])
    served = tf.saved_model.load(export).signatures["serving_bytes"](image_bytes=tf.constant([path.read_bytes()]))
    images, _ = next(iter(make_pipeline(np.array([str(path)]), np.array([0]), batch_size=1, training=False,
                                        image_size=(32, 32), crop_fraction=0.875)))
    expected = keras.ops.convert_to_numpy(model(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    # A plain resize of the whole photo (what the export did before) gives other pixels.
    stretched = tf.image.resize(tf.cast(tf.io.decode_jpeg(path.read_bytes()), tf.float32), (32, 32), antialias=True)
    assert np.abs(stretched.numpy() - images[0].numpy()).mean() > 5


# --- weights from a .keras checkpoint with other classes ---------------------------------------------------------


def test_a_keras_checkpoint_with_other_classes_loads_with_a_new_zero_head_and_resampled_positions(tmp_path):
    from keras_vitres.presets.build import build_model

    source = build_model("vit_digits_patch4_32", classes=10)
    inputs = keras.Input((32, 32, 3))
    run_model = keras.Model(inputs, source(keras_vitres_layer()(inputs)))  # as a training run saves it
    run_model.save(tmp_path / "model.keras")
    with pytest.warns(UserWarning, match="head"):
        model = build_model("vit_digits_patch4_32", classes=4, input_shape=(40, 40, 3),
                            weights=str(tmp_path / "model.keras"))
    assert model.loaded_weights["head_reset"] and model.loaded_weights["resampled"]
    assert not np.any(model.get_layer("predictions").get_weights()[0])  # the paper's zero head
    np.testing.assert_array_equal(model.get_layer("encoder_block_1").get_weights()[0],
                                  source.get_layer("encoder_block_1").get_weights()[0])
    assert model.get_layer("position_embedding").get_weights()[0].shape == (1, 101, 64)


def keras_vitres_layer():
    from keras_vitres.layers import Preprocessing

    return Preprocessing.resolve("inception").layer(name="preprocessing")


# --- configuration: checked before a run folder exists, --set honoured or refused, names --------------------------


@pytest.mark.parametrize("text, size", [("32", [32, 32]), ("32,48", [32, 48]), ("24x40", [24, 40])])
def test_image_size_flag(text, size):
    assert parse_image_size(text) == size


@pytest.mark.parametrize("text", ["0", "a", "1,2,3", "-4"])
def test_image_size_flag_refuses(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        parse_image_size(text)


@pytest.mark.parametrize("args, message", [
    (["--dataset", "folder", "--data-path", "{tmp}/missing"], "data_path"),
    (["--dataset", "folder"], "data_path"),
    (["--dataset", "digits", "--data-path", "{tmp}"], "digits"),
    (["--dataset", "folder", "--data-path", "{photos}", "--weights", "{tmp}/nothing.keras"], "nothing.keras"),
    (["--dataset", "folder", "--data-path", "{photos}", "--validation-path", "{tmp}/missing"], "validation_path"),
    (["--dataset", "folder", "--data-path", "{photos}", "--validation-path", "{photos}", "--validation-split", "0.2"],
     "not both"),
    (["--set", "crop_fraction=2"], "crop_fraction"),
    (["--set", "image_size=[0,3]"], "image_size"),
    (["--set", "crop_area_range=[0.5,0.2]"], "crop_area_range"),
    (["--set", "validation_size=1.5"], "validation_size"),
    (["--set", "imagesize=3"], "image_size"),  # unknown field, with the close name
])
def test_bad_arguments_stop_before_a_run_folder_exists(args, message, tmp_path, photo_folder, capsys):
    run_dir = tmp_path / "run"
    args = [a.format(tmp=tmp_path, photos=photo_folder) for a in args]
    assert main(["train", "--run-dir", str(run_dir), "--recipe", "finetune_vit", "--preset", "vit_digits_patch4_32",
                 *args]) == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists()


def test_set_fields_take_effect(tmp_path, capsys):
    for value in ("24", "[24,24]"):
        assert main(["train", "--print-config", "--set", f"image_size={value}"]) == 0
        assert json.loads(capsys.readouterr().out)["recipe"]["image_size"] == [24, 24]
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), "--steps", "2", "--batch-size", "16", "--set", "warmup_steps=1",
                 "--set", 'model_overrides={"depth": 8}', "--image-size", "16,20", "--verbose", "0"]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["resolved"]["image_size"] == [16, 20] and config["name"] == "resnet8"
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    assert model.input_shape == (None, 16, 20, 3) and model.name == "resnet8_trained"
    assert "resnet8 on digits" in (run_dir / "summary.txt").read_text()


def test_run_names_say_what_is_trained():
    assert trained_name(get_recipe("digits_resnet", model_overrides={"depth": 8})) == "resnet8"
    assert trained_name(get_recipe("vit_small_data", image_size=32)) == "vit_tiny_patch4_32"
    assert trained_name(get_recipe("vit_small_data", image_size=(32, 48))) == "vit_tiny_patch4_32x48"
    assert trained_name(get_recipe("digits_vit")) == "vit_digits_patch4_32"
    config = resolve_config("vit_small_data", image_size=32)
    assert config.name == "vit_tiny_patch4_32" and config.run_dir.startswith(os.path.join("runs", "vit_tiny_patch4_32_"))


def test_the_finetuning_recipes(photo_folder):
    vit = resolve_config("finetune_vit", data_path=photo_folder)
    recipe = vit.recipe
    assert (recipe.optimizer, recipe.momentum, recipe.weight_decay, recipe.gradient_clip_norm) == ("sgd", 0.9, 0.0, 1.0)
    assert recipe.schedule == "cosine" and recipe.warmup_epochs > 0 and recipe.augment == "random_resized_crop"
    assert recipe.image_size == (224, 224)  # the preset's, for a folder of any sizes
    resnet = resolve_config("finetune_resnet", data_path=photo_folder, preset="resnet20").recipe
    assert resnet.image_size == (32, 32) and resnet.weight_decay == 1e-4
    # A BiT preset takes the size BiTResNet builds at (its `input_shape` default is None).
    assert resolve_config("finetune_resnet", data_path=photo_folder, preset="bit_r50x1").recipe.image_size == (224, 224)


# --- the whole command ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_finetune_a_checkpoint_on_a_folder_of_photos_and_serve_it(tmp_path, capsys):
    folder = str(tmp_path / "photos")
    write_photo_folder(folder, CLASSES, per_class=24, corrupt=1, seed=1)
    # A pre-trained checkpoint of its own: the ViT briefly trained on the 10 digits.
    pre = tmp_path / "pretrained"
    assert main(["train", "--recipe", "digits_vit", "--steps", "40", "--batch-size", "32", "--set",
                 "warmup_epochs=0.1", "--verbose", "0", "--run-dir", str(pre)]) == 0
    run = tmp_path / "finetuned"
    with pytest.warns(UserWarning, match="head"):
        assert main(["train", "--recipe", "finetune_vit", "--preset", "vit_digits_patch4_32", "--weights",
                     str(pre / "model.keras"), "--dataset", "folder", "--data-path", folder, "--validation-split",
                     "0.25", "--image-size", "40", "--epochs", "8", "--batch-size", "16", "--verbose", "0",
                     "--run-dir", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["class_names"] == CLASSES and config["resolved"]["skipped_files"] == 1
    weights = config["resolved"]["weights"]
    assert weights["head_reset"] and weights["resampled"]  # 10 digits -> 4 photos, 8x8 -> 10x10 patches
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_validation_accuracy"] >= 0.8, summary
    assert summary["name"] == "vit_digits_patch4_40"

    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--verbose", "0"]) == 0  # streamed again, mixed sizes
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-4) and evaluated["examples"] == 19

    assert main(["export", str(run), str(tmp_path / "served")]) == 0
    capsys.readouterr()
    served = tf.saved_model.load(str(tmp_path / "served" / "1")).signatures["serving_bytes"]
    photo = sample_photos()["rocket"][50:350, 100:377]  # 300 x 277, a size the training never saw
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=90)
    out = served(image_bytes=tf.constant([buffer.getvalue()]))
    assert out["class_names"].numpy()[0, 0].decode() in CLASSES
    assert {n.decode() for n in out["class_names"].numpy()[0, :4]} == set(CLASSES)
