"""Distribution: strategy names and defaults, MirroredStrategy on two logical CPUs against one device, and the
multi-process JAX path (two processes on localhost) against a single process."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_vitres.training import distribute
from keras_vitres.training.distribute import (
    MULTIWORKER_TF_ERROR,
    cpu_has_native_bfloat16,
    get_distribution,
    resolve_jit_compile,
    resolve_precision,
    resolve_strategy,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_VIT = dict(patch_size=8, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32)


def run_python(code, env=None, timeout=600):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=environment, timeout=timeout, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def model_weights(path):
    import keras_vitres.serialization  # noqa: F401  (the documented import before load_model)

    return keras.saving.load_model(path, compile=False).get_weights()


def test_strategy_names_and_cpu_defaults():
    assert resolve_strategy("auto") == "one"  # no GPU here
    assert resolve_strategy("mirrored") == "mirrored"
    with pytest.raises(ValueError, match="strategy="):
        resolve_strategy("tpu")
    assert resolve_precision("auto") == ("mixed_bfloat16" if cpu_has_native_bfloat16() else "float32")
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve_precision("float16")
    assert resolve_jit_compile("auto") is False  # XLA slows convnets down on CPU
    assert resolve_jit_compile(True) is True
    with pytest.raises(ValueError, match="jit_compile"):
        resolve_jit_compile("yes")
    one = get_distribution("one")
    assert (one.name, one.num_replicas, one.num_processes, one.is_chief) == ("one", 1, 1, True)


def test_auto_picks_mirrored_with_two_gpus(monkeypatch):
    monkeypatch.setattr(distribute, "local_accelerators", lambda: 2)
    assert resolve_strategy("auto") == "mirrored"
    assert resolve_jit_compile("auto", distribute.Distribution("mirrored", "tensorflow", num_replicas=2)) is False
    assert resolve_jit_compile("auto", distribute.Distribution("one", "tensorflow")) is True


def test_multiworker_on_tensorflow_points_to_jax_and_the_upstream_issue():
    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(ValueError) as error:
        get_distribution("multiworker", coordinator="localhost:1234", num_processes=2, process_id=0)
    assert str(error.value) == MULTIWORKER_TF_ERROR
    assert "keras-team/keras#20585" in MULTIWORKER_TF_ERROR and "KERAS_BACKEND=jax" in MULTIWORKER_TF_ERROR


def test_process_batch_slices_every_global_batch():
    import tensorflow as tf

    data = tf.data.Dataset.range(12).batch(6).map(lambda x: (x, x * 10, x * 0))
    parts = [distribute.Distribution("multiworker", "jax", 2, 2, p).process_batch(data, 6) for p in (0, 1)]
    first = [[t.numpy().tolist() for t in batch] for batch in parts[0]]
    second = [[t.numpy().tolist() for t in batch] for batch in parts[1]]
    assert first[0][0] == [0, 1, 2] and second[0][0] == [3, 4, 5] and second[1][1] == [90, 100, 110]


MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from keras_vitres.training import resolve_config, train
from keras_vitres.training.factories import build_schedule

root = sys.argv[1]
common = dict(preset="vit_tiny_patch16_224", model_overrides=TINY_VIT, preprocessing="rescale", optimizer="sgd",
              learning_rate=0.05, schedule="cosine", warmup_steps=2, steps=6, steps_per_epoch=3, batch_size=32,
              weight_decay=0.0, mixed_precision="float32")  # float32: bfloat16 rounds each replica's half apart
out = {}
for strategy in ("mirrored", "one"):
    config = resolve_config("digits_resnet", run_dir=f"{root}/{strategy}", strategy=strategy, **common)
    result = train(config, verbose=0)
    resolved = json.load(open(f"{root}/{strategy}/config.json"))["resolved"]
    schedule = build_schedule(config.recipe, 6, 2)
    logged = [float(row.split(",")[2]) for row in open(f"{root}/{strategy}/logs/training.csv").read().split()[1:]]
    out[strategy] = dict(replicas=resolved["num_replicas"], accuracy=result["test_accuracy"], logged=logged,
                         expected=[float(schedule(3)), float(schedule(6))], steps=result["steps"])
print("RESULT" + json.dumps(out))
""".replace("TINY_VIT", repr(TINY_VIT))


@pytest.mark.slow  # two training runs in a subprocess: 16 s on 2 cores
def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    out = run_python(MIRRORED_SCRIPT.replace("sys.argv[1]", repr(os.fspath(tmp_path))))
    result = json.loads(out.split("RESULT", 1)[1])
    assert result["mirrored"]["replicas"] == 2 and result["one"]["replicas"] == 1
    assert result["mirrored"]["steps"] == result["one"]["steps"] == 6
    # The schedule drove the optimizer under the strategy: the logged rates are its values at steps 3 and 6.
    for strategy in ("mirrored", "one"):
        np.testing.assert_allclose(result[strategy]["logged"], result[strategy]["expected"], rtol=1e-6)
    # Same global batch, same updates: the two-replica run ends where the one-device run ends.
    mirrored = model_weights(tmp_path / "mirrored" / "model.keras")
    single = model_weights(tmp_path / "one" / "model.keras")
    assert len(mirrored) == len(single)
    for a, b in zip(mirrored, single):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert result["mirrored"]["accuracy"] == pytest.approx(result["one"]["accuracy"], abs=1 / 360 + 1e-9)


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_jax_processes_on_localhost_train_identical_weights_that_match_one_process(tmp_path):
    common = ["-m", "keras_vitres.cli.main", "train", "--preset", "resnet20", "--steps", "6", "--steps-per-epoch",
              "3", "--batch-size", "32", "--set", 'model_overrides={"depth": 8}', "--set", "warmup_steps=2",
              "--verbose", "0", "--seed", "3", "--lr", "0.01"]  # at lr 0.1 the first steps are chaotic: the
    # all-reduce's summation order (1e-7) grows to 1e-2 in six steps, at 0.01 it stays at 1e-6
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu"}
    port = free_port()
    workers = [
        subprocess.Popen([sys.executable, *common, "--run-dir", os.fspath(tmp_path / "multi"), "--strategy",
                          "multiworker", "--coordinator", f"localhost:{port}", "--num-processes", "2",
                          "--process-id", str(p)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for p in (0, 1)
    ]
    single = subprocess.run([sys.executable, *common, "--run-dir", os.fspath(tmp_path / "single"), "--strategy",
                             "one"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n".join(o[-3000:] for o in outputs)
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    config = json.loads((tmp_path / "multi" / "config.json").read_text())["resolved"]
    assert (config["backend"], config["strategy"], config["num_processes"], config["num_replicas"]) == (
        "jax", "multiworker", 2, 2)
    chief = model_weights(tmp_path / "multi" / "model.keras")
    worker = model_weights(tmp_path / "multi" / "worker1" / "model.keras")
    alone = model_weights(tmp_path / "single" / "model.keras")
    for a, b in zip(chief, worker):
        np.testing.assert_array_equal(a, b)  # the processes hold one replicated model
    for a, b in zip(chief, alone):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # same global batches as one process
    multi = json.loads((tmp_path / "multi" / "summary.json").read_text())
    one = json.loads((tmp_path / "single" / "summary.json").read_text())
    # Evaluation pads the test set to whole global batches with zero-weight rows; the scores do not see them.
    assert multi["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1e-6)
    assert multi["test_loss"] == pytest.approx(one["test_loss"], rel=1e-3)


# The flags of two real 2-core machines this project runs on (/proc/cpuinfo, trimmed to the SIMD flags): an AMD EPYC
# with AVX2 and FMA only, and an AMD EPYC (Zen 4) with AVX-512 and its bfloat16 instructions; then an Intel CPU with
# AMX, one with AVX-512 but no bfloat16, and a machine without /proc/cpuinfo.
CPU_FLAGS = {
    "epyc_avx2": "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni",
    "epyc_avx512_bf16": "fpu sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16",
    "xeon_amx": "fpu sse2 avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8",
    "xeon_avx512": "fpu sse2 avx2 avx512f avx512_vnni",
    "no_cpuinfo": None,
}


@pytest.mark.parametrize("cpu, native", [("epyc_avx2", False), ("epyc_avx512_bf16", True), ("xeon_amx", True),
                                         ("xeon_avx512", False), ("no_cpuinfo", False)])
def test_cpu_defaults_follow_the_cpu_kind(cpu, native, tmp_path, monkeypatch):
    """With the CPU's features faked (its /proc/cpuinfo): a CPU with bfloat16 instructions trains in mixed_bfloat16
    on TensorFlow by default, one without (AVX2 only, or AVX-512 without bfloat16) in float32; XLA stays off on CPU
    for TensorFlow on both kinds; explicit choices are kept."""
    cpuinfo = tmp_path / "cpuinfo"
    if CPU_FLAGS[cpu] is not None:
        cpuinfo.write_text("".join(f"processor\t: {i}\nvendor_id\t: AuthenticAMD\nflags\t\t: {CPU_FLAGS[cpu]}\n\n"
                                   for i in range(2)))
    monkeypatch.setattr(distribute, "CPUINFO", str(cpuinfo))
    monkeypatch.setattr(distribute, "local_accelerators", lambda: 0)
    assert cpu_has_native_bfloat16() is native
    tensorflow = keras.backend.backend() == "tensorflow"
    assert resolve_precision("auto") == ("mixed_bfloat16" if native and tensorflow else "float32")
    assert resolve_jit_compile("auto") is (keras.backend.backend() == "jax")
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
