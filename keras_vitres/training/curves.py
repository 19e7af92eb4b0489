"""The loss and accuracy curves of a run, drawn from its CSV log, and the figure plumbing that the analyses share:
matplotlib on the Agg backend (no display needed), PNG output."""

import csv
import math
import os


def pyplot():
    """Returns `matplotlib.pyplot` on the Agg backend (no display needed)."""
    import matplotlib  # lazy: pyplot takes 0.9 s to import, and only the figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path, dpi=100):
    """Writes `figure` as a PNG at `path` (creating its folder), closes it and returns `path`.

    Args:
        figure: a matplotlib Figure.
        path: str or os.PathLike ending in ".png".
        dpi: int. Resolution.
    """
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"`path` must name a .png file; received path={path!r}.")
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)
    return path


def read_log(csv_path):
    """Reads a `keras.callbacks.CSVLogger` file into {column: [float, ...]} (empty cells become NaN)."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for row in rows:
        for key, value in row.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            columns.setdefault(key, []).append(number)
    return columns


def plot_curves(csv_path, png_path, title=""):
    """Writes a PNG with two panels, loss and accuracy per epoch, training and validation.

    Args:
        csv_path: str. The run's CSV log (columns epoch, loss, accuracy, val_loss, val_accuracy, ...).
        png_path: str. Where to write the figure.
        title: str. Figure title.

    Returns:
        `png_path`, or None when the log holds no epoch yet.
    """
    columns = read_log(csv_path)
    if not columns.get("epoch"):
        return None
    epochs = [e + 1 for e in columns["epoch"]]
    figure, axes = pyplot().subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for key, label in ((metric, "training"), (f"val_{metric}", "validation")):
            if any(not math.isnan(v) for v in columns.get(key, [])):  # CSVLogger writes "NA" without validation
                axis.plot(epochs, columns[key], marker="o", markersize=3, label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if axis.get_lines():
            axis.legend()
    if title:
        figure.suptitle(title)
    return save_figure(figure, png_path)
