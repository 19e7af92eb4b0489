"""The run driver: a complete run directory, the saved model takes raw pixels, refusals before step one, resuming."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_vitres.training import evaluate, resolve_config, runner, train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_RESNET = dict(preset="resnet20", model_overrides={"depth": 8}, batch_size=32, steps_per_epoch=2, warmup_steps=1)


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
    assert resolved["preprocessing"]["mode"] == "pixel_mean" and resolved["preprocessing"]["layer"] == "Normalization"
    assert resolved["strategy"] == "one" and resolved["mixed_precision"] == "float32"
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
    import keras_vitres  # noqa: F401
    from keras_vitres.data import load_dataset, pixel_mean

    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    preprocessing = model.get_layer("preprocessing")
    assert isinstance(preprocessing, keras.layers.Normalization)
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
    assert resolve_config("digits_resnet")["run_dir"] == os.path.join("runs", "resnet20_digits_2")


def test_an_unwritable_run_dir_fails_before_any_data_or_model(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the run directory was checked")

    monkeypatch.setattr("keras_vitres.data.load_dataset", no_data)
    config = resolve_config("digits_resnet", run_dir=os.fspath(blocker / "run"), steps=4, **TINY_RESNET)
    with pytest.raises(OSError, match="run directory .* cannot be written"):
        train(config, verbose=0)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a keras-vitres run directory"):
        train(resolve_config("digits_resnet", run_dir=os.fspath(foreign), steps=4, **TINY_RESNET), verbose=0)


def test_an_unfinished_run_resumes_only_with_its_own_configuration(tmp_path):
    run_dir = os.fspath(tmp_path / "run")
    first = resolve_config("digits_resnet", run_dir=run_dir, steps=4, **TINY_RESNET)
    runner.prepare_run_dir(first)
    os.makedirs(os.path.join(run_dir, "backup"))  # as if an epoch had been backed up before a crash
    runner.prepare_run_dir(first)  # the same configuration resumes
    changed = resolve_config("digits_resnet", run_dir=run_dir, steps=4, **{**TINY_RESNET, "batch_size": 64})
    with pytest.raises(ValueError, match=r"recipe\.batch_size"):
        runner.prepare_run_dir(changed)


def test_vit_recipe_with_randaugment_mixup_cutmix_label_smoothing_and_bfloat16(tmp_path):
    tiny_vit = dict(patch_size=8, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32, drop_path_rate=0.1)
    config = resolve_config("vit_small_data", dataset="digits", run_dir=os.fspath(tmp_path / "vit"), steps=3,
                            steps_per_epoch=3, batch_size=16, warmup_epochs=None, warmup_steps=1,
                            validation_size=100, model_overrides=tiny_vit, mixed_precision="mixed_bfloat16",
                            jit_compile=False)
    result = train(config, verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # the run's policy does not leak
    resolved = json.load(open(tmp_path / "vit" / "config.json"))["resolved"]
    assert resolved["labels"] == "one-hot" and resolved["loss"] == "CategoricalCrossentropy"
    assert resolved["preprocessing"]["layer"] == "Rescaling" and resolved["validation_examples"] == 100
    assert (resolved["mixed_precision"], resolved["jit_compile"]) == ("mixed_bfloat16", False)
    assert result["steps"] == 3 and np.isfinite(result["test_loss"])
    import keras_vitres  # noqa: F401

    model = keras.saving.load_model(tmp_path / "vit" / "model.keras")
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert model.optimizer.global_clipnorm == 1.0
    assert model.layers[2].get_layer("encoder_block_0").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("preprocessing").dtype_policy.name == "float32"
    assert model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0).dtype == np.float32  # float32 logits
    rows = open(tmp_path / "vit" / "logs" / "training.csv").read().split()
    assert "val_accuracy" in rows[0]


def test_a_diverging_run_stops_keeps_finite_weights_and_says_so(tmp_path, capsys):
    config = resolve_config("digits_resnet", run_dir=os.fspath(tmp_path / "nan"), steps=6, learning_rate=1e30,
                            schedule="constant", **{**TINY_RESNET, "warmup_steps": 0})
    result = train(config, verbose=0)
    assert result["stopped_on_nan"] is not None and result["steps"] == result["stopped_on_nan"] < 6
    assert "STOPPED EARLY" in result["summary"] and f"step {result['stopped_on_nan']}" in result["summary"]
    import keras_vitres  # noqa: F401

    weights = keras.saving.load_model(tmp_path / "nan" / "model.keras", compile=False).get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    assert "TerminateOnNaN" in capsys.readouterr().out


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
    assert os.path.exists(tmp_path / "killed" / "backup" / "latest.weights.h5")
    assert not os.path.exists(tmp_path / "killed" / "model.keras")
    resumed = run(tmp_path / "killed", "go")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "Resuming" in resumed.stdout and "at epoch 2 of 3" in resumed.stdout
    never = run(tmp_path / "never", "go")
    assert never.returncode == 0, never.stdout[-2000:] + never.stderr[-2000:]

    import keras_vitres  # noqa: F401

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

