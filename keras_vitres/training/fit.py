"""The one training loop: a recipe's length in steps, its compile, the seeded training stream, and `model.fit`.

`keras_vitres.training.train` (the run driver, with its run directory, backups and resuming) and the analyses of
`keras_vitres.analysis` both train through these functions, so a setting means the same thing everywhere:

    plan = plan_steps(recipe, len(y_train))
    compile_for_recipe(model, recipe, plan)           # schedule, optimizer, loss, weighted accuracy
    history = fit_model(model, recipe, (x_train, y_train), (x_val, y_val), plan=plan, seed=0)
"""

import dataclasses
import math

import numpy as np

from keras_vitres.data.augment import random_shift
from keras_vitres.data.pipeline import make_pipeline
from keras_vitres.training.distribute import get_distribution
from keras_vitres.training.factories import build_loss, build_optimizer, build_schedule, uses_one_hot


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """How long a run is, in optimizer steps: `total_steps`, in `epochs` of `steps_per_epoch` (between validations
    and backups; the last epoch may stop early), of which `warmup_steps` warm up."""

    steps_per_epoch: int
    total_steps: int
    epochs: int
    warmup_steps: int


def plan_steps(recipe, train_examples):
    """The `StepPlan` of `recipe` on a training set of `train_examples` examples; a ValueError when the run is not
    longer than its warmup."""
    passes = math.ceil(train_examples / recipe.batch_size)  # steps in one pass over the training set
    steps_per_epoch = recipe.steps_per_epoch or passes
    total_steps = recipe.steps or recipe.epochs * passes
    warmup_steps = round(recipe.warmup_epochs * passes) if recipe.warmup_epochs is not None else recipe.warmup_steps
    if total_steps <= warmup_steps:
        raise ValueError(f"The run is {total_steps} steps long, not longer than its warmup of {warmup_steps} steps; "
                         "lengthen it (`steps`/`epochs`) or shorten the warmup.")
    return StepPlan(steps_per_epoch, total_steps, math.ceil(total_steps / steps_per_epoch), warmup_steps)


def compile_for_recipe(model, recipe, plan, jit_compile="auto"):
    """Compiles `model` with the recipe's optimizer on its schedule and its loss (returned), inside the scope and
    dtype policy that built the model. Accuracy is a weighted metric, so the zero-weight rows that pad
    multi-process evaluation batches do not count."""
    optimizer = build_optimizer(recipe, build_schedule(recipe, plan.total_steps, plan.warmup_steps))
    loss = build_loss(recipe)
    model.compile(optimizer=optimizer, loss=loss, weighted_metrics=["accuracy"], jit_compile=jit_compile)
    return loss


def training_stream(x, y, recipe, *, num_classes, image_size, seed, skip_steps=0, distribution=None):
    """The training batches of images `x` (raw pixels or file paths) and labels `y` at the model's `image_size`: one
    stream across epochs seeded by `seed` (the recipe's augmentations included), repeated, and fast-forwarded past
    `skip_steps` batches; with several processes (`distribution`), this process's slice of each batch."""
    distribution = distribution or get_distribution("one")
    data = make_pipeline(
        x, y, batch_size=recipe.batch_size, training=True, num_classes=num_classes, augment=recipe.augment,
        mixup_alpha=recipe.mixup_alpha, cutmix_alpha=recipe.cutmix_alpha, image_size=recipe.image_size,
        one_hot=uses_one_hot(recipe), seed=seed, drop_remainder=distribution.num_processes > 1,
        crop_area_range=recipe.crop_area_range,
        # Without a random crop, training sees the evaluation crop: the same geometry as evaluation and serving.
        crop_fraction=recipe.crop_fraction if recipe.image_size is not None else None,
    )
    if recipe.random_translation:
        data = random_shift(data, recipe.random_translation, image_size, seed)
    data = data.repeat()
    if skip_steps:
        data = data.skip(skip_steps)
    data = distribution.process_batch(data, recipe.batch_size)
    if distribution.backend == "tensorflow" and distribution.name == "one":
        # Keras' fit draws a batch from a first iterator to build the model under a tf.distribute strategy and on
        # JAX, then trains on a new iterator, and the reshuffling pipeline gives each iterator its own order: the
        # one-device TensorFlow path draws that batch here, so every strategy trains on the same stream.
        next(iter(data))
    return data


def evaluation_stream(x, y, recipe, *, num_classes, batch_size=None, distribution=None):
    """An evaluation pipeline (no randomness); with several processes, padded to whole global batches with
    zero-weight rows.

    Returns:
        (dataset, loss_scale): the loss Keras reports averages over the padded rows too, so the mean loss of the
        real rows is `reported * loss_scale`; the (weighted) accuracy needs no correction.
    """
    batch_size = batch_size or recipe.batch_size
    # The evaluation crop of the model's `Preprocessing` (resize to cover size / crop_fraction, take the centre).
    options = dict(batch_size=batch_size, training=False, num_classes=num_classes, one_hot=uses_one_hot(recipe),
                   image_size=recipe.image_size, cache=False,
                   crop_fraction=recipe.crop_fraction if recipe.image_size is not None else None)
    if distribution is None or distribution.num_processes == 1:
        return make_pipeline(x, y, **options), 1.0
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    pad = -len(y) % batch_size
    x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])  # zero-weight copies of the first (image or file)
    y = np.concatenate([y, np.zeros((pad,), y.dtype)])
    weights = np.concatenate([np.ones(len(y) - pad, "float32"), np.zeros(pad, "float32")])
    data = make_pipeline(x, y, **options)
    data = tf.data.Dataset.zip(data, tf.data.Dataset.from_tensor_slices(weights).batch(batch_size))
    data = data.map(lambda batch, w: (batch[0], batch[1], w))
    return distribution.process_batch(data, batch_size), len(y) / (len(y) - pad)


def fit_model(model, recipe, train, validation=None, *, plan, seed=0, distribution=None, start_step=0, callbacks=(),
              verbose=0, should_stop=None):
    """Trains a compiled `model` on the recipe's training stream for `plan`, from `start_step`.

    A run resumed in the middle of an epoch (after Ctrl-C) first finishes that epoch, so that the epochs (their
    validation, logs and backups) fall on the same steps as in a run never stopped.

    Args:
        model: a `keras.Model` compiled by `compile_for_recipe`.
        recipe: a `Recipe`.
        train: (x, y) training images in the units the model takes and int labels.
        validation: None, (x, y), or a ready evaluation dataset (`evaluation_stream`), measured after every epoch.
        plan: the `StepPlan` (`plan_steps(recipe, len(y))`).
        seed: int. Seeds the batch order and the augmentations.
        distribution: a `Distribution`; default one device.
        start_step: int. Steps already trained (a resumed run).
        callbacks, verbose: as `model.fit` takes them.
        should_stop: optional callable; True after an epoch ends the training (e.g. Ctrl-C asked for a stop).

    Returns:
        dict: the epochs' logs, one list per metric (`loss`, `accuracy`, `val_accuracy`, ...), over every
        segment trained.
    """
    x, y = train
    num_classes = model.output_shape[-1]
    image_size = recipe.image_size or tuple(np.shape(x)[1:3])
    if validation is not None and isinstance(validation, (tuple, list)):
        validation = evaluation_stream(*validation, recipe, num_classes=num_classes, distribution=distribution)[0]
    steps_per_epoch, initial_epoch = plan.steps_per_epoch, start_step // plan.steps_per_epoch
    segments = []  # (first epoch, last epoch + 1, steps per epoch, batches already done)
    if start_step < plan.total_steps:
        into_epoch = start_step - initial_epoch * steps_per_epoch
        if into_epoch:
            segments.append((initial_epoch, initial_epoch + 1, steps_per_epoch - into_epoch, start_step))
        first = initial_epoch + bool(into_epoch)
        if first < plan.epochs:
            segments.append((first, plan.epochs, steps_per_epoch, first * steps_per_epoch))
    logs = {}
    for first_epoch, end_epoch, steps, done in segments:
        stream = training_stream(x, y, recipe, num_classes=num_classes, image_size=image_size, seed=seed,
                                 skip_steps=done, distribution=distribution)
        history = model.fit(stream, initial_epoch=first_epoch, epochs=end_epoch, steps_per_epoch=steps,
                            validation_data=validation, callbacks=list(callbacks), verbose=verbose, shuffle=False)
        for key, values in history.history.items():
            logs.setdefault(key, []).extend(values)
        if model.stop_training or (should_stop is not None and should_stop()):
            break
    return logs
