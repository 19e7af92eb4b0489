"""Verified downloads of published weight files: sha256-checked, cached, never loaded half-written.

The file is streamed to a hidden temporary name in the cache folder while its sha256 is computed; only when the
hash matches is it renamed to its final name, so an interrupted, truncated or tampered download is never found in
the cache. A cached file is hashed again before it is returned.
"""

import hashlib
import os
import re
import tempfile
import urllib.parse
import urllib.request

CHUNK_SIZE = 1 << 20
SCHEMES = ("https", "http", "file")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def default_cache_dir():
    """`$KERAS_VITRES_CACHE`, else `$KERAS_HOME/keras_vitres/weights` (`~/.keras/keras_vitres/weights`)."""
    if os.environ.get("KERAS_VITRES_CACHE"):
        return os.environ["KERAS_VITRES_CACHE"]
    return os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")), "keras_vitres", "weights")


def sha256_of(path):
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_name(url, fname):
    name = fname if fname is not None else os.path.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(
            f"`fname` must be a plain file name (no folders, not hidden); received fname={fname!r} for url={url!r}."
        )
    return name


def download(url, sha256, cache_dir=None, fname=None, progress=True):
    """Downloads `url` into the cache unless a file with the right sha256 is there; returns its local path.

    Args:
        url: str. An https, http or file URL.
        sha256: str. The expected hex sha256 of the file (64 characters). Required: an unverified file is never
            returned. Compute it once with `sha256sum FILE` (or `keras_vitres.weights.sha256_of`) on a copy you trust.
        cache_dir: folder of the cache; by default `default_cache_dir()`.
        fname: name of the cached file; by default the last part of the URL's path.
        progress: bool. Show Keras' progress bar while downloading.

    Returns:
        str: the path of the verified file.

    Raises:
        ValueError: a bad argument, or a downloaded file whose sha256 differs (both hashes are named; nothing is
            kept).
        OSError: the URL cannot be read.
    """
    if not isinstance(url, str) or urllib.parse.urlparse(url).scheme not in SCHEMES:
        raise ValueError(f"`url` must be an {', '.join(SCHEMES)} URL; received url={url!r}.")
    if not isinstance(sha256, str) or not SHA256.match(sha256.lower()):
        raise ValueError(
            f"`sha256` must be the file's 64-character hex sha256; received sha256={sha256!r}. Downloads are always "
            "verified: compute it with `sha256sum FILE` on a copy you trust."
        )
    sha256 = sha256.lower()
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    target = os.path.join(cache_dir, _file_name(url, fname))
    if os.path.isfile(target):
        if sha256_of(target) == sha256:
            return target
        os.remove(target)  # stale or altered copy: fetch it again
    os.makedirs(cache_dir, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=cache_dir, prefix=f".{os.path.basename(target)}.", suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = response.headers.get("Content-Length")
            bar = None
            if progress:
                import keras

                bar = keras.utils.Progbar(int(total) if total and total.isdigit() else None, unit_name="byte")
            done = 0
            for chunk in iter(lambda: response.read(CHUNK_SIZE), b""):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if bar is not None:
                    bar.update(done)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != sha256:
            raise ValueError(
                f"Downloaded file from {url!r} has sha256 {actual}, but {sha256} was expected; it was deleted. "
                "The file changed at its source, the transfer was corrupted or tampered with, or the expected hash "
                "is wrong."
            )
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target
