"""Verified downloads, against local file:// URLs (the tests never use the network)."""

import hashlib
import os

import pytest

from keras_vitres.weights import download, sha256_of


@pytest.fixture
def published(tmp_path):
    source = tmp_path / "server" / "ViT-Ti_16.npz"
    source.parent.mkdir()
    source.write_bytes(os.urandom(3 * (1 << 20) + 123))  # several chunks
    return source, hashlib.sha256(source.read_bytes()).hexdigest()


def test_good_hash_downloads_once_and_then_uses_the_cache(published, tmp_path, capsys):
    source, digest = published
    cache = tmp_path / "cache"
    path = download(source.as_uri(), digest, cache_dir=cache)
    assert path == str(cache / "ViT-Ti_16.npz") and sha256_of(path) == digest
    assert "byte" in capsys.readouterr().out  # Keras' progress bar
    source.unlink()  # the source is gone: only the cache can answer now
    assert download(source.as_uri(), digest.upper(), cache_dir=cache, progress=False) == path
    assert os.listdir(cache) == ["ViT-Ti_16.npz"]


def test_bad_hash_keeps_nothing_and_names_both_hashes(published, tmp_path):
    source, digest = published
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(ValueError, match=f"sha256 {digest}, but {wrong} was expected"):
        download(source.as_uri(), wrong, cache_dir=cache, progress=False)
    assert os.listdir(cache) == []  # neither the file nor a partial one


def test_altered_cache_is_fetched_again(published, tmp_path):
    source, digest = published
    cache = tmp_path / "cache"
    path = download(source.as_uri(), digest, cache_dir=cache, progress=False)
    with open(path, "r+b") as f:
        f.write(b"tampered")
    assert download(source.as_uri(), digest, cache_dir=cache, progress=False, fname="ViT-Ti_16.npz") == path
    assert sha256_of(path) == digest


def test_arguments_are_checked(published, tmp_path):
    source, digest = published
    with pytest.raises(ValueError, match="sha256"):
        download(source.as_uri(), None, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        download(source.as_uri(), "abc123", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="url"):
        download("ftp://example.invalid/x.npz", digest, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="fname"):
        download(source.as_uri(), digest, cache_dir=tmp_path, fname="../escape.npz")
    with pytest.raises(OSError):
        download((tmp_path / "missing.npz").as_uri(), digest, cache_dir=tmp_path / "cache", progress=False)
    assert os.listdir(tmp_path / "cache") == []


def test_default_cache_follows_the_environment(published, tmp_path, monkeypatch):
    source, digest = published
    monkeypatch.setenv("KERAS_VITRES_CACHE", str(tmp_path / "env_cache"))
    assert download(source.as_uri(), digest, progress=False) == str(tmp_path / "env_cache" / "ViT-Ti_16.npz")


def test_md5_where_it_is_the_only_pinned_hash(published, tmp_path):
    source, digest = published
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    path = download(source.as_uri(), md5=md5, cache_dir=cache, progress=False)
    assert sha256_of(path) == digest
    assert download(source.as_uri(), digest, md5=md5, cache_dir=cache, progress=False) == path  # both must match
    with pytest.raises(ValueError, match=f"md5 {md5}, but {'f' * 32} was expected"):
        download(source.as_uri(), md5="f" * 32, cache_dir=tmp_path / "other", progress=False)
    assert os.listdir(tmp_path / "other") == []
    with pytest.raises(ValueError, match=r"`md5` must be the file's 32-character hex md5; received md5='abc'"):
        download(source.as_uri(), md5="abc", cache_dir=tmp_path)


def test_an_unreachable_or_silent_server_fails_within_the_timeout(tmp_path, monkeypatch):
    import socket
    import sys
    import time

    download_module = sys.modules["keras_vitres.weights.download"]  # the package's `download` is the function
    monkeypatch.setattr(download_module, "TIMEOUT", 1)
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/ViT-B_16.npz"
        start = time.monotonic()
        with pytest.raises(OSError) as error:
            download(url, "0" * 64, cache_dir=tmp_path / "cache", progress=False)
        assert time.monotonic() - start < 10
    finally:
        silent.close()
    message = str(error.value)
    assert url in message and str(tmp_path / "cache" / "ViT-B_16.npz") in message and "elsewhere" in message
    assert os.listdir(tmp_path / "cache") == []
