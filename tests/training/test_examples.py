"""The scripts in examples/ run end to end with their --smoke settings (slow: each trains a network)."""

import json
import os
import pickle
import re
import subprocess
import sys
import tarfile

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
pytestmark = pytest.mark.slow


def write_cifar10_archive(root, per_batch=40, test=50):
    """A small cifar-10-python.tar.gz in the official layout: pickled dicts of (N, 3072) planar rows."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    rng = np.random.default_rng(0)

    def dump(name, n, label):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({b"batch_label": label, b"labels": labels, b"data": rows}, f, protocol=2)

    for i in range(1, 6):
        dump(f"data_batch_{i}", per_batch, f"training batch {i} of 5".encode())
    dump("test_batch", test, b"testing batch 1 of 1")
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": names}, f, protocol=2)
    archive = os.path.join(root, "cifar-10-python.tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return archive


def run_example(name, *args, env=None):
    done = subprocess.run([sys.executable, os.path.join(REPO, "examples", name), *args], capture_output=True,
                          text=True, env=env or ENV, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_cifar10_resnet_paper_smoke(tmp_path):
    archive = write_cifar10_archive(os.fspath(tmp_path))
    out = run_example("cifar10_resnet_paper.py", "--data-path", archive, "--smoke", "--run-dir",
                      os.fspath(tmp_path / "run"))
    assert "test error" in out and "paper, Table 6: 8.75%" in out
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["recipe"]["name"] == "cifar_resnet" and config["recipe"]["augment"] == "cifar"
    assert config["resolved"]["train_examples"] == 180 and config["resolved"]["validation_examples"] == 20


def test_vit_from_scratch_smoke(tmp_path):
    out = run_example("vit_from_scratch.py", "--smoke", "--run-dir", os.fspath(tmp_path / "vit"))
    # The run is named for what it trains: the smoke run's patch size and the digits' resolution.
    assert re.search(r"vit_tiny_patch8_\d+ on digits \(vit_small_data\): test accuracy", out), out[-400:]


def test_multiworker_jax_two_local_processes(tmp_path):
    out = run_example("multiworker_jax.py", "--local", "2", "--smoke", "--run-dir", os.fspath(tmp_path / "mw"),
                      env={**ENV, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
    assert "2 processes finished; identical weights: True" in out
