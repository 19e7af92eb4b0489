"""`keras-vitres train` and `keras-vitres evaluate`, end to end on tiny settings; the full default run is slow."""

import contextlib
import csv
import json
import os
import re
import subprocess
import sys

import pytest

from keras_vitres.cli.main import main

TINY = ["--steps", "4", "--steps-per-epoch", "2", "--batch-size", "32", "--set", 'model_overrides={"depth": 8}',
        "--set", "warmup_steps=1"]


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: keras-vitres {command}" in out
    assert ("--preset" in out and "--strategy" in out and "--mixed-precision" in out) if command == "train" \
        else "--dataset" in out


def test_train_then_evaluate_end_to_end(tmp_path, capsys):
    run_dir = os.fspath(tmp_path / "run")
    log = tmp_path / "train.log"
    with open(log, "w") as stdout, contextlib.redirect_stdout(stdout):  # a file, as in CI: not a terminal
        assert main(["train", "--run-dir", run_dir, "--lr", "0.05", *TINY]) == 0
    out = log.read_text()
    summary = open(os.path.join(run_dir, "summary.txt")).read().strip()
    assert summary in out and re.search(r"test accuracy \d\.\d{4}", summary)
    # One line per epoch, with the values the CSV log holds, and none of the progress bar's control characters.
    assert not re.search(r"[\r\x08\x1b]", out)
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    rows = list(csv.DictReader(open(os.path.join(run_dir, "logs", "training.csv"))))
    assert len(epochs) == len(rows) == 2
    for i, (line, row) in enumerate(zip(epochs, rows)):
        assert re.fullmatch(rf"epoch {i + 1}/2 - \d+\.\ds - accuracy: {float(row['accuracy']):.4f} - loss: "
                            rf"{float(row['loss']):.4f} - learning_rate: {float(row['learning_rate']):.4g}", line), line
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["recipe"]["learning_rate"] == 0.05 and config["recipe"]["model_overrides"] == {"depth": 8}
    assert config["recipe"]["preset"] == "resnet20" and config["recipe"]["dataset"] == "digits"

    assert main(["evaluate", run_dir, "--verbose", "0"]) == 0
    line = capsys.readouterr().out.strip()
    assert "digits (test, 360 images): accuracy" in line
    accuracy = float(re.search(r"accuracy (\d\.\d+)", line)[1])
    assert accuracy == pytest.approx(float(re.search(r"test accuracy (\d\.\d+)", summary)[1]), abs=1e-4)
    assert main(["evaluate", os.path.join(run_dir, "model.keras"), "--split", "train", "--json", "--verbose",
                 "0"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 1437

    # The same command on a finished run refuses, naming the way out.
    assert main(["train", "--run-dir", run_dir, *TINY]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_configuration_flags_and_errors(tmp_path, capsys):
    assert main(["train", "--list-recipes"]) == 0
    assert {"cifar_resnet", "vit_small_data", "digits_resnet"} <= set(re.findall(r"^(\S+)", capsys.readouterr().out,
                                                                                 re.M))
    assert main(["train", "--recipe", "cifar_resnet", "--preset", "resnet110", "--print-config",
                 "--set", "augment=none", "--epochs", "3"]) == 0
    config = json.loads(capsys.readouterr().out)
    recipe = config["recipe"]
    assert (recipe["warmup_learning_rate"], recipe["warmup_until_accuracy"], recipe["augment"]) == (0.01, 0.2, "none")
    assert (recipe["epochs"], recipe["steps"]) == (3, None)  # --epochs replaces the recipe's 64k steps
    assert main(["train", "--jit", "on", "--mixed-precision", "mixed_float16", "--strategy", "mirrored", "--remat",
                 "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["jit_compile"], config["mixed_precision"], config["strategy"], config["remat"]) == (
        True, "mixed_float16", "mirrored", True)
    assert main(["train", "--set", "warmup_step=3", "--print-config"]) == 2
    assert "did you mean 'warmup_steps'" in capsys.readouterr().err
    assert main(["train", "--strategy", "multiworker", "--run-dir", os.fspath(tmp_path / "mw"), *TINY]) == 2
    assert "keras-team/keras#20585" in capsys.readouterr().err
    unwritable = tmp_path / "file"
    unwritable.write_text("x")
    assert main(["train", "--run-dir", os.fspath(unwritable / "run"), *TINY]) == 2
    assert "cannot be written" in capsys.readouterr().err


def _default_train_output(tmp_path):
    """The output of a plain `keras-vitres train`: the log of the README's main job when `.ci/run` kept one (it
    ran minutes before, on the installed package), else a run of it here."""
    log = os.environ.get("KERAS_VITRES_QUICK_START_LOG")
    if log and os.path.isfile(log):
        return open(log, encoding="utf-8", errors="replace").read()
    done = subprocess.run([sys.executable, "-m", "keras_vitres.cli.main", "train", "--run-dir",
                           os.fspath(tmp_path / "default"), "--verbose", "2"], capture_output=True, text=True,
                          timeout=1800, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_the_default_train_command_passes_97_percent(tmp_path):
    output = _default_train_output(tmp_path)
    found = re.findall(r"on digits \(digits_resnet\): test accuracy (\d\.\d+)", output)
    assert len(found) == 1, output[-3000:]
    assert re.search(r"^epoch 1/\d+ - \d+\.\ds - accuracy: ", output, re.M) and "\x08" not in output  # not a tty
    assert float(found[0]) > 0.97 and "STOPPED EARLY" not in output, output[-3000:]
