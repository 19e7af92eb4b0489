"""The degradation problem: plain nets get worse with depth, residual nets do not (arXiv:1512.03385, Fig. 1, 6).

Plain and residual CIFAR nets of each depth are trained on the same data with the same seed and settings.
"""

import dataclasses

from keras_vitres.analysis.experiment import AnalysisResult, TrainingSettings, load_analysis_data, train_cifar_resnet
from keras_vitres.training.curves import pyplot, save_figure


@dataclasses.dataclass
class DegradationResult(AnalysisResult):
    """Error curves of plain and residual nets of several depths.

    Attributes:
        depths: the depths compared (6n + 2).
        curves: {"plain-20": {"train_error": [...], "val_error": [...]}, "resnet-20": {...}, ...}, one fraction
            per epoch.
        params: {net name: parameter count}.
        models: {net name: the trained `keras.Model`}, e.g. for `layer_responses`.
    """

    EXCLUDE = ("models",)

    depths: list
    curves: dict
    params: dict
    figure: str = None
    models: dict = dataclasses.field(default=None, repr=False)

    def final_errors(self):
        """{net name: (final training error, final validation error)}."""
        return {name: (c["train_error"][-1], c["val_error"][-1]) for name, c in self.curves.items()}


def net_name(depth, residual):
    return f"{'resnet' if residual else 'plain'}-{depth}"


def degradation_analysis(depths=(20, 56), data=None, settings=None, figure_path=None, shortcut="A", **model_args):
    """Trains plain and residual CIFAR nets of each depth and records their error curves (paper Fig. 1 and 6).

    Args:
        depths: CIFAR depths 6n + 2 to compare (the paper's Fig. 6 uses 20, 32, 44, 56 and 110).
        data: an `AnalysisData`; by default `load_analysis_data("digits")`.
        settings: a `TrainingSettings`, the same for every net; by default `TrainingSettings()`.
        figure_path: optional path of a PNG to write (`plot_degradation`).
        shortcut: the residual nets' shortcut option ("A" in the paper's CIFAR experiments).
        **model_args: more `keras_vitres.ResNet` arguments for every net (e.g. `stage_filters=(8, 16, 32)`).

    Returns:
        A `DegradationResult`, nets named "plain-{depth}" and "resnet-{depth}".
    """
    if not depths:
        raise ValueError(f"`depths` must name at least one depth; received depths={depths!r}.")
    data = data if data is not None else load_analysis_data("digits")
    settings = settings or TrainingSettings()
    curves, params, models = {}, {}, {}
    for residual in (False, True):
        for depth in depths:
            name = net_name(depth, residual)
            models[name], curves[name] = train_cifar_resnet(
                depth, data, settings, shortcut=shortcut if residual else None, name=name.replace("-", ""),
                **model_args,
            )
            params[name] = int(models[name].count_params())
    result = DegradationResult(depths=[int(d) for d in depths], curves=curves, params=params, models=models)
    return result.plotted(plot_degradation, figure_path)


def plot_degradation(result, path):
    """Writes the paper's Fig. 6 layout to `path`: error (%) against epochs, plain nets left, ResNets right,
    training error dashed, validation error bold; returns `path`."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, residual in zip(axes, (False, True)):
        for i, depth in enumerate(result.depths):
            name = net_name(depth, residual)
            curve = result.curves[name]
            epochs = range(1, len(curve["train_error"]) + 1)
            colour = colours[i % len(colours)]
            axis.plot(epochs, [100 * e for e in curve["train_error"]], "--", color=colour, linewidth=1)
            axis.plot(epochs, [100 * e for e in curve["val_error"]], "-", color=colour, linewidth=2.5,
                      label=f"{name}")
        axis.set_title("plain networks" if not residual else "residual networks")
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(title="bold: validation, dashed: training", fontsize=8, title_fontsize=8)
    axes[0].set_ylabel("error (%)")
    figure.suptitle("Degradation: training and validation error against depth (ResNet paper Fig. 6)")
    return save_figure(figure, path)
