"""Runs the benchmark: each candidate in its own worker process, steps alternated across candidates, medians.

For one model and precision, the candidates' worker processes are all started at once (their imports overlap), the
runner waits until every one has imported, then builds them one at a time (so a build is never timed while another
process imports or builds), then all are warmed up (the first training step, which traces and compiles,
is reported as `first_step_s`), then the timed steps alternate between candidates, A B A B ..., first for
training and then for inference. Alternating step by step means a change in the machine's load (other jobs on
a shared CPU) hits every candidate alike, and the medians ignore the odd slow step. The ratio ours/peer is the
ratio of throughputs, so above 1 means ours is faster.
"""

import dataclasses
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile

from keras_vitres.benchmark.candidates import get_models, is_installed, skip_reason

PRECISIONS = ("float32", "mixed_bfloat16")
JIT_MODES = ("auto", "on", "off")
BACKENDS = ("auto", "tensorflow", "jax")
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class Result:
    """One row of the table: a candidate of a model at one batch size and precision."""

    model: str
    title: str
    candidate: str
    against: str = None
    framework: str = "keras"
    batch_size: int = None
    image_shape: tuple = None
    precision: str = None
    backend: str = None
    device: str = None
    jit: bool = None
    params: int = None
    build_s: float = None
    first_step_s: float = None
    train_step_s: float = None
    infer_step_s: float = None
    train_steps: list = dataclasses.field(default_factory=list)
    infer_steps: list = dataclasses.field(default_factory=list)
    build_rss_mib: float = None
    peak_rss_mib: float = None
    device_peak_mib: float = None
    train_ratio: float = None
    infer_ratio: float = None
    train_ratio_quartiles: list = None
    infer_ratio_quartiles: list = None
    note: str = ""

    @property
    def measured(self):
        return self.train_step_s is not None

    @property
    def train_ips(self):
        return None if self.train_step_s is None else self.batch_size / self.train_step_s

    @property
    def infer_ips(self):
        return None if self.infer_step_s is None else self.batch_size / self.infer_step_s

    def as_dict(self):
        return {**dataclasses.asdict(self), "train_ips": self.train_ips, "infer_ips": self.infer_ips}


class WorkerError(RuntimeError):
    """A worker failed a request, died, or did not answer in time."""


JAX_MEMORY_SETTINGS = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION")


def worker_environment(framework, backend, environ=None):
    """The environment of a worker process for a candidate of `framework` ("keras", "torch") on Keras `backend`.

    A Keras worker on JAX gets `XLA_PYTHON_CLIENT_PREALLOCATE=false` unless `environ` (default `os.environ`) already
    sets it or `XLA_PYTHON_CLIENT_MEM_FRACTION`: by default JAX takes 75% of the GPU's memory when it starts, so two
    JAX workers started together (ours and keras-hub) cannot share one GPU, and the GPU peak it reports would be the
    preallocation rather than what the candidate used.
    """
    environ = os.environ if environ is None else environ
    env = dict(environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL=environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    if framework == "keras" and backend == "jax" and not any(name in environ for name in JAX_MEMORY_SETTINGS):
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


class Worker:
    """A `worker.py` process serving one candidate; see that module for the protocol."""

    def __init__(self, framework, backend, timeout):
        env = worker_environment(framework, backend)
        self.timeout = timeout
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-u", WORKER, framework], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            env=env, text=True,
        )

    def request(self, op, **fields):
        """Sends a request and returns the reply; op=None only reads (the announcement after start-up)."""
        if op is not None:
            try:
                self.process.stdin.write(json.dumps(dict(op=op, **fields)) + "\n")
                self.process.stdin.flush()
            except BrokenPipeError:
                raise WorkerError(f"the worker has exited: {self.log_tail()}") from None
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        if not ready:
            self.close()
            raise WorkerError(f"no answer to {op or 'start-up'!r} within {self.timeout:.0f} s (the worker was stopped)")
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise WorkerError(f"the worker exited with code {self.process.returncode}: {self.log_tail()}")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise WorkerError(reply["error"])
        return reply

    def log_tail(self, lines=3):
        self.log.seek(0)
        text = [line.strip() for line in self.log.read().splitlines() if line.strip()]
        return " | ".join(text[-lines:]) or "no output"

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps(dict(op="exit")) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                self.process.kill()
                self.process.wait()
        self.log.close()


def detect_device():
    """"gpu" when `nvidia-smi` lists a GPU, else "cpu" (checked without importing a framework)."""
    if shutil.which("nvidia-smi") is None:
        return "cpu"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "cpu"
    return "gpu" if "GPU" in out else "cpu"


def resolve_backend(backend, device):
    """"auto": JAX on a GPU (XLA-compiled bf16 is the fast path there), TensorFlow on CPU, where Keras on JAX
    trains several times slower."""
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}; received backend={backend!r}.")
    if backend != "auto":
        return backend
    return "jax" if device == "gpu" and is_installed("jax") else "tensorflow"


def _median(values):
    return statistics.median(values) if values else None


def measure_group(spec, *, batch_size, precision, jit, backend, device, steps, warmup, timeout, log):
    """Measures every candidate of one model at one batch size and precision; returns a `Result` per candidate."""
    results = {candidate.key: Result(
        model=spec.key, title=spec.title, candidate=candidate.key, against=candidate.against,
        framework=candidate.framework, batch_size=batch_size, image_shape=tuple(spec.image_shape),
        precision=precision, note=candidate.note,
    ) for candidate in spec.candidates}  # fmt: skip

    def say(key, text):  # key "" for the whole group
        log(f"  {spec.key} {precision}{f' {key}' if key else ''}: {text}")

    ready = _start_workers(spec, results, device, backend, timeout, say)
    build = dict(image_shape=list(spec.image_shape), classes=spec.classes, batch_size=batch_size, precision=precision,
                 jit=jit)  # fmt: skip
    workers = _build_all(ready, results, build, say)
    try:
        _time_steps(workers, results, steps, warmup, say)
        for key, worker in workers.items():
            memory = worker.request("memory")
            results[key].peak_rss_mib, results[key].device_peak_mib = memory["peak_rss_mib"], memory["device_peak_mib"]
    finally:
        for worker in workers.values():
            worker.close()
    for key in workers:
        result = results[key]
        result.train_step_s, result.infer_step_s = _median(result.train_steps), _median(result.infer_steps)
    compute_ratios(list(results.values()))
    return list(results.values())


def _start_workers(spec, results, device, backend, timeout, say):
    """Starts a worker per candidate that can run here, all at once (their imports overlap), and waits until each
    has imported, so that no build is timed under another's imports; returns [(candidate, worker)] of those up."""
    started, ready = [], []
    for candidate in spec.candidates:
        reason = skip_reason(candidate, device)
        if reason:
            results[candidate.key].note = reason
            say(candidate.key, f"skipped ({reason})")
            continue
        started.append((candidate, Worker(candidate.framework, backend, timeout)))
    for candidate, worker in started:
        try:
            worker.request(None)
            ready.append((candidate, worker))
        except WorkerError as error:
            worker.close()
            results[candidate.key].note = f"failed to start: {error}"
            say(candidate.key, results[candidate.key].note)
    return ready


def _build_all(ready, results, build, say):
    """Builds the candidates one at a time; returns {key: worker} of those built."""
    workers = {}
    for candidate, worker in ready:
        result = results[candidate.key]
        say(candidate.key, "building")
        try:
            reply = worker.request("build", framework=candidate.framework, builder=candidate.builder,
                                   options=candidate.options, **build)  # fmt: skip
        except WorkerError as error:
            worker.close()
            result.note = f"failed to build: {error}"
            say(candidate.key, result.note)
            continue
        result.build_s, result.params, result.device = reply["build_s"], reply["params"], reply["device"]
        result.backend, result.jit, result.build_rss_mib = reply["backend"], reply["jit"], reply["build_rss_mib"]
        workers[candidate.key] = worker
    return workers


def _time_steps(workers, results, steps, warmup, say):
    """Warms every candidate up (the first training step traces and compiles: `first_step_s`), then times `steps`
    training steps and `steps` forward passes, alternating between candidates; a worker that fails is dropped."""

    def step_all(op, record):
        for key in list(workers):
            try:
                seconds = workers[key].request(op)["seconds"]
            except WorkerError as error:
                results[key].note = f"failed during {op}: {error}"
                say(key, results[key].note)
                workers.pop(key).close()
                continue
            record(results[key], seconds)

    step_all("train", lambda r, s: setattr(r, "first_step_s", s))
    for _ in range(warmup - 1):
        step_all("train", lambda r, s: None)
    for _ in range(warmup):
        step_all("infer", lambda r, s: None)
    say("", f"warm; timing {steps} steps of {', '.join(workers)}")
    for _ in range(steps):
        step_all("train", lambda r, s: r.train_steps.append(s))
    for _ in range(steps):
        step_all("infer", lambda r, s: r.infer_steps.append(s))


def paired_ratio_quartiles(ours_steps, peer_steps):
    """Quartiles [first, median, third] of the per-round ratios ours/peer throughput; None under 2 rounds.

    Round i timed ours' step i and the peer's step i back to back (the steps alternate), so their ratio
    `peer_steps[i] / ours_steps[i]` sees the same machine load. When the load changes during a run, the ratio of
    the medians can fall between two load levels; the per-round ratios cannot, and their spread shows how far a
    difference from 1.00x can be trusted on a shared machine.
    """
    ratios = [peer / ours for ours, peer in zip(ours_steps or (), peer_steps or ()) if ours and peer]
    if len(ratios) < 2:
        return None
    return list(statistics.quantiles(ratios, n=4, method="inclusive"))


def compute_ratios(results):
    """Sets `train_ratio` and `infer_ratio` (ours/peer throughput of the medians) on each measured peer row, and
    `train_ratio_quartiles` / `infer_ratio_quartiles` (`paired_ratio_quartiles` of the step times), in place."""
    by_key = {(r.model, r.precision, r.batch_size, r.candidate): r for r in results}
    for result in results:
        if result.against is None:
            continue
        ours = by_key.get((result.model, result.precision, result.batch_size, result.against))
        if ours is None:
            continue
        if ours.train_ips and result.train_ips:
            result.train_ratio = ours.train_ips / result.train_ips
        if ours.infer_ips and result.infer_ips:
            result.infer_ratio = ours.infer_ips / result.infer_ips
        result.train_ratio_quartiles = paired_ratio_quartiles(ours.train_steps, result.train_steps)
        result.infer_ratio_quartiles = paired_ratio_quartiles(ours.infer_steps, result.infer_steps)
    return results


def run_benchmark(
    models,
    *,
    batch_size=None,
    precisions=("float32",),
    jit="auto",
    backend="auto",
    steps=5,
    warmup=2,
    timeout=1800,
    device=None,
    log=None,
):
    """Measures `models` (keys of `candidates.MODELS`) against their peers; returns a list of `Result`s.

    Args:
        models: model names, e.g. ["resnet20", "vit_b16"]; a name may carry its own precisions after "@", joined
            by "+": "resnet50@float32+mixed_bfloat16" (the others use `precisions`).
        batch_size: int, or None for each model's default (128 for the CIFAR nets, 16 at 224x224).
        precisions: dtype policies to measure, each a separate row group: "float32", "mixed_bfloat16".
        jit: "auto" (XLA on a GPU, off on CPU: `keras_vitres.training.resolve_jit_compile`), "on", "off".
        backend: Keras backend of the workers: "auto" (JAX on a GPU, TensorFlow on CPU), "tensorflow", "jax".
        steps: timed steps per candidate, for training and for inference.
        warmup: untimed steps first (the first training step is reported as `first_step_s`).
        timeout: seconds a worker may take to answer one request.
        device: "cpu" or "gpu"; None detects it.
        log: callable taking a progress line, or None for silence.
    """
    if jit not in JIT_MODES:
        raise ValueError(f"`jit` must be one of {JIT_MODES}; received jit={jit!r}.")
    plan = []
    for item in models:
        name, _, own = item.partition("@")
        wanted = tuple(own.split("+")) if own else tuple(precisions)
        bad = [p for p in wanted if p not in PRECISIONS]
        if not wanted or bad:
            received = f"models={item!r}" if own else f"precisions={tuple(precisions)!r}"
            raise ValueError(f"`precisions` must be a non-empty list of {PRECISIONS}; received {received}.")
        plan.append((name, wanted))
    for name, value, low in (("steps", steps, 1), ("warmup", warmup, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}; received {name}={value!r}.")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive int or None; received batch_size={batch_size!r}.")
    specs = get_models([name for name, _ in plan])
    device = device or detect_device()
    backend = resolve_backend(backend, device)
    log = log or (lambda line: None)
    results = []
    for spec, (_, wanted) in zip(specs, plan):
        for precision in wanted:
            results += measure_group(
                spec, batch_size=batch_size or spec.batch_size, precision=precision, jit=jit, backend=backend,
                device=device, steps=steps, warmup=warmup, timeout=timeout, log=log,
            )  # fmt: skip
    return results
