"""Training callbacks that Keras does not ship: the ResNet paper's adaptive warmup, a NaN guard that keeps the
last good weights, a stop at an exact step count, the learning rate in the logs, and one log line per epoch."""

import json
import math
import os
import sys
import time

import keras

from keras_vitres.data.checks import check_positive_int
from keras_vitres.training.schedules import find_warmup

# What a run prints while it trains: Keras' progress bar, one `EpochLog` line per epoch, or nothing but its summary;
# "auto" picks by where the output goes. Keras' verbose numbers 0, 1 and 2 name the same three.
VERBOSITY = {"auto": "auto", "bar": "bar", "epoch": "epoch", "silent": "silent",
             "0": "silent", "1": "bar", "2": "epoch"}


def resolve_verbosity(verbose, stream=None):
    """The progress a run prints, "bar", "epoch" or "silent", for `verbose` (a key of `VERBOSITY`, or Keras' 0, 1, 2).

    "auto" is the progress bar when `stream` (default `sys.stdout`) is a terminal, else one line per epoch: written
    to a file or a CI log, the bar's carriage returns and ANSI codes make one long unreadable line.
    """
    mode = VERBOSITY.get(str(verbose))
    if mode is None:
        raise ValueError(f"`verbose` must be one of {sorted(VERBOSITY)}; received verbose={verbose!r}.")
    if mode == "auto":
        stream = stream or sys.stdout
        return "bar" if hasattr(stream, "isatty") and stream.isatty() else "epoch"
    return mode


def sync_weights(model):
    """On JAX, fit keeps the state outside the model's variables between epochs; bring it back so they are current."""
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()


def base_optimizer(optimizer):
    """The optimizer that holds the learning rate (unwraps `LossScaleOptimizer` under mixed_float16)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def current_learning_rate(optimizer):
    """The optimizer's learning rate at its current step, as a Python float."""
    return float(keras.ops.convert_to_numpy(base_optimizer(optimizer).learning_rate))


class AdaptiveWarmup(keras.callbacks.Callback):
    """Ends a warmup once the running training accuracy passes a threshold (arXiv:1512.03385 §4.2: ResNet-110 warms
    up at 0.01 "until the training error is below 80%").

    The optimizer's learning rate must be a `Warmup(..., adaptive=True)`; the first time the running accuracy
    (`logs[monitor]`) reaches `threshold` after a batch, this calls `Warmup.release(step)`, once; otherwise the
    warmup ends at the schedule's `warmup_steps`.

    Args:
        threshold: float. Accuracy at which the warmup ends (0.2, i.e. training error below 80%).
        monitor: str. The log entry holding the running training accuracy.
        state_path: str or None. A JSON file that remembers the release step, so a resumed run keeps its schedule.
        verbose: int. 1 prints one line when the warmup ends.

    Attributes:
        released_at: the step at which the warmup ended, or None.
    """

    def __init__(self, threshold=0.2, monitor="accuracy", state_path=None, verbose=1):
        super().__init__()
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ValueError(f"`threshold` must be a float in (0, 1]; received threshold={threshold!r}.")
        self.threshold = threshold
        self.monitor = monitor
        self.state_path = state_path
        self.verbose = verbose
        self.released_at = None
        self._warmup = None

    def on_train_begin(self, logs=None):
        optimizer = base_optimizer(self.model.optimizer)
        self._warmup = find_warmup(getattr(optimizer, "_learning_rate", None))
        if self._warmup is None:
            raise ValueError(
                "AdaptiveWarmup needs an optimizer whose `learning_rate` is a `Warmup(..., adaptive=True)`; "
                f"received learning_rate={getattr(optimizer, '_learning_rate', None)!r}."
            )
        self.released_at = self._warmup.released_at
        if self.released_at is None and self.state_path and os.path.exists(self.state_path):
            with open(self.state_path) as f:
                step = json.load(f).get("released_at")
            if step is not None:
                self._release(int(step), note="restored from a previous run")

    def on_train_batch_end(self, batch, logs=None):
        if self.released_at is not None:
            return
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(
                f"AdaptiveWarmup monitors `{self.monitor}`, which is not in the training logs "
                f"(available: {sorted(logs or {})}); compile the model with metrics=['accuracy']."
            )
        value = float(keras.ops.convert_to_numpy(value))
        if value >= self.threshold:
            self._release(step, note=f"running training accuracy {value:.3f} >= {self.threshold}")
        elif step >= self._warmup.warmup_steps:
            self._release(step, note=f"the warmup's cap of {self._warmup.warmup_steps} steps was reached")

    def _release(self, step, note):
        self._warmup.release(step)
        self.released_at = self._warmup.released_at
        if keras.backend.backend() != "tensorflow":
            # The TensorFlow train step reads the schedule's variable at every step; a jitted JAX step baked its
            # value in, so it is traced again, once.
            self.model.make_train_function(force=True)
        if self.state_path:
            with open(self.state_path, "w") as f:
                json.dump({"released_at": self.released_at}, f)
        if self.verbose:
            rate = current_learning_rate(self.model.optimizer)
            print(f"\nAdaptiveWarmup: warmup ended at step {self.released_at} ({note}); learning rate now {rate:g}.")


class TerminateOnNaN(keras.callbacks.Callback):
    """Stops training when the loss becomes NaN or infinite, and puts back the last weights that gave a finite loss
    (Keras' `TerminateOnNaN` leaves those of the diverging update); prints, and keeps in `message`, which step failed.

    Args:
        snapshot_every: int. Steps between weight copies (each one device-to-host transfer of the weights).

    Attributes:
        stopped_at_step: the global step (1-based) whose loss was not finite, or None.
        restored_step: the step count of the weights that were restored.
        message: the explanation printed when training stopped, or None.
    """

    def __init__(self, snapshot_every=1):
        super().__init__()
        check_positive_int("snapshot_every", snapshot_every)
        self.snapshot_every = snapshot_every
        self.stopped_at_step = None
        self.restored_step = None
        self.message = None
        self._pending = None  # (step, weights) not yet known to give a finite loss
        self._good = None  # (step, weights) that gave a finite loss
        self._start = None  # (step, weights) when training began
        self._epoch = 0

    def _snapshot(self):
        sync_weights(self.model)
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        return step, self.model.get_weights()

    def on_train_begin(self, logs=None):
        self._pending = self._start = self._snapshot()
        self._good = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(keras.ops.convert_to_numpy(loss))
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if math.isfinite(loss):
            # The loss of this step was computed with the weights held before it: those are good.
            if self._pending is not None and self._pending[0] == step - 1:
                self._good = self._pending
            if step % self.snapshot_every == 0:
                self._pending = self._snapshot()
            return
        sync_weights(self.model)
        self.stopped_at_step = step
        if self._good is not None:
            good, kept = self._good, "the weights after step {} (the last that gave a finite loss) were restored"
        else:
            good, kept = self._start, "the weights of step {}, where this training began, were restored"
        self.model.set_weights(good[1])
        self.restored_step = good[0]
        kept = kept.format(good[0])
        self.message = (
            f"TerminateOnNaN: the training loss became {loss} at step {step} (epoch {self._epoch + 1}, batch "
            f"{batch + 1}); training stopped and {kept}. Try a lower learning rate, gradient clipping, or float32."
        )
        print(f"\n{self.message}")
        self.model.stop_training = True


class StopAtStep(keras.callbacks.Callback):
    """Stops training after exactly `total_steps` optimizer updates (the paper stops at 64k iterations).

    Args:
        total_steps: int. Number of updates after which training stops, even in the middle of an epoch.
    """

    def __init__(self, total_steps):
        super().__init__()
        check_positive_int("total_steps", total_steps)
        self.total_steps = total_steps

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) >= self.total_steps:
            self.model.stop_training = True


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current `learning_rate` to the epoch logs, so CSV and TensorBoard logs record it."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class EpochLog(keras.callbacks.Callback):
    """Prints one line per epoch: its number, time, the logs' metrics and the learning rate (Keras' `verbose=2` line
    with the epoch count and the rate).

    Args:
        epochs: int. The run's number of epochs (a resumed run's `fit` starts at a later one).
    """

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._started
        metrics = "".join(f" - {name}: {float(value):.4f}" for name, value in (logs or {}).items()
                          if name != "learning_rate")  # fmt: skip
        rate = current_learning_rate(self.model.optimizer)
        print(f"epoch {epoch + 1}/{self.epochs} - {seconds:.1f}s{metrics} - learning_rate: {rate:.4g}", flush=True)
