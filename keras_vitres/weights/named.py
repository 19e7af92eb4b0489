"""Fetching named weights: what an entry of a preset row's `weights` field points at, verified and cached.

Each entry (plain data in `keras_vitres.presets`) names its `source`:
    "keras.applications": the files Keras' own `keras.applications.ResNet*` download, `files["top"]` or
        `files["notop"]` (a name and Keras' pinned md5, its `WEIGHTS_HASHES`) under `base_url` (Keras'
        `BASE_WEIGHTS_PATH`); `$KERAS_VITRES_KERAS_APPLICATIONS_URL` replaces the base URL (a mirror, or a test's
        local server). Fetched by `download`.
    "url": one file, `url` with its `sha256` (or `md5`). Fetched by `download`.
    "keras_hub": a keras-hub preset `handle`, loaded with `keras_hub.models.Backbone.from_preset` (or
        `ImageClassifier.from_preset` where the entry says `classifier` and the model keeps its head); keras-hub
        downloads and caches it. Converted by `keras_hub.load_keras_hub`.
    "hf_hub": a file of a Hugging Face repository (`repo_id`, `filename`, optional `revision`), fetched with
        `huggingface_hub.hf_hub_download` and verified here against its sha256: the one pinned in the entry, else
        the hub's LFS sha256, by which the cache names the file's blob (`huggingface_hub` itself checks only the
        size). A cached copy that fails is deleted and fetched again, never loaded.
keras_hub and huggingface_hub are optional (the "hub" extra) and imported only here, when a name needs them.
"""

import importlib
import os

from keras_vitres.weights.download import SHA256, TIMEOUT, download, offline_advice, sha256_of

SOURCES = ("keras.applications", "url", "keras_hub", "hf_hub")
KERAS_APPLICATIONS_URL_ENV = "KERAS_VITRES_KERAS_APPLICATIONS_URL"
HUB_EXTRA = "hub"


def require(module, purpose):
    """Imports an optional package, or raises an ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the optional package {module!r}, which is not installed ({error}). Install it with: "
            f'pip install "keras-vitres[{HUB_EXTRA}]"'
        ) from None


def keras_applications_url(spec, fname):
    """The URL of a keras.applications file: `$KERAS_VITRES_KERAS_APPLICATIONS_URL`, else the entry's `base_url`."""
    base = os.environ.get(KERAS_APPLICATIONS_URL_ENV) or spec["base_url"]
    return base.rstrip("/") + "/" + fname


def fetch_weights(spec, include_top=True, cache_dir=None, progress=True):
    """What a builder's `weights=` takes for a named-weights entry: a verified local path, or a keras-hub model.

    Args:
        spec: the entry (a dict with `source`, see the module docstring).
        include_top: bool. Whether the model keeps its classifier (keras.applications has a file without it).
        cache_dir: folder of the package's download cache; by default `download.default_cache_dir()`.
        progress: bool. Show a progress bar while downloading.
    """
    source = spec.get("source")
    if source == "keras.applications":
        file = spec["files"]["top" if include_top else "notop"]
        url = keras_applications_url(spec, file["fname"])
        return download(url, file.get("sha256"), cache_dir=cache_dir, fname=file["fname"], progress=progress,
                        md5=file.get("md5"))  # fmt: skip
    if source == "url":
        return download(spec["url"], spec.get("sha256"), cache_dir=cache_dir, fname=spec.get("fname"),
                        progress=progress, md5=spec.get("md5"))  # fmt: skip
    if source == "keras_hub":
        return keras_hub_model(spec["handle"], classifier=bool(spec.get("classifier")) and include_top)
    if source == "hf_hub":
        return hf_hub_file(spec["repo_id"], spec["filename"], revision=spec.get("revision"), sha256=spec.get("sha256"))
    raise ValueError(f"A named-weights entry's `source` must be one of {SOURCES}; received source={source!r}.")


def _short(error):
    """An exception's message on one line, cut to 300 characters (the hub libraries' can run to pages)."""
    return " ".join(str(error).split())[:300]


def keras_hub_model(handle, classifier=False):
    """`keras_hub.models.Backbone.from_preset(handle)` (or `ImageClassifier`), with errors that say what to do."""
    keras_hub = require("keras_hub", f"Weights from the keras-hub preset {handle!r}")
    cache = os.environ.get("KAGGLEHUB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kagglehub")
    kind = "ImageClassifier" if classifier else "Backbone"
    try:
        return getattr(keras_hub.models, kind).from_preset(handle)
    except Exception as error:  # keras-hub and kagglehub raise many types (network, missing files, bad handle)
        raise OSError(
            f"Could not load the keras-hub preset {handle!r} (keras_hub.models.{kind}.from_preset; Kaggle presets "
            f"are cached under {cache!r}): {type(error).__name__}: {_short(error)}. Where this machine cannot "
            f"reach it, run keras_hub.models.{kind}.from_preset({handle!r}).save_to_preset(DIR) elsewhere, copy DIR "
            f"here and pass weights=keras_hub.models.{kind}.from_preset(DIR) to the builder."
        ) from None


def _hf_expected(path, pinned):
    """(expected sha256, where it comes from) of a file in the Hugging Face cache, or (None, None)."""
    if pinned:
        return pinned.lower(), "the sha256 pinned in the preset"
    real = os.path.realpath(path)
    if os.path.basename(os.path.dirname(real)) == "blobs" and SHA256.match(os.path.basename(real)):
        return os.path.basename(real), "the hub's LFS sha256 (the name of the cached blob)"
    return None, None


def _remove_cached(path):
    real = os.path.realpath(path)
    for item in {real, path}:
        if os.path.lexists(item):
            os.remove(item)


def hf_hub_file(repo_id, filename, revision=None, sha256=None):
    """A file of a Hugging Face repository, downloaded (or found in the cache) and verified; returns its path.

    The expected sha256 is `sha256` when given, else the LFS sha256 by which the hub's cache names the file
    (`blobs/<sha256>`). A file that does not match is deleted and fetched once more; if that fails too, or the
    hub cannot be reached, the error says so (nothing unverified is returned). `HF_HUB_OFFLINE=1` uses the cache
    only, and `HF_HUB_CACHE` moves it, as for `huggingface_hub` itself.
    """
    hub = require("huggingface_hub", f"Weights from the Hugging Face repository {repo_id!r}")
    cache = os.environ.get("HF_HUB_CACHE") or hub.constants.HF_HUB_CACHE
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or hub.constants.HF_HUB_OFFLINE
    url = f"https://huggingface.co/{repo_id}/resolve/{revision or 'main'}/{filename}"

    def fetch(force, why=""):
        try:
            return hub.hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, force_download=force,
                                       local_files_only=offline, etag_timeout=TIMEOUT)  # fmt: skip
        except Exception as error:  # offline, unknown repository or file, network errors: many types
            raise OSError(
                f"{why}Could not fetch {filename!r} of the Hugging Face repository {repo_id!r} ({url}) into the cache "
                f"at {cache!r}{' (HF_HUB_OFFLINE is set)' if offline else ''}: {type(error).__name__}: "
                f"{_short(error)}. {offline_advice(url, cache)}"
            ) from None

    path = fetch(False)
    for attempt in range(2):
        expected, origin = _hf_expected(path, sha256)
        if expected is None:
            raise ValueError(
                f"{path!r} (from {url}) cannot be verified: it is not a blob named by its sha256 in the Hugging Face "
                "cache (a cache without symbolic links), and the preset pins no sha256. Pass the file's path as "
                "weights=... after checking it yourself."
            )
        actual = sha256_of(path)
        if actual == expected:
            return path
        _remove_cached(path)
        mismatch = f"{path!r} (from {url}) has sha256 {actual}, but {expected} was expected ({origin}); it was deleted"
        if attempt:
            raise ValueError(f"{mismatch}, after fetching it again. The file at the hub is not the one expected.")
        path = fetch(True, f"{mismatch}. ")
    return path
