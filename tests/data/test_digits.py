"""The embedded offline default: scikit-learn's handwritten digits at 32x32 RGB."""

import numpy as np
import pytest

from keras_vitres.data import DataSplits, list_datasets, load_dataset


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_shapes_dtypes_and_split_sizes(digits):
    assert isinstance(digits, DataSplits)
    (x, y), (xt, yt) = digits.train, digits.test
    assert x.shape == (1437, 32, 32, 3) and xt.shape == (360, 32, 32, 3)
    assert x.dtype == np.uint8 and y.dtype == np.int64 and yt.dtype == np.int64
    assert digits.validation is None
    assert digits.class_names == [str(i) for i in range(10)] and digits.image_shape == (32, 32, 3)
    assert "digits" in list_datasets()


def test_value_range_and_grey_rgb(digits):
    x = digits.train[0]
    assert x.min() == 0 and x.max() == 255  # 0..16 rescaled to the full 0..255 range
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    assert len(np.unique(x)) > 200  # bilinear upscaling makes intermediate grey levels


def test_split_is_stratified_and_disjoint(digits):
    counts = np.bincount(digits.test[1], minlength=10)
    assert counts.sum() == 360 and counts.min() >= 35 and counts.max() <= 37
    train_rows = {im.tobytes() for im in digits.train[0]}
    assert sum(im.tobytes() in train_rows for im in digits.test[0]) <= 2  # sklearn's digits hold ~1 duplicate


def test_deterministic(digits):
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.train[0], digits.train[0])
    np.testing.assert_array_equal(again.test[1], digits.test[1])


def test_images_are_real_digits(digits):
    (x, y), (xt, yt) = digits.train, digits.test
    means = np.stack([x[y == c].astype(np.float32).mean(axis=0) for c in range(10)])
    distances = np.linalg.norm((means[:, None] - means[None]).reshape(10, 10, -1), axis=-1)
    assert distances[~np.eye(10, dtype=bool)].min() > 500  # every class mean differs clearly from the others
    # A nearest-class-mean classifier fitted on train must recognise held-out digits: labels match the pictures.
    test = xt.astype(np.float32).reshape(len(xt), -1)
    predicted = np.argmin(((test[:, None] - means.reshape(1, 10, -1)) ** 2).sum(-1), axis=1)
    assert (predicted == yt).mean() > 0.85


def test_validation_split_and_image_size():
    data = load_dataset("digits", validation_size=137, seed=5, image_size=16)
    assert (len(data.train[1]), len(data.validation[1]), len(data.test[1])) == (1300, 137, 360)
    assert data.image_shape == (16, 16, 3)
    other = load_dataset("digits", validation_size=137, seed=6, image_size=16)
    assert not np.array_equal(data.validation[0], other.validation[0])
    np.testing.assert_array_equal(data.test[0], other.test[0])  # the test split never moves
    with pytest.raises(ValueError, match="validation_size"):
        load_dataset("digits", validation_size=0)
    with pytest.raises(ValueError, match="path"):
        load_dataset("digits", path="/somewhere")
