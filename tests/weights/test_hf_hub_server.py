"""Hugging Face downloads verified whatever the cache looks like: each test runs a fresh interpreter that starts a
stand-in hub on 127.0.0.1 (tests/weights/hub_server.py), points `HF_ENDPOINT` at it and calls
`keras_vitres.weights.hf_hub.hf_hub_file`, which drives the installed huggingface_hub's real `hf_hub_download`.
The cache layouts are the ones huggingface_hub itself makes: plain blobs, its shared Xet store (published with its
own `publish_blob_to_shared_store`), and copies without symbolic links (its `are_symlinks_supported` probe failing,
as on Windows without the privilege). No network."""

import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from tests.weights.hub_server import COMMIT, hub_environment, run_fresh, sha256

pytest.importorskip("huggingface_hub")

# CI's third step runs these with the optional extras installed, and its hub step with the oldest huggingface_hub.
pytestmark = pytest.mark.extras

REPO = "timm/tiny_test.in1k"
FILE = "model.safetensors"
START = """
import json, os, sys, time
from pathlib import Path
from tests.weights.hub_server import FakeHub, sha256
hub = FakeHub()
os.environ["HF_ENDPOINT"] = hub.url
data = Path(os.environ["TINY_FILE"]).read_bytes()
out = {}

def attempt(call):
    try:
        return "ok", call()
    except Exception as error:
        return type(error).__name__, " ".join(str(error).split())
"""


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A small safetensors file (two tensors, 24 KB): bytes enough to cut short and to tamper with."""
    rng = np.random.default_rng(29)
    path = tmp_path_factory.mktemp("tiny") / FILE
    path.write_bytes(save({"w": rng.normal(size=(64, 64)).astype("float32"), "b": np.arange(2048, dtype="float32")}))
    return path


def fresh(tmp_path, tiny_file, body, **env):
    return run_fresh(START + body, hub_environment(tmp_path, TINY_FILE=tiny_file, **env))


def test_a_download_is_verified_and_recorded_and_the_next_call_asks_nothing(tmp_path, tiny_file):
    online = fresh(tmp_path, tiny_file, f"""
hub.publish({REPO!r}, {FILE!r}, data)
import huggingface_hub
from keras_vitres.weights.hf_hub import hf_hub_file, record_path
out["version"] = huggingface_hub.__version__
path = hf_hub_file({REPO!r}, {FILE!r})
out["first"], out["requests"] = Path(path).read_bytes() == data, list(hub.requests)
hub.requests.clear()
start = time.perf_counter()
out["second"] = hf_hub_file({REPO!r}, {FILE!r}) == path
out["second_s"], out["second_requests"] = time.perf_counter() - start, hub.requests
out["record"] = json.loads(Path(record_path({REPO!r}, "main", {FILE!r})).read_text())
print(json.dumps(out))
""")
    expected_version = os.environ.get("KERAS_VITRES_EXPECT_HF_HUB")
    assert expected_version in (None, online["version"]), online["version"]  # CI's oldest-version step
    assert online["first"] and online["second"] and online["second_requests"] == []
    assert online["requests"] == [f"HEAD /{REPO}/resolve/main/{FILE}", f"POST /api/models/{REPO}/paths-info/{COMMIT}",
                                  f"HEAD /{REPO}/resolve/{COMMIT}/{FILE}", f"GET /{REPO}/resolve/{COMMIT}/{FILE}"]
    data = tiny_file.read_bytes()
    record = online["record"]
    assert (record["repo_id"], record["revision"], record["commit"], record["filename"]) == (REPO, "main", COMMIT, FILE)
    assert (record["sha256"], record["size"]) == (sha256(data), len(data))
    assert record["checked_against"] == f"the hub's report for commit {COMMIT}"

    # A fresh process offline, the hub gone: the recorded file is checked and returned; one truncated on disk since
    # is removed from the repository's cache entry and refused, the record kept for the next online call.
    offline = fresh(tmp_path, tiny_file, f"""
hub.stop()
from keras_vitres.weights.hf_hub import hf_hub_file, record_path
start = time.perf_counter()
path = hf_hub_file({REPO!r}, {FILE!r})
out["seconds"], out["same"] = time.perf_counter() - start, Path(path).read_bytes() == data
with open(path, "r+b") as f:
    f.truncate(len(data) - 10)
out["truncated"] = attempt(lambda: hf_hub_file({REPO!r}, {FILE!r}))
out["pointer_left"], out["record_left"] = os.path.lexists(path), os.path.exists(record_path({REPO!r}, "main", {FILE!r}))
out["never_fetched"] = attempt(lambda: hf_hub_file("timm/other.in1k", {FILE!r}))
print(json.dumps(out))
""", HF_HUB_OFFLINE=1)
    assert offline["same"], offline
    kind, message = offline["truncated"]
    assert kind == "ValueError" and f"has {len(data) - 10:,} bytes where {len(data):,} were expected" in message
    assert "checked against the record of its verified download" in message and "was removed" in message
    assert "HF_HUB_OFFLINE is set: run again with network access" in message
    assert not offline["pointer_left"] and offline["record_left"]
    kind, message = offline["never_fetched"]
    assert kind == "OSError" and "'timm/other.in1k'" in message and "no record at" in message
    assert str(tmp_path / "hub") in message and "HF_HUB_OFFLINE is set" in message and "weights=" in message


def test_the_shared_xet_blob_store_of_huggingface_hub(tmp_path, tiny_file):
    """huggingface_hub 2.x moves Xet downloads into `<cache>/blobs/<xx>/<xet hash>` and links the repository's
    `blobs/<sha256>` there: the file is still verified by its bytes, and a bad copy costs the repository its own
    links only, never the shared blob another repository links to."""
    pytest.importorskip("huggingface_hub.utils._shared_blobs", reason="huggingface_hub before 2.x has no shared store")
    result = fresh(tmp_path, tiny_file, f"""
import huggingface_hub
from huggingface_hub.utils._shared_blobs import publish_blob_to_shared_store, shared_blob_path
from keras_vitres.weights.hf_hub import hf_hub_file, record_path
cache, xet = os.environ["HF_HUB_CACHE"], "ab" * 32
other = "timm/tiny_test.copy"
for repo in ({REPO!r}, other):
    hub.publish(repo, {FILE!r}, data)
hf_hub_file({REPO!r}, {FILE!r})  # verified and recorded
huggingface_hub.hf_hub_download(other, {FILE!r}, cache_dir=cache)  # by huggingface_hub alone: no record
for repo in ({REPO!r}, other):  # huggingface_hub's own publication into the shared store
    blob = os.path.join(cache, "models--" + repo.replace("/", "--"), "blobs", sha256(data))
    out.setdefault("published", []).append(publish_blob_to_shared_store(blob_path=blob, xet_hash=xet, cache_dir=cache,
                                                                        expected_size=len(data)))
store = str(shared_blob_path(cache, xet))
hub.requests.clear()
path = hf_hub_file({REPO!r}, {FILE!r})
out["recorded_ok"], out["recorded_requests"] = os.path.realpath(path) == store, list(hub.requests)
out["unrecorded_ok"] = os.path.realpath(hf_hub_file(other, {FILE!r})) == store  # asks the hub: no blob name needed
os.chmod(store, 0o600)
with open(store, "r+b") as f:  # the shared copy damaged: both repositories link to it
    f.seek(100)
    f.write(b"tampered")
hub.requests.clear()
path = hf_hub_file({REPO!r}, {FILE!r})
out["refetched"], out["refetch_requests"] = Path(path).read_bytes() == data, hub.requests
out["store_kept"] = os.path.isfile(store)
other_blob = os.path.join(cache, "models--" + other.replace("/", "--"), "blobs", sha256(data))
out["other_link_kept"] = os.path.islink(other_blob) and os.path.realpath(other_blob) == store
out["own_copy"] = os.path.realpath(path) != store
print(json.dumps(out))
""")
    assert result["published"] == [True, True]
    assert result["recorded_ok"] and result["recorded_requests"] == []
    assert result["unrecorded_ok"]
    assert result["refetched"] and result["own_copy"] and result["store_kept"] and result["other_link_kept"], result
    assert any(r.startswith("GET ") for r in result["refetch_requests"]), result["refetch_requests"]


def test_a_cache_without_symbolic_links_as_on_windows(tmp_path, tiny_file):
    """Where `os.symlink` fails (Windows without the privilege), huggingface_hub's `are_symlinks_supported` probe
    says so and it moves the file into `snapshots/`: verified all the same, and a bad copy is replaced."""
    result = fresh(tmp_path, tiny_file, f"""
def no_symlinks(*args, **kwargs):
    raise OSError(1314, "A required privilege is not held by the client")
os.symlink = no_symlinks
hub.publish({REPO!r}, {FILE!r}, data)
from keras_vitres.weights.hf_hub import hf_hub_file
path = hf_hub_file({REPO!r}, {FILE!r})
out["copy"] = not os.path.islink(path) and os.path.realpath(path) == os.path.abspath(path) and "snapshots" in path
with open(path, "r+b") as f:
    f.write(b"tampered")
hub.requests.clear()
again = hf_hub_file({REPO!r}, {FILE!r})
out["replaced"], out["requests"] = again == path and Path(again).read_bytes() == data, hub.requests
print(json.dumps(out))
""")
    assert result["copy"] and result["replaced"], result
    assert "symlinks" in result["stderr"]  # huggingface_hub's own warning: it took the no-symlink path
    assert sum(r.startswith("GET ") for r in result["requests"]) == 1


def test_a_file_changed_on_the_hub_is_refused_before_it_is_downloaded(tmp_path, tiny_file):
    changed = b"x" * 1000
    result = fresh(tmp_path, tiny_file, f"""
from keras_vitres.weights.hf_hub import hf_hub_file, record_path
hub.publish({REPO!r}, {FILE!r}, data)
out["pinned"] = attempt(lambda: hf_hub_file({REPO!r}, {FILE!r}, sha256="{sha256(changed)}"))
out["pinned_requests"] = list(hub.requests)
path = hf_hub_file({REPO!r}, {FILE!r})  # recorded at the commit
import shutil
shutil.rmtree(os.path.join(os.environ["HF_HUB_CACHE"], "models--" + {REPO!r}.replace("/", "--")))  # cache cleaned
hub.publish({REPO!r}, {FILE!r}, {changed!r})  # the same commit, other bytes
hub.requests.clear()
out["recorded"] = attempt(lambda: hf_hub_file({REPO!r}, {FILE!r}))
out["recorded_requests"] = list(hub.requests)
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there
start = time.perf_counter()
out["unreachable"], out["unreachable_s"] = attempt(lambda: hf_hub_file("timm/other.in1k", {FILE!r})), 0
out["unreachable_s"] = time.perf_counter() - start
print(json.dumps(out))
""")
    data = tiny_file.read_bytes()
    kind, message = result["pinned"]
    assert kind == "ValueError" and f"The hub reports sha256 {sha256(data)}" in message
    assert f"but the preset pins {sha256(changed)}" in message and "Nothing was downloaded" in message
    assert not any(r.startswith("GET ") for r in result["pinned_requests"])
    kind, message = result["recorded"]
    assert kind == "ValueError" and f"now reports sha256 {sha256(changed)}" in message and f"at commit {COMMIT}" in message
    assert f"but it was {sha256(data)} when first downloaded and verified" in message
    assert not any(r.startswith("GET ") for r in result["recorded_requests"])
    kind, message = result["unreachable"]
    assert kind == "OSError" and "Could not ask the hub about 'model.safetensors'" in message and "timm/other.in1k" in message
    assert "http://127.0.0.1:9/timm/other.in1k/resolve/main/model.safetensors" in message
    assert str(tmp_path / "hub") in message and "weights=" in message
    assert result["unreachable_s"] < 30  # connection refused: at once (TIMEOUT bounds a silent network)


def test_a_truncated_or_altered_download_is_never_returned(tmp_path, tiny_file):
    result = fresh(tmp_path, tiny_file, f"""
from keras_vitres.weights.hf_hub import hf_hub_file, record_path
cache = os.environ["HF_HUB_CACHE"]
for name, serve in (("short", data[:-100]), ("altered", data[:100] + b"X" + data[101:])):
    repo = "timm/" + name
    hub.publish(repo, {FILE!r}, data)
    hub.tamper(repo, {FILE!r}, serve=serve)  # the hub's bytes are not the file its API reports
    hub.requests.clear()
    out[name] = attempt(lambda: hf_hub_file(repo, {FILE!r}))
    out[name + "_gets"] = sum(r.startswith("GET ") for r in hub.requests)
    snapshot = os.path.join(cache, "models--timm--" + name, "snapshots", "{COMMIT}", {FILE!r})
    out[name + "_left"] = os.path.lexists(snapshot) or os.path.exists(record_path(repo, "main", {FILE!r}))
hub.publish("timm/cut", {FILE!r}, data)
hub.tamper("timm/cut", {FILE!r}, cut=len(data) // 3)  # the transfer breaks off once
out["cut"] = attempt(lambda: hf_hub_file("timm/cut", {FILE!r}))[0]
out["cut_then"] = Path(hf_hub_file("timm/cut", {FILE!r})).read_bytes() == data
print(json.dumps(out))
""")
    size = tiny_file.stat().st_size
    for name, problem in (("short", f"has {size - 100:,} bytes where {size:,} were expected"), ("altered", "has sha256")):
        kind, message = result[name]
        assert kind == "ValueError" and problem in message and "after fetching it twice" in message, message
        assert "The file at the hub is not the one expected" in message and f"the hub's report for commit {COMMIT}" in message
        assert result[name + "_gets"] == 2 and not result[name + "_left"]
    # huggingface_hub 2.x resumes a broken transfer (Range), 0.x raises; either way only the verified file is returned.
    assert result["cut"] in ("ok", "OSError") and result["cut_then"]


def test_a_pinned_file_in_a_copied_cache_is_checked_against_the_pin_offline(tmp_path, tiny_file):
    """A cache filled elsewhere (no record here) loads offline when the entry pins the sha256, and only then."""
    data = tiny_file.read_bytes()
    fresh(tmp_path, tiny_file, f"""
import huggingface_hub
hub.publish({REPO!r}, {FILE!r}, data)
huggingface_hub.hf_hub_download({REPO!r}, {FILE!r}, revision="{COMMIT}", cache_dir=os.environ["HF_HUB_CACHE"])
print(json.dumps(out))
""")
    result = fresh(tmp_path, tiny_file, f"""
hub.stop()
from keras_vitres.weights.hf_hub import hf_hub_file, record_path
out["pinned"] = attempt(lambda: Path(hf_hub_file({REPO!r}, {FILE!r}, "{COMMIT}", "{sha256(data)}")).read_bytes() == data)
out["recorded"] = os.path.exists(record_path({REPO!r}, "{COMMIT}", {FILE!r}))
out["wrong_pin"] = attempt(lambda: hf_hub_file({REPO!r}, {FILE!r}, "{COMMIT}", "{'0' * 64}"))
out["unpinned"] = attempt(lambda: hf_hub_file({REPO!r}, {FILE!r}, "{COMMIT}"))
print(json.dumps(out))
""", HF_HUB_OFFLINE=1)
    assert result["pinned"] == ["ok", True] and result["recorded"]
    kind, message = result["wrong_pin"]
    assert kind == "ValueError" and f"has sha256 {sha256(data)} where {'0' * 64} was expected" in message
    assert "checked against the sha256 pinned in the preset" in message
    kind, message = result["unpinned"]  # the wrong pin removed the copy: the record stays, the file is gone
    assert kind == "OSError" and "but is no longer in the cache" in message, message


def test_the_hub_extra_states_the_range_ci_tests():
    """setup.cfg's [hub] extra bounds huggingface_hub; CI's hub step (.ci/run) and tox's hub-oldest environment test
    its lower end, the other steps the newest, which the range must admit."""
    import configparser
    import importlib.metadata

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[2]
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    (requirement,) = [Requirement(line) for line in config["options.extras_require"]["hub"].split()
                      if line.startswith("huggingface_hub")]  # fmt: skip
    floor = next(spec.version for spec in requirement.specifier if spec.operator == ">=")
    assert importlib.metadata.version("huggingface_hub") in requirement.specifier
    assert f"deps = huggingface_hub=={floor}" in (root / "tox.ini").read_text()
    assert "sed -n 's/^ *huggingface_hub>=" in (root / ".ci" / "run").read_text()  # CI reads the floor from setup.cfg
