"""Image folders: decoding by content, resizing, corrupt and non-image files skipped and counted, streaming."""

import os

import numpy as np
import pytest

from keras_vitres.data import image_folder_dataset, load_dataset, make_pipeline
from keras_vitres.data.folder import read_image_folder

RED, BLUE = np.array([200, 10, 20]), np.array([10, 20, 220])


def _check_colours(x, y, class_names, atol, colours=None):
    colours = colours or {"red": RED, "blue": BLUE}
    for image, label in zip(x, y):
        mean = image.reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(mean, colours[class_names[label]], atol=atol)


def test_read_image_folder_skips_and_counts_unreadable_files(image_folder):
    root, per_class = image_folder
    with pytest.warns(UserWarning, match=r"skipped 2 of 9 files.*(broken\.jpg|notes\.txt)"):
        (x, y), class_names, skipped = read_image_folder(root, image_size=(8, 12))
    assert class_names == ["blue", "red"]
    assert sorted(os.path.basename(f) for f in skipped) == ["broken.jpg", "notes.txt"]
    assert x.shape == (7, 8, 12, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [per_class["blue"], per_class["red"]]
    _check_colours(x, y, class_names, atol=12)  # PNG/BMP exact, JPEG/GIF close


def test_lossless_formats_decode_exactly(image_folder):
    root, _ = image_folder
    with pytest.warns(UserWarning):
        (x, y), names, _ = read_image_folder(root, image_size=5)
    red = x[y == names.index("red")]
    # red/a.png, red/b.bmp, red/nested/c.png are lossless solid colours: every pixel exact after resizing.
    assert sum(np.all(im == RED) for im in red) >= 3


def test_mixed_sizes_need_image_size(image_folder):
    root, _ = image_folder
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="image_size"):
        read_image_folder(root)


def test_load_dataset_folder_carves_a_seeded_test_split(image_folder):
    root, _ = image_folder
    with pytest.warns(UserWarning, match="skipped 2"):
        data = load_dataset("folder", path=root, image_size=16, test_size=2, seed=0)
    assert data.skipped == 2
    assert len(data.train[1]) == 5 and len(data.test[1]) == 2
    assert sorted(data.test[1].tolist()) == [0, 1]  # stratified: one of each class
    assert data.image_shape == (16, 16, 3) and data.class_names == ["blue", "red"]


def test_train_test_validation_folders(tmp_path):
    from tests.data.conftest import write_image

    root = tmp_path / "split"
    for split, n in (("train", 3), ("test", 2), ("val", 1)):
        for cls, colour in (("cat", RED), ("dog", BLUE)):
            for i in range(n):
                write_image(str(root / split / cls / f"{i}.png"), colour, (10, 10), "PNG")
    (root / "test" / "dog" / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.warns(UserWarning, match="skipped 1"):
        data = load_dataset("folder", path=str(root))
    assert (len(data.train[1]), len(data.validation[1]), len(data.test[1])) == (6, 2, 4)
    assert data.skipped == 1 and data.image_shape == (10, 10, 3)
    _check_colours(data.test[0], data.test[1], data.class_names, atol=0, colours={"cat": RED, "dog": BLUE})
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="validation_size"):
        load_dataset("folder", path=str(root), validation_size=2)


def test_a_class_called_train_is_a_class(tmp_path):
    from tests.data.conftest import write_image

    for cls in ("train", "bus"):
        write_image(str(tmp_path / cls / "0.png"), RED, (4, 4), "PNG")
        write_image(str(tmp_path / cls / "1.png"), BLUE, (4, 4), "PNG")
    data = load_dataset("folder", path=str(tmp_path), test_size=2)
    assert data.class_names == ["bus", "train"]


def test_missing_folder_and_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_dataset("folder", path=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="path"):
        load_dataset("folder")


@pytest.mark.parametrize("prescan", [True, False])
def test_streaming_matches_in_memory(image_folder, prescan):
    root, _ = image_folder
    with pytest.warns(UserWarning):
        (x, y), _, _ = read_image_folder(root, image_size=(8, 8))
    dataset, class_names, skipped = image_folder_dataset(root, (8, 8), batch_size=3, prescan=prescan)
    assert class_names == ["blue", "red"]
    assert skipped == (2 if prescan else None)
    batches = list(dataset.as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_streaming_feeds_make_pipeline(image_folder):
    root, _ = image_folder
    with pytest.warns(UserWarning):
        dataset, class_names, _ = image_folder_dataset(root, 8, shuffle=True, seed=1)
    pipeline = make_pipeline(dataset, batch_size=4, training=True, num_classes=2, augment="cifar", one_hot=True)
    images, labels = next(iter(pipeline))
    assert images.shape == (4, 8, 8, 3) and images.dtype.name == "float32"
    assert labels.shape == (4, 2)
    assert sum(len(b[1]) for b in pipeline) == 7
