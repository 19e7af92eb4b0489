"""Reruns the reliability suite and rewrites the figures in docs/reliability.md.

    python docs/scripts/reliability_report.py                 # the default suite (~3 minutes on 2 CPU cores)
    python docs/scripts/reliability_report.py --slow          # also the 20,000-request soak and the large presets
    python docs/scripts/reliability_report.py --soak          # also the soak, without the large presets
    python docs/scripts/reliability_report.py --with-training # also rerun the training-fault tests (~5 minutes)
    python docs/scripts/reliability_report.py --junit a.xml b.xml  # rebuild the page from earlier runs' JUnit XML

The tests record what each case fed in and what the user got (`record_property`); pytest writes them to a JUnit
XML file, and this script turns that file into the tables between the markers of docs/reliability.md. Exit status:
0 when every test passed (strict xfails included), 1 otherwise; the page is rewritten either way, with the
failures counted.
"""

import argparse
import collections
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = os.path.join(ROOT, "docs", "reliability.md")
BEGIN, END = "<!-- reliability-report:begin -->", "<!-- reliability-report:end -->"
SUITE = ["tests/reliability"]

# The training suite's fault tests (owned by the training code); rerun with --with-training (slow ones included).
RUNNER = "tests/training/test_runner.py::"
CALLBACKS = "tests/training/test_callbacks.py::"
TRAINING_FAULTS = [
    (
        "SIGKILL mid-epoch, then the same command again",
        RUNNER + "test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run",
        "the run resumes from its last backup and ends with weights bit-identical to an uninterrupted run",
    ),
    (
        "Ctrl-C (SIGINT) sent to a real `keras-vitres train` process in the middle of an epoch",
        RUNNER + "test_sigint_to_a_real_keras_vitres_train_process_saves_exits_130_and_the_printed_command_resumes",
        "the step in progress finishes and is saved; the exact command to resume is printed; exit status 130; that "
        "command resumes from the saved step and ends bit-identical to a run never interrupted",
    ),
    (
        "Ctrl-C during `keras-vitres train` (in-process)",
        RUNNER + "test_ctrl_c_saves_the_step_prints_the_resume_command_and_exits_130",
        "a backup of the step reached, the resume command, exit 130; the printed command resumes from that step's "
        "weights, finishes the interrupted epoch, and logs no epoch twice",
    ),
    (
        "the newest backup truncated, then the run resumed",
        RUNNER + "test_a_truncated_or_corrupt_newest_backup_falls_back_to_the_one_before",
        "the truncated file is named and skipped with the reason; the run resumes from the backup before it",
    ),
    (
        "the newest backup truncated, corrupted (same size), or its record unreadable",
        CALLBACKS + "test_verified_backup_keeps_two_and_falls_back_past_a_truncated_or_corrupt_newest",
        "two backups kept, each checked against its recorded size and sha256; a bad one is named and skipped "
        "(set aside as *.skipped), the previous one restored with the optimizer state; with none intact the "
        "model is left untouched and the run starts again",
    ),
    (
        "a backup cut short while being written (killed between the weights and their record)",
        CALLBACKS + "test_verified_backup_never_uses_a_backup_cut_short_while_being_written",
        "never used: a backup counts only once its record is written last; the leftovers are cleared",
    ),
    (
        "a NaN loss in a run",
        RUNNER + "test_a_diverging_run_stops_keeps_the_last_good_weights_and_names_the_step",
        "the run stops at the step whose loss was not finite and names it; the saved model holds exactly the "
        "weights of the last step with a finite loss; `keras-vitres train` exits with status 1",
    ),
    (
        "a NaN loss inside `fit`",
        CALLBACKS + "test_terminate_on_nan_names_the_step_and_restores_the_last_good_weights",
        "training stops at that step with the last good weights restored",
    ),
    (
        "a run directory that cannot be written",
        RUNNER + "test_an_unwritable_run_dir_fails_before_any_data_or_model",
        "an OSError naming the directory (exit status 2 from `keras-vitres train`), before any data is read or "
        "model built",
    ),
    (
        "resuming with another configuration",
        RUNNER + "test_an_unfinished_run_resumes_only_with_its_own_configuration",
        "a ValueError naming the fields that differ, before anything is written",
    ),
    (
        "rerunning a finished run",
        RUNNER + "test_a_finished_run_is_not_overwritten_and_the_default_dir_moves_on",
        "the finished run is not overwritten",
    ),
    (
        "the same seed twice on CPU with deterministic ops (two fresh processes, 6 steps)",
        RUNNER + "test_the_same_seed_gives_bit_identical_weights_with_deterministic_ops_on_cpu",
        "bit-identical weights; another seed gives different ones",
    ),
    (
        "`deterministic=True` (`--deterministic`)",
        RUNNER + "test_deterministic_runs_seed_everything_and_turn_op_determinism_on",
        "seeds Python, NumPy and the backend and turns TensorFlow's op determinism on, before the run starts",
    ),
]


def node_id(testcase):
    path = testcase.get("classname", "").replace(".", "/") + ".py"
    return f"{path}::{testcase.get('name')}"


def read_junit(path):
    """{node id: {"status": passed|failed|skipped|xfailed, "message": str, "properties": {...}, "time": s}}."""
    results = {}
    for case in ET.parse(path).iter("testcase"):
        properties = {}
        for prop in case.iter("property"):
            properties[prop.get("name")] = prop.get("value")  # the last value wins (property tests append)
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status, message = "failed", child.get("message", "")
            elif child.tag == "skipped":
                kind = child.get("type", "")
                message = child.get("message", "")
                status = "xfailed" if "xfail" in kind or message.startswith("xfail") else "skipped"
        results[node_id(case)] = dict(
            status=status, message=message, properties=properties, time=float(case.get("time", 0))
        )
    return results


def run_pytest(targets, marker, junit):
    marker = ["-m", marker] if marker else []
    command = [
        sys.executable,
        "-m",
        "pytest",
        *targets,
        *marker,
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "junit_family=xunit1",
        f"--junitxml={junit}",
    ]
    print("$", " ".join(command), flush=True)
    completed = subprocess.run(command, cwd=ROOT)
    if completed.returncode < 0:
        raise SystemExit(f"pytest died with signal {-completed.returncode}: an interpreter crash")
    return completed.returncode


def cell(text, limit=180):
    text = " ".join(str(text).split()).replace("|", "\\|")
    text = text.replace("[", "\\[").replace("]", "\\]")  # TensorFlow's "[a] [b]" messages are not Markdown links
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_path(node):
    return node.replace("tests/reliability/", "")


def hostile_rows(results, module):
    rows = []
    for node, result in results.items():
        if not node.startswith(f"tests/reliability/{module}.py::test_hostile"):
            continue
        props = result["properties"]
        case = node.split("[", 1)[1][:-1] if "[" in node else node
        outcome = props.get("outcome", "") if result["status"] == "passed" else f"FAILED: {result['message']}"
        rss = props.get("rss_growth_mb", "n/a")
        rows.append(f"| {cell(props.get('input', case))} | `{case}` | {cell(outcome)} | {rss} |")
    return rows


def section(title, intro, header, rows):
    return [f"### {title}", "", intro, "", *header, *rows, ""]


def build_report(results, slow, with_training, timing):
    lines = []
    by_module = collections.defaultdict(list)
    for node, result in results.items():
        by_module[node.split("::")[0]].append(result)
    failed = [n for n, r in results.items() if r["status"] == "failed"]

    # Hostile inputs.
    images = hostile_rows(results, "test_untrusted_images")
    files = hostile_rows(results, "test_untrusted_files")
    lines += section(
        "Untrusted images at the serving signature",
        "Each file is sent alone to `serving_bytes` of an exported ResNet-8, then inside a batch with valid "
        "images, then a valid request must get the same answer as before "
        "(`test_untrusted_images.py::test_hostile_image_gets_a_clear_error_and_the_next_request_works[CASE]`). "
        "RSS growth is the rise of peak resident memory during the call.",
        ["| input | case | what the user gets | RSS growth (MiB) |", "|---|---|---|---:|"],
        images,
    )
    lines += section(
        "Untrusted weight files, `.keras` files and downloads",
        "Each file goes through a builder's `weights=` (or `download`, or `keras-vitres export`); the test also "
        "checks that no code ran (a marker file a payload would write), that safe mode is still on and that the "
        "model's weights are unchanged "
        "(`test_untrusted_files.py::test_hostile_file_is_refused_runs_no_code_and_changes_nothing[CASE]`).",
        ["| input | case | what the user gets | RSS growth (MiB) |", "|---|---|---|---:|"],
        files,
    )

    # Property-based tests.
    prop_rows, prop_examples, prop_errors, prop_valid = [], 0, 0, 0
    for node, result in results.items():
        if not node.startswith("tests/reliability/test_properties.py::") or "_gap_" in node:
            continue
        props = result["properties"]
        examples, valid, errors = (int(props.get(k, 0)) for k in ("examples", "valid_ok", "clear_errors"))
        prop_examples, prop_valid, prop_errors = prop_examples + examples, prop_valid + valid, prop_errors + errors
        status = "passed" if result["status"] == "passed" else f"FAILED: {cell(result['message'], 120)}"
        prop_rows.append(f"| `{node.split('::')[1]}` | {examples} | {valid} | {errors} | {status} |")
    lines += section(
        "Bad input at every public entry point (Hypothesis)",
        "Derandomised draws of valid and invalid arguments: valid ones must build or run, invalid ones must raise "
        "ValueError/TypeError naming the argument and the value; every test runs in an empty folder that must "
        "stay empty (`test_properties.py`).",
        ["| test | examples | valid, handled | invalid, clear error | result |", "|---|---:|---:|---:|---|"],
        prop_rows,
    )

    gaps = [(n, r) for n, r in results.items() if "test_known_gap" in n]  # strict xfails, if any come back
    fixed = [(n, r) for n, r in results.items() if "test_fixed_gap" in n]
    gap_rows = []
    for node, result in gaps:
        case = node.split("[", 1)[1][:-1]
        reason = re.sub(r"^(\[XPASS\(strict\)\] )?", "", result["message"])
        status = {"xfailed": "open (strict xfail)", "failed": "FIXED? (strict xfail passed: remove the mark)"}.get(
            result["status"], result["status"]
        )
        gap_rows.append(f"| `{cell(case, 80)}` | {status} | {cell(reason, 260)} |")
    fixed_rows = []
    for node, result in fixed:
        props = result["properties"]
        case = props.get("input", node.split("[", 1)[-1][:-1])
        outcome = props.get("outcome", "") if result["status"] == "passed" else f"FAILED: {result['message']}"
        fixed_rows.append(f"| `{cell(case, 90)}` | {cell(outcome, 220)} | {cell(props.get('fix', ''), 200)} |")
    if gap_rows:
        lines += section(
            "Known gaps: inputs accepted, or refused unclearly, today",
            "Each is a strict xfail in `test_properties.py`, so it fails the suite once fixed until the mark is "
            "removed.",
            ["| entry point and input | status | suggested fix |", "|---|---|---|"],
            gap_rows,
        )
    lines += section(
        "Gaps found by the property tests, now fixed",
        f"{len(fixed_rows)} inputs that the builders, `get_preset`, the schedules and `keras-vitres train` once "
        "accepted or refused unclearly. Each is now a drawn invalid value of the property tests above and a pinned "
        "case of `test_properties.py::test_fixed_gap_raises_a_clear_error`, which checks that the error names the "
        "argument and the value (and, for names, suggests the close ones)."
        + ("" if gap_rows else " No known gap is open."),
        ["| entry point and input | what the user gets now | fixed in |", "|---|---|---|"],
        fixed_rows,
    )

    # Presets and the Keras floor.
    preset_results = {n: r for n, r in results.items() if "test_safe_mode_presets.py::" in n}
    preset_passed = sum(r["status"] == "passed" for r in preset_results.values())
    keras_files = sum("keras_file_mb" in r["properties"] for r in preset_results.values())
    floor = [r for n, r in results.items() if "test_keras_floor.py::" in n]
    lines += [
        "### Model files the package writes",
        "",
        "| check | test | result |",
        "|---|---|---|",
        f"| every registered preset: no `Lambda` (nested layers walked), config deserialised with "
        f"`safe_mode=True` into the same model | `test_safe_mode_presets.py` | {preset_passed} of "
        f"{len(preset_results)} presets run passed ({keras_files} through a real `.keras` file)"
        f"{'' if slow else '; the large presets run with --slow'} |",
        f"| Keras floor `keras>=3.13.2` declared in setup.cfg, installed, named in SECURITY.md | "
        f"`test_keras_floor.py` | {sum(r['status'] == 'passed' for r in floor)} of {len(floor)} passed |",
        "",
    ]

    # Serving load.
    load_rows = []
    for node, result in results.items():
        if "test_serving_load.py::" not in node:
            continue
        p = result["properties"]
        if "requests" not in p:
            continue
        load_rows.append(
            f"| {int(p['requests']):,} | {p['threads']} | {float(p['seconds']):.1f} | "
            f"{float(p['requests_per_second']):.0f} | {float(p['latency_ms_p50']):.1f} / "
            f"{float(p['latency_ms_p99']):.1f} | {p['errors']} | {p['mismatches']} | "
            f"{float(p['rss_start_mb']):.0f} / {float(p['rss_warm_mb']):.0f} / {float(p['rss_half_mb']):.0f} / "
            f"{float(p['rss_end_mb']):.0f} | {float(p['rss_growth_after_warmup_mb']):+.1f} |"
        )
    lines += section(
        "Serving under load",
        "The exported ResNet-8 SavedModel, loaded with TensorFlow, called from 8 threads at once with 16 distinct "
        "requests in rotation (JPEG/PNG files of several sizes through `serving_bytes`, float batches through "
        "`serving_default`, batches of 1 to 4); every answer is compared bit for bit with the serial answer "
        "(`test_serving_load.py`).",
        [
            "| requests | threads | seconds | requests/s | latency p50 / p99 (ms) | errors | answers differing from "
            "serial | RSS MiB: start / after warm-up (10%) / half / end | growth after warm-up (MiB) |",
            "|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ],
        load_rows,
    )

    # Training faults.
    training_rows = []
    for fault, node, gets in TRAINING_FAULTS:
        if with_training and node in results:
            status = {"passed": "passed", "failed": "FAILED"}.get(results[node]["status"], results[node]["status"])
            status += f" ({results[node]['time']:.0f} s)"
        else:
            status = "covered by the training suite"
        training_rows.append(f"| {fault} | `{node.replace('tests/training/', '')}` | {gets} | {status} |")
    lines += section(
        "Faults during training",
        "A run keeps its last two backups in `RUN_DIR/backup/` (`keras_vitres.training.VerifiedBackup`): each is "
        "the weights with the optimizer state, written under a temporary name and renamed, then a record with its "
        "step, size and sha256, written last. These are tested by the training suite (`tests/training/`)"
        + (
            " and were rerun for this report, slow tests included."
            if with_training
            else "; rerun them here with `--with-training`."
        ),
        ["| fault | test | what the user gets | result |", "|---|---|---|---|"],
        training_rows,
    )

    # Totals.
    hostile = len(images) + len(files) + len(fixed_rows)
    hostile_clear = sum(1 for r in images + files + fixed_rows if "FAILED" not in r)
    training_run = [results[n] for _, n, _ in TRAINING_FAULTS if with_training and n in results]
    integrity_nodes = [n for n in results if "test_untrusted_files.py::" in n] + (
        [n for _, n, _ in TRAINING_FAULTS if with_training and n in results]
    )
    data_lost = sum(results[n]["status"] == "failed" for n in integrity_nodes)
    tried = hostile + prop_examples + len(training_run)
    totals = [
        "### Totals",
        "",
        "| | count |",
        "|---|---:|",
        f"| hostile inputs and faults tried (files, images, fixed gaps{', training faults' if training_run else ''}) | "
        f"{hostile + len(training_run)} |",
        f"| property-test examples drawn | {prop_examples} |",
        f"| **cases tried** | **{tried}** |",
        f"| clear errors (hostile inputs refused with a clear message, invalid draws) | {hostile_clear + prop_errors} |",
        f"| valid draws built or served correctly | {prop_valid} |",
        f"| crashes (interpreter died, wrong exception type, or a test failed) | **{len(failed)}** |",
        f"| data lost (a model changed by a failed load, a half-written download kept"
        f"{', a training fault losing state' if training_run else ''}) | **{data_lost}** |",
        f"| known gaps still open (strict xfails) | **{sum(r['status'] == 'xfailed' for _, r in gaps)}** "
        f"({len(fixed_rows)} found earlier are fixed, listed below) |",
        "",
    ]
    header = [
        f"Generated by `python docs/scripts/reliability_report.py{timing['flags']}` on {timing['date']}: "
        f"{timing['machine']}; {timing['versions']}. {len(results)} tests in {timing['seconds']:.0f} s "
        f"({timing['scope']}).",
        "",
    ]
    return header + totals + lines, failed


def machine():
    try:
        load = f", load average {os.getloadavg()[0]:.1f}"
    except OSError:
        load = ""
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores{load}"


def versions():
    code = (
        'import keras, tensorflow, numpy; print(f\'Python {__import__("platform").python_version()}, '
        "Keras {keras.__version__}, TensorFlow {tensorflow.__version__}, NumPy {numpy.__version__}')"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "versions unknown"


def rewrite(page, body):
    with open(page) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{page} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(page, "w") as f:
        f.write(head + BEGIN + "\n" + "\n".join(body).rstrip() + "\n" + END + tail)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow", action="store_true", help="also run the slow tests (soak, large presets)")
    parser.add_argument("--soak", action="store_true", help="also run the 20,000-request serving soak (slow)")
    parser.add_argument("--with-training", action="store_true", help="also rerun the training-fault tests")
    parser.add_argument("--junit", nargs="+", help="build the page from these JUnit XML files (of earlier runs, e.g. "
                        "kept with --keep-junit) instead of running the tests")
    parser.add_argument("--keep-junit", help="also copy the JUnit XML of the run to this path")
    parser.add_argument("--page", default=PAGE, help="the Markdown page to rewrite (default docs/reliability.md)")
    args = parser.parse_args(argv)

    start = datetime.datetime.now()
    machine_line = machine()
    if args.junit:
        results, code = {}, 0
        for path in args.junit:
            results.update(read_junit(path))
    else:
        runs = [(SUITE, None if args.slow else "not slow")]
        if args.soak and not args.slow:
            runs.append((["tests/reliability/test_serving_load.py"], "slow"))
        if args.with_training:  # all of them, the slow ones (real processes killed and interrupted) included
            runs.append(([n for _, n, _ in TRAINING_FAULTS], None))
        results, code = {}, 0
        with tempfile.TemporaryDirectory() as folder:
            for i, (paths, marker) in enumerate(runs):
                junit = os.path.join(folder, f"reliability{i}.xml")
                code = max(code, run_pytest(paths, marker, junit))
                results.update(read_junit(junit))
                if args.keep_junit:
                    shutil.copy(junit, args.keep_junit if len(runs) == 1 else f"{args.keep_junit}.{i}")
    flags = "".join(f" --{name.replace('_', '-')}" for name in ("slow", "soak", "with_training") if getattr(args, name))
    excepted = [name for name, on in (("the soak", args.soak), ("the training faults", args.with_training)) if on]
    scope = "slow tests included" if args.slow else "slow tests not run" + (
        f", except {' and '.join(excepted)}" if excepted else ""
    )
    timing = dict(
        date=start.strftime("%Y-%m-%d"),
        machine=machine_line,
        versions=versions(),
        flags=flags,
        scope=scope,
        seconds=sum(r["time"] for r in results.values()),
    )
    body, failed = build_report(results, args.slow, args.with_training, timing)
    rewrite(args.page, body)
    per_file = collections.Counter()
    for node, result in results.items():
        per_file[node.split("::")[0]] += result["time"]
    for path, seconds in per_file.most_common():
        print(f"{seconds:7.1f} s  {path}")
    print(f"{args.page}: {len(results)} tests, {len(failed)} failed")
    return 1 if failed or code not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
