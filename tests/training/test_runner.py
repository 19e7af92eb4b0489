"""The run driver: a complete run directory, the saved model takes raw pixels, refusals before step one, resuming."""

import contextlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_vitres.cli.main import main
from keras_vitres.layers import ImagePreprocessing
from keras_vitres.training import (
    TrainingInterrupted,
    evaluate,
    resolve_config,
    runner,
    train,
)
from keras_vitres.training import run_dir as run_dir_

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_RESNET = dict(preset="resnet20", model_overrides={"depth": 8}, batch_size=32, steps_per_epoch=2, warmup_steps=1)
TINY_FLAGS = ["--preset", "resnet20", "--set", 'model_overrides={"depth": 8}', "--batch-size", "32",
              "--steps-per-epoch", "2", "--set", "warmup_steps=1"]


class CtrlCBefore(keras.callbacks.Callback):
    """Sends this process SIGINT (what Ctrl-C does) just before training step `step` begins."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations) + 1 == self.step:
            signal.raise_signal(signal.SIGINT)


class Trace(keras.callbacks.Callback):
    """The step each `fit` began at, and the weights after every step."""

    def __init__(self):
        super().__init__()
        self.began_at, self.weights, self.losses, self.start_weights = [], {}, {}, None

    def on_train_begin(self, logs=None):
        self.began_at.append(int(self.model.optimizer.iterations))
        if self.start_weights is None:
            self.start_weights = self.model.get_weights()

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations)
        self.weights.setdefault(step, self.model.get_weights())
        self.losses.setdefault(step, float(logs["loss"]))


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = os.fspath(tmp_path_factory.mktemp("runs") / "tiny")
    config = resolve_config("digits_resnet", run_dir=run_dir, steps=4, **TINY_RESNET)
    result = train(config, verbose=0)
    keras.backend.clear_session()
    return run_dir, result


def test_a_run_writes_its_directory(tiny_run):
    run_dir, result = tiny_run
    for name in ("config.json", "summary.txt", "summary.json", "model.keras", "curves.png", "logs/training.csv",
                 "checkpoints/best.keras"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert not os.path.exists(os.path.join(run_dir, "backup"))  # removed once the run finished
    if runner.has_tensorboard():
        assert os.listdir(os.path.join(run_dir, "logs", "tensorboard", "train"))
    config = json.load(open(os.path.join(run_dir, "config.json")))
    resolved = config["resolved"]
    assert config["recipe"]["name"] == "digits_resnet" and config["recipe"]["model_overrides"] == {"depth": 8}
    assert (resolved["steps_per_epoch"], resolved["epochs"], resolved["total_steps"]) == (2, 2, 4)
    assert resolved["preprocessing"]["normalization"] == "pixel_mean"
    assert resolved["preprocessing"]["layer"] == "ImagePreprocessing"
    assert resolved["preprocessing"]["formula"] == "x - mean (per pixel and channel)"
    assert resolved["preprocessing"]["mean_shape"] == [32, 32, 3] and resolved["preprocessing"]["mean_of"] == 1437
    assert resolved["strategy"] == "one" and resolved["mixed_precision"] == runner.resolve_precision("auto")
    assert resolved["jit_compile"] is False and resolved["train_examples"] == 1437
    assert result["steps"] == 4 and 0.0 <= result["test_accuracy"] <= 1.0
    summary = open(os.path.join(run_dir, "summary.txt")).read().strip()
    assert summary == result["summary"] and "test accuracy" in summary and "\n" not in summary
    assert json.load(open(os.path.join(run_dir, "summary.json")))["class_names"] == [str(i) for i in range(10)]
    with open(os.path.join(run_dir, "logs", "training.csv")) as f:
        header, *rows = f.read().split()
    assert len(rows) == 2 and "learning_rate" in header


def test_the_saved_model_takes_raw_pixels_through_its_preprocessing_layer(tiny_run):
    run_dir, _ = tiny_run
    import keras_vitres.serialization  # noqa: F401  (the documented import before load_model)
    from keras_vitres.data import load_dataset, pixel_mean

    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    preprocessing = model.get_layer("preprocessing")
    assert isinstance(preprocessing, ImagePreprocessing) and preprocessing.preprocessing.per_pixel_mean
    assert model.layers[1] is preprocessing  # input -> preprocessing -> preset model
    data = load_dataset("digits")
    raw = data.test[0][:8].astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(preprocessing(raw)), raw - pixel_mean(data.train[0]),
                               atol=1e-4)
    network = model.layers[2]
    np.testing.assert_allclose(model.predict(raw, verbose=0), network.predict(raw - pixel_mean(data.train[0]),
                                                                              verbose=0), atol=1e-5)


def test_evaluate_a_run_directory_and_a_model_file(tiny_run):
    run_dir, result = tiny_run
    scores = evaluate(run_dir)
    assert scores["dataset"] == "digits" and scores["examples"] == 360 and scores["split"] == "test"
    assert scores["accuracy"] == pytest.approx(result["test_accuracy"], abs=1e-6)
    assert evaluate(os.path.join(run_dir, "model.keras"), "digits", split="train")["examples"] == 1437
    with pytest.raises(FileNotFoundError, match="run directory"):
        evaluate(os.path.join(run_dir, "logs"))
    with pytest.raises(ValueError, match="split"):
        evaluate(run_dir, split="dev")


def test_a_finished_run_is_not_overwritten_and_the_default_dir_moves_on(tiny_run, tmp_path, monkeypatch):
    run_dir, _ = tiny_run
    config = resolve_config("digits_resnet", run_dir=run_dir, steps=4, **TINY_RESNET)
    with pytest.raises(ValueError, match="finished run"):
        train(config, verbose=0)
    monkeypatch.chdir(tmp_path)
    os.makedirs("runs/resnet20_digits")
    open("runs/resnet20_digits/summary.json", "w").write("{}")
    assert resolve_config("digits_resnet").run_dir == os.path.join("runs", "resnet20_digits_2")


def test_an_unwritable_run_dir_fails_before_any_data_or_model(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the run directory was checked")

    monkeypatch.setattr("keras_vitres.training.runner.load_dataset", no_data)
    run_dir = os.fspath(blocker / "run")
    config = resolve_config("digits_resnet", run_dir=run_dir, steps=4, **TINY_RESNET)
    with pytest.raises(OSError, match="run directory .* cannot be written") as caught:
        train(config, verbose=0)
    assert repr(run_dir) in str(caught.value)
    code, out, err = run_cli(["train", *TINY_FLAGS, "--steps", "4", "--run-dir", run_dir, "--verbose", "0"])
    assert code == 2 and f"run directory {run_dir!r} cannot be written" in err and "error" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a keras-vitres run directory"):
        train(resolve_config("digits_resnet", run_dir=os.fspath(foreign), steps=4, **TINY_RESNET), verbose=0)


def test_an_unfinished_run_resumes_only_with_its_own_configuration(tmp_path):
    run_dir = os.fspath(tmp_path / "run")
    first = resolve_config("digits_resnet", run_dir=run_dir, steps=4, **TINY_RESNET)
    run_dir_.prepare_run_dir(first)
    os.makedirs(os.path.join(run_dir, "backup"))  # as if an epoch had been backed up before a crash
    run_dir_.prepare_run_dir(first)  # the same configuration resumes
    changed = resolve_config("digits_resnet", run_dir=run_dir, steps=4, **{**TINY_RESNET, "batch_size": 64})
    with pytest.raises(ValueError, match=r"recipe\.batch_size"):
        run_dir_.prepare_run_dir(changed)


def test_a_run_directory_written_before_the_renames_evaluates_and_resumes(tiny_run, tmp_path):
    """`tiny_run`'s config.json as main's code wrote it at 22a67bd (the recipe's `preprocessing`, now `normalization`,
    "resolved" with `image_shape`, another description of the recipe) is read by `evaluate` and resumes the run."""
    run_dir = tmp_path / "old"
    os.makedirs(run_dir / "backup")  # an unfinished run that saved a backup: resuming compares the configurations
    shutil.copy(os.path.join(tiny_run[0], "model.keras"), run_dir)
    old = json.loads((Path(__file__).parent / "fixtures" / "config_written_by_22a67bd.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**old, "run_dir": os.fspath(run_dir)}))
    scores = evaluate(run_dir)
    assert (scores["dataset"], scores["examples"]) == ("digits", 360)
    assert scores["accuracy"] == pytest.approx(tiny_run[1]["test_accuracy"], abs=1e-6)
    with pytest.raises(ValueError, match=r"differs in \['recipe\.normalization'\]"):
        run_dir_.prepare_run_dir(resolve_config("digits_resnet", run_dir=os.fspath(run_dir), steps=4,
                                                normalization="rescale", **TINY_RESNET))
    run_dir_.prepare_run_dir(resolve_config("digits_resnet", run_dir=os.fspath(run_dir), steps=4, **TINY_RESNET))


def test_vit_recipe_with_randaugment_mixup_cutmix_label_smoothing_bfloat16_and_remat(tmp_path):
    tiny_vit = dict(patch_size=8, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32, drop_path_rate=0.1)
    config = resolve_config("vit_small_data", dataset="digits", run_dir=os.fspath(tmp_path / "vit"), steps=3,
                            steps_per_epoch=3, batch_size=16, warmup_epochs=None, warmup_steps=1,
                            validation_size=100, model_overrides=tiny_vit, mixed_precision="mixed_bfloat16",
                            jit_compile=False, remat=True)
    result = train(config, verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # the run's policy does not leak
    resolved = json.load(open(tmp_path / "vit" / "config.json"))["resolved"]
    assert resolved["labels"] == "one-hot" and resolved["loss"] == "CategoricalCrossentropy"
    assert resolved["preprocessing"]["formula"] == "x * 0.00784314 - 1" and resolved["validation_examples"] == 100
    assert (resolved["mixed_precision"], resolved["jit_compile"]) == ("mixed_bfloat16", False)
    assert result["steps"] == 3 and np.isfinite(result["test_loss"])
    import keras_vitres.serialization  # noqa: F401  (the documented import before load_model)

    model = keras.saving.load_model(tmp_path / "vit" / "model.keras")
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert model.optimizer.global_clipnorm == 1.0
    assert model.layers[2].get_layer("encoder_block_0").dtype_policy.name == "mixed_bfloat16"
    assert model.layers[2].get_layer("encoder_block_0").remat is True
    assert json.load(open(tmp_path / "vit" / "config.json"))["remat"] is True
    with pytest.raises(ValueError, match="received remat='on'"):
        resolve_config("vit_small_data", remat="on")
    assert model.get_layer("preprocessing").dtype_policy.name == "float32"
    assert model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0).dtype == np.float32  # float32 logits
    rows = open(tmp_path / "vit" / "logs" / "training.csv").read().split()
    assert "val_accuracy" in rows[0]


def test_a_diverging_run_stops_keeps_the_last_good_weights_and_names_the_step(tmp_path, monkeypatch):
    trace, results = Trace(), []

    def traced_train(config, **kwargs):  # `keras-vitres train`, watched step by step
        results.append(train(config, callbacks=[trace], **kwargs))
        return results[-1]

    monkeypatch.setattr("keras_vitres.training.train", traced_train)
    run_dir = os.fspath(tmp_path / "nan")
    code, out, err = run_cli(["train", *TINY_FLAGS, "--steps", "6", "--lr", "1e30", "--set", "schedule=constant",
                              "--set", "warmup_steps=0", "--run-dir", run_dir, "--verbose", "0"])
    assert code == 1, err  # the command says the run did not finish
    (result,) = results
    bad = result["stopped_on_nan"]
    assert bad is not None and result["steps"] == bad < 6
    assert not np.isfinite(trace.losses[bad]) and all(np.isfinite(trace.losses[s]) for s in range(1, bad))
    # The loss of step bad-1 was computed with the weights after step bad-2: the last weights known to be good.
    good = bad - 2
    assert f"at step {bad} " in result["message"] and f"the weights after step {good} " in result["message"]
    assert "STOPPED EARLY" in result["summary"] and result["message"] in result["summary"]
    assert result["message"] in out and json.load(open(os.path.join(run_dir, "summary.json")))["stopped_on_nan"] == bad
    import keras_vitres.serialization  # noqa: F401  (the documented import before load_model)

    kept = keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False).get_weights()
    assert all(np.isfinite(w).all() for w in kept)
    reference = trace.start_weights if good == 0 else trace.weights[good]
    assert len(kept) == len(reference)
    for a, b in zip(kept, reference):
        np.testing.assert_array_equal(a, b)


def test_ctrl_c_saves_the_step_prints_the_resume_command_and_exits_130(tmp_path, monkeypatch):
    run_dir = os.fspath(tmp_path / "run")
    trace = Trace()

    def train_with_ctrl_c(config, **kwargs):  # `keras-vitres train`, with Ctrl-C before step 5 of 8
        return train(config, callbacks=[CtrlCBefore(5), trace], **kwargs)

    monkeypatch.setattr("keras_vitres.training.train", train_with_ctrl_c)
    code, out, err = run_cli(["train", *TINY_FLAGS, "--steps", "8", "--run-dir", run_dir, "--verbose", "0"])
    assert code == 130, err
    assert "interrupted at step 5 of 8" in err and "step-00000005.weights.h5" in err
    command = err.split("Resume with:\n", 1)[1].strip()
    argv = shlex.split(command)
    assert argv[:2] == ["keras-vitres", "train"] and argv[-2:] == ["--run-dir", run_dir]
    assert "--overwrite" not in argv and 'model_overrides={"depth": 8}' in argv
    assert sorted(os.listdir(os.path.join(run_dir, "backup"))) == [  # the epoch-end backup and Ctrl-C's
        "step-00000004.json", "step-00000004.weights.h5", "step-00000005.json", "step-00000005.weights.h5"]
    assert not os.path.exists(os.path.join(run_dir, "model.keras"))
    at_interrupt = trace.weights[5]

    resumed = Trace()
    monkeypatch.setattr("keras_vitres.training.train", lambda config, **kw: train(config, callbacks=[resumed], **kw))
    code, out, err = run_cli(argv[1:])  # the printed command, as given
    assert code == 0, err
    assert resumed.began_at == [5, 6]  # the rest of the interrupted epoch, then the next one
    assert json.load(open(os.path.join(run_dir, "summary.json")))["steps"] == 8
    rows = open(os.path.join(run_dir, "logs", "training.csv")).read().split()[1:]
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2", "3"]  # no epoch logged twice
    assert not os.path.exists(os.path.join(run_dir, "backup"))
    # It went on from the weights (and, through them, the optimizer state) that Ctrl-C saved.
    for a, b in zip(resumed.start_weights, at_interrupt):
        np.testing.assert_array_equal(a, b)


def test_a_truncated_or_corrupt_newest_backup_falls_back_to_the_one_before(tmp_path, capsys):
    run_dir = os.fspath(tmp_path / "run")
    config = resolve_config("digits_resnet", run_dir=run_dir, steps=6, **TINY_RESNET)
    first = Trace()
    with pytest.raises(TrainingInterrupted) as caught:
        train(config, verbose=0, callbacks=[CtrlCBefore(5), first])
    assert caught.value.step == 5
    newest = os.path.join(run_dir, "backup", "step-00000005.weights.h5")
    size = os.path.getsize(newest)
    with open(newest, "r+b") as f:
        f.truncate(size // 3)
    capsys.readouterr()

    resumed = Trace()
    result = train(config, verbose=1, callbacks=[resumed])
    out = capsys.readouterr().out
    assert f"Skipping the backup {newest!r}: it is {size // 3} bytes long but {size} bytes were written" in out
    assert "step-00000004.weights.h5' (step 4) instead" in out
    assert resumed.began_at == [4] and result["steps"] == 6
    # The step-4 state was restored: the weights the first run had after step 4.
    for a, b in zip(resumed.start_weights, first.weights[4]):
        np.testing.assert_array_equal(a, b)
    assert not os.path.exists(os.path.join(run_dir, "backup"))  # removed once the run finished


KILLABLE = """
import os, signal, sys
import keras
from keras_vitres.training import resolve_config, train

class KillAt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)

config = resolve_config("digits_resnet", run_dir=sys.argv[1], steps=9, deterministic=True, preset="resnet20",
                        model_overrides={{"depth": 8}}, batch_size=32, steps_per_epoch=3, warmup_steps=2)
train(config, verbose=2, callbacks=[KillAt()] if sys.argv[2] == "kill" else [])
"""


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    script = textwrap.dedent(KILLABLE.format(kill_at=5))  # step 5 of 9: the middle of the second epoch
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def run(run_dir, mode):
        return subprocess.run([sys.executable, "-c", script, os.fspath(run_dir), mode], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=600)

    killed = run(tmp_path / "killed", "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    assert os.path.exists(tmp_path / "killed" / "backup" / "step-00000003.weights.h5")  # the end of epoch 1
    assert not os.path.exists(tmp_path / "killed" / "model.keras")
    resumed = run(tmp_path / "killed", "go")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "Resuming" in resumed.stdout and "at epoch 2 of 3" in resumed.stdout
    never = run(tmp_path / "never", "go")
    assert never.returncode == 0, never.stdout[-2000:] + never.stderr[-2000:]

    import keras_vitres.serialization  # noqa: F401  (the documented import before load_model)

    a = keras.saving.load_model(tmp_path / "killed" / "model.keras")
    b = keras.saving.load_model(tmp_path / "never" / "model.keras")
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 9
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    rows = open(tmp_path / "killed" / "logs" / "training.csv").read().split()[1:]
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2"]  # no epoch logged twice


@pytest.mark.slow
def test_adaptive_warmup_in_a_run_on_the_jax_backend(tmp_path):
    code = textwrap.dedent("""
        import json, sys
        from keras_vitres.training import resolve_config, train
        config = resolve_config("digits_resnet", run_dir=sys.argv[1], steps=12, preset="resnet20",
                                model_overrides={"depth": 8}, batch_size=32, steps_per_epoch=4, warmup_steps=8,
                                warmup_mode="constant", warmup_learning_rate=0.01, warmup_until_accuracy=0.05,
                                schedule="constant", learning_rate=0.1)
        train(config, verbose=2)
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code, os.fspath(tmp_path / "jax")], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "AdaptiveWarmup: warmup ended at step 1 " in done.stdout
    rates = [float(r.split(",")[2]) for r in open(tmp_path / "jax" / "logs" / "training.csv").read().split()[1:]]
    assert rates == pytest.approx([0.1, 0.1, 0.1])  # released after step 1, not held to the cap of 8
    assert json.load(open(tmp_path / "jax" / "config.json"))["resolved"]["backend"] == "jax"



# `keras-vitres train` as a user runs it, slowed to ~0.3 s a step so that a Ctrl-C lands in the middle of training;
# it prints STEP n after each step so the test knows when to send it.
SLOWED_CLI = """
import sys, time
import keras
import keras_vitres.training as training
from keras_vitres.cli.main import main
from keras_vitres.layers import ImagePreprocessing

class Slow(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        print(f"STEP {int(self.model.optimizer.iterations)}", flush=True)
        time.sleep(0.3)

real_train = training.train
training.train = lambda config, **kwargs: real_train(config, callbacks=[Slow()], **kwargs)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigint_to_a_real_keras_vitres_train_process_saves_exits_130_and_the_printed_command_resumes(tmp_path):
    run_dir = os.fspath(tmp_path / "run")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    argv = ["train", *TINY_FLAGS, "--steps", "12", "--steps-per-epoch", "4", "--deterministic", "--verbose", "2",
            "--run-dir", run_dir]
    process = subprocess.Popen([sys.executable, "-c", SLOWED_CLI, *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    seen = []
    deadline = time.time() + 300
    for line in process.stdout:  # wait for step 5 (the first step of the second epoch), then press Ctrl-C
        seen.append(line)
        if line.strip() == "STEP 5" or time.time() > deadline:
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=300)
    out = "".join(seen) + out
    assert process.returncode == 130, out[-2000:] + err[-3000:]
    steps = [int(line.split()[1]) for line in out.splitlines() if line.startswith("STEP ")]
    saved = steps[-1]  # the step in progress when Ctrl-C came was finished, then saved
    assert 5 <= saved < 8, steps  # inside the second epoch (steps 5-8)
    assert f"interrupted at step {saved} of 12" in err and f"step-{saved:08d}.weights.h5" in err
    command = shlex.split(err.split("Resume with:\n", 1)[1].strip().splitlines()[0])
    assert command[:2] == ["keras-vitres", "train"] and command[-2:] == ["--run-dir", run_dir]
    assert os.path.exists(os.path.join(run_dir, "backup", f"step-{saved:08d}.json"))
    assert not os.path.exists(os.path.join(run_dir, "model.keras"))

    # The printed command (run through the same entry point), then a run that was never interrupted.
    resumed = subprocess.run([sys.executable, "-m", "keras_vitres.cli.main", *command[1:]], capture_output=True,
                             text=True, env=env, cwd=REPO, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert f"at epoch 2 of 3, step {saved} of 12" in resumed.stdout
    never = subprocess.run([sys.executable, "-m", "keras_vitres.cli.main", *argv[:-1], os.fspath(tmp_path / "never")],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert never.returncode == 0, never.stderr[-3000:]

    import keras_vitres.serialization  # noqa: F401  (the documented import before load_model)

    a = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    b = keras.saving.load_model(tmp_path / "never" / "model.keras")
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 12
    for x, y in zip(a.get_weights(), b.get_weights()):  # nothing lost: the weights of a run never interrupted
        np.testing.assert_array_equal(x, y)
    rows = open(os.path.join(run_dir, "logs", "training.csv")).read().split()[1:]
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2"]


def test_deterministic_runs_seed_everything_and_turn_op_determinism_on(tmp_path, monkeypatch):
    import tensorflow as tf

    calls = []
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism", lambda: calls.append("determinism"))
    monkeypatch.setattr(keras.utils, "set_random_seed", lambda seed: calls.append(("seed", seed)))
    monkeypatch.setattr(runner, "_train", lambda *args: "trained")  # stop where the training would begin
    for deterministic, expected in ((True, ["determinism", ("seed", 7)]), (False, [("seed", 7)])):
        calls.clear()
        config = resolve_config("digits_resnet", run_dir=os.fspath(tmp_path / str(deterministic)), seed=7,
                                deterministic=deterministic, steps=4, **TINY_RESNET)
        assert train(config, verbose=0) == "trained" and calls == expected
    with pytest.raises(ValueError, match="received deterministic='yes'"):
        resolve_config("digits_resnet", deterministic="yes")


# Trains N steps with deterministic ops on and writes the weights; with two seeds, one after the other.
SEEDED = """
import sys
import numpy as np
from keras_vitres.training import resolve_config, train

weights = {}
for seed in [int(s) for s in sys.argv[2].split(",")]:
    config = resolve_config("digits_resnet", run_dir=f"{sys.argv[1]}/seed{seed}", steps=6, seed=seed,
                            deterministic=True, preset="resnet20", model_overrides={"depth": 8}, batch_size=32,
                            steps_per_epoch=3, warmup_steps=2, mixed_precision="float32", jit_compile=False)
    train(config, verbose=0)
    import keras
    model = keras.saving.load_model(f"{sys.argv[1]}/seed{seed}/model.keras")
    weights.update({f"{seed}_{i}": w for i, w in enumerate(model.get_weights())})
np.savez(f"{sys.argv[1]}/weights.npz", **weights)
"""


@pytest.mark.slow
def test_the_same_seed_gives_bit_identical_weights_with_deterministic_ops_on_cpu(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}

    def run(folder, seeds):  # a fresh process each time, so op determinism does not leak into other tests
        os.makedirs(folder)
        done = subprocess.run([sys.executable, "-c", SEEDED, os.fspath(folder), seeds], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return np.load(folder / "weights.npz")

    first, second = run(tmp_path / "a", "0"), run(tmp_path / "b", "0,1")
    zeros = sorted(k for k in first.files if k.startswith("0_"))
    assert zeros and zeros == sorted(k for k in second.files if k.startswith("0_"))
    for key in zeros:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    # A different seed gives different weights (so the comparison above could fail).
    trained = [k for k in zeros if first[k].size > 1 and not np.array_equal(first[k], second[k.replace("0_", "1_", 1)])]
    assert len(trained) > len(zeros) // 2


def test_train_says_when_remat_saves_no_memory(tmp_path, monkeypatch):
    # Keras on JAX compiling for the CPU merges the recomputation back (tests/benchmark/test_memory.py): say so.
    monkeypatch.setattr("keras_vitres.training.runner.remat_saves_memory", lambda: False)
    flags = [*TINY_FLAGS, "--steps", "2", "--remat", "--verbose", "bar"]
    code, out, err = run_cli(["train", *flags, "--run-dir", os.fspath(tmp_path / "jax_cpu")])
    assert code == 0, err
    assert "remat: Keras on JAX compiling for the CPU" in out and "saves no memory here" in out
    # --verbose bar: Keras' progress bar although the output is not a terminal (auto would print an epoch line).
    assert "\r\x1b[1m2/2" in out and "epoch 1/1 - " not in out
    monkeypatch.setattr("keras_vitres.training.runner.remat_saves_memory", lambda: True)
    code, out, err = run_cli(["train", *flags, "--run-dir", os.fspath(tmp_path / "elsewhere")])
    assert code == 0, err
    assert "remat:" not in out
