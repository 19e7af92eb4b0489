"""How an image of any size becomes a model input: the evaluation crop, and the training random-resized crop.

- `resize_and_crop` (evaluation, serving): resize so that the image covers `image_size / crop_fraction`, keeping
  its aspect ratio (for a square input size: the shorter side becomes `size / crop_fraction`), then take the
  central `image_size`. With `crop_fraction=0.875` a 224 model sees the centre 224 of a 256 resize, the ImageNet
  evaluation of the ResNet paper (arXiv:1512.03385 §3.4, "the shorter side ... 224 crop") and timm's `crop_pct`.
  An image that already has `image_size` and a crop fraction of 1 is returned as it is, pixel for pixel.
- `random_resized_crop` (training): a random area fraction and aspect ratio of the image, resized to
  `image_size`, then a random horizontal flip: the Inception crop (Szegedy et al. 2015, arXiv:1409.4842 §6) that
  the ResNet and ViT papers' ImageNet training and ViT fine-tuning use (arXiv:2010.11929 App. B.1.1).

Both run on float32 (H, W, C) tensors in a tf.data graph; the export's bytes signature calls `resize_and_crop`, so a
served model sees exactly what evaluation saw.
"""

DEFAULT_AREA_RANGE = (0.08, 1.0)  # torchvision's RandomResizedCrop and big_vision's inception_crop (0.05)
ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)


def check_crop_fraction(crop_fraction):
    """Returns `crop_fraction` as a float in (0, 1], or raises naming the value."""
    if isinstance(crop_fraction, bool) or not isinstance(crop_fraction, (int, float)) or not 0 < crop_fraction <= 1:
        raise ValueError(f"`crop_fraction` must be a number in (0, 1]; received crop_fraction={crop_fraction!r}.")
    return float(crop_fraction)


def check_area_range(area_range):
    """Returns `area_range` as a (low, high) float tuple with 0 < low <= high <= 1, or raises naming the value."""
    try:
        low, high = (float(v) for v in area_range)
        valid = 0 < low <= high <= 1 and not any(isinstance(v, bool) for v in area_range)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "`crop_area_range` must be (low, high) with 0 < low <= high <= 1, the fraction of the image area a "
            f"random-resized crop keeps; received crop_area_range={area_range!r}."
        )
    return low, high


def resize_and_crop(image, image_size, crop_fraction=1.0, method="bilinear", antialias=True):
    """Resizes a float32 (H, W, C) image to cover `image_size / crop_fraction` (aspect kept) with the
    `tf.image.resize` `method`, then takes the central (height, width) `image_size`."""
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    target_h, target_w = (int(s) for s in image_size)
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.maximum(target_h / (crop_fraction * height), target_w / (crop_fraction * width))
    new_h = tf.maximum(tf.cast(tf.round(height * scale), tf.int32), target_h)
    new_w = tf.maximum(tf.cast(tf.round(width * scale), tf.int32), target_w)
    same = tf.logical_and(tf.equal(new_h, shape[0]), tf.equal(new_w, shape[1]))
    resized = tf.cond(same, lambda: image,
                      lambda: tf.image.resize(image, tf.stack([new_h, new_w]), method=method, antialias=antialias))
    top, left = (new_h - target_h) // 2, (new_w - target_w) // 2
    cropped = resized[top : top + target_h, left : left + target_w]
    return tf.ensure_shape(cropped, (target_h, target_w, image.shape[-1]))


def random_resized_crop(image, seed, image_size, area_range=DEFAULT_AREA_RANGE, method="bilinear", flip=True):
    """A random crop of `area_range` (low, high) of a float32 (H, W, C) image's area and an aspect ratio in
    [3/4, 4/3], resized to `image_size` with `method` and, with `flip`, flipped left-right with probability 1/2;
    stateless: the same (2,) `seed` gives the same crop."""
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed,
        min_object_covered=0.0, aspect_ratio_range=ASPECT_RATIO_RANGE, area_range=tuple(area_range),
        max_attempts=10, use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, size)
    crop = tf.image.resize(crop, tuple(int(s) for s in image_size), method=method, antialias=True)
    if flip:
        crop = tf.image.stateless_random_flip_left_right(crop, seed=flip_seed)
    return tf.ensure_shape(crop, (*(int(s) for s in image_size), image.shape[-1]))
