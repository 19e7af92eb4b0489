"""Our ViT learns the digits as well as a ViT written from core Keras layers (the shared set-up:
`tests.training.digits_references`)."""

import pytest

from tests.training.digits_references import VIT, VIT_TRAINING, ours_vit, reference_vit, train_and_score


@pytest.mark.slow
def test_vit_learns_the_digits_as_well_as_a_plain_keras_vit(digits_data):
    assert ours_vit().count_params() == reference_vit((32, 32, 3), 10, **VIT).count_params()
    ours, _, _ = train_and_score(ours_vit, digits_data, **VIT_TRAINING)
    reference, _, _ = train_and_score(lambda: reference_vit((32, 32, 3), 10, **VIT), digits_data, **VIT_TRAINING)
    assert ours >= 0.90, (ours, reference)
    assert ours >= reference - 0.02, (ours, reference)
