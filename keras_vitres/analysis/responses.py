"""Layer responses: the standard deviation of each 3x3 layer's output, plain vs residual (arXiv:1512.03385, Fig. 7).

"The responses are the outputs of each 3x3 layer, after BN and before other nonlinearity (ReLU/addition)" (§4.2).
The paper finds ResNets' responses generally smaller than their plain twins', supporting the idea that residual
functions are closer to zero than non-residual ones. Here a layer's response std is the standard deviation of
each channel over the images and positions, averaged over the channels, in inference mode.

A probe model returns the input of every residual block, and each block's own sublayers (conv1/bn1, conv2/bn2) are
applied to it: the model is measured unchanged, with its trained weights.
"""

import dataclasses

import keras
import numpy as np

from keras_vitres.analysis.degradation import degradation_analysis
from keras_vitres.analysis.experiment import AnalysisResult, load_analysis_data
from keras_vitres.layers.residual import BasicBlock, BottleneckBlock
from keras_vitres.training.curves import pyplot, save_figure


@dataclasses.dataclass
class ResponseProfile:
    """The response std of one network's 3x3 layers, in layer order.

    Attributes:
        model_name: the network's name.
        layers: labels of the 3x3 layers, e.g. "stem", "stage1_block1/bn1", "stage1_block1/bn2", ...
        std: list of floats, one per layer in `layers`.
    """

    model_name: str
    layers: list
    std: list

    def sorted_std(self):
        """The stds in descending order (the bottom panel of the paper's Fig. 7)."""
        return sorted(self.std, reverse=True)

    def mean(self):
        """The mean response std over the layers."""
        return float(np.mean(self.std))


def _kernel_is_3x3(conv):
    return tuple(conv.kernel_size) == (3, 3)


def response_layers(model):
    """The 3x3 layers of a ResNet (or plain net) that `layer_responses` measures, as (label, block or None,
    batch-norm attribute): the stem's BN ("stem", None, "stem_bn") when the stem convolution is 3x3, then each
    basic block's bn1 and bn2, or each bottleneck's bn2 (its only 3x3 convolution)."""
    entries = []
    names = {layer.name for layer in model.layers}
    if "stem_bn" in names and "stem_conv" in names and _kernel_is_3x3(model.get_layer("stem_conv")):
        entries.append(("stem", None, "stem_bn"))
    for layer in model.layers:
        if isinstance(layer, BasicBlock):
            entries += [(f"{layer.name}/bn1", layer, "bn1"), (f"{layer.name}/bn2", layer, "bn2")]
        elif isinstance(layer, BottleneckBlock):
            entries.append((f"{layer.name}/bn2", layer, "bn2"))
    if not entries:
        raise ValueError(
            f"Model {model.name!r} has no 3x3 convolution layers this analysis knows (a 'stem_conv' or "
            "BasicBlock/BottleneckBlock layers); build it with keras_vitres.ResNet."
        )
    return entries


def _block_responses(block, x):
    """Applies a block's sublayers in inference mode; returns {bn name: response} for its 3x3 layers."""
    # The block's own padding-or-subsampling before each convolution, exactly as its `call` applies it.
    r1 = block.bn1(block._apply_conv(block.conv1_pad, block.conv1, x), training=False)
    r2 = block.bn2(block._apply_conv(block.conv2_pad, block.conv2, keras.ops.relu(r1)), training=False)
    return {"bn1": r1, "bn2": r2} if isinstance(block, BasicBlock) else {"bn2": r2}


def layer_responses(model, images, batch_size=128):
    """Measures the response std of each 3x3 layer of a ResNet or plain net (paper Fig. 7).

    Args:
        model: a network built by `keras_vitres.ResNet` (any stem, any shortcut option, or plain).
        images: array (N, H, W, C), already preprocessed as the model was trained.
        batch_size: int. Images per forward pass; statistics are accumulated over all of them.

    Returns:
        A `ResponseProfile`.
    """
    entries = response_layers(model)
    images = np.asarray(images, dtype="float32")
    if images.ndim != 4 or len(images) < 1:
        raise ValueError(f"`images` must be a non-empty batch (N, H, W, C); received an array of shape {images.shape}.")
    # The input of every block (its sublayers are applied to it below) and the stem's BN output itself.
    probe_outputs = {}
    for label, block, attribute in entries:
        if block is None:
            probe_outputs[label] = model.get_layer(attribute).output
        else:
            probe_outputs[block.name] = block.input
    probe = keras.Model(model.input, probe_outputs, name=f"{model.name}_response_probe")

    sums, squares, counts = {}, {}, {}
    for start in range(0, len(images), batch_size):
        tensors = probe(images[start:start + batch_size], training=False)
        responses = {}
        for label, block, _ in entries:
            if block is None:
                responses[label] = tensors[label]
            elif label not in responses:
                for key, value in _block_responses(block, tensors[block.name]).items():
                    responses[f"{block.name}/{key}"] = value
        for label, _, _ in entries:
            values = np.asarray(keras.ops.convert_to_numpy(responses[label]), dtype=np.float64)
            values = values.reshape(-1, values.shape[-1])
            sums[label] = sums.get(label, 0.0) + values.sum(axis=0)
            squares[label] = squares.get(label, 0.0) + (values**2).sum(axis=0)
            counts[label] = counts.get(label, 0) + len(values)  # images x positions
    std = []
    for label, _, _ in entries:
        mean = sums[label] / counts[label]
        variance = np.maximum(squares[label] / counts[label] - mean**2, 0.0)
        std.append(float(np.sqrt(variance).mean()))
    return ResponseProfile(model_name=model.name, layers=[e[0] for e in entries], std=std)


@dataclasses.dataclass
class ResponseResult(AnalysisResult):
    """Layer responses of plain and residual nets (paper Fig. 7).

    Attributes:
        profiles: {net name ("plain-20", "resnet-20", ...): ResponseProfile}.
        val_error: {net name: final validation error}, to show that the nets compared were trained.
    """

    profiles: dict
    val_error: dict
    figure: str = None


def response_analysis(depths=(20, 56), data=None, settings=None, figure_path=None, num_images=None, shortcut="A",
                      **model_args):
    """Trains the plain and residual CIFAR nets of `degradation_analysis`, then measures their layer responses, as
    the paper measures Fig. 7 on the nets of Fig. 6.

    Args:
        depths: CIFAR depths 6n + 2 (the paper shows 20, 56 and 110).
        data: an `AnalysisData`; by default `load_analysis_data("digits")`. Responses are measured on its
            validation images.
        settings: a `TrainingSettings`, the same for every net.
        figure_path: optional path of a PNG to write (`plot_responses`).
        num_images: optional int. Measure on the first `num_images` validation images only.
        shortcut: the residual nets' shortcut option.
        **model_args: more `keras_vitres.ResNet` arguments for every net.

    Returns:
        A `ResponseResult`.
    """
    data = data if data is not None else load_analysis_data("digits")
    degradation = degradation_analysis(depths, data, settings, shortcut=shortcut, **model_args)
    result = degradation_responses(degradation, data.x_val if num_images is None else data.x_val[:num_images])
    return result.plotted(plot_responses, figure_path)


def degradation_responses(degradation, images):
    """The `ResponseResult` of the trained nets of a `DegradationResult` on `images` (N, H, W, C), preprocessed
    as the nets were trained."""
    profiles = {name: layer_responses(model, images) for name, model in degradation.models.items()}
    val_error = {name: curve["val_error"][-1] for name, curve in degradation.curves.items()}
    return ResponseResult(profiles=profiles, val_error=val_error)


def plot_responses(result, path):
    """Writes the paper's Fig. 7 layout to `path`: std per layer in layer order (top) and sorted by magnitude
    (bottom); returns `path`."""
    plt = pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    depths = sorted({name.split("-")[-1] for name in result.profiles}, key=lambda d: (len(d), d))
    for name, profile in result.profiles.items():
        # One colour per depth; plain nets dashed, ResNets solid, as in the paper's figure.
        colour = colours[depths.index(name.split("-")[-1]) % len(colours)]
        style = "--" if name.startswith("plain") else "-"
        indices = range(1, len(profile.std) + 1)
        top.plot(indices, profile.std, style, color=colour, marker=".", label=name)
        bottom.plot(indices, profile.sorted_std(), style, color=colour, marker=".", label=name)
    values = [v for profile in result.profiles.values() for v in profile.std if v > 0]
    if values and max(values) > 4 * min(values):
        # A badly trained plain net can have responses ten times the others': keep the rest readable.
        for axis in (top, bottom):
            axis.set_yscale("log")
    top.set_xlabel("layer index (original)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for axis in (top, bottom):
        axis.set_ylabel("std")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Standard deviation of 3x3 layer responses after BN (ResNet paper Fig. 7)")
    return save_figure(figure, path)
