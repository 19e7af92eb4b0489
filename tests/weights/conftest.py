"""Fixtures of the weights tests: a stand-in Hugging Face hub for this process (tests/weights/hub_server.py)."""

import importlib

import pytest

from keras_vitres.presets import PRESETS
from tests.weights.hub_server import COMMIT, FakeHub, hub_environment, sha256


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A stand-in hub for this process: huggingface_hub pointed at it, the caches under `tmp_path`."""
    constants = importlib.import_module(pytest.importorskip("huggingface_hub").__name__ + ".constants")
    server = FakeHub()
    for key, value in hub_environment(tmp_path, HF_ENDPOINT=server.url).items():
        if key.startswith(("HF_", "KERAS_VITRES_", "NO_PROXY", "no_proxy")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # read at import: no registry request
    yield server
    server.stop()


def serve_entry(hub, monkeypatch, preset, weight_name, data):
    """Publishes `data` as the preset entry's file, at its pinned revision, and pins its sha256 to the data's where
    the entry pins one (the published file's own sha256 is checked in test_hub_weight_rows.py)."""
    entry = PRESETS[preset]["weights"][weight_name]
    hub.publish(entry["repo_id"], entry["filename"], data, commit=entry.get("revision") or COMMIT)
    if entry.get("sha256"):
        monkeypatch.setitem(entry, "sha256", sha256(data))
    return entry
