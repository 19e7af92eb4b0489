"""Shortcut options A, B and C side by side: parameters and error (arXiv:1512.03385, §3.3 and Table 3).

A: zero-padding identity shortcuts (no parameters); B: projections only where the shape changes; C: projections
on every block. The paper finds B slightly better than A and C marginally better than B, at a cost in
parameters that C does not earn, so it uses A (CIFAR) and B (ImageNet). A plain net (option None) gives the
baseline row.
"""

import dataclasses

from keras_vitres.analysis.experiment import AnalysisResult, TrainingSettings, load_analysis_data, train_cifar_resnet
from keras_vitres.layers.residual import check_shortcut
from keras_vitres.training.curves import pyplot, save_figure


@dataclasses.dataclass
class ShortcutResult(AnalysisResult):
    """One row per shortcut option, in the form of the paper's Table 3.

    Attributes:
        depth: the depth of every net.
        rows: list of {"option": "A" | "B" | "C" | None, "name", "params", "trainable_params", "train_error",
            "val_error"} (final errors as fractions).
        curves: {net name: {"train_error": [...], "val_error": [...]}}, one value per epoch.
    """

    depth: int
    rows: list
    curves: dict
    figure: str = None

    def table(self):
        """The rows as a Markdown table, like the paper's Table 3 (with parameter counts)."""
        lines = ["| model | shortcut | parameters | training error (%) | validation error (%) |",
                 "|---|---|---:|---:|---:|"]
        for row in self.rows:
            option = "none (plain)" if row["option"] is None else row["option"]
            lines.append(f"| {row['name']} | {option} | {row['params']:,} | {100 * row['train_error']:.2f} | "
                         f"{100 * row['val_error']:.2f} |")
        return "\n".join(lines)


def _label(depth, option):
    return f"plain-{depth}" if option is None else f"resnet-{depth} {option}"


def shortcut_analysis(depth=20, options=("A", "B", "C"), data=None, settings=None, figure_path=None, **model_args):
    """Trains one CIFAR ResNet per shortcut option with the same data, seed and settings (paper Table 3).

    Args:
        depth: CIFAR depth 6n + 2 of every net.
        options: shortcut options to compare, among "A", "B", "C" and None (the plain net).
        data: an `AnalysisData`; by default `load_analysis_data("digits")`.
        settings: a `TrainingSettings`; by default `TrainingSettings()`.
        figure_path: optional path of a PNG to write (`plot_shortcuts`).
        **model_args: more `keras_vitres.ResNet` arguments (e.g. `stage_filters=(8, 16, 32)`).

    Returns:
        A `ShortcutResult` whose rows follow `options`.
    """
    options = list(options)
    if not options or len(set(options)) != len(options):
        raise ValueError(f"`options` must list distinct shortcut options; received options={options!r}.")
    for option in options:
        check_shortcut(option)
    data = data if data is not None else load_analysis_data("digits")
    settings = settings or TrainingSettings()
    rows, curves = [], {}
    for option in options:
        name = _label(depth, option)
        model, curves[name] = train_cifar_resnet(
            depth, data, settings, shortcut=option, name=name.replace("-", "").replace(" ", "_"), **model_args
        )
        trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
        rows.append(dict(
            option=option,
            name=name,
            params=int(model.count_params()),
            trainable_params=trainable,
            train_error=curves[name]["train_error"][-1],
            val_error=curves[name]["val_error"][-1],
        ))
    result = ShortcutResult(depth=int(depth), rows=rows, curves=curves)
    return result.plotted(plot_shortcuts, figure_path)


def plot_shortcuts(result, path):
    """Writes error curves per option (left) and the final error with parameter counts (right) to `path`; returns
    `path`."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for row in result.rows:
        curve = result.curves[row["name"]]
        epochs = range(1, len(curve["val_error"]) + 1)
        line, = left.plot(epochs, [100 * e for e in curve["val_error"]], linewidth=2, label=row["name"])
        left.plot(epochs, [100 * e for e in curve["train_error"]], "--", linewidth=1, color=line.get_color())
    left.set_xlabel("epoch")
    left.set_ylabel("error (%)")
    left.set_title("bold: validation, dashed: training")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    names = [row["name"] for row in result.rows]
    errors = [100 * row["val_error"] for row in result.rows]
    bars = right.bar(names, errors, color="tab:blue")
    for bar, row in zip(bars, result.rows):
        right.annotate(f"{row['params']:,} params", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                       ha="center", va="bottom", fontsize=8)
    right.set_ylabel("final validation error (%)")
    right.set_title("Table 3 form: error and parameters per option")
    right.grid(alpha=0.3, axis="y")
    figure.suptitle(f"Shortcut options on {result.depth}-layer nets (ResNet paper §3.3, Table 3)")
    return save_figure(figure, path)
