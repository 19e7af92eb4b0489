"""The benchmark end to end on tiny models: worker processes, alternated steps, the table, the docs section."""

import json
import os
import subprocess
import sys

import pytest

from keras_vitres.benchmark import candidates, report
from keras_vitres.benchmark.runner import run_benchmark
from keras_vitres.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["benchmark", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--models", "--batch-size", "--precision", "--jit", "--steps", "--quick", "--write-docs"):
        assert flag in out


@pytest.mark.slow  # measures in worker processes: 8-12 s on 2 cores
def test_script_quick_run_prints_the_table_and_rewrites_only_the_marked_section(tmp_path):
    docs = tmp_path / "benchmarks.md"
    frame_before, frame_after = "# Benchmarks\n\n## Throughput\n", "\n\n## Accuracy\n\nOwned by the lead.\n"
    docs.write_text(f"{frame_before}{report.MARKER_START}\nstale\n{report.MARKER_END}{frame_after}")
    results_path = tmp_path / "results.json"
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--models", "tiny_resnet",
               "--write-docs", "--docs", os.fspath(docs), "--json", os.fspath(results_path), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    header = done.stdout.splitlines()[0].split()
    assert header[:2] == ["model", "candidate"] and "img/s" in header and "ours/peer" in header
    rows = {r["candidate"]: r for r in json.loads(results_path.read_text())["results"]}
    ours, peer = rows["ours"], rows["keras functional"]
    for row in (ours, peer):
        assert row["params"] == 75_770  # the same ResNet-8 in both: equal work
        assert len(row["train_steps"]) == 2 and len(row["infer_steps"]) == 2
        assert row["train_ips"] == pytest.approx(row["batch_size"] / row["train_step_s"])
        assert row["peak_rss_mib"] > 100 and row["build_s"] > 0 and row["first_step_s"] > 0
    assert peer["train_ratio"] == pytest.approx(ours["train_ips"] / peer["train_ips"])
    assert peer["infer_ratio"] == pytest.approx(ours["infer_ips"] / peer["infer_ips"])
    assert f"{peer['train_ratio']:.2f}x" in done.stdout

    text = docs.read_text()
    assert text.startswith(frame_before + report.MARKER_START) and text.endswith(report.MARKER_END + frame_after)
    assert "stale" not in text and "--quick --models tiny_resnet" in text and "| ResNet-8 (CIFAR, tiny) | ours |" in text

    # Re-rendering the saved run with notes changes only the section, and keeps the measuring command.
    notes = tmp_path / "notes.md"
    notes.write_text("Remat: measured separately.")
    assert main(["benchmark", "--from-json", os.fspath(results_path), "--write-docs", "--docs", os.fspath(docs),
                 "--notes", os.fspath(notes)]) == 0  # fmt: skip
    again = docs.read_text()
    assert again.endswith("Remat: measured separately.\n" + report.MARKER_END + frame_after)
    assert again.replace("\n\nRemat: measured separately.", "") == text

    # The section keeps the day the run was measured, not the day it was re-rendered.
    record = json.loads(results_path.read_text())
    assert f"Measured {record['date']} with:" in text
    results_path.write_text(json.dumps({**record, "date": "2020-01-02"}))
    assert main(["benchmark", "--from-json", os.fspath(results_path), "--write-docs", "--docs", os.fspath(docs)]) == 0
    assert "Measured 2020-01-02 with:" in docs.read_text()


@pytest.mark.slow  # measures in worker processes: 8-12 s on 2 cores
def test_a_missing_peer_is_reported_and_ours_still_measured(monkeypatch):
    monkeypatch.setattr(candidates, "is_installed", lambda module: module != "keras_hub")
    lines = []
    results = run_benchmark(["tiny_vit"], steps=1, warmup=1, log=lines.append)
    by_name = {r.candidate: r for r in results}
    assert by_name["keras-hub"].note == "not installed: keras_hub (pip install keras-hub)"
    assert not by_name["keras-hub"].measured and by_name["keras-hub"].train_ratio is None
    assert by_name["ours"].measured and by_name["ours"].train_ips > 0 and by_name["ours"].params == 24_234
    assert any("keras-hub: skipped (not installed" in line for line in lines)
    row = report.format_table(results).splitlines()[-1]
    assert "keras-hub" in row and "not installed: keras_hub" in row


def test_torch_session_trains_and_infers_on_cpu(monkeypatch):
    """The PyTorch peers' session (used on GPU machines) with a tiny stand-in model, on this machine's CPU."""
    torch = pytest.importorskip("torch")
    from keras_vitres.benchmark.worker import _load_torch_peers

    peers = _load_torch_peers()
    with pytest.raises(ValueError, match="received builder='nope'"):
        peers.build_model("nope", [16, 16, 3], 10, {})
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 10))  # fmt: skip
    monkeypatch.setattr(peers, "build_model", lambda builder, image_shape, classes, options: tiny)
    session = peers.TorchSession(dict(builder="timm_model", options={}, image_shape=[16, 16, 3], classes=10,
                                      batch_size=4, precision="mixed_bfloat16", jit="off"))  # fmt: skip
    assert session.device == "cpu" and session.params == 4 * 3 * 9 + 4 + 4 * 10 + 10 and not session.jit
    before = tiny[0].weight.detach().clone()
    session.train()
    session.infer()
    assert not torch.equal(before, tiny[0].weight) and session.device_peak_mib() is None
