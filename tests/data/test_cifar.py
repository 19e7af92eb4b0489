"""CIFAR-10/100 from small archives written in the official python format."""

import os
import pickle
import tarfile

import numpy as np
import pytest

from keras_vitres.data import load_dataset
from keras_vitres.data.cifar import CIFAR10_CLASS_NAMES, CIFAR100_COARSE_CLASS_NAMES, CIFAR100_FINE_CLASS_NAMES


@pytest.mark.parametrize("source", ["archive", "folder", "parent_of_folder", "parent_of_archive"])
def test_cifar10_round_trips_pixels_and_labels(cifar10_files, source):
    archive, folder, train_x, train_y, test_x, test_y = cifar10_files
    path = {"archive": archive, "folder": folder, "parent_of_folder": os.path.dirname(folder),
            "parent_of_archive": os.path.dirname(archive)}[source]
    data = load_dataset("cifar10", path=path)
    x, y = data.train
    assert x.dtype == np.uint8 and x.shape == (25, 32, 32, 3)
    assert y.dtype == np.int64 and y.shape == (25,)
    np.testing.assert_array_equal(x, train_x)  # batches 1..5 in order, pixel layout exact
    np.testing.assert_array_equal(y, train_y)
    np.testing.assert_array_equal(data.test[0], test_x)
    np.testing.assert_array_equal(data.test[1], test_y)
    assert data.validation is None
    assert data.class_names == [n.decode() for n in (b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                                                     b"frog", b"horse", b"ship", b"truck")]
    assert data.class_names == CIFAR10_CLASS_NAMES
    assert data.image_shape == (32, 32, 3) and data.num_classes == 10 and data.skipped == 0


def test_cifar_rows_are_red_green_blue_planes(cifar10_files):
    archive, folder, *_ = cifar10_files
    with open(os.path.join(folder, "data_batch_1"), "rb") as f:
        rows = pickle.load(f, encoding="bytes")[b"data"]
    x = load_dataset("cifar10", path=archive).train[0]
    # Official layout: value 32 is the red pixel at row 1, column 0; 1024 + 5 is green at row 0, column 5.
    assert x[0, 1, 0, 0] == rows[0, 32]
    assert x[0, 0, 5, 1] == rows[0, 1024 + 5]
    assert x[2, 31, 31, 2] == rows[2, 3071]


@pytest.mark.parametrize("label_mode", ["fine", "coarse"])
@pytest.mark.parametrize("use_archive", [True, False])
def test_cifar100_fine_and_coarse(cifar100_files, label_mode, use_archive):
    archive, folder, parts = cifar100_files
    data = load_dataset("cifar100", path=archive if use_archive else folder, label_mode=label_mode)
    column = 1 if label_mode == "fine" else 2
    np.testing.assert_array_equal(data.train[0], parts["train"][0])
    np.testing.assert_array_equal(data.train[1], parts["train"][column])
    np.testing.assert_array_equal(data.test[0], parts["test"][0])
    np.testing.assert_array_equal(data.test[1], parts["test"][column])
    count = 100 if label_mode == "fine" else 20
    assert data.class_names == [f"{label_mode}{i}" for i in range(count)]


def test_cifar100_builtin_names_are_the_official_lists():
    assert len(CIFAR100_FINE_CLASS_NAMES) == 100 and len(CIFAR100_COARSE_CLASS_NAMES) == 20
    assert CIFAR100_FINE_CLASS_NAMES == sorted(CIFAR100_FINE_CLASS_NAMES)  # the official meta lists are sorted
    assert len(set(CIFAR100_FINE_CLASS_NAMES)) == 100


def test_validation_split_is_seeded_and_stratified(cifar10_files):
    archive, *_ = cifar10_files
    a = load_dataset("cifar10", path=archive, validation_size=5, seed=3)
    b = load_dataset("cifar10", path=archive, validation_size=5, seed=3)
    c = load_dataset("cifar10", path=archive, validation_size=5, seed=4)
    full = load_dataset("cifar10", path=archive)
    assert len(a.train[1]) == 20 and len(a.validation[1]) == 5
    np.testing.assert_array_equal(a.validation[0], b.validation[0])
    assert not np.array_equal(a.validation[0], c.validation[0])
    # Train and validation partition the original training set.
    rows = lambda x: {im.tobytes() for im in x}  # noqa: E731
    assert rows(a.train[0]) | rows(a.validation[0]) == rows(full.train[0])
    assert not rows(a.train[0]) & rows(a.validation[0])


def test_missing_path_is_named(tmp_path):
    missing = str(tmp_path / "nowhere.tar.gz")
    with pytest.raises(FileNotFoundError, match="nowhere.tar.gz"):
        load_dataset("cifar10", path=missing)


def test_archive_without_the_members_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "readme.txt", arcname="cifar-10-batches-py/readme.txt")
    with pytest.raises(ValueError, match="lacks.*data_batch_1"):
        load_dataset("cifar10", path=str(archive))


def test_folder_without_the_members_is_refused(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="test_batch"):
        load_dataset("cifar10", path=str(tmp_path))


def test_batch_with_wrong_shape_is_refused(cifar10_files):
    _, folder, *_ = cifar10_files
    path = os.path.join(folder, "data_batch_3")
    with open(path, "wb") as f:
        pickle.dump({b"labels": [0, 1], b"data": np.zeros((2, 3000), np.uint8)}, f, protocol=2)
    with pytest.raises(ValueError, match=r"data_batch_3.*\(2, 3000\).*3072"):
        load_dataset("cifar10", path=folder)


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_pickle_with_code_is_refused_and_not_run(cifar10_files, tmp_path):
    _, folder, *_ = cifar10_files
    target = str(tmp_path / "ran")
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": _Payload(target)}, f, protocol=2)
    with pytest.raises(ValueError, match="refusing to load"):
        load_dataset("cifar10", path=folder)
    assert not os.path.exists(target)


def test_options_that_do_not_apply_are_refused(cifar10_files):
    archive, *_ = cifar10_files
    with pytest.raises(ValueError, match="label_mode"):
        load_dataset("cifar10", path=archive, label_mode="coarse")
    with pytest.raises(ValueError, match="image_size.*make_pipeline"):
        load_dataset("cifar10", path=archive, image_size=64)
    with pytest.raises(ValueError, match="validation_size"):
        load_dataset("cifar10", path=archive, validation_size=25)
    with pytest.raises(ValueError, match="name"):
        load_dataset("cifar1000", path=archive)
