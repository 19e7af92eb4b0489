"""Image folders: one sub-folder per class, decoded in memory or streamed with tf.data.

Streamed (`load_folder(..., stream=True)`, `list_image_files`, `image_folder_dataset`), a folder's images may
differ in size and format and need not fit in memory: only the readable paths are kept, and `make_pipeline` reads
and decodes each file as the training goes.

Layout: `root/<class>/**/<image>` (class names are the sorted sub-folder names), or the same under
`root/train/`, `root/test/` and optionally `root/validation/` (or `root/val/`). Files are decoded by content, not by
extension, with `tf.io.decode_image` (JPEG, PNG, BMP, GIF: first frame), converted to RGB and resized bilinearly
with antialiasing. Files that cannot be read or decoded are skipped and counted; hidden files (".name") are ignored.
"""

import os
import warnings

import numpy as np

from keras_vitres.data.checks import check_positive_int, is_positive_int
from keras_vitres.data.splits import stratified_split, take

SPLIT_DIRS = {"train": ("train",), "test": ("test",), "validation": ("validation", "val")}
DEFAULT_TEST_FRACTION = 0.2


def check_image_size(image_size, allow_none=True):
    """Returns `image_size` as an (height, width) tuple (or None), or raises naming the value."""
    if image_size is None and allow_none:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    try:
        size = tuple(size)
    except TypeError:
        size = ()
    if len(size) != 2 or not all(map(is_positive_int, size)):
        raise ValueError(
            "`image_size` must be a positive int or (height, width) of positive ints"
            f"{' or None' if allow_none else ''}; received image_size={image_size!r}."
        )
    return tuple(int(s) for s in size)


def _sub_dirs(directory):
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


def scan_folder(directory, class_names=None):
    """Lists the image candidates of a class-per-sub-folder directory: (sorted file paths, int64 labels,
    class_names). `class_names` fixes the label order (e.g. the training folder's, for the test folder); every
    sub-folder must be one of them. By default they are the sorted sub-folder names."""
    directory = os.path.expanduser(os.fspath(directory))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"`directory` is not a folder: directory={directory!r}.")
    found = _sub_dirs(directory)
    if not found:
        raise ValueError(
            f"`directory` {directory!r} has no sub-folders; expected one sub-folder per class holding its images."
        )
    if class_names is None:
        class_names = found
    else:
        class_names = [str(c) for c in class_names]
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise ValueError(
                f"`directory` {directory!r} has class folders {unknown} that are not in class_names={class_names}."
            )
    files, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(directory, name)
        if not os.path.isdir(class_dir):
            continue
        for root, dirs, names in os.walk(class_dir, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file_name in sorted(names):
                if not file_name.startswith("."):
                    files.append(os.path.join(root, file_name))
                    labels.append(label)
    return files, np.asarray(labels, dtype=np.int64), list(class_names)


def decode_image(contents, image_size=None):
    """Decodes encoded image bytes (a scalar string tensor) to uint8 RGB (H, W, 3), resized to `image_size`.

    Runs in a tf.data graph or eagerly; raises (tf.errors.InvalidArgumentError) for data that is not an image.
    """
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    image = tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    if image_size is not None:
        # Antialiasing matters when shrinking photos; bilinear as in keras.utils.image_dataset_from_directory.
        image = tf.image.resize(image, image_size, method="bilinear", antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    return image


def _readable(files, image_size=None):
    """Decodes every file in parallel, dropping failures; returns a tf.data.Dataset of (index, image)."""
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    indices = tf.data.Dataset.range(len(files))
    paths = tf.data.Dataset.from_tensor_slices(tf.constant(files, dtype=tf.string))
    decoded = tf.data.Dataset.zip(indices, paths).map(
        lambda i, f: (i, decode_image(tf.io.read_file(f), image_size)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return decoded.ignore_errors()


def _report(skipped_files, total, directory):
    if skipped_files:
        shown = ", ".join(os.path.relpath(f, directory) for f in skipped_files[:5])
        more = f" and {len(skipped_files) - 5} more" if len(skipped_files) > 5 else ""
        warnings.warn(
            f"skipped {len(skipped_files)} of {total} files in {directory!r} that could not be read as images: "
            f"{shown}{more}.",
            stacklevel=3,
        )


def read_image_folder(directory, image_size=None, class_names=None):
    """Decodes a class-per-sub-folder directory into memory, resized to `image_size` (None: the images' own size,
    which must then be the same for all); returns ((x uint8 (N, H, W, 3), y int64 (N,)), class_names, skipped
    files). `class_names` as in `scan_folder`."""
    image_size = check_image_size(image_size)
    files, labels, class_names = scan_folder(directory, class_names)
    if not files:
        raise ValueError(f"`directory` {os.fspath(directory)!r} has class folders {class_names} but no files in them.")
    kept, images = [], []
    for index, image in _readable(files, image_size).as_numpy_iterator():
        kept.append(index)
        images.append(image)
    kept_set = set(kept)
    skipped = [f for i, f in enumerate(files) if i not in kept_set]
    _report(skipped, len(files), os.fspath(directory))
    if not images:
        raise ValueError(f"`directory` {os.fspath(directory)!r} has {len(files)} files but none is a readable image.")
    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
        raise ValueError(
            f"images in {os.fspath(directory)!r} have different sizes {shapes[:4]}{' ...' if len(shapes) > 4 else ''};"
            " pass image_size=(height, width) to resize them all."
        )
    return (np.stack(images), labels[np.asarray(kept, dtype=np.int64)]), class_names, skipped


def list_image_files(directory, class_names=None):
    """Lists the readable image files of a class-per-sub-folder directory, for streaming them from disk: ((paths,
    int64 labels), class_names, skipped files). Every file is decoded once, in parallel, so that unreadable ones are
    known and left out; only the paths are kept."""
    files, labels, class_names = scan_folder(directory, class_names)
    if not files:
        raise ValueError(f"`directory` {os.fspath(directory)!r} has class folders {class_names} but no files in them.")
    kept = np.fromiter(_readable(files).map(lambda i, _: i).as_numpy_iterator(), np.int64)
    kept_set = set(kept.tolist())
    skipped = [f for i, f in enumerate(files) if i not in kept_set]
    _report(skipped, len(files), os.fspath(directory))
    if not len(kept):
        raise ValueError(f"`directory` {os.fspath(directory)!r} has {len(files)} files but none is a readable image.")
    return (np.asarray([files[i] for i in kept]), labels[kept]), class_names, skipped


def _split_dirs(root):
    """Returns {split: folder} when `root` holds only train/test/validation folders (with train), else None."""
    subs = _sub_dirs(root)
    aliases = {alias: split for split, names in SPLIT_DIRS.items() for alias in names}
    if "train" not in subs or not set(subs) <= set(aliases):
        return None  # a class may be called "train" (CIFAR-100 has one): only a pure split layout counts
    return {aliases[s]: os.path.join(root, s) for s in subs}


def _test_count(test_size, total):
    if test_size is None:
        return max(1, int(round(DEFAULT_TEST_FRACTION * total)))
    if isinstance(test_size, float) and 0.0 < test_size < 1.0:
        return max(1, int(round(test_size * total)))
    if isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool) and 0 < test_size < total:
        return int(test_size)
    raise ValueError(
        f"`test_size` must be a fraction in (0, 1) or a count in [1, {total - 1}] of the {total} readable images; "
        f"received test_size={test_size!r}."
    )


def load_folder(path, image_size=None, test_size=None, seed=0, *, stream=False, validation_path=None):
    """Reads an image folder for `load_dataset("folder", ...)`.

    With `train/` and `test/` (and optionally `validation/` or `val/`) sub-folders, those are the splits; otherwise
    the whole folder is the training data and a stratified, seeded test split of `test_size` (fraction or count,
    20% by default) is held out.

    Args:
        stream: bool. False decodes the images into memory (uint8 arrays); True lists the readable files and returns
            their paths instead (a 1-D str array as `x`), for `make_pipeline` to read from disk as it goes.
        validation_path: optional folder with the same class sub-folders: the validation split.

    Returns:
        (train, test, class_names, skipped, validation or None).
    """
    if path is None:
        raise ValueError("`path` is required for the 'folder' dataset: the directory with one sub-folder per class.")
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"`path` is not a folder: path={root!r}.")
    splits = _split_dirs(root)
    # Streamed: the readable paths, never resized here (the pipeline crops each image from its own size).
    read = (lambda directory, _size, names=None: list_image_files(directory, names)) if stream else read_image_folder
    if validation_path is not None:
        if splits is not None and "validation" in splits:
            raise ValueError(f"`validation_path` cannot be used: {root!r} has its own validation folder; received "
                             f"validation_path={os.fspath(validation_path)!r}.")
        if not os.path.isdir(os.fspath(validation_path)):
            raise FileNotFoundError(f"`validation_path` is not a folder: validation_path={os.fspath(validation_path)!r}.")
        splits = splits or {}
    if not splits or "train" not in splits:
        data, class_names, skipped = read(root, image_size)
        validation = None
        if validation_path is not None:
            validation, _, more = read(validation_path, image_size or data[0].shape[1:3], class_names)
            skipped += more
        keep, holdout = stratified_split(data[1], _test_count(test_size, len(data[1])), seed)
        return take(data, keep), take(data, holdout), class_names, len(skipped), validation
    if test_size is not None and "test" in splits:
        raise ValueError(f"`test_size` cannot be used: {root!r} has its own test/ folder; received test_size={test_size!r}.")
    train, class_names, skipped = read(splits["train"], image_size)
    if not stream:
        image_size = image_size or train[0].shape[1:3]  # the other splits must match the training images
    if validation_path is not None:
        splits["validation"] = os.fspath(validation_path)
    out = {}
    for split in ("test", "validation"):
        if split in splits:
            out[split], _, more = read(splits[split], image_size, class_names)
            skipped += more
    if "test" not in out:
        keep, holdout = stratified_split(train[1], _test_count(test_size, len(train[1])), seed)
        train, out["test"] = take(train, keep), take(train, holdout)
    return train, out["test"], class_names, len(skipped), out.get("validation")


def image_folder_dataset(directory, image_size, batch_size=None, *, class_names=None, shuffle=False, seed=0,
                         prescan=True):
    """Streams a class-per-sub-folder directory as a tf.data.Dataset, for folders too big for memory.

    Args:
        directory: path whose sub-folders are the classes (`class_names` as in `scan_folder`).
        image_size: int or (height, width) every image is resized to.
        batch_size: optional int; batches the elements when given.
        shuffle, seed: shuffle the file order (seeded, reshuffled every epoch) before decoding.
        prescan: bool. Decode every file once up front (`list_image_files`) so that unreadable files are counted
            and left out; False drops failures on the fly (tf.data's `ignore_errors`), uncounted.

    Returns:
        (dataset, class_names, skipped_count): elements are (uint8 image (H, W, 3), int64 label), batched when
        `batch_size` is given; skipped_count is an int, or None when `prescan=False`.
    """
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)

    image_size = check_image_size(image_size, allow_none=False)
    check_positive_int("batch_size", batch_size, allow_none=True)
    files, labels, class_names = scan_folder(directory, class_names)
    if not files:
        raise ValueError(f"`directory` {os.fspath(directory)!r} has class folders {class_names} but no files in them.")
    skipped = None
    if prescan:
        (files, labels), _, skipped_files = list_image_files(directory, class_names)
        files, skipped = files.tolist(), len(skipped_files)
    dataset = tf.data.Dataset.from_tensor_slices((tf.constant(files, dtype=tf.string), labels))
    if shuffle:
        dataset = dataset.shuffle(max(1, len(files)), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(
        lambda f, y: (decode_image(tf.io.read_file(f), image_size), y),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if not prescan:
        dataset = dataset.ignore_errors()
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE), class_names, skipped
