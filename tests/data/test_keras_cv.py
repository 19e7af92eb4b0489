"""keras-cv's RandAugment in the pipeline (the optional `cv` extra)."""

import numpy as np
import pytest

from keras_vitres.data import make_pipeline

keras_cv = pytest.importorskip("keras_cv")

# CI's third step runs these, with the optional extras installed (without them they skip).
pytestmark = pytest.mark.extras


def test_keras_cv_randaugment_runs_in_the_pipeline():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    y = np.arange(8, dtype=np.int64)
    dataset = make_pipeline(x, y, batch_size=4, training=True, num_classes=8, augment="keras_cv_randaugment",
                            mixup_alpha=0.2, shuffle_buffer=1, seed=0)
    images, labels = next(iter(dataset.as_numpy_iterator()))
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.float32 and labels.shape == (4, 8)
    assert 0.0 <= images.min() and images.max() <= 255.0
    assert not np.allclose(images, x[:4].astype(np.float32))
    evaluated, _ = next(iter(make_pipeline(x, y, batch_size=4, training=False, augment="keras_cv_randaugment")))
    np.testing.assert_array_equal(evaluated.numpy(), x[:4].astype(np.float32))
