"""The README stays true: its preset table is the registry's, and its quick start is what CI runs."""

import pathlib
import subprocess

from keras_vitres.cli.presets import markdown_table
from keras_vitres.presets import PRESETS

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_preset_table_is_the_registry():
    assert markdown_table(list(PRESETS)) in README


def test_quick_start_is_two_commands_and_ci_runs_the_test_command():
    block = README.split("<!-- test-command -->")[1].split("<!-- /test-command -->")[0]
    commands = [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    assert len(commands) == 2
    assert "keras-vitres train" in commands[0] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    extraction = next(line for line in ci.splitlines() if line.startswith("quick_start=$(awk"))
    script = extraction.replace("quick_start=$(", "", 1)[:-1]  # the awk command CI runs, verbatim
    extracted = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    extracted = extracted.splitlines()
    assert extracted[:2] == commands


def test_speed_table_is_rendered_from_the_committed_records():
    """Every speed-up in the README comes from a committed benchmark record, one row per machine kind."""
    import json
    import re

    from keras_vitres.benchmark.report import speedup_table

    paths = re.findall(r"\(\[[\w.]+\]\((benchmarks/results/[\w.]+\.json)\)\)", README)
    assert len(paths) >= 2, "the README names no benchmark records"
    table = speedup_table({path: json.loads((ROOT / path).read_text()) for path in paths})
    assert "\n".join("  " + line for line in table.splitlines()) in README
    assert "CPU, AVX2:" in table and "CPU, AVX-512 with bfloat16:" in table
