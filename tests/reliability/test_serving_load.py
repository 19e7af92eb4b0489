"""The exported SavedModel under concurrent load: 8 threads, identical answers to serial calls, no errors, and
resident memory that stops growing."""

import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.reliability import memory
from tests.reliability.images import encode, photo

THREADS = 8
MAX_RSS_GROWTH_MB = 40  # after warm-up; a leak of one 32x32 batch per request would be ~25 MB per 2,000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def requests_pool():
    """16 distinct requests: JPEG and PNG files of several sizes and batch sizes, and float pixel batches."""
    rng = np.random.default_rng(0)
    pool = []
    for i in range(8):
        files = []
        for j in range(1 + i % 3):
            size = (32 + 16 * ((i + j) % 4), 32 + 24 * ((i * j) % 3))
            image = photo(size, ("chelsea", "astronaut", "coffee")[(i + j) % 3])
            files.append(encode(image, "PNG") if (i + j) % 2 else encode(image, "JPEG", quality=80 + i))
        pool.append(("bytes", tf.constant(files)))
        pool.append(("float", tf.constant(rng.uniform(0, 255, (1 + i % 4, 32, 32, 3)).astype("float32"))))
    return pool


def call(served, kind, inputs):
    outputs = served.serve_bytes(image_bytes=inputs) if kind == "bytes" else served.serve(images=inputs)
    return {k: v.numpy() for k, v in outputs.items()}


def run_load(served, total):
    pool = requests_pool()
    serial = [call(served, kind, inputs) for kind, inputs in pool]  # the reference, one call at a time
    for kind, inputs in pool * 2:  # warm-up: every request path has run, allocator pools are filled
        call(served, kind, inputs)
    counter, lock = iter(range(total)), threading.Lock()
    checkpoints = {total // 10: "warm", total // 2: "half"}
    latencies, mismatches, errors, rss = [], [], [], {}

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            if i in checkpoints:
                rss[checkpoints[i]] = memory.rss_mb()
            kind, inputs = pool[i % len(pool)]
            start = time.perf_counter()
            try:
                answer = call(served, kind, inputs)
            except Exception as error:  # counted, and the test fails on any
                errors.append(repr(error))
                continue
            latencies.append(time.perf_counter() - start)
            expected = serial[i % len(pool)]
            if any(not np.array_equal(answer[k], expected[k]) for k in expected):
                mismatches.append(i)

    rss["start"] = memory.rss_mb()
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(THREADS) as executor:
        for future in [executor.submit(worker) for _ in range(THREADS)]:
            future.result()
    elapsed = time.perf_counter() - start
    rss["end"] = memory.rss_mb()
    return dict(
        requests=total,
        threads=THREADS,
        errors=errors,
        mismatches=mismatches,
        seconds=elapsed,
        requests_per_second=total / elapsed,
        latency_ms_p50=1000 * statistics.median(latencies),
        latency_ms_p99=1000 * float(np.percentile(latencies, 99)),
        rss_mb=rss,
    )


def check_and_record(result, record_property):
    rss = result["rss_mb"]
    summary = {k: v for k, v in result.items() if k not in ("errors", "mismatches", "rss_mb")}
    summary.update(errors=len(result["errors"]), mismatches=len(result["mismatches"]))
    summary.update({f"rss_{k}_mb": v for k, v in rss.items()}, rss_growth_after_warmup_mb=rss["end"] - rss["warm"])
    for key, value in summary.items():
        record_property(key, round(value, 2) if isinstance(value, float) else value)
    print(
        f"\n{result['requests']} requests from {THREADS} threads in {result['seconds']:.1f} s "
        f"({result['requests_per_second']:.0f}/s, p50 {result['latency_ms_p50']:.1f} ms, "
        f"p99 {result['latency_ms_p99']:.1f} ms); RSS MiB start {rss['start']:.0f}, after warm-up {rss['warm']:.0f}, "
        f"half {rss['half']:.0f}, end {rss['end']:.0f}"
    )
    assert result["errors"] == [], result["errors"][:3]
    assert result["mismatches"] == [], f"{len(result['mismatches'])} answers differ from the serial ones"
    if memory.available():
        assert rss["end"] - rss["warm"] < MAX_RSS_GROWTH_MB, rss


def test_2000_concurrent_requests_match_serial_answers_and_memory_levels_off(served, record_property):
    check_and_record(run_load(served, 2000), record_property)  # ~5 s on 2 CPU cores


# The soak's server: a process that loads the SavedModel with TensorFlow alone and prints run_load's result.
SOAK_SERVER = """
import json, sys, types
import tensorflow as tf
from tests.reliability.test_serving_load import run_load
loaded = tf.saved_model.load(sys.argv[1])
served = types.SimpleNamespace(serve=loaded.signatures["serving_default"], serve_bytes=loaded.signatures["serving_bytes"])
print(json.dumps(run_load(served, int(sys.argv[2]))))
"""


@pytest.mark.slow
def test_20000_concurrent_requests_soak(served, record_property):
    """In a process of its own, as a server runs, so that its resident memory is the serving's alone: in a pytest
    worker it also moved with what earlier tests left behind (43 MiB in one CI run; 1 MiB in a process of its own)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", SOAK_SERVER, served.path, "20000"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    check_and_record(json.loads(done.stdout.splitlines()[-1]), record_property)
