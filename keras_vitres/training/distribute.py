"""Distribution strategies (one device, this host's devices, several hosts; docs/training.md, "Distribution") and the
precision and XLA defaults.

"multiworker" runs on JAX only: Keras 3's `model.fit` fails under TensorFlow's `MultiWorkerMirroredStrategy`
(keras-team/keras#20585). BatchNormalization is not synchronised across replicas, as on the ResNet paper's two GPUs
(arXiv:1512.03385 §4.2).
"""

import contextlib
import dataclasses

import keras

STRATEGIES = ("auto", "one", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
JIT_COMPILE = ("auto", True, False)
MULTIWORKER_TF_ERROR = (
    "strategy='multiworker' is not supported on the TensorFlow backend: Keras 3's model.fit fails under "
    "tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585: the trainer reduces a PerReplica batch "
    "while building the model and averages scalar logs over replicas). Use the JAX backend, where "
    "keras.distribution.DataParallel trains across processes: KERAS_BACKEND=jax keras-vitres train "
    "--strategy multiworker --coordinator HOST:PORT --num-processes N --process-id I (docs/training.md)."
)


@dataclasses.dataclass
class Distribution:
    """How a run is distributed: the resolved strategy name ("one", "mirrored" or "multiworker"), the backend, the
    devices that each take a part of every global batch, the processes and this one's index, and the
    `tf.distribute.Strategy` (TensorFlow) or `keras.distribution.Distribution` (JAX), or None."""

    name: str
    backend: str
    num_replicas: int = 1
    num_processes: int = 1
    process_id: int = 0
    strategy: object = None

    @property
    def is_chief(self):
        """Whether this process writes the run directory (process 0)."""
        return self.process_id == 0

    def scope(self):
        """Context in which the model and optimizer are created."""
        if self.strategy is None:
            return contextlib.nullcontext()
        return self.strategy.scope()

    def process_batch(self, dataset, global_batch_size):
        """This process's slice of every global batch of `dataset` (x, y[, sample_weight]): every process builds the
        same global batches and keeps rows [i * b, (i + 1) * b), b = global_batch_size / num_processes, so together
        they train on exactly the global batch a single process would."""
        if self.num_processes == 1:
            return dataset
        rows = global_batch_size // self.num_processes
        start = self.process_id * rows
        return dataset.map(lambda *batch: tuple(part[start : start + rows] for part in batch))


def local_accelerators():
    """Number of GPUs (TensorFlow) or non-CPU devices (JAX) visible to this process."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # on the TensorFlow backend only

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax  # an optional extra, on the JAX backend only

        return sum(d.platform != "cpu" for d in jax.local_devices())
    return 0


def check_settings(strategy="auto", mixed_precision="auto", jit_compile="auto"):
    """Raises a ValueError naming the first of `strategy`, `mixed_precision` and `jit_compile` that is not one of
    its valid values (`STRATEGIES`, `PRECISIONS`, `JIT_COMPILE`)."""
    for name, value, valid in (("strategy", strategy, STRATEGIES), ("mixed_precision", mixed_precision, PRECISIONS),
                               ("jit_compile", jit_compile, JIT_COMPILE)):  # fmt: skip
        if value not in valid:
            raise ValueError(f"`{name}` must be one of {valid}; received {name}={value!r}.")


def resolve_strategy(strategy="auto"):
    """Resolves "auto" to "mirrored" (more than one local accelerator) or "one"; validates the name."""
    check_settings(strategy=strategy)
    if strategy == "auto":
        return "mirrored" if local_accelerators() > 1 else "one"
    return strategy


def get_distribution(strategy="auto", *, coordinator=None, num_processes=None, process_id=None):
    """Sets up `strategy` (one of `STRATEGIES`) and returns its `Distribution`; "multiworker" takes the
    `coordinator` ("host:port" of process 0), `num_processes` and this `process_id`.

    Raises:
        ValueError: for an unknown name, missing multi-process arguments, or "multiworker" on TensorFlow.
    """
    name = resolve_strategy(strategy)
    backend = keras.backend.backend()
    if name == "multiworker":
        if backend != "jax":
            raise ValueError(MULTIWORKER_TF_ERROR if backend == "tensorflow" else
                             f"strategy='multiworker' needs the JAX backend; the Keras backend is {backend!r}.")
        if not coordinator or not isinstance(num_processes, int) or not isinstance(process_id, int):
            raise ValueError(
                "strategy='multiworker' needs `coordinator` ('host:port' of process 0), `num_processes` and "
                f"`process_id`; received coordinator={coordinator!r}, num_processes={num_processes!r}, "
                f"process_id={process_id!r}."
            )
        if not 0 <= process_id < num_processes:
            raise ValueError(f"`process_id` must be in [0, {num_processes}); received process_id={process_id!r}.")
        keras.distribution.initialize(coordinator, num_processes, process_id)
        distribution = keras.distribution.DataParallel(auto_shard_dataset=False)
        keras.distribution.set_distribution(distribution)
        return Distribution(name, backend, len(keras.distribution.list_devices()), num_processes, process_id, distribution)
    if backend == "tensorflow":
        import tensorflow as tf  # on the TensorFlow backend only

        tf_strategy = tf.distribute.MirroredStrategy() if name == "mirrored" else tf.distribute.get_strategy()
        return Distribution(name, backend, tf_strategy.num_replicas_in_sync, strategy=tf_strategy)
    if backend == "jax" and name == "mirrored":
        distribution = keras.distribution.DataParallel()
        keras.distribution.set_distribution(distribution)
        return Distribution(name, backend, len(keras.distribution.list_devices()), strategy=distribution)
    if name == "mirrored":
        raise ValueError(f"strategy='mirrored' needs the TensorFlow or JAX backend; the Keras backend is {backend!r}.")
    return Distribution(name, backend)


CPUINFO = "/proc/cpuinfo"


def cpu_has_native_bfloat16(cpuinfo=None):
    """Whether this CPU multiplies bfloat16 natively: the x86 `avx512_bf16` or `amx_bf16` flags in `cpuinfo`
    (default `CPUINFO`); without them mixed_bfloat16 is much slower than float32 (docs/training.md)."""
    cpuinfo = CPUINFO if cpuinfo is None else cpuinfo
    try:
        with open(cpuinfo) as file:
            lines = [line for line in file if line.startswith("flags")]
    except OSError:  # not Linux, or no such file
        return False
    return bool(lines) and bool({"avx512_bf16", "amx_bf16"} & set(lines[0].split(":", 1)[-1].split()))


def resolve_precision(mixed_precision="auto"):
    """The dtype policy name. "auto": mixed_bfloat16 on GPUs that compute in bfloat16 (compute capability 8.0+),
    mixed_float16 on older GPUs; on CPU, mixed_bfloat16 with TensorFlow where the CPU has bfloat16 instructions
    (`cpu_has_native_bfloat16`: faster at the same accuracy, docs/training.md), else float32."""
    check_settings(mixed_precision=mixed_precision)
    if mixed_precision != "auto":
        return mixed_precision
    if not local_accelerators():
        tensorflow_bf16 = keras.backend.backend() == "tensorflow" and cpu_has_native_bfloat16()
        return "mixed_bfloat16" if tensorflow_bf16 else "float32"
    if keras.backend.backend() != "tensorflow":
        return "mixed_bfloat16"
    import tensorflow as tf  # on the TensorFlow backend only

    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    major = (details.get("compute_capability") or (0, 0))[0]
    return "mixed_bfloat16" if major >= 8 else "mixed_float16"


def resolve_jit_compile(jit_compile="auto", distribution=None):
    """Whether the train step is XLA-compiled. "auto": always on JAX (its train step is jitted); on TensorFlow,
    on when a GPU is present and no `tf.distribute` strategy spans several replicas, off on CPU (slower there,
    docs/training.md)."""
    check_settings(jit_compile=jit_compile)
    if jit_compile != "auto":
        return jit_compile
    if keras.backend.backend() == "jax":
        return True
    if keras.backend.backend() != "tensorflow" or not local_accelerators():
        return False
    return distribution is None or distribution.num_replicas == 1
