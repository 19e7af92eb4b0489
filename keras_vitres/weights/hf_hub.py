"""Files of Hugging Face repositories, downloaded with `huggingface_hub.hf_hub_download` and verified here.

The check does not depend on how huggingface_hub lays out its cache (blobs named by their sha256, the shared Xet
store of 2.x where `blobs/<sha256>` is a link to `blobs/<xx>/<xet hash>`, or copies in `snapshots/` where the
file system has no symbolic links):
    expected: the sha256 pinned in the preset's entry where it has one; else the sha256 the hub reports for that
        file at the resolved commit (`HfApi.get_paths_info`, the LFS object id), with its size;
    actual: the sha256 and size of the bytes read from the path `hf_hub_download` returns.
What was verified is recorded in the package's own record, `<download cache>/hf_hub/<repo>/<revision>/<file>.json`
(repository, revision asked for, commit, file, sha256, size). A later call, online or with `HF_HUB_OFFLINE=1`,
loads the recorded commit from the cache without asking the hub and checks the file against the record; only a
file missing from the cache is fetched again, and then the hub's report must still match the record.

A file that fails is removed from that repository's own cache entry (its `snapshots/` pointer and the
`blobs/<etag>` entry it points to, which for a shared Xet blob is only a link; the shared store is never touched),
its record is deleted, and it is fetched once more; nothing unverified is returned. A pinned sha256 also catches
a file that changed on the hub; without one, the check catches corruption and local tampering but takes the hub's
own report of the file on trust (docs/weights.md, "What is checked").
"""

import datetime
import importlib
import json
import os
import re
import tempfile
import urllib.parse

from keras_vitres.weights.download import TIMEOUT, default_cache_dir, require, sha256_of, short

TRUE = ("1", "ON", "YES", "TRUE")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
RECORD_FIELDS = ("repo_id", "revision", "commit", "filename", "sha256", "size")


class Hub:
    """huggingface_hub's public API and settings as this call sees them (the environment is read now)."""

    def __init__(self, repo_id):
        self.api = require("huggingface_hub", f"Weights from the Hugging Face repository {repo_id!r}")
        # Imported explicitly: huggingface_hub 2.x no longer imports its submodules with the package.
        constants = importlib.import_module("huggingface_hub.constants")
        self.cache = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
        self.endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        self.offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in TRUE or bool(constants.HF_HUB_OFFLINE)

    def storage(self, repo_id):
        """The repository's own folder in the cache (`models--<org>--<name>`): the only place files are removed."""
        return os.path.join(self.cache, "models--" + repo_id.replace("/", "--"))

    def report(self, repo_id, filename, revision):
        """(commit, sha256, size) the hub reports for the file at `revision`; sha256 is None for a non-LFS file."""
        url = self.api.hf_hub_url(repo_id, filename, revision=revision, endpoint=self.endpoint)
        commit = self.api.get_hf_file_metadata(url, timeout=TIMEOUT).commit_hash
        (info,) = self.api.HfApi(endpoint=self.endpoint).get_paths_info(repo_id, [filename], revision=commit)
        lfs = getattr(info, "lfs", None)
        if not lfs:
            return commit, None, info.size
        return commit, getattr(lfs, "sha256", None) or lfs["sha256"], getattr(lfs, "size", None) or info.size

    def download(self, repo_id, filename, commit, force=False, local=False):
        return self.api.hf_hub_download(repo_id, filename, revision=commit, cache_dir=self.cache, endpoint=self.endpoint,
                                        force_download=force, local_files_only=local, etag_timeout=TIMEOUT)  # fmt: skip


def record_path(repo_id, revision, filename):
    """Where the package records a verified file: `<download cache>/hf_hub/<org>--<name>/<revision>/<file>.json`."""
    parts = [urllib.parse.quote(part, safe="") for part in filename.split("/")]
    parts[-1] += ".json"
    return os.path.join(default_cache_dir(), "hf_hub", repo_id.replace("/", "--"), urllib.parse.quote(revision, safe=""),
                        *parts)  # fmt: skip


def read_record(path):
    """The record at `path` as a dict, or None where there is none or it is not a complete record."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and all(k in record for k in RECORD_FIELDS) else None


def write_record(path, **record):
    """Writes the record atomically (a temporary file renamed), so a reader never sees half of one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record["verified"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    handle, partial = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".record.", suffix=".part")
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def mismatch(path, sha256, size):
    """None when the file at `path` has this size and sha256; else what it has instead, for the error."""
    actual_size = os.path.getsize(path)
    if size is not None and actual_size != size:
        return f"has {actual_size:,} bytes where {size:,} were expected"
    actual = sha256_of(path)
    return None if actual == sha256 else f"has sha256 {actual} where {sha256} was expected"


def _inside(folder, path):
    folder, path = os.path.abspath(folder), os.path.abspath(path)
    try:
        return os.path.commonpath([folder, path]) == folder
    except ValueError:  # another drive (Windows)
        return False


def remove_cached(storage, path):
    """Removes the repository's own entry of a file: the pointer `path` and, if it links into the repository's
    `blobs/`, that entry (itself only a link when the blob is shared). Nothing outside `storage` is touched, and no
    link is followed further. Returns the paths removed."""
    removed = []
    if not _inside(storage, path):
        return removed
    if os.path.islink(path):
        target = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
        if _inside(storage, target) and os.path.lexists(target):
            os.remove(target)
            removed.append(target)
    if os.path.lexists(path):
        os.remove(path)
        removed.append(path)
    return removed


def hf_hub_file(repo_id, filename, revision=None, sha256=None):
    """A file of a Hugging Face repository, downloaded (or found in the cache) and verified; returns its path.

    Args:
        repo_id: str. The repository ("timm/resnet50.tv_in1k").
        filename: str. The file in it ("model.safetensors").
        revision: str. A branch, tag or commit; "main" by default. A commit pins the file's contents.
        sha256: str. The file's sha256 as published, checked before the hub's own report is trusted.

    Raises:
        ValueError: the file does not match what is expected (both values and the paths are named; the cached
            copy is removed) or cannot be verified.
        OSError: the hub cannot be reached, or, offline, the file is not in the cache verified.
    """
    hub = Hub(repo_id)
    revision = revision or "main"
    pinned = sha256.lower() if sha256 else None
    record_at = record_path(repo_id, revision, filename)
    record = read_record(record_at)
    if record and pinned and record["sha256"] != pinned:
        record = None  # verified against another pin: verify again
    where = f"{filename!r} of the Hugging Face repository {repo_id!r} (revision {revision!r})"
    if record:
        against = f"the record of its verified download ({record_at!r})"
        path = _from_cache(hub, repo_id, filename, record["commit"], record["sha256"], record["size"], against, where)
        if path:
            return path
    elif pinned:
        path = _from_cache(hub, repo_id, filename, revision, pinned, None, "the sha256 pinned in the preset", where)
        if path:
            if COMMIT.fullmatch(revision):
                write_record(record_at, repo_id=repo_id, revision=revision, commit=revision, filename=filename,
                             sha256=pinned, size=os.path.getsize(path), checked_against="the sha256 pinned in the preset")  # fmt: skip
            return path
    if hub.offline:
        state = (f"was verified at commit {record['commit']} (record {record_at!r}) but is no longer in the cache at "
                 f"{hub.cache!r}" if record else f"is not in the cache at {hub.cache!r} as downloaded and verified "
                 f"by keras-vitres (no record at {record_at!r})" + ("" if pinned else ", and the preset pins no sha256 "
                 "to check a copied cache against"))  # fmt: skip
        raise OSError(f"{where} {state}, and HF_HUB_OFFLINE is set. Run once with network access, or "
                      f"{hub_advice(_url(hub, repo_id, revision, filename))}")
    return _fetch(hub, repo_id, filename, revision, pinned, record, record_at, where)


def hub_advice(url):
    """What to do where the hub cannot be reached: one sentence for error messages."""
    return (f"download {url} elsewhere and pass the local file's path as weights=... (it then loads as any local "
            "file, unverified: check its sha256 yourself).")


def _url(hub, repo_id, revision, filename):
    return f"{hub.endpoint}/{repo_id}/resolve/{urllib.parse.quote(revision, safe='')}/{filename}"


def _from_cache(hub, repo_id, filename, revision, sha256, size, against, where):
    """The file at `revision` from the cache, checked against `sha256` (and `size`), without asking the hub; None
    where it is not cached (or, online, was corrupt and has been removed from the cache)."""
    try:
        path = hub.download(repo_id, filename, revision, local=True)
    except Exception:  # not in the cache (huggingface_hub raises its own LocalEntryNotFoundError)
        return None
    problem = mismatch(path, sha256, size)
    if problem is None:
        return path
    removed = remove_cached(hub.storage(repo_id), path)
    if hub.offline:
        raise ValueError(
            f"{where} in the cache ({path!r}) {problem}, checked against {against}: it is corrupt or was altered, and was removed "
            f"({', '.join(removed) or 'nothing'}). HF_HUB_OFFLINE is set: run again with network access to fetch it "
            "again."
        )
    return None


def _fetch(hub, repo_id, filename, revision, pinned, record, record_at, where):
    """Asks the hub what the file is, downloads it at that commit, verifies it and records it."""
    url = _url(hub, repo_id, record["commit"] if record else revision, filename)
    try:
        commit, reported, size = hub.report(repo_id, filename, record["commit"] if record else revision)
    except Exception as error:  # offline, unknown repository or file, network errors: many types
        raise OSError(
            f"Could not ask the hub about {where} ({url}), to download it into the cache at {hub.cache!r}: "
            f"{type(error).__name__}: {short(error)}. Where this machine cannot reach the hub, {hub_advice(url)}"
        ) from None
    if pinned and reported and reported != pinned:
        raise ValueError(
            f"The hub reports sha256 {reported} for {where} at commit {commit}, but the preset pins {pinned}: the "
            f"file changed on the hub (or it is not the hub answering at {hub.endpoint}). Nothing was downloaded."
        )
    if record and reported and reported != record["sha256"]:
        raise ValueError(
            f"The hub now reports sha256 {reported} for {where} at commit {commit}, but it was {record['sha256']} "
            f"when first downloaded and verified (record {record_at!r}); a file at a fixed commit does not change. "
            "Nothing was downloaded; delete the record to accept the hub's file."
        )
    expected = pinned or reported
    if expected is None:
        raise ValueError(
            f"{where} cannot be verified: the hub reports no sha256 for it (not an LFS file) and the preset pins "
            "none. Pass the file's path as weights=... after checking it yourself."
        )
    origin = "the sha256 pinned in the preset" if pinned else f"the hub's report for commit {commit}"
    path = _download(hub, repo_id, filename, commit, url, where)
    problem = mismatch(path, expected, size)
    if problem is not None:
        remove_cached(hub.storage(repo_id), path)
        path = _download(hub, repo_id, filename, commit, url, where, force=True)
        problem = mismatch(path, expected, size)
    if problem is not None:
        removed = remove_cached(hub.storage(repo_id), path)
        raise ValueError(
            f"{where} as downloaded ({path!r}) {problem} ({origin}), after fetching it twice; it was removed "
            f"({', '.join(removed) or 'nothing'}). The file at the hub is not the one expected."
        )
    write_record(record_at, repo_id=repo_id, revision=revision, commit=commit, filename=filename, sha256=expected,
                 size=os.path.getsize(path), checked_against=origin)  # fmt: skip
    return path


def _download(hub, repo_id, filename, commit, url, where, force=False):
    try:
        return hub.download(repo_id, filename, commit, force=force)
    except Exception as error:  # network errors, a transfer cut short (huggingface_hub's size check): many types
        raise OSError(
            f"Could not download {where} ({url}) into the cache at {hub.cache!r}: {type(error).__name__}: "
            f"{short(error)}. Where this machine cannot reach the hub, {hub_advice(url)}"
        ) from None
