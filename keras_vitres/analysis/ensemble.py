"""Ensembles of networks of different depths, as one Keras model (arXiv:1512.03385, §4.1 and Table 4).

The paper's best ILSVRC 2015 result averages the predictions of six models of different depths. Here a
`keras.layers.Average` layer averages the members' probabilities in one functional model, so the ensemble saves to
one `.keras` file (loadable with `safe_mode=True`), exports like any model and serves in one call.
"""

import dataclasses

import keras
import numpy as np

from keras_vitres.analysis.experiment import (
    AnalysisResult,
    TrainingSettings,
    error_rate,
    load_analysis_data,
    predict_probabilities,
    train_cifar_resnet,
)
from keras_vitres.training.curves import pyplot, save_figure


def _output_kind(model):
    """'probabilities' if the model ends in a softmax, 'logits' if its last layer is linear, else raises."""
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return "probabilities"
    activation = getattr(last, "activation", None)
    name = None if activation is None else keras.activations.serialize(activation)
    name = name.get("config", {}).get("name", name) if isinstance(name, dict) else name
    if name == "softmax":
        return "probabilities"
    if name == "linear":
        return "logits"
    raise ValueError(
        f"Ensemble members must end in a softmax (probabilities) or a linear layer (logits); member "
        f"{model.name!r} ends in layer {last.name!r} with activation {name!r}."
    )


def ensemble_model(members, name="ensemble"):
    """Builds one model, input "images", that outputs the average of its members' class probabilities
    ("probabilities", paper §4.1); members that output logits get a softmax first.

    Args:
        members: at least two single-input `keras.Model`s with the same input shape and number of classes
            (different depths and widths are the point). Each becomes a nested model named "member{i}_{name}", so
            members that share a name or layer names do not clash.
        name: name of the ensemble model.

    Examples:
        >>> import numpy as np
        >>> from keras_vitres import ResNet
        >>> members = [ResNet(8, input_shape=(16, 16, 3)), ResNet(14, input_shape=(16, 16, 3))]
        >>> ensemble = ensemble_model(members)
        >>> sorted(layer.name for layer in ensemble.layers)
        ['images', 'member0_resnet8', 'member1_resnet14', 'probabilities']
        >>> x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
        >>> mean = (members[0].predict(x, verbose=0) + members[1].predict(x, verbose=0)) / 2
        >>> bool(np.allclose(ensemble.predict(x, verbose=0), mean, atol=1e-6))
        True
    """
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"`members` must hold at least two models; received {len(members)}.")
    input_shape, output_shape = tuple(members[0].input_shape[1:]), tuple(members[0].output_shape[1:])
    for member in members:
        if not isinstance(member, keras.Model) or len(member.inputs) != 1 or len(member.outputs) != 1:
            raise ValueError(f"Every member must be a single-input, single-output keras.Model; received {member!r}.")
        if tuple(member.input_shape[1:]) != input_shape or tuple(member.output_shape[1:]) != output_shape:
            raise ValueError(
                f"Members must share input and output shapes; {members[0].name!r} has {input_shape} -> "
                f"{output_shape}, {member.name!r} has {tuple(member.input_shape[1:])} -> "
                f"{tuple(member.output_shape[1:])}."
            )
    inputs = keras.Input(input_shape, name="images")
    outputs = []
    for i, member in enumerate(members):
        # A new functional model over the member's own graph: it shares the member's layers and weights, and
        # gives each member a unique name inside the ensemble.
        renamed = keras.Model(member.input, member.output, name=f"member{i}_{member.name}")
        y = renamed(inputs)
        if _output_kind(member) == "logits":
            y = keras.layers.Softmax(dtype="float32", name=f"member{i}_softmax")(y)
        outputs.append(y)
    probabilities = keras.layers.Average(dtype="float32", name="probabilities")(outputs)
    return keras.Model(inputs, probabilities, name=name)


@dataclasses.dataclass
class EnsembleResult(AnalysisResult):
    """Members' and ensemble's validation errors (paper Table 4 form).

    Attributes:
        members: list of {"name", "depth", "params", "val_error"}.
        ensemble_error: validation error of the averaged probabilities.
        ensemble_params: parameters of the ensemble model (the sum of the members').
        model: the ensemble `keras.Model`.
        saved_path: where the ensemble was saved as `.keras`, or None.
    """

    EXCLUDE = ("model",)

    members: list
    ensemble_error: float
    ensemble_params: int
    model: object = dataclasses.field(default=None, repr=False)
    saved_path: str = None
    figure: str = None


def ensemble_analysis(depths=(20, 32, 44), data=None, settings=None, figure_path=None, save_path=None,
                      **model_args):
    """Trains CIFAR ResNets of several depths, averages them into one model and compares the errors.

    Args:
        depths: CIFAR depths 6n + 2 of the members (the paper combines six models of different depths).
        data: an `AnalysisData`; by default `load_analysis_data("digits")`.
        settings: a `TrainingSettings`, the same for every member.
        figure_path: optional path of a PNG to write (`plot_ensemble`).
        save_path: optional path of a `.keras` file to save the ensemble to.
        **model_args: more `keras_vitres.ResNet` arguments for every member.

    Returns:
        An `EnsembleResult`.
    """
    if len(depths) < 2:
        raise ValueError(f"`depths` must name at least two member depths; received depths={depths!r}.")
    data = data if data is not None else load_analysis_data("digits")
    settings = settings or TrainingSettings()
    members, rows = [], []
    for depth in depths:
        model, _ = train_cifar_resnet(depth, data, settings, **model_args)
        members.append(model)
        rows.append(dict(
            name=model.name,
            depth=int(depth),
            params=int(model.count_params()),
            val_error=error_rate(predict_probabilities(model, data.x_val), data.y_val),
        ))
    ensemble = ensemble_model(members)
    result = EnsembleResult(
        members=rows,
        ensemble_error=error_rate(predict_probabilities(ensemble, data.x_val), data.y_val),
        ensemble_params=int(ensemble.count_params()),
        model=ensemble,
    )
    if save_path is not None:
        ensemble.save(save_path)
        result.saved_path = str(save_path)
    return result.plotted(plot_ensemble, figure_path)


def plot_ensemble(result, path):
    """Writes a bar chart of the members' and the ensemble's validation error to `path`; returns `path`."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    names = [row["name"] for row in result.members] + ["ensemble"]
    errors = [100 * row["val_error"] for row in result.members] + [100 * result.ensemble_error]
    colours = ["tab:blue"] * len(result.members) + ["tab:orange"]
    bars = axis.bar(names, errors, color=colours)
    for bar, error in zip(bars, errors):
        axis.annotate(f"{error:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                      va="bottom", fontsize=8)
    axis.set_ylabel("validation error (%)")
    axis.grid(alpha=0.3, axis="y")
    axis.set_title("Averaging the probabilities of nets of different depths (ResNet paper §4.1)")
    return save_figure(figure, path)


def member_probabilities(ensemble, images):
    """Each member's probabilities on `images`, (members, N, classes), read from the ensemble itself."""
    average = ensemble.get_layer("probabilities")
    probe = keras.Model(ensemble.input, list(average.input), name=f"{ensemble.name}_members")
    return np.stack([np.asarray(p, np.float64) for p in probe.predict(images, verbose=0)])
