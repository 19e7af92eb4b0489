"""`keras-vitres benchmark`: throughput, step time, memory and build time of ours against peers, in one run.

The same flags drive `python benchmarks/run.py`; the work is done by `keras_vitres.benchmark`.
"""

import dataclasses
import datetime
import json
import os
import shlex
import sys

from keras_vitres.benchmark.candidates import DEFAULT_MODELS, MODELS, QUICK_MODELS
from keras_vitres.benchmark.report import format_table, machine_info, markdown_section, versions, write_docs_section
from keras_vitres.benchmark.runner import Result, compute_ratios, run_benchmark

DOCS_PATH = os.path.join("docs", "benchmarks.md")
FALLBACK_DOCS_PATH = os.path.join("docs", "_benchmarks_throughput.md")


def add_arguments(parser):
    """Registers the benchmark's flags on `parser` (shared by the subcommand and `benchmarks/run.py`)."""
    parser.add_argument("--models", help=f"comma-separated models (default: {','.join(DEFAULT_MODELS)}; "
                        f"with --quick: {','.join(QUICK_MODELS)}); any of {', '.join(MODELS)}. A model may name its "
                        "own precisions: resnet50@float32+mixed_bfloat16")  # fmt: skip
    parser.add_argument("--batch-size", type=int, help="batch size for every model (default: 128 for the CIFAR "
                        "nets, 16 at 224x224)")  # fmt: skip
    parser.add_argument("--precision", default="float32",
                        help="dtype policy, or a comma-separated list measured in turn: float32, mixed_bfloat16")
    parser.add_argument("--jit", default="auto", choices=["auto", "on", "off"],
                        help="XLA compilation for every candidate (auto: on for a GPU, off on CPU)")
    parser.add_argument("--backend", default="auto", choices=["auto", "tensorflow", "jax"],
                        help="Keras backend of the workers (auto: JAX on a GPU, TensorFlow on CPU)")
    parser.add_argument("--steps", type=int, help="timed steps per candidate, training and inference (default 5)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2)")
    parser.add_argument("--quick", action="store_true", help="tiny models and steps: a smoke test in seconds")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a worker may take for one step or build")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"write the results between the markers of --docs (default {DOCS_PATH})")
    parser.add_argument("--docs", default=DOCS_PATH, help="Markdown file holding <!-- benchmark-table --> markers; "
                        f"without markers the section goes to {FALLBACK_DOCS_PATH} beside it")  # fmt: skip
    parser.add_argument("--section", metavar="NAME",
                        help="write between the markers <!-- benchmark-table NAME --> ... <!-- /benchmark-table NAME "
                        "-->, so one page holds the runs of several machines (e.g. cpu_avx2, cpu_avx512_bf16)")
    parser.add_argument("--notes", metavar="PATH", action="append",
                        help="Markdown file appended to the docs section after the targets (repeatable), e.g. the "
                        "output of benchmarks/remat_memory.py")  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write every measurement (all step times) as JSON")
    parser.add_argument("--from-json", metavar="PATH",
                        help="measure nothing: print (and with --write-docs, write) the results saved by --json, "
                        "with that run's command, machine and versions")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the table")
    return parser


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "benchmark",
        help="measure training/inference throughput, memory and build time against keras.applications, keras-hub, timm",
        description="Training and inference throughput (images/s), step time, peak memory and model-build time of "
        "our models against the peers a user would otherwise pick (keras.applications, keras-hub; timm and "
        "torchvision on a GPU), measured in the same run with the same batch, precision and input. Each candidate "
        "runs in its own process; steps alternate between candidates and the table gives medians and the ratio "
        "ours/peer. Peers that are not installed are listed with a note.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run, command_prefix="keras-vitres benchmark")


def write_docs(docs_path, record, results, notes=(), section_name=None):
    """Writes the docs section for a run `record` (see `run`) between the markers of `docs_path`: those of
    `section_name` when given, else the "gpu" section's for a run on a GPU and the unnamed one otherwise
    (`report.markers`)."""
    if section_name is None and record["machine"]["gpus"]:
        section_name = "gpu"
    section = markdown_section(results, command=record["command"], machine=record["machine"],
                               versions_found=record["versions"], settings=record["settings"],
                               load_after=record["load_after"], notes=notes,
                               date=record.get("date", "(date not recorded)"),
                               how_to=section_name is None)  # fmt: skip
    fallback = os.path.join(os.path.dirname(docs_path) or ".", os.path.basename(FALLBACK_DOCS_PATH))
    written = write_docs_section(docs_path, section, fallback_path=fallback, name=section_name)
    print(f"wrote the benchmark section to {written}", file=sys.stderr)


def rerender(json_path, docs_path=None, notes=(), section_name=None):
    """Prints the table of a run saved with --json and, given `docs_path`, writes its docs section again."""
    with open(json_path) as f:
        record = json.load(f)
    fields = {field.name for field in dataclasses.fields(Result)}
    results = [Result(**{k: v for k, v in row.items() if k in fields}) for row in record["results"]]
    compute_ratios(results)  # again from the step times: fills the ratio spread of runs saved before it existed
    print(format_table(results))
    if docs_path:
        write_docs(docs_path, record, results, notes, section_name)
    return 0


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def run(args, argv=None):
    """Runs the benchmark described by `args`, prints the table, and writes the docs/JSON when asked."""
    models = _csv(args.models) if args.models else list(QUICK_MODELS if args.quick else DEFAULT_MODELS)
    steps = args.steps if args.steps is not None else (2 if args.quick else 5)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    precisions = _csv(args.precision)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))

    notes = []
    for path in args.notes or []:  # read first: a wrong path fails before the long run, not after
        with open(path) as f:
            notes.append(f.read().strip())
    if args.from_json:
        return rerender(args.from_json, args.docs if args.write_docs else None, notes, args.section)
    machine = machine_info()
    results = run_benchmark(
        models, batch_size=args.batch_size, precisions=precisions, jit=args.jit, backend=args.backend, steps=steps,
        warmup=warmup, timeout=args.timeout, log=log,
    )  # fmt: skip
    print(format_table(results))
    backends = sorted({r.backend for r in results if r.backend})
    jits = sorted({str(r.jit) for r in results if r.jit is not None})
    settings = (
        f"Keras backend {', '.join(backends) or '-'}, jit_compile={'/'.join(jits) or '-'} (--jit {args.jit}), "
        f"SGD with momentum on random images and labels, {warmup} warm-up and {steps} timed steps per candidate"
    )
    if argv is None:  # as typed after `keras-vitres benchmark`
        raw = sys.argv[1:]
        argv = raw[raw.index("benchmark") + 1 :] if "benchmark" in raw else raw
    command = f"{getattr(args, 'command_prefix', 'keras-vitres benchmark')} {shlex.join(argv)}".strip()
    record = dict(command=command, date=datetime.date.today().isoformat(), machine=machine, versions=versions(),
                  settings=settings, load_after=os.getloadavg(), results=[r.as_dict() for r in results])  # fmt: skip
    if args.json:  # first: a long run's measurements survive a docs error
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2, default=str)
    if args.write_docs:
        write_docs(args.docs, record, results, notes, args.section)
    return 0
