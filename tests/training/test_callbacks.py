"""Callbacks: the adaptive warmup switches exactly once, the NaN guard keeps the last good weights, exact stops, and
the progress a run prints by where its output goes."""

import io
import json
import os

import keras
import numpy as np
import pytest

from keras_vitres.training import (
    AdaptiveWarmup,
    LearningRateLogger,
    StepDecay,
    StopAtStep,
    TerminateOnNaN,
    VerifiedBackup,
    Warmup,
)
from keras_vitres.training.callbacks import resolve_verbosity


def separable_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    return x, y


def small_model(learning_rate):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(learning_rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class RecordSteps(keras.callbacks.Callback):
    """Learning rate used by every step, and the running accuracy after it."""

    def __init__(self):
        super().__init__()
        self.rates, self.accuracies = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))

    def on_train_batch_end(self, batch, logs=None):
        self.accuracies.append(float(logs["accuracy"]))


def test_adaptive_warmup_switches_exactly_once_when_accuracy_passes_the_threshold(tmp_path, capsys):
    schedule = Warmup(StepDecay(0.5, boundaries=(10_000,)), warmup_steps=1000, warmup_learning_rate=0.05,
                      mode="constant", adaptive=True)
    model = small_model(schedule)
    state = os.fspath(tmp_path / "warmup.json")
    record, warmup = RecordSteps(), AdaptiveWarmup(threshold=0.75, state_path=state)
    x, y = separable_data()
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[record, warmup])

    rates = np.array(record.rates)
    switches = np.flatnonzero(np.diff(rates) != 0)
    assert len(switches) == 1, rates  # exactly one switch, and never back
    step = switches[0] + 1  # the first step run at the released rate
    assert warmup.released_at == step == schedule.released_at
    assert np.allclose(rates[:step], 0.05) and np.allclose(rates[step:], 0.5)
    # It switched right after the first step whose running accuracy reached the threshold.
    first = int(np.argmax(np.array(record.accuracies) >= 0.75))
    assert step == first + 1
    assert 1 < step < 48
    with open(state) as f:
        assert json.load(f) == {"released_at": step}
    assert f"warmup ended at step {step}" in capsys.readouterr().out

    # A resumed run (new schedule, same state file) keeps the release step without waiting again.
    again = Warmup(StepDecay(0.5, boundaries=(10_000,)), 1000, 0.05, mode="constant", adaptive=True)
    resumed = small_model(again)
    resumed.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0, callbacks=[AdaptiveWarmup(0.99, state_path=state)])
    assert again.released_at == step


def test_adaptive_warmup_ends_at_the_cap_if_accuracy_never_passes():
    schedule = Warmup(0.1, warmup_steps=5, warmup_learning_rate=0.01, mode="constant", adaptive=True)
    model = small_model(schedule)
    record, warmup = RecordSteps(), AdaptiveWarmup(threshold=1.0, verbose=0)
    x, y = separable_data(n=160)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[record, warmup])
    assert warmup.released_at == 5
    np.testing.assert_allclose(record.rates, [0.01] * 5 + [0.1] * 5, rtol=1e-6)


def test_adaptive_warmup_needs_an_adaptive_schedule():
    model = small_model(0.1)
    x, y = separable_data(n=32)
    with pytest.raises(ValueError, match="adaptive=True"):
        model.fit(x, y, batch_size=16, verbose=0, callbacks=[AdaptiveWarmup()])
    with pytest.raises(ValueError, match="threshold"):
        AdaptiveWarmup(threshold=20)


def test_terminate_on_nan_names_the_step_and_restores_the_last_good_weights(capsys):
    # Regression with a far too large learning rate: the loss grows to inf, then NaN, within a few steps.
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.5), "mse")
    x, y = separable_data(n=320)

    class Record(keras.callbacks.Callback):
        weights, losses = {}, {}

        def on_train_batch_end(self, batch, logs=None):
            step = int(self.model.optimizer.iterations)
            self.weights[step], self.losses[step] = self.model.get_weights(), float(logs["loss"])

    guard, record = TerminateOnNaN(), Record()
    model.fit(x * 10, y.astype("float32"), batch_size=16, epochs=2, verbose=0, shuffle=False,
              callbacks=[record, guard])
    bad = min(step for step, loss in record.losses.items() if not np.isfinite(loss))
    assert bad >= 3
    assert guard.stopped_at_step == bad == int(model.optimizer.iterations)  # stopped right there
    # The loss of step bad-1 (computed with the weights after step bad-2) was finite: those are the last good ones.
    assert guard.restored_step == bad - 2
    for restored, good in zip(model.get_weights(), record.weights[bad - 2]):
        np.testing.assert_array_equal(restored, good)
    out = capsys.readouterr().out
    assert f"at step {bad} (epoch 1, batch {bad})" in out and f"weights after step {bad - 2}" in out
    assert guard.message in out
    with pytest.raises(ValueError, match="snapshot_every"):
        TerminateOnNaN(snapshot_every=0)


def test_stop_at_step_stops_mid_epoch_and_the_lr_is_logged(tmp_path):
    model = small_model(0.05)
    x, y = separable_data(n=64)
    csv_path = os.fspath(tmp_path / "log.csv")
    model.fit(x, y, batch_size=16, epochs=5, verbose=0,
              callbacks=[StopAtStep(6), LearningRateLogger(), keras.callbacks.CSVLogger(csv_path)])
    assert int(model.optimizer.iterations) == 6  # 4 steps per epoch: stopped in the second epoch
    with open(csv_path) as f:
        header, *rows = f.read().splitlines()
    assert "learning_rate" in header.split(",") and len(rows) == 2
    assert float(rows[0].split(",")[header.split(",").index("learning_rate")]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="total_steps"):
        StopAtStep(0)


# A model whose every SGD update is exactly -lr: y_pred = w (x = 1), loss = mean(y_pred), so dloss/dw = 1. The
# metric "progress" (= -y_pred = the sum of the rates so far) grows, so AdaptiveWarmup can release on it.
UPDATE_IS_LR = """
import json, keras, numpy as np
from keras_vitres.training import AdaptiveWarmup, Warmup

def progress(y_true, y_pred):
    return -keras.ops.mean(y_pred)

schedule = Warmup(0.1, warmup_steps=100, warmup_learning_rate=0.01, mode="constant", adaptive=True)
model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
model.compile(keras.optimizers.SGD(schedule), loss=lambda y_true, y_pred: keras.ops.mean(y_pred), metrics=[progress])
warmup = AdaptiveWarmup(threshold=0.02, monitor="progress", verbose=0)
model.fit(np.ones((10, 1), "float32"), np.zeros((10, 1), "float32"), batch_size=1, epochs=1, verbose=0,
          callbacks=[warmup])
print("RESULT" + json.dumps(dict(released_at=warmup.released_at, weight=float(model.get_weights()[0][0, 0]),
                                 backend=keras.backend.backend())))
"""


def check_update_is_lr(result):
    k = result["released_at"]
    assert 1 < k < 10
    # k steps at the warmup rate 0.01, then 10 - k at 0.1: the compiled train step saw the release.
    assert result["weight"] == pytest.approx(-(k * 0.01 + (10 - k) * 0.1), rel=1e-5)


def test_adaptive_warmup_changes_the_compiled_update_on_tensorflow():
    namespace = {}
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(UPDATE_IS_LR, namespace)
    check_update_is_lr(json.loads(out.getvalue().split("RESULT", 1)[1]))


def test_adaptive_warmup_changes_the_compiled_update_on_jax():
    pytest.importorskip("jax")
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", UPDATE_IS_LR], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT", 1)[1])
    assert result["backend"] == "jax"
    check_update_is_lr(result)  # the jitted step was traced again at the release


def momentum_model():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def trained_steps(model, x, y, steps):
    model.fit(x[: 16 * steps], y[: 16 * steps], batch_size=16, epochs=1, verbose=0, shuffle=False)


def test_verified_backup_keeps_two_and_falls_back_past_a_truncated_or_corrupt_newest(tmp_path, capsys):
    x, y = separable_data(n=96)
    model = momentum_model()
    backup = VerifiedBackup(tmp_path / "backup")
    saved = {}
    for _ in range(3):  # backups at steps 2, 4 and 6: the oldest is pruned
        trained_steps(model, x, y, 2)
        record = backup.save(model)
        saved[record["step"]] = [w.copy() for w in model.get_weights()] + [
            keras.ops.convert_to_numpy(v).copy() for v in model.optimizer.variables]
    assert sorted(os.listdir(tmp_path / "backup")) == [
        "step-00000004.json", "step-00000004.weights.h5", "step-00000006.json", "step-00000006.weights.h5"]

    fresh = momentum_model

    def state(net):
        return net.get_weights() + [keras.ops.convert_to_numpy(v) for v in net.optimizer.variables]

    # Intact: the newest backup, optimizer state included (its step and the momentum).
    restored = fresh()
    assert backup.restore(restored)["step"] == 6 and backup.skipped == []
    for a, b in zip(state(restored), saved[6]):
        np.testing.assert_array_equal(a, b)

    # Truncated newest: skipped, named, with the reason; the one before is restored.
    newest = tmp_path / "backup" / "step-00000006.weights.h5"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    restored = fresh()
    assert backup.restore(restored)["step"] == 4
    out = capsys.readouterr().out
    assert f"Skipping the backup {os.fspath(newest)!r}: it is {len(data) // 2} bytes long but {len(data)}" in out
    assert "truncated" in out and "step-00000004.weights.h5' (step 4) instead" in out
    for a, b in zip(state(restored), saved[4]):
        np.testing.assert_array_equal(a, b)
    # The skipped backup is set aside (kept for inspection, never counted among the two kept again).
    assert os.path.exists(f"{newest}.skipped") and not newest.exists()

    # Corrupt newest (same length, flipped bytes): caught by its sha256.
    trained_steps(restored, x, y, 2)
    backup.save(restored)  # step 6 again
    newest.write_bytes(bytes(b ^ 0xFF if 2000 <= i < 2100 else b for i, b in enumerate(newest.read_bytes())))
    again = fresh()
    assert backup.restore(again)["step"] == 4
    assert "its sha256 is" in capsys.readouterr().out and "corrupt" in backup.skipped[0][1]

    # An unreadable record is skipped too; with no intact backup at all, the run starts again (untouched model).
    (tmp_path / "backup" / "step-00000004.json").write_text("{not json")
    untouched = fresh()
    before = untouched.get_weights()
    assert backup.restore(untouched) is None
    assert "is unreadable" in backup.skipped[0][1] and "starts again from step 0" in capsys.readouterr().out
    for a, b in zip(untouched.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="keep"):
        VerifiedBackup(tmp_path, keep=1)


def test_verified_backup_never_uses_a_backup_cut_short_while_being_written(tmp_path, capsys):
    x, y = separable_data(n=64)
    model = momentum_model()
    backup = VerifiedBackup(tmp_path)
    trained_steps(model, x, y, 2)
    backup.save(model)
    trained_steps(model, x, y, 2)
    # Killed after the weights were renamed into place but before the record was written.
    model.save_weights(tmp_path / "step-00000004.weights.h5")
    (tmp_path / ".partial-step-00000006.weights.h5").write_bytes(b"half")  # and a write cut even shorter
    restored = momentum_model()
    assert backup.restore(restored)["step"] == 2
    assert "it has no record (.json): the run stopped while writing it" in capsys.readouterr().out
    backup.save(model)  # the next backup clears what the cut writes left
    assert ".partial-step-00000006.weights.h5" not in os.listdir(tmp_path)


class Stream:
    """An output stream that says whether it is a terminal."""

    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_auto_verbosity_is_the_bar_on_a_terminal_and_epoch_lines_elsewhere():
    assert resolve_verbosity("auto", Stream(tty=True)) == "bar"
    assert resolve_verbosity("auto", Stream(tty=False)) == resolve_verbosity("auto", io.StringIO()) == "epoch"
    chosen = [resolve_verbosity(v, Stream(tty=True)) for v in ("bar", "epoch", "silent", 0, 1, 2, "0", "1", "2")]
    assert chosen == ["bar", "epoch", "silent", "silent", "bar", "epoch", "silent", "bar", "epoch"]
    with pytest.raises(ValueError, match=r"`verbose` must be one of .*'auto'.*received verbose='bars'"):
        resolve_verbosity("bars")
