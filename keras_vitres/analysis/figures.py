"""Figure plumbing shared by the analyses: matplotlib with the Agg backend (no display), PNG output."""

import os


def pyplot():
    """Returns `matplotlib.pyplot` on the Agg backend, or raises an ImportError saying how to install it."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("the analyses' figures need matplotlib: `pip install matplotlib`.") from error
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
