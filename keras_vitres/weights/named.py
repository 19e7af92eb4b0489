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
    "hf_hub": a file of a Hugging Face repository (`repo_id`, `filename`, and the `revision` and `sha256` where
        published), fetched with `huggingface_hub.hf_hub_download` and verified by `hf_hub.hf_hub_file`: against
        the pinned sha256, else the hub's own report for that commit, and afterwards against the package's record
        of what was verified (see that module for what this does and does not catch).
keras_hub and huggingface_hub are optional (the "hub" extra), imported only when a name needs them.
"""

import os

from keras_vitres.weights.download import download, require, short
from keras_vitres.weights.hf_hub import hf_hub_file

SOURCES = ("keras.applications", "url", "keras_hub", "hf_hub")
KERAS_APPLICATIONS_URL_ENV = "KERAS_VITRES_KERAS_APPLICATIONS_URL"


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
            f"are cached under {cache!r}): {type(error).__name__}: {short(error)}. Where this machine cannot "
            f"reach it, run keras_hub.models.{kind}.from_preset({handle!r}).save_to_preset(DIR) elsewhere, copy DIR "
            f"here and pass weights=keras_hub.models.{kind}.from_preset(DIR) to the builder."
        ) from None
