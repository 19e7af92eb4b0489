"""Training-time augmentations of the two papers, for tf.data pipelines on raw [0, 255] float32 pixels.

- "cifar": the ResNet paper's §4.2 recipe (after Lee et al. 2015): pad 4 zero pixels on each side, take a random
  crop of the original size, flip horizontally with probability 1/2.
- "randaugment": `keras.layers.RandAugment` (Cubuk et al. 2020), the ViT-from-scratch recipes' augmentation
  (Steiner et al. 2021, "How to train your ViT"), applied to each image so each gets its own operations.
- "keras_cv_randaugment": keras-cv's `RandAugment`, when the optional `cv` extra is installed.
- "random_resized_crop": the Inception crop plus a horizontal flip (`geometry.random_resized_crop`), taken from the
  image at its own size: the fine-tuning recipes' augmentation (arXiv:2010.11929 App. B.1.1).
- `random_shift`: random translations of whole batches, zero-filled (the digits recipes: digits must not be
  flipped, so the "cifar" crop-and-flip does not fit them).
- MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019): `keras.layers.MixUp` and `ExactAreaCutMix` below (the
  core layer with the paper's Beta(alpha, alpha) ratio and exact-area labels) on batches with one-hot labels; with
  both on, each batch gets one of them with probability 1/2 (as timm does).
"""

import keras

from keras_vitres.layers.former_names import register_former_name

AUGMENTS = ("none", "cifar", "randaugment", "keras_cv_randaugment", "random_resized_crop")
CV_EXTRA_HINT = "pip install keras-vitres[cv]"


def cifar_augment(image, seed, padding=4):
    """Pads a float (H, W, C) `image` with `padding` zero pixels on each side, crops back to its size at a random
    offset and flips it at random (arXiv:1512.03385 §4.2), with stateless random ops keyed by the image's (2,)
    `seed`: reproducible under a parallel tf.data map."""
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2))
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    image = tf.image.stateless_random_crop(padded, shape, seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def randaugment_layer(seed):
    """Core Keras' RandAugment on raw pixels: 2 operations per image at factor 0.5 (Keras' defaults)."""
    return keras.layers.RandAugment(value_range=(0, 255), seed=seed)


def keras_cv_randaugment_layer(seed):
    """keras-cv's RandAugment on raw pixels (2 operations per image, magnitude 0.5); needs the `cv` extra."""
    try:
        import keras_cv
    except ImportError as error:
        raise ImportError(
            "augment='keras_cv_randaugment' needs keras-cv, an optional extra: `" + CV_EXTRA_HINT + "` "
            "(or use augment='randaugment', core Keras' layer)."
        ) from error
    return keras_cv.layers.RandAugment(value_range=(0, 255), augmentations_per_image=2, magnitude=0.5, seed=seed)


@keras.saving.register_keras_serializable(package="keras_vitres")
class ExactAreaCutMix(keras.layers.CutMix):
    """`keras.layers.CutMix` with the CutMix paper's mixing ratio and exact label weights (arXiv:1905.04899, §3.1).

    Two changes to the core layer: the ratio is drawn from Beta(alpha, alpha) for a fixed `alpha` (the core layer
    draws alpha itself uniformly from [0, factor] per batch, and caps it at 1), and each label's weight is the
    fraction of pixels actually pasted, as the paper's "adjust lambda to the exact area" (and timm) do. The core
    layer weights labels by the unrounded box area, which on a 32x32 image can be off by several percent.

    Args:
        alpha: float > 0. Beta(alpha, alpha) concentration of the kept-area ratio; 1 is the paper's uniform ratio.
        seed: optional int.
    """

    def __init__(self, alpha=1.0, seed=None, **kwargs):
        kwargs.pop("factor", None)
        super().__init__(factor=1.0, seed=seed, **kwargs)
        self.alpha = alpha
        self.factor = (float(alpha), float(alpha))  # the core layer samples alpha from U(factor): fixed here

    def transform_labels(self, labels, transformation, training=True):
        if training and transformation is not None:
            masks = self.backend.cast(transformation["batch_masks"], self.compute_dtype)
            pasted = self.backend.numpy.mean(masks, axis=(1, 2, 3))
            transformation = dict(transformation, mix_weight=1.0 - pasted)
        return super().transform_labels(labels, transformation, training=training)

    def get_config(self):
        config = super().get_config()
        config.pop("factor", None)
        config["alpha"] = self.alpha
        return config


# Files saved before the rename (keras-vitres 0.1.0) name this class "keras_vitres>CutMix".
register_former_name(ExactAreaCutMix, "CutMix")


class LabelMixer:
    """Applies MixUp and/or CutMix (each off at an alpha of 0) to a batch of (images, one-hot labels)."""

    def __init__(self, mixup_alpha, cutmix_alpha, seed):
        self.mixup = keras.layers.MixUp(alpha=mixup_alpha, seed=seed) if mixup_alpha > 0 else None
        self.cutmix = ExactAreaCutMix(alpha=cutmix_alpha, seed=seed + 1) if cutmix_alpha > 0 else None

    @staticmethod
    def _apply(layer, images, labels):
        out = layer({"images": images, "labels": labels}, training=True)
        return out["images"], out["labels"]

    def __call__(self, images, labels, switch_seed):
        import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

        if self.mixup is not None and self.cutmix is not None:
            use_mixup = tf.random.stateless_uniform([], seed=switch_seed) < 0.5
            return tf.cond(
                use_mixup,
                lambda: self._apply(self.mixup, images, labels),
                lambda: self._apply(self.cutmix, images, labels),
            )
        return self._apply(self.mixup or self.cutmix, images, labels)


def random_shift(dataset, max_fraction, image_size, seed):
    """Shifts every image of a batched (images, labels, ...) dataset of `image_size` images by up to `max_fraction`
    (in [0, 0.5)) of its height and width, zero-filled: pad, then crop back at a random offset.

    The offsets come from stateless random ops keyed by a stream seeded by `seed`, so they depend only on the seed
    and the pass over the data: a resumed run, or a first iterator that Keras opens and drops, does not change them
    (a stateful `keras.layers.RandomTranslation` would).
    """
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    height, width = image_size
    channels = dataset.element_spec[0].shape[-1]
    pad_h, pad_w = max(1, round(max_fraction * height)), max(1, round(max_fraction * width))
    seeds = tf.data.Dataset.random(seed=seed + 7919, rerandomize_each_iteration=True).batch(2)

    def shift(batch, batch_seed):
        images = tf.pad(batch[0], [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])

        def crop(index):
            key = tf.cast(batch_seed, tf.int64) + tf.stack([tf.constant(0, tf.int64), tf.cast(index, tf.int64)])
            return tf.image.stateless_random_crop(images[index], [height, width, channels], seed=key)

        shifted = tf.map_fn(crop, tf.range(tf.shape(images)[0]), fn_output_signature=images.dtype)
        return (shifted, *batch[1:])

    return tf.data.Dataset.zip(dataset, seeds).map(shift, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
