"""make_pipeline: shapes, dtypes, augmentations (only when training), MixUp/CutMix labels, determinism."""

import sys

import keras
import numpy as np
import pytest

from keras_vitres.data import make_pipeline, pixel_mean


def _images(n=16, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 256, (n, size, size, 3), dtype=np.uint8)  # no zeros: padding shows up as zeros
    return x, np.arange(n, dtype=np.int64) % 10


def _collect(dataset):
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_evaluation_pipeline_keeps_order_and_values():
    x, y = _images(10)
    dataset = make_pipeline(x, y, batch_size=4, training=False, augment="cifar", mixup_alpha=0.0)
    assert dataset.element_spec[0].dtype.name == "float32" and dataset.element_spec[1].dtype.name == "int64"
    images, labels = _collect(dataset)
    assert [b[0].shape[0] for b in dataset.as_numpy_iterator()] == [4, 4, 2]
    np.testing.assert_array_equal(images, x.astype(np.float32))  # raw pixel units, no normalisation, no augmentation
    np.testing.assert_array_equal(labels, y)


def test_training_pipeline_shuffles_without_changing_images():
    x, y = _images(16)
    images, labels = _collect(make_pipeline(x, y, batch_size=5, training=True, seed=1))
    assert not np.array_equal(labels, y)
    order = [int(np.flatnonzero((x == im.astype(np.uint8)).all(axis=(1, 2, 3)))[0]) for im in images]
    assert sorted(order) == list(range(16))
    np.testing.assert_array_equal(labels, y[order])
    first, _ = _collect(make_pipeline(x, y, batch_size=16, training=True, drop_remainder=True, seed=1))
    assert first.shape == (16, 32, 32, 3)


def _shifted(image, dy, dx, pad=4):
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    h, w = image.shape[:2]
    return padded[pad + dy: pad + dy + h, pad + dx: pad + dx + w]


def test_cifar_augmentation_is_pad_crop_flip():
    x, y = _images(32)
    dataset = make_pipeline(x, y, batch_size=8, training=True, augment="cifar", shuffle_buffer=1, seed=3)
    images, labels = _collect(dataset)  # shuffle_buffer=1 keeps the order, so image i comes from x[i]
    assert images.shape == x.shape  # the crop keeps the size
    np.testing.assert_array_equal(labels, y)
    flips, shifts = 0, 0
    for source, out in zip(x.astype(np.float32), images):
        matches = [(dy, dx, flip) for dy in range(-4, 5) for dx in range(-4, 5) for flip in (False, True)
                   if np.array_equal(out, _shifted(source[:, ::-1] if flip else source, dy, dx))]
        assert matches, "every output must be a shifted (and maybe flipped) copy of its zero-padded source"
        flips += matches[0][2]
        shifts += matches[0][:2] != (0, 0)
    assert 6 <= flips <= 26 and shifts >= 24  # about half flipped, almost all shifted


@pytest.mark.parametrize("augment", ["cifar", "randaugment"])
def test_augmentation_only_when_training_and_reproducible(augment):
    x, y = _images(8)
    make = lambda training, seed=0: make_pipeline(  # noqa: E731
        x, y, batch_size=8, training=training, augment=augment, shuffle_buffer=1, seed=seed)
    evaluated, _ = _collect(make(False))
    np.testing.assert_array_equal(evaluated, x.astype(np.float32))
    trained = make(True)
    epoch1, _ = _collect(trained)
    epoch2, _ = _collect(trained)
    changed = [not np.array_equal(a, b) for a, b in zip(epoch1, x.astype(np.float32))]
    assert sum(changed) >= 6
    assert epoch1.min() >= 0.0 and epoch1.max() <= 255.0
    assert not np.array_equal(epoch1, epoch2)  # fresh randomness every epoch
    np.testing.assert_array_equal(_collect(make(True))[0], epoch1)  # the same seed gives the same batches
    if augment == "cifar":  # (one more RandAugment graph would cost seconds)
        assert not np.array_equal(_collect(make(True, seed=9))[0], epoch1)


@pytest.mark.parametrize("mixup_alpha, cutmix_alpha", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixup_cutmix_labels_match_the_mixed_pixels(mixup_alpha, cutmix_alpha):
    # Image c is the constant value 10 * (c + 1) and has class c, so a mixed image's mean must equal the
    # label-weighted mean of the sources: the labels say exactly how much of each image is in the mix.
    n = 8
    values = 10.0 * (np.arange(n) + 1)
    x = np.broadcast_to(values[:, None, None, None], (n, 16, 16, 3)).astype(np.uint8)
    y = np.arange(n, dtype=np.int64)
    dataset = make_pipeline(x, y, batch_size=n, training=True, num_classes=n, mixup_alpha=mixup_alpha,
                            cutmix_alpha=cutmix_alpha, seed=2)
    mixed = 0
    for _ in range(3):
        images, labels = next(iter(dataset.as_numpy_iterator()))
        assert labels.dtype == np.float32 and labels.shape == (n, n)
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-5)
        assert labels.min() >= 0.0
        np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), labels @ values, rtol=1e-4, atol=0.05)
        mixed += int((labels.max(axis=1) < 0.999).sum())
    assert mixed > 0
    eval_images, eval_labels = next(iter(make_pipeline(
        x, y, batch_size=n, training=False, num_classes=n, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)))
    np.testing.assert_array_equal(eval_labels.numpy(), np.eye(n, dtype=np.float32))  # one-hot, unmixed
    np.testing.assert_array_equal(eval_images.numpy(), x.astype(np.float32))


def test_mixup_is_reproducible():
    x, y = _images(8)
    make = lambda: make_pipeline(x, y, batch_size=4, training=True, num_classes=10, mixup_alpha=0.5, seed=4)  # noqa
    a, b = _collect(make()), _collect(make())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_one_hot_and_image_size():
    x, y = _images(6)
    images, labels = next(iter(make_pipeline(x, y, batch_size=6, training=False, num_classes=10, one_hot=True,
                                             image_size=(48, 40))))
    assert images.shape == (6, 48, 40, 3) and labels.shape == (6, 10)
    np.testing.assert_array_equal(np.argmax(labels, axis=1), y)
    assert 0.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 255.0


def test_augmenter_hook_runs_on_training_batches_only():
    x, y = _images(4)
    invert = lambda images: 255.0 - images  # noqa: E731
    trained, _ = _collect(make_pipeline(x, y, batch_size=4, training=True, augmenter=invert, shuffle_buffer=1))
    evaluated, _ = _collect(make_pipeline(x, y, batch_size=4, training=False, augmenter=invert))
    np.testing.assert_array_equal(trained, 255.0 - x)
    np.testing.assert_array_equal(evaluated, x.astype(np.float32))


def test_fits_a_model():
    x, y = _images(16, size=8)
    dataset = make_pipeline(x, y, batch_size=8, training=True, num_classes=10, augment="cifar", cutmix_alpha=1.0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_errors_name_the_argument():
    x, y = _images(4)
    with pytest.raises(ValueError, match="augment='flip'"):
        make_pipeline(x, y, batch_size=2, training=True, augment="flip")
    with pytest.raises(ValueError, match="num_classes"):
        make_pipeline(x, y, batch_size=2, training=True, mixup_alpha=0.2)
    with pytest.raises(ValueError, match="batch_size=0"):
        make_pipeline(x, y, batch_size=0, training=True)
    with pytest.raises(ValueError, match="mixup_alpha=-1"):
        make_pipeline(x, y, batch_size=2, training=True, mixup_alpha=-1, num_classes=10)
    with pytest.raises(ValueError, match="outside 0..2"):
        make_pipeline(x, y, batch_size=2, training=True, num_classes=3, one_hot=True)
    with pytest.raises(ValueError, match="shape"):
        make_pipeline(x[0], y, batch_size=2, training=True)


def test_keras_cv_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_cv", None)  # import keras_cv now raises ImportError
    x, y = _images(4)
    with pytest.raises(ImportError, match=r"keras-vitres\[cv\]"):
        make_pipeline(x, y, batch_size=2, training=True, augment="keras_cv_randaugment")


def test_pixel_mean():
    x, _ = _images(5)
    mean = pixel_mean(x)
    assert mean.dtype == np.float32 and mean.shape == (32, 32, 3)
    np.testing.assert_allclose(mean, x.astype(np.float64).sum(axis=0) / 5, rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        pixel_mean(x[0])
