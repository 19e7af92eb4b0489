"""keras-hub backbones (and their image classifiers) converted into the package's models.

A keras-hub `ViTBackbone` (arXiv:2010.11929) is read as the official ViT `.npz` names, whose layouts are already
Keras' (`embedding/kernel`, `cls`, `Transformer/encoderblock_{i}/...`), and a `ResNetBackbone` (v1 layout,
`block_type` "basic_block" or "bottleneck_block": the stride on the bottleneck's 3x3, as torchvision, no conv
biases) as keras.applications' names (`conv1_conv`, `conv{s+1}_block{b}_{k}_conv`); the existing mappings then
place them. An `ImageClassifier` brings its head too (`predictions`, and a ViT's `pre_logits`). The objects come
from `keras_hub.models.Backbone.from_preset(handle)`; this module only reads their variables and never imports
keras_hub itself.
"""

import re

import numpy as np

from keras_vitres.weights import resnet, vit
from keras_vitres.weights.mapping import assign_weights
from keras_vitres.weights.readers import TensorFile

VIT_BACKBONES = ("ViTBackbone",)
RESNET_BACKBONES = ("ResNetBackbone",)
RESNET_BLOCK = re.compile(r"^stack(\d+)_block(\d+)_(\d)_(conv|bn)$")


def split_task(model):
    """(backbone, head layers {name: layer}) of a keras-hub backbone or image classifier."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return model, {}
    head = {}
    for attribute, name in (("output_dense", "head"), ("intermediate_layer", "pre_logits")):
        layer = getattr(model, attribute, None)
        if layer is not None and layer.weights:
            head[name] = layer
    return backbone, head


class KerasHubTensors(TensorFile):
    """The variables of a keras-hub model as a TensorFile, under names chosen by the converter."""

    format_name = "keras-hub"

    def __init__(self, model, tensors):
        super().__init__(f"<keras-hub {type(model).__name__} {model.name!r}>")
        self._variables = tensors
        for key, variable in tensors.items():
            self._shapes[key], self._dtypes[key] = tuple(variable.shape), np.dtype(variable.dtype).name

    def read(self, key):
        value = self._variables[key]
        return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _dense(prefix, layer, tensors):
    tensors[f"{prefix}/kernel"] = layer.kernel
    if getattr(layer, "bias", None) is not None:
        tensors[f"{prefix}/bias"] = layer.bias


def _norm(prefix, layer, tensors):
    tensors[f"{prefix}/scale"], tensors[f"{prefix}/bias"] = layer.gamma, layer.beta


def vit_tensors(model):
    """A keras-hub ViT as the official `.npz` names (see the module docstring)."""
    backbone, head = split_task(model)
    if backbone.data_format != "channels_last":
        raise ValueError(f"keras-hub ViTBackbone {backbone.name!r} is channels_first; convert a channels_last one.")
    embedding = backbone.get_layer("vit_patching_and_embedding")
    encoder = backbone.get_layer("vit_encoder")
    tensors = {}
    _dense("embedding", embedding.patch_embedding, tensors)
    if embedding.use_class_token:
        tensors["cls"] = embedding.class_token
    tensors["Transformer/posembed_input/pos_embedding"] = np.asarray(
        embedding.position_embedding.embeddings.numpy()
    )[None]
    for index, block in enumerate(encoder.encoder_layers):
        prefix = f"Transformer/encoderblock_{index}"
        _norm(f"{prefix}/LayerNorm_0", block.layer_norm_1, tensors)
        for part, dense in (("query", block.mha._query_dense), ("key", block.mha._key_dense),
                            ("value", block.mha._value_dense), ("out", block.mha._output_dense)):  # fmt: skip
            _dense(f"{prefix}/MultiHeadDotProductAttention_1/{part}", dense, tensors)
        _norm(f"{prefix}/LayerNorm_2", block.layer_norm_2, tensors)
        _dense(f"{prefix}/MlpBlock_3/Dense_0", block.mlp.dense_1, tensors)
        _dense(f"{prefix}/MlpBlock_3/Dense_1", block.mlp.dense_2, tensors)
    _norm("Transformer/encoder_norm", encoder.layer_norm, tensors)
    for name, layer in head.items():
        _dense(name, layer, tensors)
    return KerasHubTensors(model, tensors)


def resnet_tensors(model):
    """A keras-hub ResNet (v1 layout, not pre-activation, not "vd") as keras.applications' layer names."""
    backbone, head = split_task(model)
    if backbone.use_pre_activation or backbone.block_type not in ("basic_block", "bottleneck_block"):
        raise ValueError(
            f"keras-hub ResNetBackbone {backbone.name!r} has block_type={backbone.block_type!r}, "
            f"use_pre_activation={backbone.use_pre_activation}; the package's ResNet takes block_type "
            "'basic_block' or 'bottleneck_block' without pre-activation (v1 layout)."
        )
    if len(backbone.input_conv_filters) != 1 or backbone.data_format != "channels_last":
        raise ValueError(
            f"keras-hub ResNetBackbone {backbone.name!r} has a {len(backbone.input_conv_filters)}-convolution stem or "
            "is channels_first; the package's ResNet has one 7x7 stem convolution, channels last."
        )
    tensors = {}
    for layer in backbone.layers:
        if not layer.weights:
            continue
        if layer.name in ("conv1_conv", "conv1_bn"):
            name = layer.name
        elif m := RESNET_BLOCK.match(layer.name):
            name = f"conv{int(m[1]) + 2}_block{int(m[2]) + 1}_{m[3]}_{m[4]}"
        else:
            raise ValueError(f"keras-hub ResNetBackbone {backbone.name!r} has a layer {layer.name!r} with weights "
                             "that the package's ResNet has no place for.")
        for variable in layer.weights:
            tensors[f"{name}/{variable.name.split('/')[-1].split(':')[0]}"] = variable
    if "head" in head:
        for variable in head["head"].weights:
            tensors[f"predictions/{variable.name.split('/')[-1].split(':')[0]}"] = variable
    return KerasHubTensors(model, tensors)


def load_keras_hub(model, source):
    """Converts a keras-hub `ViTBackbone` or `ResNetBackbone` (or an image classifier built on one) into `model`.

    The ViT goes into a `VisionTransformer` (exact GELU, as keras-hub runs these JAX-trained, tanh-GELU checkpoints;
    the position embedding is resampled to the model's patch grid); the ResNet into a `ResNet` with `version="v1.5"`, no conv biases, BN epsilon 1e-5. A
    backbone has no classifier, so the model's head stays at its initialisation (zeros for a ViT) unless `source`
    is an image classifier whose head fits.

    Returns:
        dict: number of weights loaded, whether the head was reset and whether the position embedding was resampled.
    """
    backbone, _ = split_task(source)
    kind = type(backbone).__name__
    if kind in VIT_BACKBONES:
        tensor_file = vit_tensors(source)
        return assign_weights(
            model,
            tensor_file,
            vit.npz_vit_sources(model, tensor_file, approximate_gelu=False),
            ignorable=vit.npz_vit_ignorable(model, tensor_file),
            position_grid=vit.position_grid(model),
        )
    if kind in RESNET_BACKBONES:
        if not resnet.is_resnet(model):
            raise ValueError(f"keras-hub {kind} weights need a ResNet; model {model.name!r} is not one.")
        tensor_file = resnet_tensors(source)
        has_head = "predictions" in {layer.name for layer in model.layers}
        return assign_weights(
            model,
            tensor_file,
            resnet.keras_applications_sources(
                model, tensor_file, source_name="keras-hub", use_bias=False, version="v1.5", epsilon=1e-5
            ),
            ignorable=lambda key: not has_head and key.startswith("predictions/"),
        )
    raise ValueError(
        f"`weights` is a keras-hub {kind}; the package converts a ViTBackbone or a ResNetBackbone (or an image "
        "classifier built on one)."
    )
