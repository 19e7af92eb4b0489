"""Our ResNet-20 learns the digits as well as a ResNet-20 written from core Keras layers (the shared set-up:
`tests.training.digits_references`)."""

import numpy as np
import pytest

from tests.training.digits_references import RESNET_TRAINING, ours_resnet20, reference_resnet20, train_and_score


@pytest.mark.slow
def test_resnet20_learns_the_digits_as_well_as_a_plain_keras_resnet20(digits_data):
    reference_model = reference_resnet20((32, 32, 3), 10)
    trainable = sum(int(np.prod(w.shape)) for w in reference_model.trainable_weights)
    assert (reference_model.count_params(), trainable) == (271_098, 269_722)  # shared/REFERENCE.md, ResNet-20
    assert ours_resnet20().count_params() == reference_model.count_params()
    ours, _, _ = train_and_score(ours_resnet20, digits_data, **RESNET_TRAINING)
    reference, _, _ = train_and_score(lambda: reference_resnet20((32, 32, 3), 10), digits_data, **RESNET_TRAINING)
    assert ours >= 0.97, (ours, reference)
    assert ours >= reference - 0.02, (ours, reference)
