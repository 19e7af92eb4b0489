"""A benchmark worker: one candidate model in its own process, driven step by step over a pipe.

Run as a script (`python worker.py keras|torch`), so a PyTorch worker never imports Keras or TensorFlow and every
process's peak memory is its own candidate's. It imports its framework first and announces {"ok": true,
"import_s"}; then the parent sends one JSON request per line on stdin and reads one JSON reply per line. The
process's own stdout is pointed at stderr so nothing else can interleave with the replies.

Requests:
    {"op": "build", "framework", "builder", "options", "image_shape", "classes", "batch_size", "precision", "jit"}
        -> {"build_s", "params", "device", "backend", "jit", "build_rss_mib"}: builds and compiles; `build_s` is the
        builder call, `build_rss_mib` the peak memory so far (framework, model and optimizer state, no activations).
    {"op": "train"} / {"op": "infer"} -> {"seconds"}: one synchronised training step / forward pass.
    {"op": "memory"} -> {"peak_rss_mib", "device_peak_mib"}: peak resident memory; the framework's peak device
        memory on a GPU (None on CPU).
    {"op": "exit"}.
Every reply has "ok"; a failed request answers {"ok": false, "error": "..."} and the worker keeps serving.
"""

import importlib.util
import json
import os
import resource
import sys
import time


def peak_rss_mib():
    """Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class KerasSession:
    """A Keras candidate: built under the requested dtype policy, compiled with SGD and a logits loss."""

    def __init__(self, request):
        # Imported here, not at the top: a PyTorch worker runs this file too and must never import Keras.
        import keras
        import numpy as np

        from keras_vitres.benchmark.builders import BUILDERS
        from keras_vitres.training import local_accelerators, resolve_jit_compile

        keras.config.set_dtype_policy(request["precision"])
        self.backend = keras.backend.backend()
        self.device = "gpu" if local_accelerators() else "cpu"
        start = time.perf_counter()
        self.model = BUILDERS[request["builder"]](tuple(request["image_shape"]), request["classes"],
                                                  **request["options"])
        self.build_s = time.perf_counter() - start
        jit = request["jit"]
        self.jit = resolve_jit_compile("auto") if jit == "auto" else jit == "on"
        self.model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=self.jit,
        )
        # Create the optimizer's slots now: left to the first step, they are created while tracing the train
        # function, which TensorFlow then traces a second time (measured: ResNet-56's first step 14.4 s -> 10.8 s).
        self.model.optimizer.build(self.model.trainable_variables)
        rng = np.random.default_rng(0)
        batch = request["batch_size"]
        self.x = keras.ops.convert_to_tensor(rng.random((batch, *request["image_shape"]), dtype="float32"))
        self.y = keras.ops.convert_to_tensor(rng.integers(0, request["classes"], batch).astype("int32"))
        self.params = int(self.model.count_params())

    def train(self):
        self.model.train_on_batch(self.x, self.y)  # returns host values: the step has finished

    def infer(self):
        self.model.predict_on_batch(self.x)  # returns a NumPy array: synchronised

    def device_peak_mib(self):
        if self.device != "gpu":
            return None
        if self.backend == "tensorflow":  # the backend's own API: only the one Keras runs on is importable
            import tensorflow as tf

            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        if self.backend == "jax":
            import jax

            stats = jax.local_devices()[0].memory_stats() or {}
            peak = stats.get("peak_bytes_in_use")
            return None if peak is None else peak / 2**20
        return None


def _load_torch_peers():
    """Imports the sibling `torch_peers.py` by path, so that this process never imports the keras_vitres package."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_peers.py")
    spec = importlib.util.spec_from_file_location("keras_vitres_torch_peers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_framework(framework):
    """Imports what the candidate needs before the first request, so the parent can start workers together."""
    if framework == "torch":
        return _load_torch_peers()
    import keras_vitres.benchmark.builders  # noqa: F401 (imports keras and the backend)
    import keras_vitres.training  # noqa: F401


def serve(requests, replies):
    """Answers requests until "exit" or end of input."""
    session = None
    for line in requests:
        request = json.loads(line)
        op = request.get("op")
        try:
            if op == "exit":
                reply = {}
            elif op == "build":
                if request["framework"] == "torch":
                    session = _load_torch_peers().TorchSession(request)
                else:
                    session = KerasSession(request)
                reply = dict(build_s=session.build_s, params=session.params, device=session.device,
                             backend=session.backend, jit=session.jit, build_rss_mib=peak_rss_mib())
            elif op in ("train", "infer"):
                start = time.perf_counter()
                getattr(session, op)()
                reply = dict(seconds=time.perf_counter() - start)
            elif op == "memory":
                reply = dict(peak_rss_mib=peak_rss_mib(), device_peak_mib=session.device_peak_mib() if session else None)
            else:
                raise ValueError(f"unknown request op={op!r}")
            reply["ok"] = True
        except Exception as error:  # report any failure to the parent, which notes it in the table
            reply = dict(ok=False, error=f"{type(error).__name__}: {error}")
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
        if op == "exit":
            return


def main():
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints (TensorFlow, Keras) go to stderr
    start = time.perf_counter()
    try:
        import_framework(sys.argv[1] if len(sys.argv) > 1 else "keras")
        ready = dict(ok=True, import_s=time.perf_counter() - start)
    except Exception as error:  # e.g. a peer whose package is installed but broken
        ready = dict(ok=False, error=f"{type(error).__name__}: {error}")
    replies.write(json.dumps(ready) + "\n")
    replies.flush()
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
