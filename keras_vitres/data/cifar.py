"""CIFAR-10 and CIFAR-100 from the official python archives (Krizhevsky 2009; ResNet paper §4.2).

The archives (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`) hold pickled dicts: `b"data"` is a uint8
(N, 3072) array whose rows are the red, green and blue 32x32 planes one after another (row-major within a plane),
and labels are lists of ints. CIFAR-10: `cifar-10-batches-py/` with `data_batch_1..5`, `test_batch` and
`batches.meta` (`b"label_names"`). CIFAR-100: `cifar-100-python/` with `train`, `test` (`b"fine_labels"`,
`b"coarse_labels"`) and `meta` (`b"fine_label_names"`, `b"coarse_label_names"`).

Pickle can run code while loading, so the files are read with an unpickler that only rebuilds what the official
format contains (dicts, lists, bytes, numbers and numpy arrays) and refuses anything else.
"""

import io
import os
import pickle
import tarfile

import keras
import numpy as np

# The label names of the official `batches.meta` / `meta`, used when the data comes from keras.datasets, which
# returns labels only.
CIFAR10_CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
CIFAR100_FINE_CLASS_NAMES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
]
CIFAR100_COARSE_CLASS_NAMES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores", "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes", "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates",
    "people", "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
]

# name -> (archive file, folder inside it, train members, test members, meta member)
LAYOUTS = {
    "cifar10": (
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
    ),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], ["test"], "meta"),
}
LABEL_MODES = ("fine", "coarse")

# The only globals the official pickles (Python 2 cPickle with numpy arrays), or the same data re-pickled by
# Python 3, refer to.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2 (repacked archives)
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
}


class _CifarUnpickler(pickle.Unpickler):
    """Rebuilds plain containers and numpy arrays only; any other global in the file is refused."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: the official CIFAR files contain only dicts, lists and numpy "
                "arrays, so this file is not one of them."
            )
        return super().find_class(module, name)


def _unpickle(data, where):
    try:
        return _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # pickle raises many types for a damaged file
        raise ValueError(f"{where} is not a readable CIFAR python pickle: {error}") from error


class _Source:
    """Reads members by name from either the .tar.gz archive or the extracted folder."""

    def __init__(self, path, name):
        archive_name, folder_name, train, test, meta = LAYOUTS[name]
        self.members = [*train, *test, meta]
        self.folder_name = folder_name
        self.archive = None
        self.folder = None
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"`path` does not exist: path={path!r}. Give the official {archive_name!r} or its extracted "
                f"{folder_name!r} folder (or a folder that contains either)."
            )
        if os.path.isdir(path):
            if os.path.isdir(os.path.join(path, folder_name)):
                self.folder = os.path.join(path, folder_name)
            elif os.path.isfile(os.path.join(path, archive_name)):
                self.archive = os.path.join(path, archive_name)
            else:
                self.folder = path
                missing = [m for m in self.members if not os.path.isfile(os.path.join(path, m))]
                if missing:
                    raise FileNotFoundError(
                        f"`path` {path!r} is not a {name} folder: it lacks {missing} and holds neither "
                        f"{folder_name!r} nor {archive_name!r}. Expected the members {self.members}."
                    )
        else:
            self.archive = path
        if self.archive is not None:
            self._open_archive(name)

    def _open_archive(self, name):
        try:
            with tarfile.open(self.archive, "r:*") as tar:
                names = [m.name for m in tar.getmembers() if m.isfile()]
        except (tarfile.TarError, OSError) as error:
            raise ValueError(f"`path` {self.archive!r} is not a readable tar archive: {error}") from error
        # Members are found by base name under the official folder (or at the top level of a repacked archive).
        self.index = {}
        for member in names:
            head, base = os.path.split(member.removeprefix("./"))
            if base in self.members and head in (self.folder_name, ""):
                self.index.setdefault(base, member)
        missing = [m for m in self.members if m not in self.index]
        if missing:
            raise ValueError(
                f"archive {self.archive!r} is not the official {name} python archive: it lacks {missing} "
                f"(expected {[f'{self.folder_name}/{m}' for m in self.members]}; it holds {sorted(names)[:10]}"
                f"{' ...' if len(names) > 10 else ''})."
            )

    def read_all(self):
        """Returns {member: unpickled dict} for every expected member, opening the archive once."""
        if self.folder is not None:
            out = {}
            for member in self.members:
                with open(os.path.join(self.folder, member), "rb") as f:
                    out[member] = _unpickle(f.read(), os.path.join(self.folder, member))
            return out
        with tarfile.open(self.archive, "r:*") as tar:
            return {
                member: _unpickle(tar.extractfile(self.index[member]).read(), f"{self.archive}:{self.index[member]}")
                for member in self.members
            }

    def where(self, member):
        return os.path.join(self.folder, member) if self.folder is not None else f"{self.archive}:{self.index[member]}"


def _get(batch, key, where):
    if not isinstance(batch, dict) or key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{where} has no {key!r} entry (it holds {keys}); it is not an official CIFAR batch.")
    return batch[key]


def batch_arrays(batch, label_key, where, num_classes):
    """Converts one unpickled batch to (x uint8 (N, 32, 32, 3), y int64 (N,)), checking shapes and labels."""
    data = np.asarray(_get(batch, b"data", where))
    labels = np.asarray(_get(batch, label_key, where), dtype=np.int64).reshape(-1)
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise ValueError(
            f"{where} has data of shape {data.shape} and dtype {data.dtype}; an official CIFAR batch holds uint8 "
            "rows of 3072 values (N, 3072): the 32x32 red, green and blue planes."
        )
    if len(labels) != len(data):
        raise ValueError(f"{where} has {len(data)} images but {len(labels)} labels under {label_key!r}.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{where} has labels in [{labels.min()}, {labels.max()}] under {label_key!r}; expected 0..{num_classes - 1}."
        )
    # Rows are channel-major (3 planes of 32x32); move channels last.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), labels


def _names(meta, key, where):
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in _get(meta, key, where)]


def read_cifar(path, name="cifar10", label_mode="fine"):
    """Reads CIFAR-10 or CIFAR-100 from the official python archive or its extracted folder.

    Args:
        path: the `.tar.gz` archive, its extracted folder (`cifar-10-batches-py` / `cifar-100-python`), or a folder
            that contains either.
        name: "cifar10" or "cifar100".
        label_mode: "fine" (100 classes) or "coarse" (20 superclasses); CIFAR-100 only.

    Returns:
        (train, test, class_names) with train/test = (x uint8 (N, 32, 32, 3), y int64 (N,)).
    """
    if name not in LAYOUTS:
        raise ValueError(f"`name` must be one of {sorted(LAYOUTS)}; received name={name!r}.")
    if label_mode not in LABEL_MODES:
        raise ValueError(f"`label_mode` must be one of {LABEL_MODES}; received label_mode={label_mode!r}.")
    _, _, train_members, test_members, meta_member = LAYOUTS[name]
    source = _Source(path, name)
    batches = source.read_all()
    if name == "cifar10":
        label_key, names_key = b"labels", b"label_names"
    else:
        label_key, names_key = (b"fine_labels", b"fine_label_names") if label_mode == "fine" else (
            b"coarse_labels", b"coarse_label_names")
    class_names = _names(batches[meta_member], names_key, source.where(meta_member))

    def join(members):
        parts = [batch_arrays(batches[m], label_key, source.where(m), len(class_names)) for m in members]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    return join(train_members), join(test_members), class_names


def download_cifar(name="cifar10", label_mode="fine"):
    """Loads CIFAR through `keras.datasets` (downloads to ~/.keras/datasets on first use; needs the network)."""
    try:
        if name == "cifar10":
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
            class_names = list(CIFAR10_CLASS_NAMES)
        else:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar100.load_data(label_mode=label_mode)
            class_names = list(CIFAR100_FINE_CLASS_NAMES if label_mode == "fine" else CIFAR100_COARSE_CLASS_NAMES)
    except Exception as error:  # network, certificate or disk errors
        archive = LAYOUTS[name][0]
        raise RuntimeError(
            f"could not download {name} through keras.datasets ({error}). Without the network, pass "
            f"path= the local {archive!r} or its extracted folder."
        ) from error
    as_labels = lambda y: np.asarray(y, dtype=np.int64).reshape(-1)  # noqa: E731
    return (x_train, as_labels(y_train)), (x_test, as_labels(y_test)), class_names
