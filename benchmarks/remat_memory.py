"""Memory saved by rematerialising every residual block (the builders' `remat=True`), and what it costs in time.

    python benchmarks/remat_memory.py                                  # ResNet-110 (CIFAR, 128), ViT-S/16 (16)
    python benchmarks/remat_memory.py --models resnet1202:16,vit_b16:8 --steps 2

Each variant runs in its own worker process (as in benchmarks/run.py), steps alternating between the plain and
the rematerialised model. "activation MiB" is the peak resident memory during training less the memory after
building (framework, weights and optimizer slots), i.e. what the training step itself added.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_vitres.benchmark.candidates import Candidate, ModelSpec, get_model_batches  # noqa: E402
from keras_vitres.benchmark.runner import detect_device, measure_group, resolve_backend  # noqa: E402


def remat_spec(spec):
    """`spec` with two candidates: ours plain and ours rematerialised, compared with each other."""
    ours = spec.ours
    plain = Candidate("plain", ours.builder, ours.options)
    remat = Candidate("remat", ours.builder, {**ours.options, "remat": True}, against="plain")
    return ModelSpec(spec.key, spec.title, spec.image_shape, spec.classes, spec.batch_size, (plain, remat))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/remat_memory.py", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet110:128,vit_s16:16", help="MODEL:BATCH pairs, comma-separated")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)
    try:
        models = get_model_batches(args.models)
    except ValueError as error:
        parser.error(str(error))
    device = detect_device()
    backend = resolve_backend(args.backend, device)
    rows = []
    for model, batch in models:
        spec = remat_spec(model)
        results = measure_group(spec, batch_size=batch, precision=args.precision, jit="auto",
                                backend=backend, device=device, steps=args.steps, warmup=1, timeout=3600,
                                log=lambda line: print(line, file=sys.stderr, flush=True))  # fmt: skip
        plain, remat = results
        for r in results:
            if not r.measured:
                rows.append(f"| {r.title} | {r.batch_size} | {r.candidate} | failed: {r.note} | | | | | |")
                continue
            activation = r.peak_rss_mib - r.build_rss_mib
            saving = "-"
            if r is remat and plain.measured:
                plain_activation = plain.peak_rss_mib - plain.build_rss_mib
                saving = (f"{1 - activation / plain_activation:.0%} of activations, "
                          f"{1 - r.peak_rss_mib / plain.peak_rss_mib:.0%} of peak; "
                          f"step x{r.train_step_s / plain.train_step_s:.2f}")  # fmt: skip
            rows.append(f"| {r.title} | {r.batch_size} | {r.candidate} | {r.peak_rss_mib:.0f} | {activation:.0f} | "
                        f"{r.train_step_s * 1e3:.0f} | {r.build_s:.1f} | {r.first_step_s:.1f} | {saving} |")  # fmt: skip
    print("| model | batch | variant | peak RSS MiB | activation MiB | train step ms | build s | first step s | "
          "saving, cost |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
