"""Synchronous data-parallel training over several processes or hosts, on the JAX backend.

Each process runs this script with the same arguments and its own --process-id; process 0 is the coordinator.
`keras.distribution.initialize(...)` joins the processes, `keras.distribution.DataParallel` spreads every global
batch over all their devices, and each process feeds its slice of each batch (all processes build the same
seeded stream). Process 0 writes the run directory; process i also keeps its own copy under RUN_DIR/worker{i}.

    # on host 0 and host 1 (same command, different --process-id):
    KERAS_BACKEND=jax python examples/multiworker_jax.py --coordinator host0:12355 --num-processes 2 --process-id 0
    KERAS_BACKEND=jax python examples/multiworker_jax.py --coordinator host0:12355 --num-processes 2 --process-id 1

    # or try it on one machine: start 2 local processes and check they end with identical weights
    python examples/multiworker_jax.py --local 2

Why JAX: under TensorFlow, Keras 3's model.fit fails with MultiWorkerMirroredStrategy (keras-team/keras#20585), so
`keras-vitres train --strategy multiworker` is JAX-only (docs/training.md, "Distribution").
"""

import argparse
import os
import socket
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SMOKE = dict(steps=6, steps_per_epoch=3, batch_size=32, warmup_steps=2, model_overrides={"depth": 8})


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coordinator", help="host:port of process 0")
    parser.add_argument("--num-processes", type=int, help="number of processes")
    parser.add_argument("--process-id", type=int, help="this process's index")
    parser.add_argument("--local", type=int, metavar="N", help="start N processes on localhost and compare them")
    parser.add_argument("--recipe", default="digits_resnet", help="training recipe (default digits_resnet)")
    parser.add_argument("--preset", help="preset (default: the recipe's)")
    parser.add_argument("--data-path", help="dataset archive or folder")
    parser.add_argument("--run-dir", default=os.path.join("runs", "multiworker"), help="run directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few steps of a ResNet-8")
    return parser.parse_args(argv)


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch_local(args, argv):
    """Runs this script in `args.local` processes on localhost, then checks that they hold the same weights."""
    port = free_port()
    base = [a for a in (argv if argv is not None else sys.argv[1:])]
    i = base.index("--local")
    base = base[:i] + base[i + 2 :]
    processes = [
        subprocess.Popen([sys.executable, os.path.abspath(__file__), *base, "--coordinator", f"localhost:{port}",
                          "--num-processes", str(args.local), "--process-id", str(p)],
                         env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
        for p in range(args.local)
    ]
    codes = [p.wait() for p in processes]
    if any(codes):
        raise SystemExit(f"a process failed: exit codes {codes}")
    import keras
    import numpy as np

    import keras_vitres.serialization  # noqa: F401  (registers the package's classes with Keras)

    paths = [os.path.join(args.run_dir, "model.keras")] + [
        os.path.join(args.run_dir, f"worker{p}", "model.keras") for p in range(1, args.local)
    ]
    weights = [keras.saving.load_model(p, compile=False).get_weights() for p in paths]
    same = all(all(np.array_equal(a, b) for a, b in zip(weights[0], w)) for w in weights[1:])
    print(f"{args.local} processes finished; identical weights: {same}")
    return same


def main(argv=None):
    args = parse_args(argv)
    if args.local:
        return launch_local(args, argv)
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit(f"multi-process training needs KERAS_BACKEND=jax; Keras runs on {keras.backend.backend()!r}.")
    from keras_vitres.training import resolve_config, train

    config = resolve_config(args.recipe, preset=args.preset, data_path=args.data_path, run_dir=args.run_dir,
                            seed=args.seed, strategy="multiworker", coordinator=args.coordinator,
                            num_processes=args.num_processes, process_id=args.process_id,
                            **(SMOKE if args.smoke else {}))
    return train(config, verbose=2 if args.process_id == 0 else 0)


if __name__ == "__main__":
    main()
