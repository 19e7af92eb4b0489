"""ResNet analyses: degradation and shortcut curves, layer responses, ensembles as one saveable model."""

import keras
import numpy as np
import pytest

from keras_vitres import ResNet, feature_extractor
from keras_vitres.analysis import (
    TrainingSettings,
    degradation_analysis,
    ensemble_analysis,
    ensemble_model,
    layer_responses,
    member_probabilities,
    response_analysis,
    shortcut_analysis,
)
from keras_vitres.analysis.responses import _block_responses, response_layers
from tests.analysis.conftest import assert_png

TINY = dict(stage_filters=(4, 8, 16))


def test_degradation_curves_have_one_point_per_epoch(tiny_digits, tmp_path):
    result = degradation_analysis((8,), tiny_digits, TrainingSettings(epochs=2), figure_path=tmp_path / "d.png",
                                  **TINY)
    assert sorted(result.curves) == ["plain-8", "resnet-8"]
    for curve in result.curves.values():
        assert len(curve["train_error"]) == len(curve["val_error"]) == 2
        assert all(0.0 <= e <= 1.0 for e in curve["train_error"] + curve["val_error"])
    # Option A adds no parameters: a plain net and its residual twin have the same count.
    assert result.params["plain-8"] == result.params["resnet-8"]
    assert set(result.final_errors()) == set(result.curves)
    assert set(result.models) == set(result.curves) and "models" not in result.to_dict()
    # The trained nets are returned: their accuracy is the last validation point of their curve.
    model = result.models["resnet-8"]
    accuracy = np.mean(np.argmax(model.predict(tiny_digits.x_val, verbose=0), -1) == tiny_digits.y_val)
    assert 1 - accuracy == pytest.approx(result.curves["resnet-8"]["val_error"][-1], abs=1e-6)
    assert_png(result.figure)


def test_shortcut_rows_follow_table3(tiny_digits, tmp_path):
    result = shortcut_analysis(8, ("A", "B", "C", None), tiny_digits, TrainingSettings(epochs=1),
                               figure_path=tmp_path / "s.png", **TINY)
    assert [row["option"] for row in result.rows] == ["A", "B", "C", None]
    params = {row["option"]: row["params"] for row in result.rows}
    # A: no parameters in the shortcuts; B: projections at the two downsampling blocks; C: on every block.
    assert params[None] == params["A"] < params["B"] < params["C"]
    for row in result.rows:
        assert len(result.curves[row["name"]]["val_error"]) == 1
        assert row["val_error"] == result.curves[row["name"]]["val_error"][-1]
    assert result.table().count("\n") == 5 and "| resnet-8 B | B |" in result.table()
    assert_png(result.figure)


def test_shortcut_parameter_counts_match_the_reference():
    result_rows = {}
    for option in ("A", "B", "C"):
        model = ResNet(20, shortcut=option)
        result_rows[option] = model.count_params()
    assert result_rows == {"A": 271_098, "B": 274_042, "C": 286_010}  # REFERENCE.md


def test_response_layers_are_the_3x3_layers_in_order():
    labels = [label for label, _, _ in response_layers(ResNet(20))]
    assert len(labels) == 19  # the stem and two per block: the 6n + 1 3x3 layers of Fig. 7
    assert labels[:3] == ["stem", "stage1_block1/bn1", "stage1_block1/bn2"]
    assert labels[-1] == "stage3_block3/bn2"
    bottleneck = [label for label, _, _ in response_layers(ResNet(50, stem="imagenet", input_shape=(64, 64, 3)))]
    assert len(bottleneck) == 16 and all(label.endswith("/bn2") for label in bottleneck)  # the 7x7 stem is not 3x3
    with pytest.raises(ValueError, match="3x3"):
        response_layers(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))


@pytest.mark.parametrize("shortcut", ["A", "B", None])
def test_block_responses_reproduce_the_block(shortcut):
    """relu(bn2 response + shortcut) is the block's output, so the responses are the ones the model computes."""
    model = ResNet(8, shortcut=shortcut, input_shape=(16, 16, 3), **TINY)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    features = feature_extractor(model, {"inp": "stage2_block1", "out": "stage3_block1"})
    block = model.get_layer("stage3_block1")
    inputs = keras.Model(model.input, block.input)(x)
    responses = _block_responses(block, inputs)
    shortcut_value = 0.0 if block.shortcut_branch is None else block.shortcut_branch(inputs, training=False)
    rebuilt = keras.ops.relu(responses["bn2"] + shortcut_value)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rebuilt), features.predict(x, verbose=0)["out"], atol=1e-5)


@pytest.mark.parametrize("version", ["v1", "v1.5"])
def test_bottleneck_responses_reproduce_a_strided_block(version):
    """The stride sits on the 1x1 (v1) or the 3x3 (v1.5): bn2's response, carried through conv3/bn3 and the
    shortcut, is the block's output either way."""
    model = ResNet(block="bottleneck", stage_blocks=(1, 1), stage_filters=(4, 8), version=version,
                   input_shape=(16, 16, 3))
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 3)).astype("float32")
    block = model.get_layer("stage2_block1")
    assert block.strides == 2
    inputs = keras.Model(model.input, block.input)(x)
    r2 = _block_responses(block, inputs)["bn2"]
    out = block.bn3(block._apply_conv(block.conv3_pad, block.conv3, keras.ops.relu(r2)), training=False)
    rebuilt = keras.ops.relu(out + block.shortcut_branch(inputs, training=False))
    expected = keras.Model(model.input, block.output)(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rebuilt), keras.ops.convert_to_numpy(expected), atol=1e-5)


def test_layer_response_std_is_the_per_channel_std_averaged(tiny_digits):
    model = ResNet(8, input_shape=tiny_digits.image_shape, **TINY)
    images = tiny_digits.x_val[:20]
    profile = layer_responses(model, images, batch_size=7)  # statistics accumulated over three batches
    assert profile.layers[0] == "stem" and len(profile.std) == len(profile.layers) == 7
    stem = keras.Model(model.input, model.get_layer("stem_bn").output).predict(images, verbose=0)
    assert profile.std[0] == pytest.approx(float(stem.reshape(-1, stem.shape[-1]).std(axis=0).mean()), rel=1e-5)
    block = model.get_layer("stage2_block1")
    r1 = _block_responses(block, keras.Model(model.input, block.input)(images))["bn1"]
    r1 = keras.ops.convert_to_numpy(r1)
    index = profile.layers.index("stage2_block1/bn1")
    assert profile.std[index] == pytest.approx(float(r1.reshape(-1, r1.shape[-1]).std(axis=0).mean()), rel=1e-5)
    assert profile.sorted_std() == sorted(profile.std, reverse=True)


# The residual net's responses are smaller than its plain twin's on every seed tried (0-4) with these settings:
# by 0.029-0.039 in mean std over all 13 layers, 0.05-0.09 over the bn2 layers (the residual functions), with
# about 1% validation error. Shorter or hotter runs (2 epochs, learning rate 0.2-0.4) flip it on some seeds.
RESPONSE_SETTINGS = TrainingSettings(epochs=6, batch_size=32, learning_rate=0.1, seed=0)


@pytest.mark.slow  # 26 s on 2 cores; the default suite measures untrained responses in the tests above
def test_residual_responses_are_smaller_than_plain(digits_16, tmp_path):
    result = response_analysis((14,), digits_16, RESPONSE_SETTINGS, figure_path=tmp_path / "r.png",
                               stage_filters=(8, 16, 32))
    plain, residual = result.profiles["plain-14"], result.profiles["resnet-14"]
    assert len(plain.std) == len(residual.std) == 13 and plain.layers == residual.layers
    assert residual.mean() < plain.mean() - 0.01, (residual.mean(), plain.mean())
    bn2 = [i for i, label in enumerate(plain.layers) if label.endswith("/bn2")]
    assert np.mean(np.take(residual.std, bn2)) < np.mean(np.take(plain.std, bn2)) - 0.02
    assert max(result.val_error.values()) < 0.1  # both nets are trained
    assert_png(result.figure)


def _members():
    shape = (16, 16, 3)
    return [
        ResNet(8, input_shape=shape, **TINY),
        ResNet(8, input_shape=shape, classifier_activation=None, **TINY),  # logits: softmax added
        ResNet(14, input_shape=shape, shortcut="B", **TINY),
    ]


def test_ensemble_probabilities_are_the_mean_of_the_members():
    members = _members()
    ensemble = ensemble_model(members)
    x = np.random.default_rng(0).normal(size=(5, 16, 16, 3)).astype("float32")
    probabilities = [members[0].predict(x, verbose=0), keras.ops.convert_to_numpy(
        keras.ops.softmax(members[1].predict(x, verbose=0))), members[2].predict(x, verbose=0)]
    expected = np.mean(probabilities, axis=0)
    actual = ensemble.predict(x, verbose=0)
    np.testing.assert_allclose(actual, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(actual.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(member_probabilities(ensemble, x), np.stack(probabilities), atol=1e-6)
    # Two members named alike (both "resnet8") do not clash.
    assert sorted(layer.name for layer in ensemble.layers) == [
        "images", "member0_resnet8", "member1_resnet8", "member1_softmax", "member2_resnet14", "probabilities"]


def test_ensemble_round_trips_through_keras_safe_mode(tmp_path):
    ensemble = ensemble_model(_members())
    x = np.random.default_rng(1).normal(size=(3, 16, 16, 3)).astype("float32")
    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(restored.predict(x, verbose=0), ensemble.predict(x, verbose=0), atol=1e-6, rtol=0)
    assert restored.count_params() == ensemble.count_params() == sum(m.count_params() for m in _members())


def test_ensemble_rejects_bad_members():
    with pytest.raises(ValueError, match="at least two"):
        ensemble_model([ResNet(8)])
    with pytest.raises(ValueError, match="share input and output shapes"):
        ensemble_model([ResNet(8), ResNet(8, classes=5)])
    odd = ResNet(8, classifier_activation="sigmoid")
    with pytest.raises(ValueError, match="sigmoid"):
        ensemble_model([ResNet(8), odd])


def test_ensemble_analysis_trains_members_and_saves(tiny_digits, tmp_path):
    result = ensemble_analysis((8, 14), tiny_digits, TrainingSettings(epochs=1), figure_path=tmp_path / "e.png",
                               save_path=tmp_path / "e.keras", **TINY)
    assert [row["depth"] for row in result.members] == [8, 14]
    assert result.ensemble_params == sum(row["params"] for row in result.members)
    assert 0.0 <= result.ensemble_error <= 1.0
    restored = keras.saving.load_model(result.saved_path, safe_mode=True)
    assert restored.output_shape == (None, 10)
    assert "model" not in result.to_dict()
    assert_png(result.figure)


@pytest.mark.slow
def test_ensemble_exports_as_a_saved_model(tmp_path):
    import tensorflow as tf

    ensemble = ensemble_model(_members())
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype("float32")
    ensemble.export(str(tmp_path / "saved"), format="tf_saved_model")
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(x).numpy(), ensemble.predict(x, verbose=0), atol=1e-6)


@pytest.mark.slow
def test_ensemble_serves_raw_pixels_with_its_normalisation(tiny_digits, tmp_path):
    import tensorflow as tf

    from keras_vitres.export import export_saved_model

    ensemble = ensemble_model(_members())
    version_dir = export_saved_model(ensemble, str(tmp_path / "serving"), output="probabilities",
                                     preprocessing=tiny_digits.preprocessing)
    mean, std = np.array(tiny_digits.preprocessing["mean"]), np.array(tiny_digits.preprocessing["std"])
    raw = np.round(tiny_digits.x_val[:3] * std + mean).astype("float32")
    served = tf.saved_model.load(version_dir).signatures["serving_default"]
    probabilities = served(images=tf.constant(raw))["probabilities"].numpy()
    expected = ensemble.predict(((raw - mean) / std).astype("float32"), verbose=0)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
