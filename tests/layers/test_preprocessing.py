"""The one preprocessing description (`Preprocessing`) and the layer that applies it (`ImagePreprocessing`)."""

import keras
import numpy as np
import pytest

from keras_vitres.layers import PREPROCESSING_CONVENTIONS, ImagePreprocessing, Preprocessing, find_preprocessing
from tests.helpers import assert_close

RAW = np.random.default_rng(0).uniform(0, 255, size=(2, 4, 5, 3)).astype("float32")
PER_PIXEL_MEAN = np.random.default_rng(1).uniform(0, 255, size=(4, 5, 3))


def test_the_description_round_trips_through_dicts_and_json():
    description = Preprocessing(image_size=(4, 5), mean=PER_PIXEL_MEAN, std=2.0, interpolation="bicubic",
                                crop_fraction=0.875)
    assert Preprocessing.from_dict(description.to_dict()) == description
    assert Preprocessing.from_json(description.to_json()) == description
    assert set(description.to_dict()) == set(Preprocessing.fields())
    assert Preprocessing.resolve("caffe").to_dict(compact=True) == {"channel_order": "bgr",
                                                                      "mean": [103.939, 116.779, 123.68]}
    assert Preprocessing().to_dict(compact=True) == {} and Preprocessing.resolve(None).is_identity
    assert Preprocessing(image_size=8).image_size == (8, 8) and description.per_pixel_mean
    assert hash(description) == hash(Preprocessing.from_dict(description.to_dict()))


def test_formulas_say_what_is_computed():
    assert Preprocessing.resolve("inception").formula() == "x * 0.00784314 - 1"
    assert Preprocessing(mean=PER_PIXEL_MEAN).formula() == "x - mean (per pixel and channel)"
    assert Preprocessing(mean=[1, 2, 3], std=128).formula() == "(x - mean (per channel)) / 128"
    assert Preprocessing.resolve("caffe").formula() == "x[..., ::-1] - mean (per channel)"


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("name", [*PREPROCESSING_CONVENTIONS, "per_pixel_mean"])
def test_the_layer_applies_the_description_and_saves_it_as_its_config(name, tmp_path):
    description = Preprocessing(mean=PER_PIXEL_MEAN) if name == "per_pixel_mean" else Preprocessing.resolve(name)
    bgr = RAW[..., ::-1]
    mean = PER_PIXEL_MEAN if name == "per_pixel_mean" else np.asarray(description.mean)
    by_hand = ((bgr if description.channel_order == "bgr" else RAW) * description.scale + description.offset
               - mean) / np.asarray(description.std)
    # A multiply-add, a subtraction and a division per value: a few roundings (measured 1.3 ulps).
    assert_close(description.apply_numpy(RAW), by_hand, 8, name="numpy")
    inputs = keras.Input((4, 5, 3))
    model = keras.Model(inputs, description.layer(name="preprocessing", dtype="float32")(inputs))
    assert_close(model.predict(RAW, verbose=0), by_hand, 8, name="layer")
    config = model.get_layer("preprocessing").get_config()
    assert Preprocessing.from_dict({k: config[k] for k in Preprocessing.fields()}) == description
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert find_preprocessing(loaded).preprocessing == description
    assert_close(loaded.predict(RAW, verbose=0), by_hand, 8, name="reloaded")


def test_the_layer_stays_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    layer = Preprocessing(mean=[100.0, 110.0, 120.0]).layer(dtype="float32")
    keras.config.set_dtype_policy("float32")
    out = layer(RAW)
    assert layer.compute_dtype == "float32" and keras.backend.standardize_dtype(out.dtype) == "float32"


@pytest.mark.parametrize(
    "bad, match",
    [
        ("nonsense", "one of"),
        ({"shift": 1}, "unknown keys"),
        ({"std": 0}, "positive"),
        ({"scale": 0}, "must not be 0"),
        ({"channel_order": "gbr"}, "'rgb' or 'bgr'"),
        ({"crop_fraction": 1.5}, r"\(0, 1\]"),
        ({"interpolation": "cubic"}, "interpolation"),
        ({"image_size": (0, 3)}, "image_size"),
        ({"std": [[1.0, 1.0, 1.0]]}, "std"),
        (3, "must be None, a preset name"),
    ],
)
def test_bad_descriptions_are_named_errors(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Preprocessing.resolve(bad)


def test_channels_and_the_per_pixel_mean_are_checked_against_the_model():
    with pytest.raises(ValueError, match="one per channel"):
        Preprocessing(mean=[1, 2]).check_channels(3)
    with pytest.raises(ValueError, match="needs 3 channels"):
        Preprocessing(channel_order="bgr").check_channels(1)
    with pytest.raises(ValueError, match="must match"):
        Preprocessing(image_size=(8, 8), mean=PER_PIXEL_MEAN).check_channels(3)
    with pytest.raises(ValueError, match="per-pixel mean"):
        ImagePreprocessing(mean=PER_PIXEL_MEAN)(np.zeros((1, 8, 8, 3), "float32"))
