"""Verified downloads of published weight files: hash-checked, cached, never loaded half-written.

The file is streamed to a hidden temporary name in the cache folder while its hashes are computed; only when the
pinned hash matches is it renamed to its final name, so an interrupted, truncated or tampered download is never
found in the cache. A cached file is hashed again before it is returned. The pinned hash is a sha256, or an md5
where that is the only one the publisher pins (keras.applications' `WEIGHTS_HASHES`).
"""

import hashlib
import importlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request

CHUNK_SIZE = 1 << 20
SCHEMES = ("https", "http", "file")
HASHES = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "md5": re.compile(r"^[0-9a-f]{32}$")}
# Seconds to wait for a connection or for the next bytes: with no network a download fails within this, never hangs.
TIMEOUT = 15
# The optional extra that installs the hub clients (keras-hub, huggingface_hub).
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


def short(error):
    """An exception's message on one line, cut to 300 characters (the hub libraries' can run to pages)."""
    return " ".join(str(error).split())[:300]


def default_cache_dir():
    """`$KERAS_VITRES_CACHE`, else `$KERAS_HOME/keras_vitres/weights` (`~/.keras/keras_vitres/weights`)."""
    if os.environ.get("KERAS_VITRES_CACHE"):
        return os.environ["KERAS_VITRES_CACHE"]
    return os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")), "keras_vitres", "weights")


def file_hashes(path, algorithms=("sha256",)):
    """{algorithm: hex digest} of a file, read once in chunks."""
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def sha256_of(path):
    """The hex sha256 of a file, read in chunks."""
    return file_hashes(path)["sha256"]


def _file_name(url, fname):
    name = fname if fname is not None else os.path.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(
            f"`fname` must be a plain file name (no folders, not hidden); received fname={fname!r} for url={url!r}."
        )
    return name


def _expected_hashes(sha256, md5):
    """{algorithm: expected lower-case hex} from the arguments, or a ValueError naming the bad one."""
    if sha256 is None and md5 is None:
        raise ValueError(
            "`sha256` must be the file's 64-character hex sha256 (or pass `md5` where that is the only hash "
            "published); received sha256=None. Downloads are always verified: compute it with `sha256sum FILE` on a "
            "copy you trust."
        )
    expected = {}
    for name, value in (("sha256", sha256), ("md5", md5)):
        if value is None:
            continue
        if not isinstance(value, str) or not HASHES[name].match(value.lower()):
            size = 64 if name == "sha256" else 32
            raise ValueError(
                f"`{name}` must be the file's {size}-character hex {name}; received {name}={value!r}. Downloads are "
                f"always verified: compute it with `{name}sum FILE` on a copy you trust."
            )
        expected[name] = value.lower()
    return expected


def offline_advice(source, target):
    """What to do where the network cannot reach a weight file's `source`: one sentence for error messages."""
    return (
        f"Where this machine cannot reach it, download {source} elsewhere, then pass the local file's path as "
        f"weights=... (or copy it to {target!r}, where it is verified before use)."
    )


def download(url, sha256=None, cache_dir=None, fname=None, progress=True, *, md5=None):
    """Downloads `url` into the cache unless a file with the right hash is there; returns its local path.

    Args:
        url: str. An https, http or file URL.
        sha256: str. The expected hex sha256 of the file (64 characters). Required unless `md5` is given: an
            unverified file is never returned. Compute it once with `sha256sum FILE` (or
            `keras_vitres.weights.sha256_of`) on a copy you trust.
        cache_dir: folder of the cache; by default `default_cache_dir()`.
        fname: name of the cached file; by default the last part of the URL's path.
        progress: bool. Show Keras' progress bar while downloading.
        md5: str. The expected hex md5, for files whose publisher pins only that (keras.applications'
            `WEIGHTS_HASHES`). When both are given, both must match.

    Returns:
        str: the path of the verified file.

    Raises:
        ValueError: a bad argument, or a downloaded file whose hash differs (both hashes are named; nothing is
            kept).
        OSError: the URL cannot be read (within `TIMEOUT` seconds without a network); the message names the URL,
            the cache path and what to do offline.
    """
    if not isinstance(url, str) or urllib.parse.urlparse(url).scheme not in SCHEMES:
        raise ValueError(f"`url` must be an {', '.join(SCHEMES)} URL; received url={url!r}.")
    expected = _expected_hashes(sha256, md5)
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    target = os.path.join(cache_dir, _file_name(url, fname))
    if os.path.isfile(target):
        if file_hashes(target, tuple(expected)) == expected:
            return target
        os.remove(target)  # stale or altered copy: fetch it again
    os.makedirs(cache_dir, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=cache_dir, prefix=f".{os.path.basename(target)}.", suffix=".part")
    digests = {name: hashlib.new(name) for name in expected}
    try:
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                total = response.headers.get("Content-Length")
                bar = None
                if progress:
                    import keras  # only for the bar: fetching a file must not import Keras (weights/__init__.py)

                    bar = keras.utils.Progbar(int(total) if total and total.isdigit() else None, unit_name="byte")
                done = 0
                for chunk in iter(lambda: response.read(CHUNK_SIZE), b""):
                    out.write(chunk)
                    for digest in digests.values():
                        digest.update(chunk)
                    done += len(chunk)
                    if bar is not None:
                        bar.update(done)
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, OSError) as error:  # no network, refused, timed out, 404 (HTTPError)
            reason = getattr(error, "reason", None) or error
            raise OSError(
                f"Could not download {url!r} into the cache at {target!r}: {reason}. {offline_advice(url, target)}"
            ) from None
        for name, digest in digests.items():
            actual = digest.hexdigest()
            if actual != expected[name]:
                raise ValueError(
                    f"Downloaded file from {url!r} has {name} {actual}, but {expected[name]} was expected; it was "
                    "deleted. The file changed at its source, the transfer was corrupted or tampered with, or the "
                    "expected hash is wrong."
                )
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target
