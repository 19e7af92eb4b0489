"""Verified rotating backups of the training state, which a run resumes from (after a crash, a kill or Ctrl-C)."""

import glob
import json
import os
import re

import keras

from keras_vitres.training.callbacks import sync_weights
from keras_vitres.weights.download import sha256_of
from keras_vitres.weights.loaders import load_h5


class VerifiedBackup(keras.callbacks.Callback):
    """Backs up the training state (weights and optimizer) at the end of every epoch, keeping the last `keep`
    backups, each verified against its recorded sha256 before a run resumes from it.

    Keras' `BackupAndRestore` overwrites its state in place and falls back only on an `OSError`, silently. Here a
    backup is two files, each written under a temporary name and renamed: `step-{step:08d}.weights.h5` (weights and
    optimizer), then `step-{step:08d}.json` (step, epoch, the weights' size and sha256), written last, so a backup
    without one was cut short. `restore(model)` restores the newest intact backup and names each one it skips, with
    the reason. `request_stop()` (Ctrl-C) saves a backup after the step in progress and stops the training.

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
        sync_weights(model)
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
                load_h5(model, record["path"])  # also reads backups written before a layer class was renamed
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
