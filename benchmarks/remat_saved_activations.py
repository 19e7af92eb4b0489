"""Activations a training step keeps for its backward pass, plain and with every block rematerialised (remat=True).

    KERAS_BACKEND=jax python benchmarks/remat_saved_activations.py        # ResNet-110, ResNet-1202 (128), ViT-B/L (16)
    KERAS_BACKEND=jax python benchmarks/remat_saved_activations.py --models resnet110:128 --compile

Peak resident memory (`remat_memory.py`) cannot tell a step's activations from what the framework spends tracing
and compiling it, and for ResNet-1202 on TensorFlow tracing is what sets the peak. Here JAX's autodiff traces the
training step on abstract shapes and `keras_vitres.benchmark.memory.saved_activations` adds up the tensors the
backward pass keeps: exact, independent of the machine and its load, seconds even for ResNet-1202 at batch 128.
That is the activation memory on a compiler that keeps the rematerialisation barriers (XLA on GPUs and TPUs).
`--compile` also compiles the step with XLA for the JAX device here and reports its temporary buffers: on CPU XLA
undoes the rematerialisation, which that column shows.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "jax")

from keras_vitres.benchmark.candidates import get_model_batches  # noqa: E402

MIB = 2**20
DEFAULT_MODELS = "resnet110:128,resnet1202:128,vit_b16:16,vit_l16:16"


def build_ours(spec, remat):
    """Our candidate of benchmark model `spec`, with or without rematerialisation; returns (model, build seconds)."""
    import keras

    from keras_vitres.benchmark.builders import BUILDERS

    keras.backend.clear_session()
    start = time.perf_counter()
    ours = spec.ours
    model = BUILDERS[ours.builder](tuple(spec.image_shape), spec.classes, **{**ours.options, "remat": remat})
    return model, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/remat_saved_activations.py",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--models", default=DEFAULT_MODELS, help="MODEL:BATCH pairs, comma-separated")
    parser.add_argument("--precision", default="float32", help="dtype policy: float32, mixed_bfloat16")
    parser.add_argument("--compile", action="store_true",
                        help="also compile each step with XLA for the JAX device here and report its temp buffers")
    args = parser.parse_args(argv)
    try:
        models = get_model_batches(args.models)
    except ValueError as error:
        parser.error(str(error))
    import jax
    import keras

    from keras_vitres.benchmark.memory import compiled_step_memory, saved_activations

    if keras.backend.backend() != "jax":
        parser.error(f"needs the JAX backend; received KERAS_BACKEND={keras.backend.backend()!r}")
    keras.config.set_dtype_policy(args.precision)
    rows = []
    for spec, batch in models:
        plain = None
        for remat in (False, True):
            variant = "remat" if remat else "plain"
            print(f"  {spec.key} batch {batch} {variant}", file=sys.stderr, flush=True)
            model, build_s = build_ours(spec, remat)
            start = time.perf_counter()
            saved = saved_activations(model, batch)
            trace_s = time.perf_counter() - start
            temp = f"{compiled_step_memory(model, batch).temp_size_in_bytes / MIB:,.0f}" if args.compile else "-"
            if plain is None:
                plain, saving = saved, "-"
            else:
                saving = f"{1 - saved.bytes / plain.bytes:.0%}"
            rows.append(f"| {spec.title} | {batch} | {variant} | {saved.bytes / MIB:,.0f} | {saved.tensors:,} | "
                        f"{saving} | {temp} | {build_s:.1f} | {trace_s:.1f} |")  # fmt: skip
    print(f"{args.precision}, JAX {jax.__version__} ({jax.default_backend()}), Keras {keras.__version__}\n")
    print("| model | batch | variant | saved activations MiB | tensors kept | saving | XLA temp MiB | build s | "
          "trace s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
