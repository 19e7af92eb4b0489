"""One training run, from a `RunConfig` (`resolve_config`) to a finished run directory: the data, the model
`input -> "preprocessing" -> preset model`, `fit_model` with the run's callbacks, the final model and its score.

Running the same configuration again resumes an unfinished run from its newest intact backup, on the same seeded
stream of batches fast-forwarded past the steps done, so a killed and resumed run ends with the weights of one never
killed (docs/training.md, "Fault tolerance").
"""

import dataclasses
import importlib.util
import math
import os
import shutil
import time

import keras

from keras_vitres.data import load_dataset
from keras_vitres.layers.remat import remat_saves_memory
from keras_vitres.presets import preset_weights
from keras_vitres.training import callbacks as callbacks_
from keras_vitres.training.backup import VerifiedBackup
from keras_vitres.training.config import RunConfig
from keras_vitres.training.curves import plot_curves, read_log
from keras_vitres.training.distribute import get_distribution, resolve_jit_compile, resolve_precision
from keras_vitres.training.factories import (
    build_preprocessing,
    build_training_model,
    describe_preprocessing,
    dtype_policy,
    uses_one_hot,
)
from keras_vitres.training.fit import compile_for_recipe, evaluation_stream, fit_model, plan_steps
from keras_vitres.training.interrupt import TrainingInterrupted, stop_on_sigint
from keras_vitres.training.run_dir import (
    BACKUP_DIR,
    BEST_FILE,
    CONFIG_FILE,
    CSV_LOG,
    MODEL_FILE,
    SUMMARY_FILE,
    SUMMARY_JSON,
    TENSORBOARD_DIR,
    WARMUP_STATE,
    prepare_run_dir,
    trim_csv_log,
    write_json,
)


def has_tensorboard():
    """Whether the `tensorboard` package (which writes TensorBoard's event files) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def _format_seconds(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def train(config, *, verbose="auto", overwrite=False, callbacks=()):
    """Runs the training that `config` describes and writes its run directory.

    Args:
        config: a `RunConfig` from `resolve_config` (or its `to_dict()`, such as a run's config.json).
        verbose: "auto" (the progress bar on a terminal, else one line per epoch), "bar" (Keras' progress bar),
            "epoch" (one line per epoch: `callbacks.EpochLog`) or "silent" (the summary line only); Keras' 0, 1
            and 2 are "silent", "bar" and "epoch".
        overwrite: bool. Replace a finished run in `config.run_dir`.
        callbacks: extra `keras.callbacks.Callback`s, run after the run's own.

    Returns:
        dict (also in summary.json): test_accuracy, test_loss, steps, epochs, wall_time_s, stopped_on_nan,
        message, summary (the one line), run_dir and the paths of the model and the best checkpoint.

    Raises:
        TrainingInterrupted: Ctrl-C (SIGINT) stopped the training; a backup of the step reached was saved first,
            and calling `train` again with the same configuration resumes from it.
        OSError: the run directory cannot be written (before any data is loaded or model built).
        ValueError: the run directory holds another run, or no backup in it can be restored.
    """
    started = time.time()
    verbosity = callbacks_.resolve_verbosity(verbose)  # a wrong value fails before any work
    if not isinstance(config, RunConfig):
        config = RunConfig.from_dict(config)
    if config.strategy == "multiworker" and config.process_id:
        # Every process keeps its own state (backups, final model); the chief's directory is the run's.
        config = dataclasses.replace(config, run_dir=os.path.join(config.run_dir, f"worker{config.process_id}"))
    # Fails here, before any data or model (or the wait for the other processes), if it cannot be written.
    prepare_run_dir(config, overwrite=overwrite)
    distribution = get_distribution(config.strategy, coordinator=config.coordinator,
                                    num_processes=config.num_processes, process_id=config.process_id)
    if config.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # the TensorFlow backend's own switch: imported on that backend only

        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    precision = resolve_precision(config.mixed_precision)
    jit_compile = resolve_jit_compile(config.jit_compile, distribution)
    return _train(config, distribution, precision, jit_compile, started, verbosity, callbacks)


def _load_data(config, distribution):
    """The run's splits; an image folder is streamed (its splits hold file paths, read as training goes)."""
    recipe = config.recipe
    folder = dict(stream=True, validation_path=config.validation_path) if recipe.dataset == "folder" else {}
    splits = load_dataset(recipe.dataset, config.data_path, validation_size=recipe.validation_size, seed=config.seed,
                          **folder)  # fmt: skip
    if recipe.batch_size % distribution.num_replicas:
        raise ValueError(f"`batch_size` ({recipe.batch_size}) must be a multiple of the {distribution.num_replicas} "
                         f"replicas of strategy {distribution.name!r}.")
    return splits


def _build(config, splits, image_size, plan, distribution, precision, jit_compile):
    """The compiled model, its `Preprocessing` and its loss."""
    recipe = config.recipe
    entry = preset_weights(recipe.preset).get(config.weights) if recipe.normalization == "weights" else None
    preprocessing = build_preprocessing(recipe.normalization, splits.train[0], image_size, recipe.crop_fraction,
                                        entry)  # fmt: skip
    with distribution.scope(), dtype_policy(precision):
        model = build_training_model(recipe, image_size, splits.num_classes, preprocessing, remat=config.remat,
                                     weights=config.weights, name=f"{config.name or recipe.preset}_trained")
        loss = compile_for_recipe(model, recipe, plan, jit_compile=jit_compile)
    return model, preprocessing, loss


def _resolved(config, splits, image_size, plan, distribution, precision, jit_compile, model, preprocessing, loss):
    """What the run derived from the data and the machine: config.json's "resolved"."""
    validation = splits.validation
    return dict(
        strategy=distribution.name, backend=distribution.backend, num_replicas=distribution.num_replicas,
        num_processes=distribution.num_processes, mixed_precision=precision, jit_compile=jit_compile,
        steps_per_epoch=plan.steps_per_epoch, epochs=plan.epochs, total_steps=plan.total_steps,
        warmup_steps=plan.warmup_steps, num_classes=splits.num_classes, class_names=list(splits.class_names),
        image_size=list(image_size), train_examples=len(splits.train[1]),
        validation_examples=len(validation[1]) if validation else 0, test_examples=len(splits.test[1]),
        skipped_files=splits.skipped, streamed=config.recipe.dataset == "folder", weights=model.loaded_weights,
        preprocessing=describe_preprocessing(preprocessing, config.recipe.normalization, len(splits.train[0])),
        loss=type(loss).__name__, labels="one-hot" if uses_one_hot(config.recipe) else "sparse",
        parameters=model.count_params(), tensorboard=has_tensorboard(), keras_version=keras.__version__,
    )  # fmt: skip


def _callbacks(config, model, plan, backup, monitor, initial_epoch, verbosity):
    """The run's callbacks, in order, and its NaN guard (first: a backup never holds a diverged step's weights)."""
    run_dir, verbose = config.run_dir, verbosity != "silent"
    csv_path = os.path.join(run_dir, CSV_LOG)
    history = trim_csv_log(csv_path, initial_epoch)
    best_so_far = max((v for v in history.get(monitor, []) if not math.isnan(v)), default=None)
    nan_guard = callbacks_.TerminateOnNaN(snapshot_every=1 if model.count_params() < 5_000_000 else 100)
    callbacks = [nan_guard, callbacks_.StopAtStep(plan.total_steps)]
    if config.recipe.warmup_until_accuracy is not None:
        callbacks.append(callbacks_.AdaptiveWarmup(config.recipe.warmup_until_accuracy, verbose=int(verbose),
                                                   state_path=os.path.join(run_dir, WARMUP_STATE)))
    callbacks += [
        backup,
        callbacks_.LearningRateLogger(),
        keras.callbacks.ModelCheckpoint(os.path.join(run_dir, BEST_FILE), monitor=monitor, mode="max",
                                        save_best_only=True, initial_value_threshold=best_so_far),
        keras.callbacks.CSVLogger(csv_path, append=True),
    ]
    if has_tensorboard():
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, TENSORBOARD_DIR)))
    elif verbose:
        print("TensorBoard is not installed (`pip install tensorboard`): no TensorBoard logs for this run.")
    if verbosity == "epoch":
        callbacks.append(callbacks_.EpochLog(plan.epochs))
    return callbacks, nan_guard


def _say_where_it_resumes(run_dir, plan, start_step):
    if start_step >= plan.total_steps:
        print(f"Resuming {run_dir!r}: all {plan.total_steps} steps were trained; saving and evaluating the model.")
    else:
        print(f"Resuming {run_dir!r} at epoch {start_step // plan.steps_per_epoch + 1} of {plan.epochs}, step "
              f"{start_step} of {plan.total_steps}.")


def _train(config, distribution, precision, jit_compile, started, verbosity, extra_callbacks):
    recipe, run_dir, verbose = config.recipe, config.run_dir, verbosity != "silent"
    splits = _load_data(config, distribution)
    image_size = recipe.image_size or tuple(splits.image_shape[:2])
    plan = plan_steps(recipe, len(splits.train[1]))
    if verbose and config.remat and not remat_saves_memory():
        print("remat: Keras on JAX compiling for the CPU merges the recomputation back into the forward pass, so it "
              "saves no memory here (it does on TensorFlow and on GPUs); the run goes on with it.")
    model, preprocessing, loss = _build(config, splits, image_size, plan, distribution, precision, jit_compile)
    resolved = _resolved(config, splits, image_size, plan, distribution, precision, jit_compile, model, preprocessing,
                         loss)  # fmt: skip
    write_json(os.path.join(run_dir, CONFIG_FILE), {**config.to_dict(), "resolved": resolved})

    # Resume from the newest intact backup (weights and optimizer state), if the run has one.
    backup = VerifiedBackup(os.path.join(run_dir, BACKUP_DIR), keep=2)
    with distribution.scope():
        restored = backup.restore(model)
    start_step = restored["step"] if restored else 0
    evaluate_args = dict(num_classes=splits.num_classes, distribution=distribution)
    # With several processes val_loss includes the padding rows (a factor of at most 1 + batch/size).
    validation = evaluation_stream(*splits.validation, recipe, **evaluate_args)[0] if splits.validation else None
    monitor = "val_accuracy" if validation is not None else "accuracy"
    callbacks, nan_guard = _callbacks(config, model, plan, backup, monitor, start_step // plan.steps_per_epoch,
                                      verbosity)  # fmt: skip
    if verbose and restored:
        _say_where_it_resumes(run_dir, plan, start_step)
    with stop_on_sigint(backup):
        fit_model(model, recipe, splits.train, validation, plan=plan, seed=config.seed, distribution=distribution,
                  start_step=start_step, callbacks=[*callbacks, *extra_callbacks], verbose=int(verbosity == "bar"),
                  should_stop=lambda: backup.stop_requested)  # fmt: skip
        if backup.stop_requested:
            saved = backup.interrupt_backup or backup.save(model, reason="interrupted")
            raise TrainingInterrupted(run_dir, saved["step"], plan.total_steps, saved["path"])
    test_data, loss_scale = evaluation_stream(*splits.test, recipe, **evaluate_args)
    return _finish(config, model, test_data, loss_scale, plan, nan_guard, started, splits)


def _finish(config, model, test_data, loss_scale, plan, nan_guard, started, splits):
    """Saves and scores the final model, draws the curves, writes the summary and removes the backups."""
    recipe, run_dir, name = config.recipe, config.run_dir, config.name or config.recipe.preset
    steps_done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    model_path, best_path, csv_path = (os.path.join(run_dir, f) for f in (MODEL_FILE, BEST_FILE, CSV_LOG))
    model.save(model_path)
    scores = model.evaluate(test_data, return_dict=True, verbose=0)
    scores["loss"] *= loss_scale
    plot_curves(csv_path, os.path.join(run_dir, "curves.png"), title=f"{name} on {recipe.dataset}")
    wall = time.time() - started
    line = (f"{name} on {recipe.dataset} ({recipe.name}): test accuracy {scores['accuracy']:.4f} "
            f"(loss {scores['loss']:.4f}, {len(splits.test[1])} images) after {steps_done} steps in "
            f"{_format_seconds(wall)}; run dir {run_dir}")
    if nan_guard.message:
        line += f" -- STOPPED EARLY: {nan_guard.message}"
    result = dict(
        summary=line, test_accuracy=float(scores["accuracy"]), test_loss=float(scores["loss"]), steps=steps_done,
        total_steps=plan.total_steps, epochs=plan.epochs, wall_time_s=round(wall, 1),
        stopped_on_nan=nan_guard.stopped_at_step, message=nan_guard.message, run_dir=run_dir, model=model_path,
        class_names=list(splits.class_names), name=name,
        best_validation_accuracy=max((v for v in read_log(csv_path).get("val_accuracy", []) if not math.isnan(v)),
                                     default=None),
        best_checkpoint=best_path if os.path.exists(best_path) else None,
    )
    with open(os.path.join(run_dir, SUMMARY_FILE), "w") as f:
        f.write(line + "\n")
    write_json(os.path.join(run_dir, SUMMARY_JSON), result)
    shutil.rmtree(os.path.join(run_dir, BACKUP_DIR), ignore_errors=True)
    if os.path.exists(os.path.join(run_dir, WARMUP_STATE)):
        os.remove(os.path.join(run_dir, WARMUP_STATE))
    print(line)
    return result
