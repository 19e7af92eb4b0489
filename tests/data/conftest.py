"""Writers of small datasets in the official on-disk formats: CIFAR python pickles in .tar.gz, image folders."""

import os
import pickle
import tarfile

import numpy as np
import pytest

CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def to_rows(images):
    """(N, 32, 32, 3) -> the official (N, 3072) rows: red plane, green plane, blue plane, each row-major.

    Written plane by plane (not by the loader's reshape/transpose) so the test checks the layout independently.
    """
    n = len(images)
    return np.concatenate([images[..., c].reshape(n, 1024) for c in range(3)], axis=1)


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the official files are Python 2 cPickle, protocol 2


def _pack(folder, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=os.path.basename(folder))
    return archive


@pytest.fixture
def cifar10_files(tmp_path):
    """Writes a small CIFAR-10 (5 training batches of 3,4,5,6,7 images, a test batch of 6) in the official format.

    Returns (archive path, extracted folder path, train images, train labels, test images, test labels).
    """
    rng = np.random.default_rng(1)
    folder = tmp_path / "extracted" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i, n in enumerate([3, 4, 5, 6, 7], start=1):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        _dump(folder / f"data_batch_{i}", {
            b"batch_label": f"training batch {i} of 5".encode(), b"labels": y, b"data": to_rows(x),
            b"filenames": [f"img_{i}_{k}.png".encode() for k in range(n)],
        })
        train_x.append(x)
        train_y += y
    test_x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    test_y = [int(v) for v in rng.integers(0, 10, 6)]
    _dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": test_y, b"data": to_rows(test_x)})
    _dump(folder / "batches.meta", {b"label_names": CIFAR10_NAMES, b"num_cases_per_batch": 10000, b"num_vis": 3072})
    archive = _pack(str(folder), str(tmp_path / "cifar-10-python.tar.gz"))
    return archive, str(folder), np.concatenate(train_x), np.asarray(train_y), test_x, np.asarray(test_y)


@pytest.fixture
def cifar100_files(tmp_path):
    """Writes a small CIFAR-100 (train 12, test 5) with fine and coarse labels, in the official format.

    Returns (archive path, extracted folder path, parts dict).
    """
    rng = np.random.default_rng(2)
    folder = tmp_path / "extracted" / "cifar-100-python"
    folder.mkdir(parents=True)
    parts = {}
    for split, n in (("train", 12), ("test", 5)):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [f // 5 for f in fine]
        _dump(folder / split, {b"filenames": [b"f.png"] * n, b"batch_label": split.encode(), b"fine_labels": fine,
                               b"coarse_labels": coarse, b"data": to_rows(x)})
        parts[split] = (x, np.asarray(fine), np.asarray(coarse))
    _dump(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    archive = _pack(str(folder), str(tmp_path / "cifar-100-python.tar.gz"))
    return archive, str(folder), parts


def write_image(path, color, size, fmt):
    """Writes a solid-colour RGB image of (width, height) `size` with PIL."""
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, tuple(int(c) for c in color)).save(path, format=fmt)


@pytest.fixture
def image_folder(tmp_path):
    """A class-per-folder tree: 'red' and 'blue', mixed formats and sizes, one truncated JPEG and one text file.

    Returns (root, expected number of readable images per class).
    """
    root = tmp_path / "images"
    red, blue = (200, 10, 20), (10, 20, 220)
    write_image(str(root / "red" / "a.png"), red, (40, 30), "PNG")
    write_image(str(root / "red" / "b.bmp"), red, (20, 20), "BMP")
    write_image(str(root / "red" / "nested" / "c.png"), red, (16, 24), "PNG")
    write_image(str(root / "red" / "d.jpg"), red, (32, 32), "JPEG")
    write_image(str(root / "blue" / "a.png"), blue, (50, 10), "PNG")
    write_image(str(root / "blue" / "b.gif"), blue, (12, 12), "GIF")
    write_image(str(root / "blue" / "c.jpg"), blue, (64, 48), "JPEG")
    with open(root / "blue" / "c.jpg", "rb") as f:
        jpeg = f.read()
    (root / "blue" / "broken.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # truncated: corrupt
    (root / "red" / "notes.txt").write_text("not an image")
    (root / "red" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored, not counted
    return str(root), {"blue": 3, "red": 4}
