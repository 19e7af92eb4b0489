"""`keras-vitres analyze` and the analyses' data preparation."""

import json

import numpy as np
import pytest

from keras_vitres.analysis import TrainingSettings, load_analysis_data
from keras_vitres.cli.main import main
from tests.analysis.conftest import assert_png

TINY_FLAGS = ["--image-size", "16", "--train-size", "64", "--val-size", "32", "--epochs", "1"]


def test_analysis_data_is_normalised_digits_with_its_preprocessing():
    from keras_vitres.data import load_dataset

    data = load_analysis_data("digits", train_size=100, val_size=50, seed=3)
    raw = load_dataset("digits")
    assert data.x_train.shape == (100, 32, 32, 3) and data.x_val.shape == (50, 32, 32, 3)
    assert data.x_train.dtype == np.float32 and data.num_classes == 10 and data.image_shape == (32, 32, 3)
    # The subsets are drawn from the right splits, and `preprocessing` maps raw pixels onto the arrays.
    mean, std = np.array(data.preprocessing["mean"]), np.array(data.preprocessing["std"])
    restored = np.round(data.x_train * std + mean).astype(np.uint8)
    train_rows = {x.tobytes() for x in raw.train[0]}
    assert all(x.tobytes() in train_rows for x in restored)
    np.testing.assert_allclose(data.x_train.reshape(-1, 3).mean(axis=0), 0.0, atol=1e-5)
    assert abs(data.x_train).max() <= 2.0
    # The same seed draws the same subset.
    again = load_analysis_data("digits", train_size=100, val_size=50, seed=3)
    np.testing.assert_array_equal(again.y_train, data.y_train)
    raw_data = load_analysis_data("digits", image_size=16, train_size=10, normalize=False)
    assert raw_data.preprocessing == {} and raw_data.x_train.max() > 200


def test_settings_and_data_reject_bad_values():
    with pytest.raises(ValueError, match="epochs"):
        TrainingSettings(epochs=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainingSettings(optimizer="lamb")
    with pytest.raises(ValueError, match="train_size"):
        load_analysis_data("digits", train_size=0)


def test_cli_shortcuts_prints_json_and_writes_the_figure(tmp_path, capsys):
    figure = tmp_path / "shortcuts.png"
    status = main(["analyze", "shortcuts", "--depth", "8", "--options", "A", "plain", "--stage-filters", "4", "8",
                   "16", *TINY_FLAGS, "--output", str(figure), "--json"])
    assert status == 0
    numbers = json.loads(capsys.readouterr().out)
    assert [row["option"] for row in numbers["rows"]] == ["A", None]
    assert numbers["figure"] == str(figure)
    assert_png(figure)


def test_cli_vit_prints_attention_distances(tmp_path, capsys):
    figure = tmp_path / "vit.png"
    status = main(["analyze", "vit", "--hidden-dim", "16", "--num-layers", "2", "--num-heads", "2", *TINY_FLAGS,
                   "--num-images", "2", "--output", str(figure)])
    assert status == 0
    out = capsys.readouterr().out
    assert "grid 4x4 of 4x4-pixel patches" in out and "layer 1:" in out
    assert_png(figure)


def test_cli_analyze_without_a_name_prints_help(capsys):
    assert main(["analyze"]) == 2
    assert "degradation" in capsys.readouterr().out


def test_cli_reports_bad_values_as_errors(capsys):
    assert main(["analyze", "degradation", "--depths", "9", *TINY_FLAGS]) == 2
    assert "depth" in capsys.readouterr().err


def test_the_analyses_train_through_the_training_loop_of_keras_vitres_train(tiny_digits, monkeypatch):
    import keras

    from keras_vitres.analysis import train_new_model
    from keras_vitres.training import fit

    seen, fit_model = [], fit.fit_model
    monkeypatch.setattr(fit, "fit_model", lambda model, recipe, *args, **kwargs: seen.append(recipe) or
                        fit_model(model, recipe, *args, **kwargs))
    settings = TrainingSettings(epochs=2, batch_size=32, learning_rate=0.01, optimizer="adam", seed=1)

    def build():
        return keras.Sequential([keras.Input(tiny_digits.image_shape), keras.layers.Flatten(),
                                 keras.layers.Dense(tiny_digits.num_classes, activation="softmax")])

    model, curves = train_new_model(build, tiny_digits, settings)
    assert seen == [settings.recipe()] and seen[0].schedule == "cosine" and seen[0].optimizer == "adamw"
    assert type(model.optimizer) is keras.optimizers.Adam  # AdamW without weight decay
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2 * 256 // 32
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) < 1e-6  # the cosine decayed to 0
    accuracy = np.mean(np.argmax(model.predict(tiny_digits.x_val, verbose=0), -1) == tiny_digits.y_val)
    assert len(curves["train_error"]) == 2 and curves["val_error"][-1] == pytest.approx(1 - accuracy, abs=1e-6)
    # The same seed gives the same network and the same batches: a comparison differs only by architecture.
    assert train_new_model(build, tiny_digits, settings)[1] == curves
