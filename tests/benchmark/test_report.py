"""The benchmark's bookkeeping without running models: plans, ratios, the table, targets and the docs markers."""

import os

import pytest

from keras_vitres.benchmark import candidates, report, runner
from keras_vitres.benchmark.runner import Result, compute_ratios, paired_ratio_quartiles, resolve_backend, run_benchmark


def _result(candidate, against=None, train_s=None, infer_s=None, model="resnet50", precision="float32", **kw):
    return Result(model=model, title=model, candidate=candidate, against=against, batch_size=16, precision=precision,
                  train_step_s=train_s, infer_step_s=infer_s, **kw)  # fmt: skip


def test_every_peer_is_compared_with_an_ours_candidate_of_its_group():
    for spec in candidates.MODELS.values():
        ours = {c.key for c in spec.candidates if c.is_ours}
        assert ours, spec.key
        for c in spec.candidates:
            assert c.against is None or c.against in ours, (spec.key, c.key)
            assert c.framework in candidates.FRAMEWORKS


def test_the_issue_models_and_peers_are_registered():
    assert set(candidates.DEFAULT_MODELS) == {"resnet20", "resnet110", "resnet1202", "resnet50", "vit_s16", "vit_b16"}
    peers = {c.key for c in candidates.MODELS["resnet50"].candidates}
    assert {"keras.applications", "keras-hub", "timm", "torchvision"} <= peers
    assert {c.key for c in candidates.MODELS["vit_b16"].candidates} == {"ours", "keras-hub", "timm"}
    assert candidates.get_models(["vit_base_patch16_224"])[0].key == "vit_b16"
    large = candidates.get_models(["vit_large_patch16_224"])[0]
    assert large.key == "vit_l16" and {c.key for c in large.candidates} == {"ours", "keras-hub", "timm"}
    hub = next(c for c in large.candidates if c.key == "keras-hub")
    assert hub.options == dict(patch_size=16, hidden_dim=1024, num_layers=24, num_heads=16, mlp_dim=4096)
    with pytest.raises(ValueError, match="received models='vit_z16'"):
        candidates.get_models(["vit_z16"])


def test_model_batch_lists_of_the_remat_scripts_parse_with_defaults_aliases_and_named_errors():
    pairs = candidates.get_model_batches("resnet110:128, vit_base_patch16_224")
    assert [(spec.key, batch) for spec, batch in pairs] == [("resnet110", 128), ("vit_b16", 16)]
    assert pairs[0][0].ours.key == "ours" and pairs[0][0].ours.is_ours
    with pytest.raises(ValueError, match="received models='resnet57:8'"):
        candidates.get_model_batches("resnet20,resnet57:8")
    for bad in ("vit_b16:0", "vit_b16:x", "vit_b16:-2"):
        with pytest.raises(ValueError, match=f"positive int: received models='{bad}'"):
            candidates.get_model_batches(bad)


def test_skip_reasons_name_the_missing_package_and_the_gpu(monkeypatch):
    timm = next(c for c in candidates.MODELS["vit_b16"].candidates if c.key == "timm")
    hub = next(c for c in candidates.MODELS["vit_b16"].candidates if c.key == "keras-hub")
    monkeypatch.setattr(candidates, "is_installed", lambda module: module != "keras_hub")
    assert candidates.skip_reason(hub, "cpu") == "not installed: keras_hub (pip install keras-hub)"
    assert candidates.skip_reason(timm, "cpu") == "GPU-only peer: not measured without a GPU"
    assert candidates.skip_reason(timm, "gpu") is None


def test_ratios_are_ours_over_peer_throughput_on_the_peer_row():
    ours = _result("ours", train_s=0.5, infer_s=0.1)
    peer = _result("keras.applications", against="ours", train_s=1.0, infer_s=0.05)
    other_precision = _result("keras.applications", against="ours", train_s=1.0, precision="mixed_bfloat16")
    missing = _result("keras-hub", against="ours", note="not installed: keras_hub")
    compute_ratios([ours, peer, other_precision, missing])
    assert peer.train_ratio == pytest.approx(2.0) and peer.infer_ratio == pytest.approx(0.5)
    assert ours.train_ratio is None and other_precision.train_ratio is None and missing.train_ratio is None
    assert ours.train_ips == pytest.approx(32.0)


def test_table_has_the_issue_columns_and_marks_missing_values():
    ours = _result("ours", train_s=0.5, infer_s=0.1, build_s=1.25, params=1234, peak_rss_mib=900.0)
    peer = _result("keras-hub", against="ours", train_s=1.0, infer_s=0.2)
    missing = _result("timm", against="ours", note="GPU-only peer: not measured without a GPU")
    compute_ratios([ours, peer, missing])
    header, rows = report.table_rows([ours, peer, missing])
    for column in ("train img/s", "train step ms", "infer img/s", "peak RSS MiB", "build s", "ours/peer train",
                   "ours/peer infer", "note"):
        assert column in header
    assert "GPU peak MiB" not in header  # no device memory on CPU
    cell = dict(zip(header, rows[1]))
    assert cell["ours/peer train"] == "2.00x" and cell["train img/s"] == "16.0" and cell["train step ms"] == "1000"
    assert dict(zip(header, rows[0]))["params"] == "1,234"
    assert dict(zip(header, rows[2]))["train img/s"] == "-" and "GPU-only" in rows[2][-1]
    text = report.format_table([ours, peer, missing])
    assert text.splitlines()[0].startswith("model") and "2.00x" in text
    markdown = report.markdown_table([ours, peer])
    assert markdown.splitlines()[0].startswith("| model | candidate |") and markdown.count("\n") == 3
    gpu = _result("ours", train_s=0.5, device_peak_mib=2048.0)
    assert "GPU peak MiB" in report.table_rows([gpu])[0]


def test_targets_report_slower_rows_and_the_resnet1202_build():
    ours = _result("ours", train_s=1.0, infer_s=1.0)
    peer = _result("keras-hub", against="ours", train_s=0.5, infer_s=2.0)
    deep = _result("ours", model="resnet1202", train_s=1.0, build_s=12.0)
    lines = report.targets(compute_ratios([ours, peer, deep]))
    assert any(line.startswith("- train:") and "not met" in line and "0.50x" in line for line in lines)
    assert any(line.startswith("- infer:") and line.endswith("met.") and "not met" not in line for line in lines)
    assert "- train: the aim of 1.2x: not reached (0 of 1 comparisons; ratios 0.50x to 0.50x)." in lines
    assert "- infer: the aim of 1.2x: reached (1 of 1 comparisons; ratios 2.00x to 2.00x)." in lines
    assert "- ResNet-1202 builds in under 30 s: met (12.0 s)." in lines


def test_ratio_spread_pairs_the_steps_of_each_round():
    # Round i timed ours then the peer back to back: the ratio of each round is peer_i / ours_i.
    ours_steps, peer_steps = [1.0, 2.0, 1.0, 1.0, 1.0], [1.0, 2.2, 0.9, 1.1, 1.2]
    quartiles = paired_ratio_quartiles(ours_steps, peer_steps)
    assert quartiles == [pytest.approx(1.0), pytest.approx(1.1), pytest.approx(1.1)]  # of [0.9, 1, 1.1, 1.1, 1.2]
    assert paired_ratio_quartiles([1.0], [1.0]) is None and paired_ratio_quartiles([], None) is None
    ours = _result("ours", train_s=1.0, infer_s=1.0, train_steps=ours_steps, infer_steps=[1.0])
    peer = _result("keras-hub", against="ours", train_s=1.1, infer_s=1.0, train_steps=peer_steps, infer_steps=[1.0])
    compute_ratios([ours, peer])
    assert peer.train_ratio_quartiles == quartiles and peer.infer_ratio_quartiles is None
    cell = dict(zip(*[row[1] if i else row for i, row in enumerate(report.table_rows([ours, peer]))]))
    assert cell["ours/peer train"] == "1.10x (1.10x, 1.00-1.10)" and cell["ours/peer infer"] == "1.00x"


def test_targets_tell_noise_from_a_slower_model():
    ours = _result("ours", train_s=1.0, train_steps=[1.0, 1.0, 1.0, 1.0, 1.0])
    noisy = _result("keras-hub", against="ours", train_s=0.98, train_steps=[0.9, 1.05, 0.95, 1.02, 0.98])
    ours_b = _result("ours", model="vit_b16", train_s=1.0, train_steps=[1.0, 1.0, 1.0, 1.0])
    slower = _result("keras-hub", model="vit_b16", against="ours", train_s=0.9, train_steps=[0.9, 0.9, 0.9, 0.9])
    lines = report.targets(compute_ratios([ours, noisy, ours_b, slower]))
    verdict = next(line for line in lines if line.startswith("- train: ours"))
    assert "resnet50 float32 vs keras-hub (0.98x; rounds 0.98x, IQR 0.95-1.02: within the noise)" in verdict
    assert "vit_b16 float32 vs keras-hub (0.90x; rounds 0.90x, IQR 0.90-0.90: slower in most rounds)" in verdict


def test_section_lists_machine_versions_command_and_the_missing_gpu():
    machine = dict(cpu="Test CPU", cores=2, memory_gib=24.0, cpu_features=["amx_bf16"], gpus=[],
                   load_average=(3.0, 2.0, 1.0), platform="Linux")  # fmt: skip
    section = report.markdown_section(
        [_result("ours", train_s=1.0, infer_s=1.0)], command="python benchmarks/run.py --quick", machine=machine,
        versions_found={"python": "3.11", "keras": "3.15.1", "keras-hub": None}, settings="backend tensorflow",
    )  # fmt: skip
    assert section.startswith("## Throughput: CPU, AVX-512 with bfloat16\n") and "$ python benchmarks/run.py --quick" in section
    assert "<!-- illustrative:" in section.split("```console")[0]  # the docs test must not run the benchmark
    assert "Test CPU, 2 cores (amx_bf16), 24 GiB memory" in section
    assert "keras-hub not installed" in section and "keras 3.15.1" in section
    assert "no GPU was available; GPU targets not measured" in section


def test_docs_section_is_rewritten_only_between_the_markers(tmp_path):
    path = tmp_path / "benchmarks.md"
    before = "# Benchmarks\n\nIntro by the lead.\n\n## Throughput\n"
    after = "\n\n## Other section\n\nKept as is.\n"
    path.write_text(f"{before}{report.MARKER_START}\nold table\n{report.MARKER_END}{after}")
    assert report.write_docs_section(path, "new table\n") == path
    assert path.read_text() == f"{before}{report.MARKER_START}\nnew table\n{report.MARKER_END}{after}"
    report.write_docs_section(path, "newer")  # idempotent: rewriting again keeps the frame
    assert path.read_text() == f"{before}{report.MARKER_START}\nnewer\n{report.MARKER_END}{after}"


def test_docs_without_markers_go_to_the_fallback_file(tmp_path):
    path, fallback = tmp_path / "benchmarks.md", tmp_path / "_benchmarks_throughput.md"
    path.write_text("# Benchmarks\n")
    assert report.write_docs_section(path, "table", fallback_path=fallback) == fallback
    assert path.read_text() == "# Benchmarks\n"
    assert fallback.read_text() == f"{report.MARKER_START}\ntable\n{report.MARKER_END}\n"
    with pytest.raises(ValueError, match="no '<!-- benchmark-table -->'"):
        report.write_docs_section(path, "table")
    path.write_text(f"{report.MARKER_END}\n{report.MARKER_START}\n")
    with pytest.raises(ValueError, match="comes before"):
        report.write_docs_section(path, "table", fallback_path=fallback)
    path.write_text(f"{report.MARKER_START}\n{report.MARKER_START}\n{report.MARKER_END}\n")
    with pytest.raises(ValueError, match="once each"):
        report.write_docs_section(path, "table", fallback_path=fallback)


def test_arguments_are_checked_before_anything_runs():
    with pytest.raises(ValueError, match="received precisions=\\('float16',\\)"):
        run_benchmark(["tiny_vit"], precisions=["float16"])
    with pytest.raises(ValueError, match="received models='tiny_vit@float16'"):
        run_benchmark(["tiny_resnet", "tiny_vit@float16"])
    with pytest.raises(ValueError, match="received jit='yes'"):
        run_benchmark(["tiny_vit"], jit="yes")
    with pytest.raises(ValueError, match="received steps=0"):
        run_benchmark(["tiny_vit"], steps=0)
    with pytest.raises(ValueError, match="received backend='torch'"):
        resolve_backend("torch", "cpu")
    assert resolve_backend("auto", "cpu") == "tensorflow"


def test_named_sections_hold_the_runs_of_several_machines(tmp_path):
    """One page, one section per machine kind: writing one named section leaves the others and the unnamed one."""
    path = tmp_path / "benchmarks.md"
    avx2, avx512 = report.markers("cpu_avx2"), report.markers("cpu_avx512_bf16")
    assert avx2 == ("<!-- benchmark-table cpu_avx2 -->", "<!-- /benchmark-table cpu_avx2 -->")
    frame = (f"# B\n{report.MARKER_START}\nunnamed\n{report.MARKER_END}\n{avx512[0]}\nold 512\n{avx512[1]}\n"
             f"{avx2[0]}\nold 2\n{avx2[1]}\n")
    path.write_text(frame)
    report.write_docs_section(path, "new 2", name="cpu_avx2")
    assert path.read_text() == frame.replace("old 2", "new 2")
    report.write_docs_section(path, "table")
    assert path.read_text() == frame.replace("old 2", "new 2").replace("unnamed", "table")
    with pytest.raises(ValueError, match="received name='a b'"):
        report.markers("a b")


@pytest.mark.parametrize("features, kind", [
    (["avx2", "fma"], "AVX2"), (["amx_bf16"], "AVX-512 with bfloat16"), (["avx2", "fma", "avx512f", "avx512_bf16"], "AVX-512 with bfloat16"),
    (["avx512f", "avx512_bf16"], "AVX-512 with bfloat16"), (["avx2", "avx512f", "amx_bf16"], "AVX-512 with bfloat16"),
    (["avx2", "avx512f"], "AVX-512"), ([], "no AVX-512 (AVX2 not recorded)"),
])  # fmt: skip
def test_the_cpu_kind_of_a_run_and_its_heading(features, kind):
    machine = dict(cpu="AMD EPYC", cores=2, memory_gib=24.0, cpu_features=features, gpus=[], load_average=None)
    assert report.cpu_kind(machine) == kind
    section = report.markdown_section([], command="c", machine=machine, versions_found={}, settings="s")
    assert section.startswith(f"## Throughput: CPU, {kind}\n")


def test_the_recorded_cpu_features_include_avx2(monkeypatch):
    monkeypatch.setattr(report, "_read", lambda path: "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma avx2 sha_ni\n"
                        if path == "/proc/cpuinfo" else "")
    assert report.machine_info()["cpu_features"] == ["avx2", "fma"]


def test_jax_workers_do_not_preallocate_the_gpu_unless_the_user_chose(monkeypatch):
    env = runner.worker_environment("keras", "jax", {"PATH": "/bin"})
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["KERAS_BACKEND"] == "jax"
    assert env["PATH"] == "/bin" and runner.PACKAGE_ROOT in env["PYTHONPATH"].split(os.pathsep)
    for user in ({"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}, {"XLA_PYTHON_CLIENT_MEM_FRACTION": ".4"}):
        env = runner.worker_environment("keras", "jax", user)
        assert {k: env.get(k) for k in runner.JAX_MEMORY_SETTINGS} == {k: user.get(k) for k in runner.JAX_MEMORY_SETTINGS}
    for framework, backend in (("keras", "tensorflow"), ("torch", "jax")):  # no JAX in that process
        assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in runner.worker_environment(framework, backend, {})
    # ... and the Worker starts its process with that environment
    started = []
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.setattr(runner.subprocess, "Popen", lambda *args, **kwargs: started.append(kwargs["env"]))
    runner.Worker("keras", "jax", timeout=1).log.close()
    assert started[0]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


def test_a_gpu_run_renders_its_own_section_with_the_card_and_the_gpu_targets(tmp_path):
    from keras_vitres.cli.benchmark import rerender

    record = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "results", "gpu_h200_2026-12-04.json")
    docs = tmp_path / "benchmarks.md"
    cpu = f"{report.MARKER_START}\nthe CPU table\n{report.MARKER_END}"
    gpu_start, gpu_end = report.markers("gpu")
    docs.write_text(f"# Benchmarks\n\n{cpu}\n\n{gpu_start}\n{gpu_end}\n")
    assert rerender(record, str(docs), notes=["A note."]) == 0
    text = docs.read_text()
    assert cpu in text  # a GPU run never replaces the CPU section
    gpu = text.split(gpu_start)[1].split(gpu_end)[0]
    assert gpu.startswith("\n## Throughput: GPU, NVIDIA H200, 143771 MiB\n\nMeasured 2026-12-04 on NVIDIA H200, 143771 MiB with:")
    assert "| GPU peak MiB |" in gpu and "| ViT-B/16 | timm | 128 | mixed_bfloat16 |" in gpu
    assert "- ViT-B/16 train: at least timm's: not met, aim 1.1x not reached (0.68x)." in gpu
    assert "- ResNet-50 train: at least 1.1x timm's: not met (1.04x)." in gpu
    assert "- ViT-B/16 training at 45% of the card's dense bfloat16 peak (989 TFLOP/s, 4,239 img/s" in gpu
    assert "not met (23.8%)." in gpu and "every row at least keras-hub's on the same backend: not met for" in gpu
    assert "infer ResNet-50 mixed_bfloat16 vs keras-hub (0.81x" in gpu and gpu.rstrip().endswith("A note.")
    assert report.gpu_bf16_peak_tflops("NVIDIA H100 PCIe") == 756 and report.gpu_bf16_peak_tflops("Tesla T4") is None
