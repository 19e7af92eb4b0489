"""`load_dataset`: every dataset by name, as in-memory uint8 splits.

| name | source | classes | images |
|---|---|---|---|
| "digits" | scikit-learn's `load_digits`, embedded (offline default) | 10 | 1,437 train / 360 test, 32x32 |
| "cifar10" | `cifar-10-python.tar.gz` or its folder; keras.datasets when path=None | 10 | 50,000 / 10,000, 32x32 |
| "cifar100" | `cifar-100-python.tar.gz` or its folder; keras.datasets when path=None | 100 fine / 20 coarse | 50,000 / 10,000 |
| "folder" | a directory with one sub-folder per class (optionally train/ test/ validation/) | sub-folders | any |
| "tfds:NAME" | tensorflow_datasets, when installed (optional) | from the dataset | from the dataset |
"""

import os

import numpy as np

from keras_vitres.data import cifar, digits, folder
from keras_vitres.data.splits import DataSplits, carve_validation

DATASETS = ("digits", "cifar10", "cifar100", "folder")
TFDS_PREFIX = "tfds:"


def list_datasets():
    """Returns the dataset names `load_dataset` accepts (plus any "tfds:NAME" when tensorflow_datasets is installed)."""
    return list(DATASETS)


def _refuse(name, **given):
    """Raises for options that the dataset `name` does not take."""
    for option, value in given.items():
        if value is not None:
            raise ValueError(f"`{option}` does not apply to the {name!r} dataset; received {option}={value!r}.")


def _load_tfds(name, path, image_size):
    """Loads a TFDS dataset with 'train' and 'test' splits into memory (tensorflow_datasets is optional)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            f"dataset name {TFDS_PREFIX + name!r} needs tensorflow_datasets: `pip install tensorflow-datasets`."
        ) from error
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    image_size = folder.check_image_size(image_size)
    try:
        datasets, info = tfds.load(name, split=["train", "test"], as_supervised=True, with_info=True, data_dir=path)
    except Exception as error:  # unknown name, missing split, no network to download and prepare it
        raise RuntimeError(
            f"could not load TFDS dataset {name!r} with 'train' and 'test' splits as (image, label) pairs: {error}"
        ) from error
    label_names = list(info.features[info.supervised_keys[1]].names)

    def prepare(image, label):
        image = tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image
        if image_size is not None:
            image = tf.image.resize(image, image_size, method="bilinear", antialias=True)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        return image, tf.cast(label, tf.int64)

    splits = []
    for dataset in datasets:
        pairs = list(dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).as_numpy_iterator())
        if len({p[0].shape for p in pairs}) > 1:
            raise ValueError(f"TFDS dataset {name!r} has images of several sizes; pass image_size=(height, width).")
        splits.append((np.stack([p[0] for p in pairs]), np.asarray([p[1] for p in pairs], dtype=np.int64)))
    return splits[0], splits[1], label_names


def _load_cifar(name, path, label_mode, image_size, test_size):
    """CIFAR-10 or -100 from the official archive or folder at `path`, or through `keras.datasets` without one."""
    if image_size is not None:
        raise ValueError(f"`image_size` does not apply to {name!r} (its images are 32x32); resize in "
                         f"make_pipeline(image_size=...) instead; received image_size={image_size!r}.")
    _refuse(name, test_size=test_size, **({} if name == "cifar100" else {"label_mode": label_mode}))
    label_mode = label_mode or "fine"
    if path is not None:
        return cifar.read_cifar(path, name, label_mode)
    if label_mode not in cifar.LABEL_MODES:
        raise ValueError(f"`label_mode` must be one of {cifar.LABEL_MODES}; received label_mode={label_mode!r}.")
    return cifar.download_cifar(name, label_mode)


def load_dataset(name, path=None, validation_size=None, seed=0, *, label_mode=None, image_size=None,
                 test_size=None, stream=False, validation_path=None):
    """Loads an image-classification dataset into memory as uint8 splits.

    Args:
        name: "digits" (the embedded offline default), "cifar10", "cifar100", "folder", or "tfds:NAME".
        path: where the data is. CIFAR: the official python `.tar.gz`, its extracted folder, or a folder holding
            either; None downloads through `keras.datasets` (needs the network). "folder": the image directory
            (required). "tfds:NAME": the TFDS data_dir. "digits": must be None.
        validation_size: optional int count, or float fraction in (0, 1), of the training set carved out,
            stratified and seeded by `seed`, as the validation split (the ResNet paper's CIFAR recipe uses 45k/5k:
            validation_size=5000).
        seed: int. Seed of the validation split (and of the test split of a folder without a test/ sub-folder).
        label_mode: CIFAR-100 only: "fine" (100 classes, the default) or "coarse" (20 superclasses).
        image_size: "folder", "tfds:NAME" and "digits" only: int or (height, width) to resize to. For "digits" it
            is the upscaled size (32 by default); for a folder, None requires all images to have one size. CIFAR
            stays at 32x32: resize in `make_pipeline(image_size=...)` instead, which costs no memory.
        test_size: "folder" without a test/ sub-folder only: the held-out test fraction or count (default 0.2).
        stream: "folder" only. True keeps the images on disk: each split's `x` holds the readable files' paths, which
            `make_pipeline` reads as it goes, at its `image_size`; `image_shape` is then (None, None, 3).
        validation_path: "folder" only: a folder with the same class sub-folders, read as the validation split.

    Returns:
        A `DataSplits` with train, validation (None unless asked for or present), test, class_names, image_shape
        and skipped (the unreadable files left out of a folder).
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a dataset name string; received name={name!r}.")
    if name != "folder":
        _refuse(name, stream=stream or None, validation_path=validation_path)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an int; received seed={seed!r}.")
    if isinstance(path, str):
        path = os.path.expanduser(path)
    validation, skipped = None, 0
    if name == "digits":
        _refuse(name, path=path, label_mode=label_mode, test_size=test_size)
        train, test, class_names = digits.read_digits(folder.check_image_size(image_size) or digits.IMAGE_SIZE)
    elif name in ("cifar10", "cifar100"):
        train, test, class_names = _load_cifar(name, path, label_mode, image_size, test_size)
    elif name == "folder":
        _refuse(name, label_mode=label_mode)
        if stream and image_size is not None:
            raise ValueError("`image_size` does not apply to a streamed folder (each image is cropped from its own "
                             f"size by make_pipeline(image_size=...)); received image_size={image_size!r}.")
        train, test, class_names, skipped, validation = folder.load_folder(
            path, image_size, test_size, seed, stream=bool(stream), validation_path=validation_path)
    elif name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX):
        _refuse(name, label_mode=label_mode, test_size=test_size)
        train, test, class_names = _load_tfds(name[len(TFDS_PREFIX):], path, image_size)
    else:
        raise ValueError(f"`name` must be one of {list(DATASETS)} or 'tfds:NAME'; received name={name!r}.")
    if validation is not None and validation_size is not None:
        raise ValueError(
            f"`validation_size` cannot be used: the folder {path!r} has its own validation folder; received "
            f"validation_size={validation_size!r}."
        )
    if validation is None:
        train, validation = carve_validation(train, validation_size, int(seed))
    return DataSplits(
        train=train,
        validation=validation,
        test=test,
        class_names=list(class_names),
        image_shape=(None, None, 3) if stream else tuple(int(d) for d in train[0].shape[1:]),
        skipped=int(skipped),
        name=name,
    )
