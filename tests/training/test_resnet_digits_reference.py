"""Our ResNet-20 learns the digits as well as a ResNet-20 written from core Keras layers (the shared set-up:
`tests.training.digits_references`)."""

import pytest

from tests.helpers import trainable_params
from tests.training.digits_references import (
    RESNET_IMAGE_SIZE,
    RESNET_TRAINING,
    downsample,
    ours_resnet20,
    plain_keras_resnet20,
    train_and_score,
)


@pytest.mark.slow
def test_resnet20_learns_the_digits_as_well_as_a_plain_keras_resnet20(digits_data):
    reference_model = plain_keras_resnet20()
    counts = (reference_model.count_params(), trainable_params(reference_model))
    assert counts == (271_098, 269_722)  # shared/REFERENCE.md, ResNet-20
    assert ours_resnet20().count_params() == reference_model.count_params()
    data = downsample(digits_data, RESNET_IMAGE_SIZE)
    ours, _, _ = train_and_score(ours_resnet20, data, **RESNET_TRAINING)
    reference, _, _ = train_and_score(plain_keras_resnet20, data, **RESNET_TRAINING)
    assert ours >= 0.97, (ours, reference)
    assert ours >= reference - 0.02, (ours, reference)
