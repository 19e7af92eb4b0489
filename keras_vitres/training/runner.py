"""One training run, from a resolved configuration to a run directory; and the evaluation of a trained model.

`resolve_config(...)` turns a recipe name, a preset, a dataset and overrides into a JSON-ready dict;
`train(config)` loads the data, builds `input -> "preprocessing" -> preset model`, compiles, fits and writes:

    run_dir/
      config.json           the resolved configuration, with what was derived from the data ("resolved")
      logs/training.csv     one row per epoch (CSVLogger; learning_rate included)
      logs/tensorboard/     TensorBoard events
      backup/               the last two training states while the run is unfinished (removed at the end):
                            step-NNNNNNNN.weights.h5 and .json with its sha256 (`VerifiedBackup`)
      checkpoints/best.keras  the best model so far (val_accuracy, or accuracy without a validation split)
      model.keras           the final model; it takes raw [0, 255] pixels
      curves.png            loss and accuracy per epoch
      summary.txt           one line, also printed, with the test accuracy (summary.json: the same, as data)

Running the same configuration again resumes an unfinished run from its newest intact backup (the end of an
epoch, or the step at which Ctrl-C stopped it), with the same data stream (the training batches are one seeded
stream, fast-forwarded past the steps already done), so a killed and resumed run ends with the weights of a run
that was never killed. A truncated or corrupt backup is skipped, named, for the one before it. Ctrl-C (SIGINT)
during training saves a backup after the step in progress and raises `TrainingInterrupted` (the command line
prints the command that resumes, and exits with status 130). A run directory that cannot be written fails
before the first step.
"""

import contextlib
import dataclasses
import importlib.util
import inspect
import json
import math
import os
import re
import shutil
import signal
import threading
import time

import keras
import numpy as np

from keras_vitres.layers.remat import check_remat, remat_saves_memory
from keras_vitres.training import callbacks as run_callbacks
from keras_vitres.training.curves import plot_curves, read_log
from keras_vitres.training.distribute import (
    PRECISIONS,
    STRATEGIES,
    get_distribution,
    resolve_jit_compile,
    resolve_precision,
)
from keras_vitres.training.recipes import Recipe, get_recipe
from keras_vitres.training.schedules import StepDecay, Warmup

CONFIG_FILE = "config.json"
WORKER_DIR = re.compile(r"worker\d+")
SUMMARY_FILE = "summary.txt"
SUMMARY_JSON = "summary.json"
MODEL_FILE = "model.keras"
BEST_FILE = os.path.join("checkpoints", "best.keras")
CSV_LOG = os.path.join("logs", "training.csv")
TENSORBOARD_DIR = os.path.join("logs", "tensorboard")
BACKUP_DIR = "backup"
WARMUP_STATE = "adaptive_warmup.json"
RUN_KEYS = ("run_dir", "data_path", "seed", "strategy", "mixed_precision", "jit_compile", "remat", "deterministic",
            "coordinator", "num_processes", "process_id")  # fmt: skip
# What must match for a run directory to be resumed (where and how fast it runs may change).
RESUME_KEYS = ("recipe", "data_path", "seed")
# Weight decay never applies to these (AdamW practice for ViT: biases, normalisation, tokens, position embedding).
NO_DECAY_NAMES = ["bias", "gamma", "beta", "token", "embedding"]


def has_tensorboard():
    """Whether the `tensorboard` package (which writes TensorBoard's event files) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def _is_finished(run_dir):
    return os.path.exists(os.path.join(run_dir, SUMMARY_JSON))


def default_run_dir(preset, dataset, root="runs"):
    """`runs/{preset}_{dataset}`, or the first `_2`, `_3`, ... that holds no finished run (so the same command
    resumes an unfinished run and starts a new directory after a finished one)."""
    base = os.path.join(root, f"{preset}_{dataset}")
    candidate, n = base, 1
    while _is_finished(candidate):
        n += 1
        candidate = f"{base}_{n}"
    return candidate


def resolve_config(recipe="digits_resnet", *, preset=None, dataset=None, data_path=None, run_dir=None, seed=0,
                   strategy="auto", mixed_precision="auto", jit_compile="auto", remat=False, deterministic=False,
                   coordinator=None, num_processes=None, process_id=None, **overrides):
    """Resolves a run's configuration into a JSON-ready dict.

    Args:
        recipe: a recipe name (`keras_vitres.training.list_recipes()`).
        preset: the preset to train (default: the recipe's); the recipe's per-preset adjustments follow it.
        dataset: dataset name for `keras_vitres.data.load_dataset` (default: the recipe's).
        data_path: where the dataset is (see `load_dataset`).
        run_dir: the run directory; default `default_run_dir(preset, dataset)`.
        seed: int. Seeds the weights, the validation split, the shuffle and the augmentations.
        strategy: "auto", "one", "mirrored" or "multiworker" (see `keras_vitres.training.distribute`).
        mixed_precision: "auto", "float32", "mixed_float16" or "mixed_bfloat16".
        jit_compile: "auto", True or False.
        remat: bool. Recompute every block's activations in the backward pass (the builders' `remat`): less
            training memory (73% less for ViT-B/16, 56% for ResNet-110, with TensorFlow on CPU; on a GPU with JAX the
            compiled step's temporaries fell 84% for ViT-B/16 and 75% for ResNet-110 on one H200; none with JAX on
            CPU; docs/benchmarks.md) at 1.25x to 1.5x the step time on CPU. Like the precision, it changes how a run computes, not what: a run may be
            resumed with another setting.
        deterministic: bool. TensorFlow's op determinism (bit-identical reruns, a little slower).
        coordinator, num_processes, process_id: for strategy="multiworker".
        **overrides: any `Recipe` field (e.g. `epochs=3`, `learning_rate=0.05`). Giving `epochs` without
            `steps` makes the run's length epochs-based.

    Returns:
        dict with "recipe" (every recipe field) and the run settings.
    """
    if dataset is not None:
        overrides["dataset"] = dataset
    if "epochs" in overrides and "steps" not in overrides:
        overrides["steps"] = None
    resolved = get_recipe(recipe, preset=preset, **overrides)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"`seed` must be an int; received seed={seed!r}.")
    if not isinstance(deterministic, bool):
        raise ValueError(f"`deterministic` must be a bool; received deterministic={deterministic!r}.")
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}; received strategy={strategy!r}.")
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"`mixed_precision` must be one of {PRECISIONS}; received mixed_precision={mixed_precision!r}.")
    if jit_compile not in ("auto", True, False):
        raise ValueError(f"`jit_compile` must be 'auto', True or False; received jit_compile={jit_compile!r}.")
    check_remat(remat)
    return dict(
        recipe=resolved.to_dict(),
        run_dir=os.fspath(run_dir) if run_dir is not None else default_run_dir(resolved.preset, resolved.dataset),
        data_path=os.fspath(data_path) if data_path is not None else None,
        seed=seed,
        strategy=strategy,
        mixed_precision=mixed_precision,
        jit_compile=jit_compile,
        remat=remat,
        deterministic=deterministic,
        coordinator=coordinator,
        num_processes=num_processes,
        process_id=process_id,
    )


def _write_json(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(tmp, path)


def prepare_run_dir(config, overwrite=False):
    """Creates the run directory and writes config.json into it, or raises before any training.

    Raises:
        PermissionError / OSError: the directory cannot be created or written (named in the message).
        ValueError: it holds a finished run (without `overwrite`), a run with another configuration, or files
            that are not a run's.
    """
    run_dir = config["run_dir"]
    config_path = os.path.join(run_dir, CONFIG_FILE)
    # Sub-directories of the other processes of a multi-process run are theirs, not this run's.
    entries = [e for e in os.listdir(run_dir) if not WORKER_DIR.fullmatch(e)] if os.path.isdir(run_dir) else []
    if entries:
        if not os.path.exists(config_path):
            raise ValueError(f"`run_dir` {run_dir!r} is not empty and holds no {CONFIG_FILE}: not a keras-vitres run "
                             "directory; choose a new or empty directory.")
        if overwrite:
            for entry in entries:
                path = os.path.join(run_dir, entry)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        elif _is_finished(run_dir):
            raise ValueError(f"`run_dir` {run_dir!r} already holds a finished run ({SUMMARY_FILE} exists); pass "
                             "overwrite=True (--overwrite) to train again there, or choose another run_dir.")
        elif os.path.isdir(os.path.join(run_dir, BACKUP_DIR)):  # an unfinished run that saved a backup
            with open(config_path) as f:
                previous = json.load(f)
            changed = [k for k in RESUME_KEYS if previous.get(k) != json.loads(json.dumps(config[k], default=str))]
            if changed:
                fields = changed
                if "recipe" in changed:
                    fields = [f"recipe.{k}" for k, v in config["recipe"].items()
                              if json.loads(json.dumps(v)) != previous.get("recipe", {}).get(k)] + \
                             [k for k in changed if k != "recipe"]
                raise ValueError(f"`run_dir` {run_dir!r} holds an unfinished run with another configuration "
                                 f"(differs in {fields}); resume it with the same settings, pass overwrite=True, "
                                 "or choose another run_dir.")
    try:
        for sub in ("", "logs", "checkpoints"):
            os.makedirs(os.path.join(run_dir, sub), exist_ok=True)
        _write_json(config_path, config)
    except OSError as error:
        raise type(error)(f"run directory {run_dir!r} cannot be written: {error.strerror or error}") from error
    return run_dir


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped `train` after a backup of the step reached; the same configuration resumes from it.

    A `KeyboardInterrupt`, so code that lets Ctrl-C through lets this through too.

    Attributes:
        run_dir: the run directory.
        step: the step the backup holds.
        total_steps: the run's length.
        backup: the path of the backup's weights file.
    """

    def __init__(self, run_dir, step, total_steps, backup):
        self.run_dir, self.step, self.total_steps, self.backup = run_dir, step, total_steps, backup
        super().__init__(f"interrupted at step {step} of {total_steps}; the training state was saved to {backup!r}, "
                         f"and running the same configuration again resumes {run_dir!r} from step {step}.")


@contextlib.contextmanager
def stop_on_sigint(backup):
    """While training, a first Ctrl-C asks `backup` for a backup and a stop after the step in progress; a second
    one interrupts at once (the backups on disk stay intact: each is written under a temporary name first)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nCtrl-C: saving the training state after this step (Ctrl-C again to quit without it)...", flush=True)
        backup.request_stop()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _trim_csv_log(csv_path, initial_epoch):
    """Drops log rows of epochs that the resumed run will train again; returns the remaining rows' columns."""
    if not os.path.exists(csv_path):
        return {}
    with open(csv_path) as f:
        lines = f.read().splitlines()
    if not lines:
        return {}
    kept = [lines[0]] + [line for line in lines[1:] if line and int(float(line.split(",")[0])) < initial_epoch]
    with open(csv_path, "w") as f:
        f.write("\n".join(kept) + "\n")
    return read_log(csv_path) if len(kept) > 1 else {}


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


def build_preprocessing(mode, train_images, image_shape):
    """The model's first layer, named "preprocessing", and a JSON description of it."""
    if mode == "pixel_mean":
        from keras_vitres.data import pixel_mean

        mean = pixel_mean(train_images)
        if mean.shape != tuple(image_shape):
            mean = keras.ops.convert_to_numpy(keras.ops.image.resize(mean[None], image_shape[:2]))[0]
        layer = keras.layers.Normalization(
            axis=(1, 2, 3), mean=mean, variance=np.ones_like(mean), dtype="float32", name="preprocessing"
        )
        about = dict(mode=mode, layer="Normalization", formula="x - mean (per pixel and channel, training split)",
                     mean_min=float(mean.min()), mean_max=float(mean.max()), mean_of=int(len(train_images)))
    elif mode == "rescale":
        layer = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, dtype="float32", name="preprocessing")
        about = dict(mode=mode, layer="Rescaling", formula="x / 127.5 - 1 (pixels to [-1, 1])")
    else:
        layer = keras.layers.Identity(dtype="float32", name="preprocessing")
        about = dict(mode=mode, layer="Identity", formula="x (raw [0, 255] pixels)")
    return layer, about


def build_training_model(recipe, image_shape, num_classes, preprocessing, remat=False):
    """`input (raw pixels) -> preprocessing -> preset model`, as one functional model; `remat=True` builds the
    preset with rematerialised blocks."""
    from keras_vitres.presets import BUILDERS, build_model, get_preset

    arguments = dict(recipe.model_overrides, **({"remat": True} if remat else {}))
    if recipe.weight_decay > 0 and recipe.weight_decay_mode == "l2":
        builder = get_preset(recipe.preset)["builder"]
        if "kernel_regularizer" not in inspect.signature(BUILDERS[builder]).parameters:
            raise ValueError(
                f"weight_decay_mode='l2' needs a builder with `kernel_regularizer` (ResNet); preset "
                f"{recipe.preset!r} is built by {builder}: use weight_decay_mode='decoupled'."
            )
        # An L2 penalty c * ||w||^2 has gradient 2c * w: c = weight_decay / 2 gives the paper's SGD weight decay.
        arguments["kernel_regularizer"] = keras.regularizers.L2(recipe.weight_decay / 2)
    network = build_model(recipe.preset, input_shape=tuple(image_shape), classes=num_classes, **arguments)
    inputs = keras.Input(tuple(image_shape), name="images")
    outputs = network(preprocessing(inputs))
    return keras.Model(inputs, outputs, name=f"{recipe.preset}_trained")


def build_optimizer(recipe, schedule):
    """SGD with momentum or AdamW on `schedule`, with decoupled weight decay and clipping as the recipe says."""
    decoupled = recipe.weight_decay if recipe.weight_decay_mode == "decoupled" and recipe.weight_decay > 0 else None
    clip = dict(global_clipnorm=recipe.gradient_clip_norm) if recipe.gradient_clip_norm else {}
    if recipe.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=recipe.momentum, nesterov=recipe.nesterov, weight_decay=decoupled, **clip
        )
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=decoupled or 0.0, **clip)
    if decoupled:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    return optimizer


def random_shift(dataset, max_fraction, image_shape, seed):
    """Shifts every image of a batched (images, labels) dataset by up to `max_fraction` of its height and width,
    zero-filled: pad, then crop back at a random offset.

    The offsets come from stateless random ops keyed by a seeded stream (`tf.data.Dataset.random`), so they depend
    only on the seed and the pass over the data: a resumed run, or a first iterator that Keras opens and drops,
    does not change them (a stateful `keras.layers.RandomTranslation` would).
    """
    import tensorflow as tf

    height, width, channels = image_shape
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


def uses_one_hot(recipe):
    """Whether the labels are one-hot: MixUp/CutMix mix them, and label smoothing needs them."""
    return recipe.mixup_alpha > 0 or recipe.cutmix_alpha > 0 or recipe.label_smoothing > 0


def _eval_pipeline(x, y, recipe, num_classes, batch_size, image_size, distribution):
    """An evaluation pipeline; with several processes, padded to whole global batches with zero-weight rows.

    Returns (dataset, loss_scale): the loss Keras reports averages over the padded rows too, so the mean loss of
    the real rows is `reported * loss_scale`; the (weighted) accuracy needs no correction.
    """
    import tensorflow as tf

    from keras_vitres.data import make_pipeline

    one_hot = uses_one_hot(recipe)
    if distribution.num_processes == 1:
        return make_pipeline(x, y, batch_size=batch_size, training=False, num_classes=num_classes, one_hot=one_hot,
                             image_size=image_size, cache=False), 1.0
    pad = -len(y) % batch_size
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    y = np.concatenate([y, np.zeros((pad,), y.dtype)])
    weights = np.concatenate([np.ones(len(y) - pad, "float32"), np.zeros(pad, "float32")])
    data = make_pipeline(x, y, batch_size=batch_size, training=False, num_classes=num_classes, one_hot=one_hot,
                         image_size=image_size, cache=False)
    data = tf.data.Dataset.zip(data, tf.data.Dataset.from_tensor_slices(weights).batch(batch_size))
    data = data.map(lambda batch, w: (batch[0], batch[1], w))
    return distribution.process_batch(data, batch_size), len(y) / (len(y) - pad)


def _format_seconds(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def train(config, *, verbose=1, overwrite=False, callbacks=()):
    """Runs the training that `config` (from `resolve_config`) describes and writes its run directory.

    Args:
        config: dict from `resolve_config`.
        verbose: 0 (silent but for the summary line), 1 (Keras' progress bar) or 2 (one line per epoch).
        overwrite: bool. Replace a finished run in `config["run_dir"]`.
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
    recipe = Recipe(**{**config["recipe"], "decay_boundaries": tuple(config["recipe"]["decay_boundaries"])})
    run_dir = config["run_dir"]
    if config["strategy"] == "multiworker" and config["process_id"]:
        # Every process keeps its own state (backups, final model); the chief's directory is the run's.
        run_dir = os.path.join(run_dir, f"worker{config['process_id']}")
    # Fails here, before any data or model (or the wait for the other processes), if it cannot be written.
    run_dir = prepare_run_dir({**config, "run_dir": run_dir}, overwrite=overwrite)
    distribution = get_distribution(config["strategy"], coordinator=config["coordinator"],
                                    num_processes=config["num_processes"], process_id=config["process_id"])
    if config["deterministic"] and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config["seed"])
    precision = resolve_precision(config["mixed_precision"])
    jit_compile = resolve_jit_compile(config["jit_compile"], distribution)
    return _train(config, recipe, run_dir, distribution, precision, jit_compile, started, verbose, callbacks)


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


def _train(config, recipe, run_dir, distribution, precision, jit_compile, started, verbose, extra_callbacks):
    from keras_vitres.data import load_dataset, make_pipeline

    splits = load_dataset(recipe.dataset, config["data_path"], validation_size=recipe.validation_size,
                          seed=config["seed"])
    x_train, y_train = splits.train
    image_shape = (recipe.image_size, recipe.image_size, 3) if recipe.image_size else tuple(splits.image_shape)
    num_classes = splits.num_classes
    if recipe.batch_size % distribution.num_replicas:
        raise ValueError(f"`batch_size` ({recipe.batch_size}) must be a multiple of the {distribution.num_replicas} "
                         f"replicas of strategy {distribution.name!r}.")
    passes = math.ceil(len(y_train) / recipe.batch_size)  # steps in one pass over the training set
    steps_per_epoch = recipe.steps_per_epoch or passes
    total_steps = recipe.steps or recipe.epochs * passes
    epochs = math.ceil(total_steps / steps_per_epoch)
    warmup_steps = round(recipe.warmup_epochs * passes) if recipe.warmup_epochs is not None else recipe.warmup_steps
    if total_steps <= warmup_steps:
        raise ValueError(f"The run is {total_steps} steps long, not longer than its warmup of {warmup_steps} steps; "
                         "lengthen it (`steps`/`epochs`) or shorten the warmup.")

    if verbose and config.get("remat") and not remat_saves_memory():
        print("remat: Keras on JAX compiling for the CPU merges the recomputation back into the forward pass, so it "
              "saves no memory here (it does on TensorFlow and on GPUs); the run goes on with it.")
    preprocessing, about_preprocessing = build_preprocessing(recipe.preprocessing, x_train, image_shape)
    with distribution.scope(), dtype_policy(precision):
        model = build_training_model(recipe, image_shape, num_classes, preprocessing, remat=config.get("remat", False))
        optimizer = build_optimizer(recipe, build_schedule(recipe, total_steps, warmup_steps))
        one_hot = uses_one_hot(recipe)
        loss = (keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing) if one_hot
                else keras.losses.SparseCategoricalCrossentropy())
        # Weighted, so the zero-weight rows that pad multi-process evaluation batches do not count.
        model.compile(optimizer=optimizer, loss=loss, weighted_metrics=["accuracy"], jit_compile=jit_compile)

    config = {**config, "resolved": dict(
        strategy=distribution.name, backend=distribution.backend, num_replicas=distribution.num_replicas,
        num_processes=distribution.num_processes, mixed_precision=precision, jit_compile=jit_compile,
        steps_per_epoch=steps_per_epoch, epochs=epochs, total_steps=total_steps, warmup_steps=warmup_steps,
        num_classes=num_classes, class_names=list(splits.class_names), image_shape=list(image_shape),
        train_examples=len(y_train), validation_examples=len(splits.validation[1]) if splits.validation else 0,
        test_examples=len(splits.test[1]), preprocessing=about_preprocessing,
        loss=type(loss).__name__, labels="one-hot" if one_hot else "sparse", parameters=model.count_params(),
        tensorboard=has_tensorboard(),
        keras_version=keras.__version__,
    )}
    _write_json(os.path.join(run_dir, CONFIG_FILE), config)

    # Resume from the newest intact backup (weights and optimizer state), if the run has one.
    backup = run_callbacks.VerifiedBackup(os.path.join(run_dir, BACKUP_DIR), keep=2)
    with distribution.scope():
        restored = backup.restore(model)
    start_step = restored["step"] if restored else 0
    initial_epoch = start_step // steps_per_epoch
    global_batch = recipe.batch_size

    def training_stream(skip_steps):
        """The training batches: one seeded stream across epochs, fast-forwarded past `skip_steps` batches."""
        data = make_pipeline(
            x_train, y_train, batch_size=global_batch, training=True, num_classes=num_classes, augment=recipe.augment,
            mixup_alpha=recipe.mixup_alpha, cutmix_alpha=recipe.cutmix_alpha, image_size=recipe.image_size,
            one_hot=one_hot, seed=config["seed"], drop_remainder=distribution.num_processes > 1,
        )
        if recipe.random_translation:
            data = random_shift(data, recipe.random_translation, image_shape, config["seed"])
        data = data.repeat()
        if skip_steps:
            data = data.skip(skip_steps)
        data = distribution.process_batch(data, global_batch)
        if distribution.backend == "tensorflow" and distribution.name == "one":
            # Keras' fit draws a batch from a first iterator to build the model under a tf.distribute strategy
            # and on JAX, then trains on a new iterator; the reshuffling pipeline gives each iterator its own
            # order. The one-device TensorFlow path draws that batch here, so every strategy trains on the same
            # stream.
            next(iter(data))
        return data
    evaluate_args = (recipe, num_classes, global_batch, recipe.image_size, distribution)
    # With several processes val_loss includes the padding rows (a factor of at most 1 + batch/size).
    validation_data = _eval_pipeline(*splits.validation, *evaluate_args)[0] if splits.validation else None

    csv_path = os.path.join(run_dir, CSV_LOG)
    history = _trim_csv_log(csv_path, initial_epoch)
    monitor = "val_accuracy" if validation_data is not None else "accuracy"
    best_so_far = max((v for v in history.get(monitor, []) if not math.isnan(v)), default=None)
    nan_guard = run_callbacks.TerminateOnNaN(snapshot_every=1 if model.count_params() < 5_000_000 else 100)
    callbacks = [
        nan_guard,
        run_callbacks.StopAtStep(total_steps),
        backup,  # after the NaN guard, so that a backup never holds the weights of a diverged step
        run_callbacks.LearningRateLogger(),
        keras.callbacks.ModelCheckpoint(os.path.join(run_dir, BEST_FILE), monitor=monitor, mode="max",
                                        save_best_only=True, initial_value_threshold=best_so_far),
        keras.callbacks.CSVLogger(csv_path, append=True),
    ]
    if has_tensorboard():
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, TENSORBOARD_DIR)))
    elif verbose:
        print("TensorBoard is not installed (`pip install tensorboard`): no TensorBoard logs for this run.")
    if recipe.warmup_until_accuracy is not None:
        callbacks.insert(2, run_callbacks.AdaptiveWarmup(
            recipe.warmup_until_accuracy, state_path=os.path.join(run_dir, WARMUP_STATE), verbose=int(verbose > 0)))
    callbacks += list(extra_callbacks)
    if verbose and restored and start_step >= total_steps:
        print(f"Resuming {run_dir!r}: all {total_steps} steps were trained; saving and evaluating the model.")
    elif verbose and restored:
        print(f"Resuming {run_dir!r} at epoch {initial_epoch + 1} of {epochs}, step {start_step} of {total_steps}.")

    # A run resumed in the middle of an epoch (after Ctrl-C) first finishes that epoch, so that the epochs (their
    # validation, logs and backups) fall on the same steps as in a run never stopped.
    segments = []  # (first epoch, last epoch + 1, steps per epoch, batches already done)
    if start_step < total_steps:
        into_epoch = start_step - initial_epoch * steps_per_epoch
        if into_epoch:
            segments.append((initial_epoch, initial_epoch + 1, steps_per_epoch - into_epoch, start_step))
        first = initial_epoch + bool(into_epoch)
        if first < epochs:
            segments.append((first, epochs, steps_per_epoch, first * steps_per_epoch))
    with stop_on_sigint(backup):
        for first_epoch, end_epoch, steps, done in segments:
            model.fit(training_stream(done), initial_epoch=first_epoch, epochs=end_epoch, steps_per_epoch=steps,
                      validation_data=validation_data, callbacks=callbacks, verbose=verbose, shuffle=False)
            if model.stop_training or backup.stop_requested:
                break
        if backup.stop_requested:
            saved = backup.interrupt_backup or backup.save(model, reason="interrupted")
            raise TrainingInterrupted(run_dir, saved["step"], total_steps, saved["path"])

    steps_done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    model_path = os.path.join(run_dir, MODEL_FILE)
    model.save(model_path)
    test_data, loss_scale = _eval_pipeline(*splits.test, *evaluate_args)
    scores = model.evaluate(test_data, return_dict=True, verbose=0)
    scores["loss"] *= loss_scale
    plot_curves(csv_path, os.path.join(run_dir, "curves.png"), title=f"{recipe.preset} on {recipe.dataset}")
    wall = time.time() - started
    line = (f"{recipe.preset} on {recipe.dataset} ({recipe.name}): test accuracy {scores['accuracy']:.4f} "
            f"(loss {scores['loss']:.4f}, {len(splits.test[1])} images) after {steps_done} steps in "
            f"{_format_seconds(wall)}; run dir {run_dir}")
    if nan_guard.message:
        line += f" -- STOPPED EARLY: {nan_guard.message}"
    result = dict(
        summary=line, test_accuracy=float(scores["accuracy"]), test_loss=float(scores["loss"]), steps=steps_done,
        total_steps=total_steps, epochs=epochs, wall_time_s=round(wall, 1), stopped_on_nan=nan_guard.stopped_at_step,
        message=nan_guard.message, run_dir=run_dir, model=model_path, class_names=list(splits.class_names),
        best_checkpoint=os.path.join(run_dir, BEST_FILE) if os.path.exists(os.path.join(run_dir, BEST_FILE)) else None,
    )
    with open(os.path.join(run_dir, SUMMARY_FILE), "w") as f:
        f.write(line + "\n")
    _write_json(os.path.join(run_dir, SUMMARY_JSON), result)
    shutil.rmtree(os.path.join(run_dir, BACKUP_DIR), ignore_errors=True)
    for leftover in (WARMUP_STATE,):
        if os.path.exists(os.path.join(run_dir, leftover)):
            os.remove(os.path.join(run_dir, leftover))
    print(line)
    return result


def evaluate(model, dataset=None, *, data_path=None, split="test", batch_size=256, checkpoint="final", verbose=0):
    """Evaluates a trained model on a dataset split.

    Args:
        model: a run directory, a `.keras` file, or a `keras.Model` (taking raw [0, 255] pixels).
        dataset: dataset name; default: the run's (from its config.json), else "digits".
        data_path: where the dataset is; default: the run's.
        split: "test", "validation" or "train".
        batch_size: int.
        checkpoint: for a run directory: "final" (model.keras) or "best" (checkpoints/best.keras).
        verbose: Keras' evaluate verbosity.

    Returns:
        dict: accuracy, loss, examples, split, dataset, model (the file evaluated).
    """
    from keras_vitres.data import load_dataset, make_pipeline

    splits_ = ("test", "validation", "train")
    if split not in splits_:
        raise ValueError(f"`split` must be one of {splits_}; received split={split!r}.")
    if checkpoint not in ("final", "best"):
        raise ValueError(f"`checkpoint` must be 'final' or 'best'; received checkpoint={checkpoint!r}.")
    run_config, path = {}, None
    if isinstance(model, keras.Model):
        net = model
    else:
        path = os.fspath(model)
        if os.path.isdir(path):
            config_path = os.path.join(path, CONFIG_FILE)
            if os.path.exists(config_path):
                with open(config_path) as f:
                    run_config = json.load(f)
            path = os.path.join(path, MODEL_FILE if checkpoint == "final" else BEST_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"`model` must be a run directory with a {MODEL_FILE} or a .keras file; "
                                    f"{path!r} does not exist.")
        import keras_vitres.layers  # noqa: F401  (registers the layers; the schedules are this package's own)

        net = keras.saving.load_model(path, compile=False)
    recipe = run_config.get("recipe", {})
    dataset = dataset or recipe.get("dataset") or "digits"
    if data_path is None and dataset == recipe.get("dataset"):
        data_path = run_config.get("data_path")
    validation_size = recipe.get("validation_size") if dataset == recipe.get("dataset") else None
    data = load_dataset(dataset, data_path, validation_size=validation_size, seed=run_config.get("seed", 0))
    arrays = getattr(data, split)
    if arrays is None:
        raise ValueError(f"dataset {dataset!r} has no {split!r} split here (the run used no validation split).")
    height, width = net.input_shape[1:3]
    image_size = (height, width) if (height, width) != tuple(data.image_shape[:2]) else None
    pipeline = make_pipeline(*arrays, batch_size=batch_size, training=False, num_classes=data.num_classes,
                             image_size=image_size, cache=False)
    if net.output_shape[-1] != data.num_classes:
        raise ValueError(f"model has {net.output_shape[-1]} outputs but dataset {dataset!r} has {data.num_classes} "
                         "classes.")
    net.compile(loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    scores = net.evaluate(pipeline, return_dict=True, verbose=verbose)
    return dict(accuracy=float(scores["accuracy"]), loss=float(scores["loss"]), examples=int(len(arrays[1])),
                split=split, dataset=dataset, model=path or net.name)


def recipe_fields():
    """Names of every `Recipe` field (what `--set FIELD=VALUE` accepts)."""
    return [f.name for f in dataclasses.fields(Recipe)]
