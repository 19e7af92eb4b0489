"""The in-memory dataset container and the seeded, stratified splits every loader shares."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class DataSplits:
    """An image-classification dataset split into train, validation (None unless `load_dataset` carved it out or
    read a `validation/` folder) and test: each (x uint8 (N, H, W, 3) raw pixels, or file paths; y int64 (N,)).
    Label i is `class_names[i]`; `image_shape` is every image's (H, W, 3); `skipped` counts the files that could not
    be decoded (image folders only); `name` is the dataset's name in `load_dataset`."""

    train: tuple
    validation: tuple | None
    test: tuple
    class_names: list
    image_shape: tuple
    skipped: int = 0
    name: str = ""

    @property
    def num_classes(self):
        """The number of classes, `len(class_names)`."""
        return len(self.class_names)

    def __repr__(self):
        sizes = ", ".join(
            f"{split}={len(getattr(self, split)[1])}"
            for split in ("train", "validation", "test")
            if getattr(self, split) is not None
        )
        return (
            f"DataSplits(name={self.name!r}, {sizes}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes}, skipped={self.skipped})"
        )


def check_count(value, name, upper, allow_none=True):
    """Validates a count argument (an int in [1, upper)), or raises naming the argument and the valid range."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 < value < upper:
        raise ValueError(
            f"`{name}` must be an int count between 1 and {upper - 1} (the number of examples it is taken from "
            f"is {upper}); received {name}={value!r}."
        )
    return int(value)


def stratified_split(labels, holdout_size, seed):
    """Splits the indices of `labels` (N,) into ascending int64 (keep, holdout) arrays with `holdout_size` (in
    [1, N)) held out in class proportions: each class gives round(holdout_size * its fraction) examples (largest
    remainders make the total exact), drawn with a permutation seeded by `seed`."""
    labels = np.asarray(labels)
    holdout_size = check_count(holdout_size, "holdout_size", len(labels), allow_none=False)
    classes, counts = np.unique(labels, return_counts=True)
    exact = holdout_size * counts / len(labels)
    quota = np.floor(exact).astype(np.int64)
    # Largest remainders first; ties broken by class order, so the split is a pure function of the labels.
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: holdout_size - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    holdout = []
    for cls, take in zip(classes, quota):
        members = np.flatnonzero(labels == cls)
        holdout.append(rng.permutation(members)[:take])
    holdout = np.sort(np.concatenate(holdout)).astype(np.int64)
    keep = np.setdiff1d(np.arange(len(labels), dtype=np.int64), holdout)
    return keep, holdout


def take(arrays, indices):
    """Returns (x[indices], y[indices]) for an (x, y) pair."""
    x, y = arrays
    return x[indices], y[indices]


def fraction_to_count(value, name, total):
    """A float fraction in (0, 1) of `total` as a count (at least 1); any other value is returned as it is."""
    if isinstance(value, float):
        if not 0 < value < 1:
            raise ValueError(f"`{name}` must be a fraction in (0, 1) or an int count; received {name}={value!r}.")
        return min(max(1, int(round(value * total))), total - 1)
    return value


def carve_validation(train, validation_size, seed):
    """Splits `validation_size` examples (a count, or a float fraction in (0, 1)) off `train`, stratified and
    seeded; returns (train, validation)."""
    validation_size = fraction_to_count(validation_size, "validation_size", len(train[1]))
    validation_size = check_count(validation_size, "validation_size", len(train[1]))
    if validation_size is None:
        return train, None
    keep, holdout = stratified_split(train[1], validation_size, seed)
    return take(train, keep), take(train, holdout)
