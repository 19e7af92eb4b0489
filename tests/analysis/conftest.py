"""Small, offline data for the analysis tests: the embedded digits, 16x16, seeded subsets."""

import pytest

from keras_vitres.analysis import load_analysis_data


@pytest.fixture(scope="session")
def tiny_digits():
    """256 training and 64 validation digits at 16x16: enough for curves and shapes, seconds to train on."""
    return load_analysis_data("digits", image_size=16, train_size=256, val_size=64)


@pytest.fixture(scope="session")
def digits_16():
    """All 1,437 training digits at 16x16 and 128 validation digits: enough for trained-network comparisons."""
    return load_analysis_data("digits", image_size=16, val_size=128)


def assert_png(path):
    """The file exists, is a PNG and is not empty."""
    with open(path, "rb") as f:
        header = f.read(8)
        size = len(header) + len(f.read())
    assert header == b"\x89PNG\r\n\x1a\n", path
    assert size > 1000, (path, size)
