"""The benchmark's table (text and Markdown), the machine and versions, and the docs section between markers."""

import datetime
import importlib.metadata
import os
import platform
import subprocess

from keras_vitres.benchmark.runner import detect_device

MARKER_START = "<!-- benchmark-table -->"
MARKER_END = "<!-- /benchmark-table -->"
# The SIMD features that decide CPU speed here: AVX2/FMA on every x86-64 CPU of the last decade, AVX-512 and native
# bfloat16 (AVX-512 BF16, AMX) on some. TensorFlow's oneDNN kernels differ by kind, and so do the ratios to peers.
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
VERSION_PACKAGES = ("keras", "tensorflow", "jax", "keras-hub", "torch", "torchvision", "timm")
NO_GPU = "no GPU was available; GPU targets not measured"
# Dense bfloat16 peak of a card, TFLOP/s, by the first fragment found in its name (the SXM figure where unsuffixed).
GPU_BF16_PEAK_TFLOPS = (("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989), ("H200", 989), ("A100", 312))
VIT_B16_TRAIN_GFLOP = 105  # per 224x224 image: forward 35 GFLOP (17.6 G multiply-adds) and backward twice that
VIT_B16_PEAK_AIM = 0.45
# The GPU targets (issue 20), ours/timm on one GPU: (model, kind, at least, aim or None).
GPU_TIMM_TARGETS = (("vit_b16", "train", 1.0, 1.1), ("vit_b16", "infer", 1.0, 1.1), ("resnet50", "train", 1.1, None),
                    ("resnet50", "infer", 1.0, None))  # fmt: skip

# (header, function of a Result -> text); the ratio columns are ours/peer throughput, on the peer's row.
COLUMNS = (
    ("model", lambda r: r.title),
    ("candidate", lambda r: r.candidate),
    ("batch", lambda r: str(r.batch_size)),
    ("precision", lambda r: r.precision),
    ("params", lambda r: _num(r.params, "{:,}")),
    ("build s", lambda r: _num(r.build_s, "{:.1f}")),
    ("first step s", lambda r: _num(r.first_step_s, "{:.1f}")),
    ("train img/s", lambda r: _num(r.train_ips, "{:.1f}")),
    ("train step ms", lambda r: _num(None if r.train_step_s is None else r.train_step_s * 1e3, "{:.0f}")),
    ("infer img/s", lambda r: _num(r.infer_ips, "{:.1f}")),
    ("peak RSS MiB", lambda r: _num(r.peak_rss_mib, "{:.0f}")),
    ("ours/peer train", lambda r: _ratio(r.train_ratio, r.train_ratio_quartiles)),
    ("ours/peer infer", lambda r: _ratio(r.infer_ratio, r.infer_ratio_quartiles)),
    ("note", lambda r: r.note),
)
GPU_COLUMN = ("GPU peak MiB", lambda r: _num(r.device_peak_mib, "{:.0f}"))


def _num(value, fmt):
    return "-" if value is None else fmt.format(value)


def _ratio(value, quartiles=None):
    """"0.98x", with the per-round ratios' median and interquartile range when known: "0.98x (1.00x, 0.97-1.02)"."""
    if value is None:
        return "-"
    if not quartiles:
        return f"{value:.2f}x"
    first, median, third = quartiles
    return f"{value:.2f}x ({median:.2f}x, {first:.2f}-{third:.2f})"


def _columns(results):
    columns = list(COLUMNS)
    if any(r.device_peak_mib is not None for r in results):
        columns.insert(columns.index(next(c for c in columns if c[0] == "peak RSS MiB")) + 1, GPU_COLUMN)
    return columns


def table_rows(results):
    """The header and one list of cell texts per result."""
    columns = _columns(results)
    return [name for name, _ in columns], [[cell(r) for _, cell in columns] for r in results]


def format_table(results):
    """A fixed-width text table for the terminal."""
    header, rows = table_rows(results)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def markdown_table(results):
    header, rows = table_rows(results)
    numeric = {"batch", "params", "build s", "first step s", "train img/s", "train step ms", "infer img/s",
               "peak RSS MiB", "GPU peak MiB", "ours/peer train", "ours/peer infer"}  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if h in numeric else "---" for h in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def machine_info():
    """CPU model, cores, memory, bfloat16 support, GPU names (via nvidia-smi) and the load average."""
    cpuinfo = _read("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())  # fmt: skip
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    meminfo = _read("/proc/meminfo")
    mem_kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), None)
    gpus = []
    if detect_device() == "gpu":
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout  # fmt: skip
        gpus = [line.strip() for line in out.splitlines() if line.strip()]
    return dict(
        cpu=model,
        cores=os.cpu_count(),
        memory_gib=None if mem_kib is None else mem_kib / 2**20,
        cpu_features=[f for f in CPU_FEATURES if f in flags],
        gpus=gpus,
        load_average=os.getloadavg() if hasattr(os, "getloadavg") else None,
        platform=platform.platform(),
    )


def versions():
    """Python and the versions of the frameworks and peers (None where a package is not installed)."""
    found = {"python": platform.python_version()}
    for package in VERSION_PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def _verdict_row(result, kind):
    """"ResNet-50 float32 vs keras-hub (0.97x; rounds 0.99x, IQR 0.95-1.01: within the noise)", for a slower row."""
    ratio, quartiles = getattr(result, f"{kind}_ratio"), getattr(result, f"{kind}_ratio_quartiles")
    noise = ""
    if quartiles:
        first, median, third = quartiles
        noise = f"; rounds {median:.2f}x, IQR {first:.2f}-{third:.2f}: " + (
            "within the noise" if third >= 1.0 else "slower in most rounds"
        )
    return f"{result.title} {result.precision} vs {result.candidate} ({ratio:.2f}x{noise})"


def targets(results, aim=1.2):
    """The issue's CPU/GPU targets as lines of text: ours >= every peer (and the `aim`), ResNet-1202 build time.

    A row below 1.00x is named with the interquartile range of its per-round ratios, which says whether ours was
    slower in most rounds or the median just fell on the other side of 1.00x in the noise.
    """
    lines = []
    for kind in ("train", "infer"):
        peers = [r for r in results if r.against is not None and getattr(r, f"{kind}_ratio") is not None]
        if not peers:
            continue
        slower = [r for r in peers if getattr(r, f"{kind}_ratio") < 1.0]
        verdict = "met" if not slower else "not met for " + ", ".join(_verdict_row(r, kind) for r in slower)
        lines.append(f"- {kind}: ours at least as fast as every measured peer: {verdict}.")
        ratios = sorted(getattr(r, f"{kind}_ratio") for r in peers)
        reached = sum(ratio >= aim for ratio in ratios)
        lines.append(
            f"- {kind}: the aim of {aim:.1f}x: {'reached' if reached == len(ratios) else 'not reached'} "
            f"({reached} of {len(ratios)} comparisons; ratios {ratios[0]:.2f}x to {ratios[-1]:.2f}x)."
        )
    builds = [r for r in results if r.model == "resnet1202" and r.against is None and r.build_s is not None]
    if builds:
        worst = max(r.build_s for r in builds)
        lines.append(f"- ResNet-1202 builds in under 30 s: {'met' if worst < 30 else 'not met'} ({worst:.1f} s).")
    return lines


def gpu_bf16_peak_tflops(gpu_name):
    """The dense bfloat16 peak (TFLOP/s) of the card named `gpu_name` (as nvidia-smi names it), or None if unknown."""
    return next((peak for fragment, peak in GPU_BF16_PEAK_TFLOPS if fragment in gpu_name), None)


def gpu_targets(results, gpu_name):
    """The GPU targets as lines of text: ViT-B/16 and ResNet-50 against timm (`GPU_TIMM_TARGETS`), ViT-B/16's
    training FLOP/s as a share of the card's dense bfloat16 peak, and every row at least keras-hub's."""
    lines = []
    for model, kind, least, aim in GPU_TIMM_TARGETS:
        row = next((r for r in results if r.model == model and r.candidate == "timm"), None)
        ratio = None if row is None else getattr(row, f"{kind}_ratio")
        wanted = f"at least {least:.1f}x timm's" if least != 1.0 else "at least timm's"
        title = row.title if row else model
        if ratio is None:
            lines.append(f"- {title} {kind}: {wanted}: not measured (no timm row).")
            continue
        verdict = "met" if ratio >= least else "not met"
        if aim is not None:
            verdict += f", aim {aim:.1f}x {'reached' if ratio >= aim else 'not reached'}"
        lines.append(f"- {title} {kind}: {wanted}: {verdict} ({ratio:.2f}x).")
    peak = gpu_bf16_peak_tflops(gpu_name)
    ours = next((r for r in results if r.model == "vit_b16" and r.against is None and r.train_ips), None)
    if ours is not None and peak is not None:
        share = ours.train_ips * VIT_B16_TRAIN_GFLOP * 1e9 / (peak * 1e12)
        needed = VIT_B16_PEAK_AIM * peak * 1e12 / (VIT_B16_TRAIN_GFLOP * 1e9)
        lines.append(
            f"- {ours.title} training at {VIT_B16_PEAK_AIM:.0%} of the card's dense bfloat16 peak ({peak} TFLOP/s, "
            f"{needed:,.0f} img/s at {VIT_B16_TRAIN_GFLOP} GFLOP per image): "
            f"{'met' if share >= VIT_B16_PEAK_AIM else 'not met'} ({share:.1%})."
        )
    hub = [r for r in results if r.candidate == "keras-hub"]
    slower = [f"{kind} {_verdict_row(r, kind)}" for r in hub for kind in ("train", "infer")
              if getattr(r, f"{kind}_ratio") is not None and getattr(r, f"{kind}_ratio") < 1.0]  # fmt: skip
    if hub:
        lines.append("- every row at least keras-hub's on the same backend: "
                     + ("met." if not slower else f"not met for {', '.join(slower)}."))  # fmt: skip
    return lines


def markdown_section(results, *, command, machine, versions_found, settings, load_after=None, notes=(), date=None,
                     how_to=True):
    """The Markdown written between the docs markers: how it was run, on what, the table and the targets, then
    (with `how_to`, once a page) the smoke-test and GPU commands.

    `date` is the day the run was measured (ISO format; today when None), so re-rendering a saved run keeps it. A
    run on a GPU (`machine["gpus"]`) is titled "Throughput: GPU, <card>", names the card and is judged by the GPU
    targets (`gpu_targets`); `keras-vitres benchmark --write-docs` puts it in the "gpu" section (`markers("gpu")`).
    """
    gpus = machine["gpus"]
    kind = f"GPU, {gpus[0]}" if gpus else f"CPU, {cpu_kind(machine)}"
    measured = date or datetime.date.today().isoformat()
    lines = [
        f"## Throughput: {kind}",
        "",
        f"Measured {measured} on {', '.join(gpus)} with:" if gpus else f"Measured {measured} with:",
        "",
        "<!-- illustrative: needs a GPU, with PyTorch and timm for the PyTorch peers -->" if gpus else
        "<!-- illustrative: the full benchmark takes half an hour or more on 2 CPU cores -->",
        "```console",
        f"$ {command}",
        "```",
        "",
        *_run_details(machine, versions_found, settings, load_after),
        "",
        markdown_table(results),
        "",
        "Targets:",
        "",
    ]  # fmt: skip
    if gpus:
        lines += gpu_targets(results, gpus[0])
    else:
        lines += [*(targets(results) or ["- no peer was measured."]), f"- GPU: {NO_GPU}."]
        lines += list(HOW_TO) if how_to else []
    for note in notes:
        lines += ["", note]
    return "\n".join(lines)


def _run_details(machine, versions_found, settings, load_after):
    """The bullets of a docs section that say on what and how a run was measured, and how to read its table."""
    gpus = machine["gpus"]
    memory = "?" if machine["memory_gib"] is None else f"{machine['memory_gib']:.0f} GiB"
    features = ", ".join(machine["cpu_features"]) or "none of " + "/".join(CPU_FEATURES)
    features = f" ({features})" if machine["cpu_features"] or not gpus else ""
    load = machine["load_average"]
    load_text = "unknown" if load is None else f"{load[0]:.1f} (1 min) at the start"
    if load_after is not None:
        load_text += f", {load_after[0]:.1f} at the end"
    version_text = ", ".join(f"{name} {version or 'not installed'}" for name, version in versions_found.items())
    return [
        f"- Machine: {machine['cpu']}, {machine['cores']} cores{features}, {memory} memory; "
        + (f"GPU: {'; '.join(gpus)}." if gpus else f"{NO_GPU}."),
        f"- Load average {load_text}, on {machine['cores']} cores (it counts the benchmark's own worker processes,"
        " and anything else running): the candidates of each model were alternated step by step (A B A B ...)"
        " and the table gives medians; the ratios are fairer than the absolute figures.",
        f"- Versions: {version_text}.",
        f"- Settings: {settings}.",
        "- Each candidate runs in its own process; `peak RSS` is that process's peak resident memory (framework,"
        " model, optimizer state and activations); `build s` is the builder call; `first step s` is the first"
        " training step, which traces and compiles. `ours/peer` is ours' throughput over the peer's (of the median"
        " step times), on the peer's row: above 1.00x ours is faster. In brackets, where every step was kept: the"
        " median and interquartile range of the per-round ratios (ours' step i against the peer's step i, timed"
        " back to back): when the load changes during a run the ratio of the medians can fall between two load"
        " levels, the per-round ratios cannot, and their spread shows how much of a difference from 1.00x is"
        " noise.",
    ]


# The end of the first CPU section of a page: how to run the smoke test, and the benchmark on a GPU.
HOW_TO = (
    "",
    "A smoke test of the same machinery on tiny models takes seconds:",
    "",
    "```console",
    "$ keras-vitres benchmark --quick --models tiny_resnet --steps 1 --quiet",
    "```",
    "",
    "On a GPU machine the same script measures Keras on the JAX backend (XLA on, bfloat16 with"
    " `--precision mixed_bfloat16`) against timm and torchvision when they are installed:",
    "",
    "<!-- illustrative: needs a GPU and PyTorch, timm and torchvision -->",
    "```console",
    "$ python benchmarks/run.py --models resnet50,vit_b16 --precision mixed_bfloat16 --batch-size 128 --write-docs",
    "```",
)


def cpu_kind(machine):
    """A run's CPU kind from its recorded features: "AVX-512 with bfloat16", "AVX-512", "AVX2" or "no AVX2"."""
    features = set(machine["cpu_features"])
    if features & {"avx512_bf16", "amx_bf16"}:
        return "AVX-512 with bfloat16"
    if "avx512f" in features:
        return "AVX-512"
    # Runs recorded before avx2 was listed named only the AVX-512 features; those machines had neither.
    return "AVX2" if "avx2" in features else "no AVX-512 (AVX2 not recorded)"


def markers(name=None):
    """The start and end markers of a docs section: `MARKER_START`/`MARKER_END`, or with a section `name`
    (`<!-- benchmark-table cpu_avx2 -->`), so one page can hold the runs of several machines."""
    if name is None:
        return MARKER_START, MARKER_END
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"`name` must be letters, digits, '_' and '-'; received name={name!r}.")
    return MARKER_START.replace(" -->", f" {name} -->"), MARKER_END.replace(" -->", f" {name} -->")


def write_docs_section(path, section, fallback_path=None, name=None):
    """Replaces the text between the markers of section `name` (`markers`) in `path` with `section`; nothing else
    changes.

    When `path` has no markers, the section is written between the markers to `fallback_path` (if given), for
    merging by hand, and that path is returned; otherwise `path` is returned.

    Raises:
        ValueError: the markers are out of order or repeated, or missing with no `fallback_path`.
    """
    start, end = markers(name)
    text = _read(path)
    starts, ends = text.count(start), text.count(end)
    if starts == 1 and ends == 1:
        if text.index(end) < text.index(start):
            raise ValueError(f"{path!r}: {end!r} comes before {start!r}.")
        head, rest = text.split(start)
        _, tail = rest.split(end)
        with open(path, "w") as f:
            f.write(f"{head}{start}\n{section.strip()}\n{end}{tail}")
        return path
    if starts or ends:
        raise ValueError(f"{path!r} must hold {start!r} and {end!r} once each; found {starts} and {ends}.")
    if fallback_path is None:
        raise ValueError(f"{path!r} has no {start!r} ... {end!r} markers to write between.")
    with open(fallback_path, "w") as f:
        f.write(f"{start}\n{section.strip()}\n{end}\n")
    return fallback_path


# The libraries a user would otherwise pick; the flat functional CIFAR net is a control, not a library.
LIBRARY_PEERS = ("keras.applications", "keras-hub", "timm", "torchvision")


def speedup_table(records):
    """The README's speed-up table: for each saved run (`{path: record}` as written by `--json`), the range of
    ours/peer throughput ratios against the libraries (`LIBRARY_PEERS`) for ResNets and ViTs, training and
    inference, every precision measured. One row per run, so a figure always names its machine kind and record."""
    lines = [
        "| machine (record) | ResNet train | ResNet inference | ViT train | ViT inference |",
        "|---|---|---|---|---|",
    ]
    for path, record in records.items():
        machine = record["machine"]
        kind = f"GPU, {machine['gpus'][0]}" if machine["gpus"] else f"CPU, {cpu_kind(machine)}"
        cells = []
        for family in ("resnet", "vit"):
            for step in ("train", "infer"):
                ratios = sorted(row[f"{step}_ratio"] for row in record["results"]
                                if row["model"].startswith(family) and row["candidate"] in LIBRARY_PEERS
                                and row.get(f"{step}_ratio") is not None)  # fmt: skip
                cells.append("-" if not ratios else f"{ratios[0]:.2f}x" if len(ratios) == 1 else
                             f"{ratios[0]:.2f}x to {ratios[-1]:.2f}x")  # fmt: skip
        name = os.path.basename(path)
        lines.append(f"| {kind}: {machine['cores']}-core {machine['cpu']}, {record['date']} ([{name}]({path})) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)
