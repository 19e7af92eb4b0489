"""A training run's directory: its layout (the names below; docs/training.md describes each), its default name, and
the checks before a run writes into it."""

import json
import os
import re
import shutil

from keras_vitres.training.curves import read_log

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
# What must match for a run directory to be resumed (where and how fast it runs may change; a recipe's description
# is no setting).
RESUME_KEYS = ("recipe", "data_path", "seed", "validation_path", "weights")


def is_finished(run_dir):
    """Whether `run_dir` holds a finished run (its summary.json)."""
    return os.path.exists(os.path.join(run_dir, SUMMARY_JSON))


def default_run_dir(preset, dataset, root="runs"):
    """`runs/{preset}_{dataset}` (the preset as trained: `config.trained_name`), or the first `_2`, `_3`, ... that
    holds no finished run: the same command resumes an unfinished run and starts anew after a finished one."""
    base = os.path.join(root, f"{preset}_{dataset}")
    candidate, n = base, 1
    while is_finished(candidate):
        n += 1
        candidate = f"{base}_{n}"
    return candidate


def write_json(path, data):
    """Writes `data` as JSON to `path` under a temporary name first, so a reader never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(tmp, path)


def _json_ready(value):
    return json.loads(json.dumps(value, default=str))


def _changed_fields(previous, config):
    """The fields that must match for resuming (`RESUME_KEYS`; recipe fields as "recipe.FIELD") that differ between
    the run directory's config.json (`previous`, a dict) and `config` (a `RunConfig`)."""
    try:
        before = _json_ready(type(config).from_dict(previous).to_dict())
    except (KeyError, TypeError, ValueError):  # not a configuration this version can read
        return ["recipe"]
    now = _json_ready(config.to_dict())
    changed = [f"recipe.{k}" for k, v in now["recipe"].items() if before["recipe"].get(k) != v and k != "description"]
    return changed + [k for k in RESUME_KEYS if k != "recipe" and before.get(k) != now[k]]


def _check_existing(run_dir, config, overwrite):
    """Raises unless `run_dir` (not empty) can take the run; with `overwrite`, empties it."""
    config_path = os.path.join(run_dir, CONFIG_FILE)
    # Sub-directories of the other processes of a multi-process run are theirs, not this run's.
    entries = [e for e in os.listdir(run_dir) if not WORKER_DIR.fullmatch(e)]
    if entries and not os.path.exists(config_path):
        raise ValueError(f"`run_dir` {run_dir!r} is not empty and holds no {CONFIG_FILE}: not a keras-vitres run "
                         "directory; choose a new or empty directory.")
    if entries and overwrite:
        for entry in entries:
            path = os.path.join(run_dir, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    elif is_finished(run_dir):
        raise ValueError(f"`run_dir` {run_dir!r} already holds a finished run ({SUMMARY_FILE} exists); pass "
                         "overwrite=True (--overwrite) to train again there, or choose another run_dir.")
    elif os.path.isdir(os.path.join(run_dir, BACKUP_DIR)):  # an unfinished run that saved a backup
        with open(config_path) as f:
            changed = _changed_fields(json.load(f), config)
        if changed:
            raise ValueError(f"`run_dir` {run_dir!r} holds an unfinished run with another configuration (differs in "
                             f"{changed}); resume it with the same settings, pass overwrite=True, or choose another "
                             "run_dir.")


def prepare_run_dir(config, overwrite=False):
    """Creates the run directory of `config` (a `RunConfig`) and writes config.json into it, or raises before any
    training.

    Raises:
        PermissionError / OSError: the directory cannot be created or written (named in the message).
        ValueError: it holds a finished run (without `overwrite`), a run with another configuration, or files
            that are not a run's.
    """
    run_dir = config.run_dir
    if os.path.isdir(run_dir):
        _check_existing(run_dir, config, overwrite)
    try:
        for sub in ("", "logs", "checkpoints"):
            os.makedirs(os.path.join(run_dir, sub), exist_ok=True)
        write_json(os.path.join(run_dir, CONFIG_FILE), config.to_dict())
    except OSError as error:
        raise type(error)(f"run directory {run_dir!r} cannot be written: {error.strerror or error}") from error
    return run_dir


def trim_csv_log(csv_path, initial_epoch):
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
