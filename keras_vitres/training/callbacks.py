"""Training callbacks that Keras does not ship: the ResNet paper's adaptive warmup, a NaN guard that keeps the
last good weights, a stop at an exact step count, the learning rate in the logs, and verified rotating backups
that a run resumes from (also after Ctrl-C).

The rest of a run's callbacks are Keras' own (`ModelCheckpoint`, `CSVLogger`, `TensorBoard`);
`keras_vitres.training.runner` puts them together.
"""

import glob
import json
import math
import os
import re

import keras

from keras_vitres.training.schedules import find_warmup
from keras_vitres.weights.download import sha256_of


def _sync_weights(model):
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
    """Ends a warmup once the running training accuracy passes a threshold (arXiv:1512.03385 §4.2).

    The paper warms ResNet-110 up at lr 0.01 "until the training error is below 80% (about 400 iterations), and
    then go[es] back to 0.1". The optimizer's learning rate must be a `Warmup(..., adaptive=True)`; after each
    batch this callback reads the running accuracy (`logs[monitor]`, the epoch's mean so far) and, the first time
    it reaches `threshold`, calls `Warmup.release(step)`. The switch happens exactly once; if the threshold is
    never reached the warmup ends at the schedule's `warmup_steps`.

    Args:
        threshold: float. Accuracy at which the warmup ends (0.2, i.e. training error below 80%).
        monitor: str. The log entry holding the running training accuracy.
        state_path: str or None. A JSON file that remembers the release step, so a run resumed by
            `BackupAndRestore` keeps the schedule it had (the release happened at the same step).
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
    """Stops training when the loss becomes NaN or infinite, and puts back the last good weights.

    Keras' `TerminateOnNaN` stops, but leaves the weights that the diverging update produced. This one keeps a
    copy of the weights every `snapshot_every` steps and, when the loss of step t is not finite, restores the
    latest copy that produced a finite loss, then prints (and stores in `message`) which step failed.

    Args:
        snapshot_every: int. Steps between weight copies (1 keeps the weights of the step just before; a copy
            costs one device-to-host transfer of the weights).

    Attributes:
        stopped_at_step: the global step (1-based) whose loss was not finite, or None.
        restored_step: the step count of the weights that were restored.
        message: the explanation printed when training stopped, or None.
    """

    def __init__(self, snapshot_every=1):
        super().__init__()
        if not isinstance(snapshot_every, int) or isinstance(snapshot_every, bool) or snapshot_every < 1:
            raise ValueError(f"`snapshot_every` must be an int >= 1; received snapshot_every={snapshot_every!r}.")
        self.snapshot_every = snapshot_every
        self.stopped_at_step = None
        self.restored_step = None
        self.message = None
        self._pending = None  # (step, weights) not yet known to give a finite loss
        self._good = None  # (step, weights) that gave a finite loss
        self._start = None  # (step, weights) when training began
        self._epoch = 0

    def _snapshot(self):
        _sync_weights(self.model)
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
        _sync_weights(self.model)
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
        if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
            raise ValueError(f"`total_steps` must be an int >= 1; received total_steps={total_steps!r}.")
        self.total_steps = total_steps

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) >= self.total_steps:
            self.model.stop_training = True


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current `learning_rate` to the epoch logs, so CSV and TensorBoard logs record it."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class VerifiedBackup(keras.callbacks.Callback):
    """Backs up the training state (weights and optimizer) at the end of every epoch, keeping the last `keep`
    backups, each verified against its recorded sha256 before a run resumes from it.

    Keras' `BackupAndRestore` keeps one state (two with `double_checkpoint`), overwrites it in place, and falls
    back to the older one only on an `OSError`, silently. Here every backup is two files, written under temporary
    names and renamed: `step-{step:08d}.weights.h5` (`model.save_weights`, which holds the optimizer's variables
    too), then `step-{step:08d}.json` with the step, the epoch and the weights' size and sha256. The JSON is
    written last, so a backup without one was cut short and is never used. `restore(model)` tries the backups
    newest first, skips (and names, with the reason) any whose record is unreadable or whose weights are missing,
    truncated, corrupt or do not load, and restores the newest good one.

    `request_stop()` (the runner calls it on Ctrl-C) makes the callback save a backup after the step in progress
    and stop training, so an interrupted run resumes from that step rather than from its last epoch.

    Args:
        backup_dir: str. The folder of the backups (created when the first one is written).
        keep: int >= 2. How many backups to keep (the older ones are deleted once a newer one is complete).
        verbose: int. 1 prints a line for every backup skipped on restore.

    Attributes:
        skipped: [(path, reason)] of the backups `restore` passed over.
        stop_requested: whether `request_stop()` was called.
        interrupt_backup: the manifest of the backup written because of `request_stop()`, or None.
    """

    NAME = re.compile(r"step-(\d+)\.json")

    def __init__(self, backup_dir, keep=2, verbose=1):
        super().__init__()
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 2:
            raise ValueError(f"`keep` must be an int >= 2 (a corrupt newest backup needs an older one to fall back "
                             f"to); received keep={keep!r}.")
        self.backup_dir = os.fspath(backup_dir)
        self.keep = keep
        self.verbose = verbose
        self.skipped = []
        self.stop_requested = False
        self.interrupt_backup = None
        self._epoch = 0

    # --- writing -----------------------------------------------------------------------------------------------

    def save(self, model=None, reason="epoch end"):
        """Writes a backup of `model` (default: the model being trained) at its current step; returns its record."""
        model = self.model if model is None else model
        _sync_weights(model)
        step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        os.makedirs(self.backup_dir, exist_ok=True)
        stem = f"step-{step:08d}"
        weights = os.path.join(self.backup_dir, f"{stem}.weights.h5")
        partial = os.path.join(self.backup_dir, f".partial-{stem}.weights.h5")
        model.save_weights(partial, overwrite=True)
        os.replace(partial, weights)
        record = dict(step=step, epoch=self._epoch, reason=reason, weights=os.path.basename(weights),
                      size=os.path.getsize(weights), sha256=sha256_of(weights))
        manifest = os.path.join(self.backup_dir, f"{stem}.json")
        with open(f"{manifest}.partial", "w") as f:
            json.dump(record, f)
        os.replace(f"{manifest}.partial", manifest)
        self._prune(keep_step=step)
        return {**record, "path": weights}

    def _prune(self, keep_step):
        steps = sorted((s for s, _ in self._manifests()), reverse=True)
        for step in steps[self.keep:]:
            if step == keep_step:
                continue
            for path in (os.path.join(self.backup_dir, f"step-{step:08d}.json"),
                         os.path.join(self.backup_dir, f"step-{step:08d}.weights.h5")):
                if os.path.exists(path):
                    os.remove(path)
        # Files of a write that was cut short (the run was killed while saving).
        for leftover in glob.glob(os.path.join(self.backup_dir, ".partial-*")) + glob.glob(
                os.path.join(self.backup_dir, "*.json.partial")):
            os.remove(leftover)

    def request_stop(self):
        """Asks for a backup after the step in progress, then a stop (what Ctrl-C does during `train`)."""
        self.stop_requested = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.stop_requested and self.interrupt_backup is None:
            self.interrupt_backup = self.save(reason="interrupted")
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch + 1
        if self.interrupt_backup is None:
            self.save(reason="epoch end")

    # --- reading -----------------------------------------------------------------------------------------------

    def _manifests(self):
        if not os.path.isdir(self.backup_dir):
            return []
        found = []
        for entry in os.listdir(self.backup_dir):
            match = self.NAME.fullmatch(entry)
            if match:
                found.append((int(match.group(1)), os.path.join(self.backup_dir, entry)))
        return sorted(found, reverse=True)

    def _check(self, manifest):
        """The record of a backup if its files are complete and intact; raises ValueError saying why not."""
        try:
            with open(manifest) as f:
                record = json.load(f)
            weights = os.path.join(self.backup_dir, record["weights"])
            size, digest = int(record["size"]), record["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"its record {os.path.basename(manifest)!r} is unreadable ({error})") from error
        if not os.path.isfile(weights):
            raise ValueError("its weights file is missing")
        actual = os.path.getsize(weights)
        if actual != size:
            raise ValueError(f"it is {actual} bytes long but {size} bytes were written: truncated or overwritten")
        actual = sha256_of(weights)
        if actual != digest:
            raise ValueError(f"its sha256 is {actual}, not the {digest} recorded when it was written: corrupt")
        return {**record, "path": weights}

    def latest(self):
        """The record of the newest intact backup (checked, not loaded), or None."""
        for _, manifest in self._manifests():
            try:
                return self._check(manifest)
            except ValueError:
                continue
        return None

    def restore(self, model):
        """Loads the newest intact backup into `model` (weights and optimizer state).

        Returns:
            Its record (dict with "step", "epoch", "path", ...), or None when there is no backup.

        Raises:
            ValueError: no backup could be loaded after one had started changing the model's weights (each is
                named, with the reason). When every backup fails its checks the model is untouched, and the run
                starts again from step 0 (said in a line).
        """
        self.skipped = []
        touched = False
        manifests = self._manifests()
        partial = sorted(glob.glob(os.path.join(self.backup_dir, "step-*.weights.h5")))
        recorded = {os.path.join(self.backup_dir, f"step-{s:08d}.weights.h5") for s, _ in manifests}
        for orphan in (p for p in partial if p not in recorded):
            self._skip(orphan, "it has no record (.json): the run stopped while writing it")
            os.replace(orphan, f"{orphan}.skipped")
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        for _, manifest in manifests:
            try:
                record = self._check(manifest)
            except ValueError as why:
                self._skip(manifest.replace(".json", ".weights.h5"), str(why))
                continue
            try:
                touched = True
                model.load_weights(record["path"])
            except Exception as error:  # h5py and Keras raise several types for a file that does not load
                self._skip(record["path"], f"it does not load into the model ({type(error).__name__}: {error})")
                continue
            self._set_aside(newer_than=record["step"])
            if self.skipped and self.verbose:
                print(f"Resuming from the backup {record['path']!r} (step {record['step']}) instead.")
            return record
        if touched:
            listing = "; ".join(f"{path!r}: {why}" for path, why in self.skipped)
            raise ValueError(f"No backup in {self.backup_dir!r} can be restored ({listing}). Remove the folder to "
                             "start the run again from step 0, or train with overwrite=True (--overwrite).")
        if self.skipped:
            self._set_aside(newer_than=-1)
            if self.verbose:
                print(f"No intact backup in {self.backup_dir!r}: the run starts again from step 0.")
        return None

    def _set_aside(self, newer_than):
        """Renames the backups newer than the one restored (those skipped) to `*.skipped`, so that they are kept
        for inspection but never counted among the `keep` newest again."""
        for step, manifest in self._manifests():
            if step > newer_than:
                for path in (manifest, manifest.replace(".json", ".weights.h5")):
                    if os.path.exists(path):
                        os.replace(path, f"{path}.skipped")

    def _skip(self, path, why):
        self.skipped.append((path, why))
        if self.verbose:
            print(f"Skipping the backup {path!r}: {why}.")
