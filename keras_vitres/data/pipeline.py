"""tf.data input pipelines for `model.fit`, and the per-pixel mean of the ResNet paper.

A training pipeline: cache the source -> shuffle -> per image: decode, float32, resize or crop, "cifar" crop/flip
or RandAugment -> batch -> per batch: the `augmenter`, keras-cv RandAugment, one-hot labels, MixUp/CutMix ->
prefetch. Images stay in raw pixels [0, 255]: normalising is the model's preprocessing layer's job, so a saved model
takes raw pixels.
"""

import dataclasses

import numpy as np

from keras_vitres.data.augment import (
    AUGMENTS,
    LabelMixer,
    cifar_augment,
    keras_cv_randaugment_layer,
    randaugment_layer,
)
from keras_vitres.data.checks import check_positive_int
from keras_vitres.data.folder import check_image_size, decode_image
from keras_vitres.data.geometry import (
    DEFAULT_AREA_RANGE,
    check_area_range,
    check_crop_fraction,
    random_resized_crop,
    resize_and_crop,
)


def pixel_mean(x):
    """Returns the per-pixel mean image of `x`, float32 (H, W, C) (arXiv:1512.03385 §4.2: "the per-pixel mean
    subtracted"), accumulated in float64.

    Args:
        x: array (N, H, W, C) of training images.
    """
    x = np.asarray(x)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"`x` must be a non-empty batch of images (N, H, W, C); received x of shape {x.shape}.")
    return x.mean(axis=0, dtype=np.float64).astype(np.float32)


def _check_alpha(value, name):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"`{name}` must be a float >= 0 (0 turns it off); received {name}={value!r}.")
    return float(value)


def is_file_list(x):
    """Whether `x` is a 1-D array of image file paths (a streamed folder, see `load_dataset(..., stream=True)`)."""
    return isinstance(x, np.ndarray) and x.ndim == 1 and x.dtype.kind in "UO"


def _source(x, y, num_classes):
    """Returns (unbatched tf.data.Dataset of (image or file path, int64 label), number of examples or None)."""
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    if is_file_list(x):
        y = np.asarray(y)
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"`y` must be integer class labels of shape ({len(x)},); received y of shape {y.shape}.")
        paths = tf.constant([str(f) for f in x], dtype=tf.string)
        return tf.data.Dataset.from_tensor_slices((paths, y.astype(np.int64))), len(x)

    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError("`y` must be None when `x` is a tf.data.Dataset of (image, label) pairs.")
        spec = x.element_spec
        if not (isinstance(spec, tuple) and len(spec) == 2 and spec[0].shape.rank == 3):
            raise ValueError(
                "`x` as a tf.data.Dataset must yield unbatched (image (H, W, C), label) pairs; received element_spec="
                f"{spec!r}."
            )
        cardinality = int(x.cardinality())
        return x.map(lambda im, lab: (im, tf.cast(lab, tf.int64))), (cardinality if cardinality > 0 else None)
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 4:
        raise ValueError(f"`x` must be images of shape (N, H, W, C); received x of shape {x.shape}.")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"`y` must be integer class labels of shape ({len(x)},); received y of shape {y.shape} and dtype {y.dtype}."
        )
    if num_classes is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"`y` has labels in [{y.min()}, {y.max()}], outside 0..{num_classes - 1} for num_classes={num_classes}."
        )
    return tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64))), len(x)


def make_pipeline(x, y=None, *, batch_size, training, num_classes=None, augment="none", augmenter=None,
                  mixup_alpha=0.0, cutmix_alpha=0.0, image_size=None, one_hot=False, shuffle_buffer=None, seed=0,
                  cache=True, drop_remainder=False, crop_padding=4, deterministic=True, crop_fraction=None,
                  interpolation="bilinear", crop_area_range=DEFAULT_AREA_RANGE):
    """Builds a batched, prefetched tf.data.Dataset of (float32 images in [0, 255], labels) for `model.fit`.

    Args:
        x: uint8 (or float) images (N, H, W, C), an unbatched tf.data.Dataset of (image, label) (then `y` is None),
            or a 1-D array of image file paths, read and decoded after the shuffle so that the images never all sit
            in memory (they may differ in size and format: `image_size` is then required).
        y: int class labels (N,).
        batch_size: int. Examples per batch.
        training: bool. True shuffles and augments; False keeps the order and applies no randomness.
        num_classes: int. Needed for one-hot labels (`one_hot`, MixUp, CutMix); also checks the labels' range.
        augment: one of `AUGMENTS` (see `keras_vitres.data.augment`), applied only when `training`;
            "random_resized_crop" takes the crop of `crop_area_range` from the image at its own size, in place of
            the resize.
        augmenter: optional callable (e.g. Keras preprocessing layers) on each batch of float32 images when
            `training`, after `augment`.
        mixup_alpha, cutmix_alpha: float >= 0. MixUp (`keras.layers.MixUp`) and CutMix (`augment.ExactAreaCutMix`)
            on training batches, 0 is off; with both on, each batch gets one of the two with probability 1/2.
        image_size: optional int or (height, width) to resize to (antialiased when shrinking).
        crop_fraction: None resizes to `image_size` as it is (stretching); a float in (0, 1] resizes to cover
            `image_size / crop_fraction`, keeping the aspect ratio, and takes the centre (`geometry.resize_and_crop`,
            the evaluation crop of a `Preprocessing`, which the export's bytes signature takes too).
        interpolation: the `tf.image.resize` method of every resize.
        one_hot: bool. Float32 one-hot labels (num_classes,), which MixUp and CutMix also give, in training and
            evaluation pipelines alike, so one loss fits both.
        shuffle_buffer: optional int. Default: the whole dataset (or 10,000 for a dataset of unknown size).
        seed: int. Seeds the shuffle and every augmentation: the same seed gives the same batches.
        cache: True caches the source (decoded images, before any resize) in memory, a str in that file, False not.
        drop_remainder: bool. Drop the last incomplete batch.
        crop_padding: int. Zero padding on each side for augment="cifar".
        deterministic: bool. True runs the Keras/keras-cv random layers in a sequential map, so a seed reproduces
            the batches exactly; False runs them in parallel (faster on many cores, not reproducible).

    Returns:
        A tf.data.Dataset of (images float32 (B, H, W, C), labels int64 (B,) or float32 (B, num_classes)).
    """
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    options = _Options(batch_size=batch_size, training=training, num_classes=num_classes, augment=augment,
                       augmenter=augmenter, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, image_size=image_size,
                       one_hot=one_hot, shuffle_buffer=shuffle_buffer, seed=seed, cache=cache,
                       drop_remainder=drop_remainder, crop_padding=crop_padding, deterministic=deterministic,
                       crop_fraction=crop_fraction, interpolation=interpolation, crop_area_range=crop_area_range)
    if options.image_size is None and (is_file_list(x) or options.random_resized_crop):
        raise ValueError("`image_size` is required for image files (they may differ in size) and for "
                         "augment='random_resized_crop'; received image_size=None.")
    # The keras-cv import is checked up front, in evaluation pipelines too, so a missing extra fails early.
    cv_layer = keras_cv_randaugment_layer(options.seed) if augment == "keras_cv_randaugment" else None
    dataset, size = _source(x, y, options.num_classes)
    if cache:
        dataset = dataset.cache() if cache is True else dataset.cache(cache)
    if training:
        dataset = dataset.shuffle(shuffle_buffer or size or 10_000, seed=options.seed, reshuffle_each_iteration=True)
    dataset = _per_image(dataset, options, files=is_file_list(x))
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return _per_batch(dataset, options, cv_layer).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class _Options:
    """`make_pipeline`'s options, checked (each error names the argument) and normalised."""

    batch_size: int
    training: bool
    num_classes: int | None
    augment: str
    augmenter: object
    mixup_alpha: float
    cutmix_alpha: float
    image_size: tuple | None
    one_hot: bool
    shuffle_buffer: int | None
    seed: int
    cache: object
    drop_remainder: bool
    crop_padding: int
    deterministic: bool
    crop_fraction: float | None
    interpolation: str
    crop_area_range: tuple

    def __post_init__(self):
        check_positive_int("batch_size", self.batch_size)
        if not isinstance(self.training, bool):
            raise TypeError(f"`training` must be a bool; received training={self.training!r}.")
        if self.augment not in AUGMENTS:
            raise ValueError(f"`augment` must be one of {AUGMENTS}; received augment={self.augment!r}.")
        if self.augmenter is not None and not callable(self.augmenter):
            raise TypeError("`augmenter` must be None or a callable on a batch of images; received "
                            f"augmenter={self.augmenter!r}.")
        check_positive_int("shuffle_buffer", self.shuffle_buffer, allow_none=True)
        check_positive_int("num_classes", self.num_classes, allow_none=True)
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise TypeError(f"`seed` must be an int; received seed={self.seed!r}.")
        if not isinstance(self.crop_padding, int) or isinstance(self.crop_padding, bool) or self.crop_padding < 0:
            raise ValueError(f"`crop_padding` must be an int >= 0; received crop_padding={self.crop_padding!r}.")
        if not isinstance(self.cache, (bool, str)):
            raise TypeError(f"`cache` must be a bool or a cache file path; received cache={self.cache!r}.")
        normalised = dict(
            mixup_alpha=_check_alpha(self.mixup_alpha, "mixup_alpha"),
            cutmix_alpha=_check_alpha(self.cutmix_alpha, "cutmix_alpha"),
            image_size=check_image_size(self.image_size),
            crop_fraction=None if self.crop_fraction is None else check_crop_fraction(self.crop_fraction),
            crop_area_range=check_area_range(self.crop_area_range),
            seed=int(self.seed),
        )
        for field, value in normalised.items():
            object.__setattr__(self, field, value)
        if self.one_hot_labels and self.num_classes is None:
            raise ValueError("`num_classes` is required for one-hot labels (one_hot=True, mixup_alpha > 0 or "
                             "cutmix_alpha > 0); received num_classes=None.")

    @property
    def one_hot_labels(self):
        return bool(self.one_hot) or self.mixup_alpha > 0 or self.cutmix_alpha > 0

    @property
    def random_resized_crop(self):
        return self.training and self.augment == "random_resized_crop"

    def random_map(self, autotune):
        """The map options of the random Keras layers: they draw from one seed generator, so only a sequential map
        makes their draws reproducible."""
        return {} if self.deterministic else {"num_parallel_calls": autotune, "deterministic": False}


def _per_image(dataset, options, files):
    """Decodes image files (after the shuffle: only the prefetched ones are in memory), converts to float32 and
    resizes or crops, then applies the per-image augmentations of `options.augment` when training."""
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    size, method = options.image_size, options.interpolation
    if files:
        dataset = dataset.map(lambda path, label: (decode_image(tf.io.read_file(path)), label), **parallel)

    def prepare(image, label):
        image = tf.cast(image, tf.float32)
        if options.crop_fraction is not None:
            image = resize_and_crop(image, size, options.crop_fraction, method=method)
        elif size is not None:
            image = tf.image.resize(image, size, method=method, antialias=True)
        return image, label

    if options.random_resized_crop:
        seeds = tf.data.Dataset.random(seed=options.seed + 3, rerandomize_each_iteration=True).batch(2)
        return tf.data.Dataset.zip(dataset, seeds).map(lambda pair, s: (random_resized_crop(
            tf.cast(pair[0], tf.float32), s, size, options.crop_area_range, method=method), pair[1]), **parallel)
    dataset = dataset.map(prepare, **parallel)
    if options.training and options.augment == "cifar":
        # A fresh (2,) seed per image, different every epoch and fixed by `seed`.
        seeds = tf.data.Dataset.random(seed=options.seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda pair, s: (cifar_augment(pair[0], s, options.crop_padding), pair[1]), **parallel)
    elif options.training and options.augment == "randaugment":
        layer = randaugment_layer(options.seed)
        dataset = dataset.map(lambda image, label: (tf.clip_by_value(layer(image), 0.0, 255.0), label),
                              **options.random_map(tf.data.AUTOTUNE))  # fmt: skip
    return dataset


def _per_batch(dataset, options, cv_layer):
    """The per-batch stages: the `augmenter` and keras-cv RandAugment (training), one-hot labels, MixUp/CutMix."""
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    augmenter = options.augmenter
    if options.training and (augmenter is not None or cv_layer is not None):
        def augment_batch(images, labels):
            if augmenter is not None:
                images = tf.cast(augmenter(images), tf.float32)
            if cv_layer is not None:
                images = tf.clip_by_value(tf.cast(cv_layer(images), tf.float32), 0.0, 255.0)
            return images, labels

        dataset = dataset.map(augment_batch, **options.random_map(tf.data.AUTOTUNE))
    if options.one_hot_labels:
        one_hot = lambda images, labels: (images, tf.one_hot(labels, options.num_classes, dtype=tf.float32))  # noqa: E731
        dataset = dataset.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if options.training and (options.mixup_alpha > 0 or options.cutmix_alpha > 0):
        mixer = LabelMixer(options.mixup_alpha, options.cutmix_alpha, options.seed)
        switch_seeds = tf.data.Dataset.random(seed=options.seed + 2, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, switch_seeds).map(lambda batch, s: mixer(batch[0], batch[1], s),
                                                                 **options.random_map(tf.data.AUTOTUNE))  # fmt: skip
    return dataset
