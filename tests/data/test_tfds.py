"""TFDS names (tensorflow_datasets is optional), on TFDS' own mock data: nothing is downloaded."""

import numpy as np
import pytest

# CI's third step runs these, with the optional extras installed (without them they skip).
pytestmark = pytest.mark.extras


def test_tfds_name_loads_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    from keras_vitres.data import load_dataset

    with tfds.testing.mock_data(num_examples=12):
        data = load_dataset("tfds:mnist", validation_size=2, image_size=16)
    assert (len(data.train[1]), len(data.validation[1]), len(data.test[1])) == (10, 2, 12)
    assert data.train[0].shape == (10, 16, 16, 3) and data.train[0].dtype == np.uint8
    assert data.class_names == [str(i) for i in range(10)]
