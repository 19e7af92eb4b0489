"""What a recipe builds: the model (input -> preprocessing -> preset), its preprocessing, the learning-rate
schedule, the optimizer and the loss."""

import contextlib
import dataclasses
import inspect

import keras
import numpy as np

from keras_vitres.data.pipeline import is_file_list, make_pipeline, pixel_mean
from keras_vitres.layers.preprocessing import PREPROCESSING_CONVENTIONS as CONVENTIONS
from keras_vitres.layers.preprocessing import Preprocessing
from keras_vitres.presets.build import build_model, builder_of
from keras_vitres.training.schedules import StepDecay, Warmup

# Weight decay never applies to these (AdamW practice for ViT: biases, normalisation, tokens, position embedding).
NO_DECAY_NAMES = ["bias", "gamma", "beta", "token", "embedding"]
# The recipes' normalisations that are a fixed convention ("pixel_mean" is fitted on the training images).
FIXED_NORMALIZATIONS = {"rescale": "inception", "none": "raw"}
CHANNELS = 3  # the data loaders' images are RGB


def build_schedule(recipe, total_steps, warmup_steps):
    """The learning-rate schedule of a recipe for a run of `total_steps` (see `Recipe`)."""
    rate = recipe.learning_rate
    adaptive = recipe.warmup_until_accuracy is not None
    has_warmup = warmup_steps > 0 or adaptive
    decay_steps = max(total_steps - (warmup_steps if has_warmup else 0), 1)
    if recipe.schedule == "step":
        base = StepDecay(rate, recipe.decay_boundaries, recipe.decay_factor)
    elif recipe.schedule == "cosine":
        alpha = recipe.final_learning_rate / rate if rate else 0.0
        base = keras.optimizers.schedules.CosineDecay(rate, decay_steps, alpha=alpha)
    elif recipe.schedule == "linear":
        base = keras.optimizers.schedules.PolynomialDecay(rate, decay_steps, recipe.final_learning_rate, power=1.0)
    else:
        base = float(rate)
    if not has_warmup:
        return base
    return Warmup(
        base,
        warmup_steps,
        recipe.warmup_learning_rate,
        mode=recipe.warmup_mode,
        # Decays that span the run start after the warmup; the step decay's boundaries count from step 0.
        shift_schedule=recipe.schedule in ("cosine", "linear"),
        adaptive=adaptive,
    )


def _streamed_pixel_mean(files, image_size, crop_fraction):
    """The per-pixel mean of image files as the model sees them (the evaluation crop), one batch at a time."""
    total, count = np.zeros((*image_size, CHANNELS), np.float64), 0
    labels = np.zeros(len(files), np.int64)
    for batch, _ in make_pipeline(files, labels, batch_size=64, training=False, image_size=image_size,
                                  crop_fraction=crop_fraction, cache=False).as_numpy_iterator():
        total += batch.sum(axis=0, dtype=np.float64)
        count += len(batch)
    return (total / count).astype(np.float32)


def build_preprocessing(normalization, train_images, image_size, crop_fraction=1.0, weights_entry=None):
    """The `Preprocessing` that a recipe's `normalization` gives a model taking `image_size` images.

    `normalization` is a `Recipe.normalization`: "pixel_mean" takes the mean of `train_images` (raw pixels, or the
    evaluation crops of image files), resized to `image_size`; "weights" the preprocessing of `weights_entry` (the
    named weights' entry, `keras_vitres.preset_weights(preset)[name]`). `crop_fraction` is the recipe's.
    """
    image_size = tuple(image_size)
    if normalization == "weights":
        described = Preprocessing.resolve(weights_entry["preprocessing"])
        return dataclasses.replace(described, image_size=image_size, crop_fraction=crop_fraction)
    if normalization == "pixel_mean":
        if is_file_list(train_images):
            mean = _streamed_pixel_mean(train_images, image_size, crop_fraction)
        else:
            mean = pixel_mean(train_images)
        if mean.shape[:2] != image_size:
            mean = keras.ops.convert_to_numpy(keras.ops.image.resize(mean[None], image_size))[0]
        return Preprocessing(image_size=image_size, mean=mean, crop_fraction=crop_fraction)
    if normalization not in FIXED_NORMALIZATIONS:
        raise ValueError(f"`normalization` must be one of {('pixel_mean', 'weights', *FIXED_NORMALIZATIONS)}; "
                         f"received normalization={normalization!r}.")
    return Preprocessing(image_size=image_size, crop_fraction=crop_fraction,
                         **CONVENTIONS[FIXED_NORMALIZATIONS[normalization]])


def describe_preprocessing(preprocessing, normalization=None, examples=None):
    """A short JSON-ready account of a `Preprocessing` for a run's config.json (a per-pixel mean is summarised by
    its range; the model's "preprocessing" layer holds all of it)."""
    about = dict(normalization=normalization, layer="ImagePreprocessing", formula=preprocessing.formula(),
                 **preprocessing.to_dict(compact=True))
    if preprocessing.per_pixel_mean:
        mean = np.asarray(about.pop("mean"))
        about.update(mean_shape=list(mean.shape), mean_min=float(mean.min()), mean_max=float(mean.max()),
                     mean_of=examples)
    return about


def _builder_arguments(recipe, remat, weights):
    """The builder arguments of a recipe's model: its overrides, remat, the weights and the L2 weight decay."""
    arguments = dict(recipe.model_overrides, **({"remat": True} if remat else {}))
    if weights is not None:
        arguments["weights"] = weights
    if recipe.weight_decay > 0 and recipe.weight_decay_mode == "l2":
        builder = builder_of(recipe.preset)
        if "kernel_regularizer" not in inspect.signature(builder).parameters:
            raise ValueError(
                f"weight_decay_mode='l2' needs a builder with `kernel_regularizer` (ResNet); preset "
                f"{recipe.preset!r} is built by {builder.__name__}: use weight_decay_mode='decoupled'."
            )
        # An L2 penalty c * ||w||^2 has gradient 2c * w: c = weight_decay / 2 gives the paper's SGD weight decay.
        arguments["kernel_regularizer"] = keras.regularizers.L2(recipe.weight_decay / 2)
    return arguments


def build_training_model(recipe, image_size, num_classes, preprocessing, remat=False, weights=None, name=None):
    """`input (raw pixels) -> "preprocessing" -> preset model`, as one functional model.

    The preset (the recipe's, with its model overrides and weight decay, rematerialised with `remat`) takes
    `image_size` images and has `num_classes` outputs; `preprocessing` (anything `Preprocessing.resolve` accepts) is
    its first layer, an `ImagePreprocessing` named "preprocessing" that computes in float32. `weights` (the preset's
    `weights=`) replaces a head for other classes and resamples a ViT's position embedding; the model's
    `loaded_weights` is the loader's report (None without weights).
    """
    input_shape = (*image_size, CHANNELS)
    network = build_model(recipe.preset, input_shape=input_shape, classes=num_classes,
                          **_builder_arguments(recipe, remat, weights))
    inputs = keras.Input(input_shape, name="images")
    if "preprocessing" in {layer.name for layer in network.layers}:  # named weights: the network applies theirs
        outputs = network(inputs)
    else:
        layer = Preprocessing.resolve(preprocessing).layer(name="preprocessing", dtype="float32")
        outputs = network(layer(inputs))
    model = keras.Model(inputs, outputs, name=name or f"{recipe.preset}_trained")
    object.__setattr__(model, "loaded_weights", getattr(network, "loaded_weights", None))  # not a tracked attribute
    return model


def build_optimizer(recipe, schedule):
    """SGD with momentum or AdamW (Adam when it has no decoupled weight decay) on `schedule`, with decoupled weight
    decay and clipping as the recipe says."""
    decoupled = recipe.weight_decay if recipe.weight_decay_mode == "decoupled" and recipe.weight_decay > 0 else None
    clip = dict(global_clipnorm=recipe.gradient_clip_norm) if recipe.gradient_clip_norm else {}
    if recipe.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=recipe.momentum, nesterov=recipe.nesterov, weight_decay=decoupled, **clip
        )
    elif decoupled:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=decoupled, **clip)
    else:  # AdamW without weight decay is Adam; Keras' AdamW would still apply a decay of 0 to every variable
        optimizer = keras.optimizers.Adam(schedule, **clip)
    if decoupled:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    return optimizer


def uses_one_hot(recipe):
    """Whether the labels are one-hot: MixUp/CutMix mix them, and label smoothing needs them."""
    return recipe.mixup_alpha > 0 or recipe.cutmix_alpha > 0 or recipe.label_smoothing > 0


def build_loss(recipe):
    """Cross-entropy on one-hot labels (with the recipe's label smoothing) or on sparse labels."""
    if uses_one_hot(recipe):
        return keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


@contextlib.contextmanager
def dtype_policy(name):
    """Sets the global dtype policy inside the block only: the model takes it, while the Keras layers that the
    data pipeline creates (RandAugment, MixUp, CutMix) stay float32."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
