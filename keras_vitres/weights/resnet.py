"""Weight names of published ResNets mapped onto the package's ResNet (arXiv:1512.03385).

keras.applications (ResNet50/101/152, v1, conv biases, BN epsilon 1.001e-5):
    conv1_conv, conv1_bn                      -> stem_conv, stem_bn
    conv{s+1}_block{b}_{k}_conv / _{k}_bn     -> stage{s}_block{b}/conv{k}, bn{k}    (k = 1, 2, 3)
    conv{s+1}_block{b}_0_conv / _0_bn         -> stage{s}_block{b}/shortcut/conv, bn (the projection)
    probs (or predictions, fc1000)            -> predictions
torchvision / timm state dicts (v1.5, no conv biases, BN epsilon 1e-5; PyTorch layouts are transposed):
    conv1.weight, bn1.*                       -> stem_conv, stem_bn
    layer{s}.{b-1}.conv{k}.weight, .bn{k}.*   -> stage{s}_block{b}/conv{k}, bn{k}
    layer{s}.{b-1}.downsample.0/.1            -> stage{s}_block{b}/shortcut/conv, bn
    fc.weight, fc.bias                        -> predictions
"""

import re
import warnings

from keras_vitres.layers.residual import BottleneckBlock
from keras_vitres.weights.mapping import IDENTITY, TORCH_CONV, TORCH_LINEAR, Source

STEM = re.compile(r"^stem_(conv|bn)/(\w+)$")
BLOCK = re.compile(r"^stage(\d+)_block(\d+)/(conv\d|bn\d|shortcut/conv|shortcut/bn)/(\w+)$")
HEAD = re.compile(r"^predictions/(kernel|bias)$")
TORCH_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
KERAS_HEADS = ("probs", "predictions", "fc1000")


def is_resnet(model):
    names = {layer.name for layer in model.layers}
    return "stem_conv" in names and "patch_embedding" not in names


def _check_blocks(model, version, source_name, builder_hint):
    for layer in model.layers:
        if isinstance(layer, BottleneckBlock) and layer.version != version:
            raise ValueError(
                f"{source_name} ResNets put the bottleneck stride on the "
                f"{'first 1x1' if version == 'v1' else '3x3'} convolution (version={version!r}); model "
                f"{model.name!r} was built with version={layer.version!r}, which the weights would fit in shape but "
                f"not in function. Build it with version={version!r}{builder_hint}."
            )


def _check_bias(model, use_bias, source_name, builder_hint):
    has_bias = len(model.get_layer("stem_conv").weights) == 2
    if has_bias != use_bias:
        raise ValueError(
            f"{source_name} ResNets have {'a bias on every' if use_bias else 'no bias on any'} convolution; model "
            f"{model.name!r} was built with use_bias={has_bias}. Build it with use_bias={use_bias}{builder_hint}."
        )


def _check_epsilon(model, epsilon, source_name):
    bn = model.get_layer("stem_bn")
    if abs(bn.epsilon - epsilon) > 1e-9:
        warnings.warn(
            f"{source_name} weights were trained with BatchNormalization epsilon {epsilon}; model {model.name!r} uses "
            f"{bn.epsilon}, so its outputs will differ slightly (build with bn_epsilon={epsilon}).",
            stacklevel=4,
        )


def keras_applications_sources(
    model, tensor_file, *, source_name="keras.applications", use_bias=True, version="v1", epsilon=1.001e-5
):
    """{model weight path: Source} for a keras.applications ResNet file (see the module docstring), or for weights
    under its names from another source (keras-hub: v1.5, no conv biases, epsilon 1e-5)."""
    hint = (
        " (e.g. keras_vitres.build_model('resnet50_keras'))"
        if source_name == "keras.applications"
        else f" (e.g. keras_vitres.ResNet50(version={version!r}))"
    )
    _check_bias(model, use_bias, source_name, hint)
    _check_blocks(model, version, source_name, hint)
    _check_epsilon(model, epsilon, source_name)
    layers_in_file = {key.split("/")[0] for key in tensor_file.keys()}
    head = next((h for h in KERAS_HEADS if h in layers_in_file), "probs")
    sources = {}
    for variable in model.weights:
        path = variable.path
        if m := STEM.match(path):
            key = f"conv1_{m[1]}/{m[2]}"
        elif m := BLOCK.match(path):
            stage, block, part, weight = int(m[1]), int(m[2]), m[3], m[4]
            index, kind = ("0", part.split("/")[1]) if part.startswith("shortcut") else (part[-1], part[:-1])
            key = f"conv{stage + 1}_block{block}_{index}_{kind}/{weight}"
        elif m := HEAD.match(path):
            sources[path] = Source(f"{head}/{m[1]}", IDENTITY, role="head")
            continue
        else:
            continue  # reported by assign_weights as a weight without a source
        sources[path] = Source(key)
    return sources


def torch_resnet_sources(model, tensor_file):
    """{model weight path: Source} for a torchvision / timm ResNet state dict (see the module docstring)."""
    hint = " (e.g. keras_vitres.ResNet50(version='v1.5'))"
    _check_bias(model, False, "torchvision/timm", hint)
    _check_blocks(model, "v1.5", "torchvision/timm", hint)
    _check_epsilon(model, 1e-5, "torchvision/timm")
    sources = {}
    for variable in model.weights:
        path = variable.path
        if m := STEM.match(path):
            layer, weight = ("conv1", m[2]) if m[1] == "conv" else ("bn1", m[2])
        elif m := BLOCK.match(path):
            stage, block, part, weight = int(m[1]), int(m[2]), m[3], m[4]
            sub = {"shortcut/conv": "downsample.0", "shortcut/bn": "downsample.1"}.get(part, part)
            layer = f"layer{stage}.{block - 1}.{sub}"
        elif m := HEAD.match(path):
            transform = TORCH_LINEAR if m[1] == "kernel" else IDENTITY
            sources[path] = Source(f"fc.{'weight' if m[1] == 'kernel' else 'bias'}", transform, role="head")
            continue
        else:
            continue
        if weight == "kernel":
            sources[path] = Source(f"{layer}.weight", TORCH_CONV)
        elif weight == "bias":
            sources[path] = Source(f"{layer}.bias")
        else:
            sources[path] = Source(f"{layer}.{TORCH_BN[weight]}")
    return sources


def torch_resnet_ignorable(key):
    """BatchNorm's step counter is a buffer, not a weight."""
    return key.endswith(".num_batches_tracked")
