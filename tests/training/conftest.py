"""Fixtures shared by the training tests."""

import pytest


@pytest.fixture(scope="module")
def digits_data():
    """The digits split of the reference comparisons (`tests.training.digits_references.digits`)."""
    from tests.training.digits_references import digits

    return digits()
