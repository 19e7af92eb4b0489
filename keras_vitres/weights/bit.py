"""Weight names of published BiT ResNets and of the ViT paper's hybrid trunk, mapped onto the package's models.

BiT `.npz` (google-research/big_transfer: the names `bit_jax/tf2jax.py` and `bit_pytorch/models.py` read; TF2 Keras
layout, kernels HWIO):
    resnet/root_block/standardized_conv2d/kernel             -> stem_conv
    resnet/block{s}/unit{b:02d}/{a,b,c}/group_norm/{gamma,beta}  -> stage{s}_block{b}/norm{1,2,3}
    resnet/block{s}/unit{b:02d}/{a,b,c}/standardized_conv2d/kernel -> stage{s}_block{b}/conv{1,2,3}
    resnet/block{s}/unit{b:02d}/a/proj/standardized_conv2d/kernel  -> stage{s}_block{b}/shortcut_conv
    resnet/group_norm/{gamma,beta}                           -> post_norm
    resnet/head/conv2d/{kernel (1, 1, C, K), bias}           -> predictions
timm `resnetv2_*_bit` state dicts (PyTorch layouts): stem.conv, stages.{s-1}.blocks.{b-1}.{norm1..3, conv1..3,
    downsample.conv}, norm, head.fc (a 1x1 convolution).
The ViT repository's hybrid trunk (google-research/vision_transformer `vit_jax/models_resnet.py` and the root block
in `vit_jax/models_vit.py`; flax names beside `embedding` and `Transformer/...` in `R50+ViT-B_16.npz`):
    conv_root/kernel, gn_root/{scale,bias}                   -> stem_conv, stem_norm
    block{s}/unit{b}/conv{1,2,3}/kernel, gn{1,2,3}/{scale,bias} -> stage{s}_block{b}/conv{k}, norm{k}
    block{s}/unit{b}/conv_proj/kernel, gn_proj/{scale,bias}  -> stage{s}_block{b}/shortcut_conv, shortcut_norm
    The group-norm parameters are (1, 1, 1, C) in the released files (pre-linen flax) and (C,) in newer ones.
timm `vit_base_r50_s16_*` state dicts: the trunk under `patch_embed.backbone.`: stem.conv, stem.norm,
    stages.{s-1}.blocks.{b-1}.{conv1..3, norm1..3, downsample.conv, downsample.norm}.

The models keep the official numerics (`keras_vitres.models.bit`): weight standardisation with epsilon 1e-10 on the
variance (BiT) or 1e-5 on the standard deviation (ViT hybrid), where timm uses 1e-8 on the variance, so a model
loaded from timm's files reproduces the official networks, and timm's own outputs to about 1e-5 relative.
"""

import re

from keras_vitres.layers.residual import GroupNormBottleneck
from keras_vitres.weights.mapping import IDENTITY, TORCH_CONV, Source, Transform

BIT_NPZ_MARKER = "resnet/root_block/standardized_conv2d/kernel"
TIMM_BIT_MARKER = "stem.conv.weight"
STEM = re.compile(r"^stem_(conv|norm)/(\w+)$")
BLOCK = re.compile(r"^stage(\d+)_block(\d+)/(conv\d|norm\d|shortcut_conv|shortcut_norm)/(\w+)$")
NPZ_GN = {"gamma": "scale", "beta": "bias"}
TORCH_GN = {"gamma": "weight", "beta": "bias"}
BIT_UNIT_PART = {"1": "a", "2": "b", "3": "c"}

HEAD_1X1_CONV = Transform("a (1, 1, C, K) 1x1 convolution -> (C, K)", lambda t: (1, 1, *t), lambda a, t: a.reshape(t))
TORCH_HEAD_1X1_CONV = Transform(
    "a PyTorch (K, C, 1, 1) 1x1 convolution -> (C, K)",
    lambda t: (t[1], t[0], 1, 1),
    lambda a, t: a.reshape(a.shape[:2]).T,
)
OLD_FLAX_GN = Transform("pre-linen flax (1, 1, 1, C) -> (C,)", lambda t: (1, 1, 1, *t), lambda a, t: a.reshape(t))


def trunk_blocks(model):
    """The model's `GroupNormBottleneck` layers."""
    return [layer for layer in model.layers if isinstance(layer, GroupNormBottleneck)]


def check_trunk(model, preactivation, source_name, hint):
    """Raises a ValueError naming the model unless its blocks are group-norm bottlenecks of the right kind."""
    blocks = trunk_blocks(model)
    if not blocks or any(block.preactivation != preactivation for block in blocks):
        raise ValueError(
            f"{source_name} weights need a model whose blocks are {'pre' if preactivation else 'post'}-activation "
            f"group-norm bottlenecks; model {model.name!r} has "
            f"{'none' if not blocks else 'the other kind'}. Build {hint}."
        )


def _kernel_or_norm(weight, kind, npz_names):
    return "kernel" if weight == "kernel" else npz_names[weight] if kind == "npz" else TORCH_GN[weight]


def npz_bit_sources(model, tensor_file):
    """{model weight path: Source} for a BiT `.npz` (see the module docstring)."""
    check_trunk(model, True, "BiT .npz", "it with keras_vitres.BiTResNet (e.g. build_model('bit_r50x1'))")
    sources = {}
    for variable in model.weights:
        path = variable.path
        if path == "stem_conv/kernel":
            sources[path] = Source(BIT_NPZ_MARKER)
        elif path.startswith("post_norm/"):
            sources[path] = Source(f"resnet/group_norm/{path.split('/')[-1]}")
        elif path.startswith("predictions/"):
            weight = path.split("/")[-1]
            sources[path] = Source(f"resnet/head/conv2d/{weight}", HEAD_1X1_CONV if weight == "kernel" else IDENTITY,
                                   role="head")  # fmt: skip
        elif m := BLOCK.match(path):
            stage, block, part, weight = int(m[1]), int(m[2]), m[3], m[4]
            unit = f"resnet/block{stage}/unit{block:02d}"
            if part == "shortcut_conv":
                sources[path] = Source(f"{unit}/a/proj/standardized_conv2d/kernel")
            elif part.startswith("conv"):
                sources[path] = Source(f"{unit}/{BIT_UNIT_PART[part[-1]]}/standardized_conv2d/kernel")
            else:
                sources[path] = Source(f"{unit}/{BIT_UNIT_PART[part[-1]]}/group_norm/{weight}")
    return sources


def npz_bit_ignorable(model):
    has_head = "predictions" in {layer.name for layer in model.layers}
    return lambda key: not has_head and key.startswith("resnet/head/")


def timm_bit_sources(model, tensor_file):
    """{model weight path: Source} for a timm `resnetv2_*_bit` state dict (see the module docstring)."""
    check_trunk(model, True, "timm resnetv2 BiT", "it with keras_vitres.BiTResNet (e.g. build_model('bit_r50x1'))")
    sources = {}
    for variable in model.weights:
        path = variable.path
        if path == "stem_conv/kernel":
            sources[path] = Source("stem.conv.weight", TORCH_CONV)
        elif path.startswith("post_norm/"):
            sources[path] = Source(f"norm.{TORCH_GN[path.split('/')[-1]]}")
        elif path.startswith("predictions/"):
            weight = path.split("/")[-1]
            transform = TORCH_HEAD_1X1_CONV if weight == "kernel" else IDENTITY
            sources[path] = Source(f"head.fc.{'weight' if weight == 'kernel' else 'bias'}", transform, role="head")
        elif m := BLOCK.match(path):
            sources[path] = _timm_block_source(m, "")
    return sources


def timm_bit_ignorable(model):
    has_head = "predictions" in {layer.name for layer in model.layers}
    return lambda key: not has_head and key.startswith("head.fc.")


def _timm_block_source(m, prefix):
    stage, block, part, weight = int(m[1]), int(m[2]), m[3], m[4]
    name = {"shortcut_conv": "downsample.conv", "shortcut_norm": "downsample.norm"}.get(part, part)
    key = f"{prefix}stages.{stage - 1}.blocks.{block - 1}.{name}.{'weight' if weight in ('kernel', 'gamma') else 'bias'}"
    return Source(key, TORCH_CONV if weight == "kernel" else IDENTITY)


def is_hybrid(model):
    """Whether `model` is a ResNet + ViT hybrid (a stem before the patch embedding)."""
    names = {layer.name for layer in model.layers}
    return "stem_conv" in names and "patch_embedding" in names


def hybrid_trunk_npz_sources(model, tensor_file, root=""):
    """{model weight path: Source} for the trunk of a hybrid from the ViT repository's `.npz` names."""
    check_trunk(model, False, "The ViT repository's R50+ViT .npz",
                "the hybrid with trunk='bit' (e.g. build_model('r50_vit_base_patch16_224'))")  # fmt: skip

    def norm(key):
        shape = tensor_file.shape(key) if key in tensor_file else ()
        return Source(key, OLD_FLAX_GN if len(shape) == 4 else IDENTITY)

    sources = {}
    for variable in model.weights:
        path = variable.path
        if m := STEM.match(path):
            sources[path] = Source(f"{root}conv_root/kernel") if m[1] == "conv" else norm(f"{root}gn_root/{NPZ_GN[m[2]]}")
        elif m := BLOCK.match(path):
            stage, block, part, weight = int(m[1]), int(m[2]), m[3], m[4]
            name = {"shortcut_conv": "conv_proj", "shortcut_norm": "gn_proj"}.get(part, part.replace("norm", "gn"))
            key = f"{root}block{stage}/unit{block}/{name}/{_kernel_or_norm(weight, 'npz', NPZ_GN)}"
            sources[path] = Source(key) if weight == "kernel" else norm(key)
    return sources


def hybrid_trunk_timm_sources(model, tensor_file):
    """{model weight path: Source} for the trunk of a hybrid from timm's `vit_base_r50_s16_*` names."""
    check_trunk(model, False, "timm's R50+ViT", "the hybrid with trunk='bit' (e.g. build_model('r50_vit_base_patch16_224'))")
    prefix = "patch_embed.backbone."
    sources = {}
    for variable in model.weights:
        path = variable.path
        if m := STEM.match(path):
            if m[1] == "conv":
                sources[path] = Source(f"{prefix}stem.conv.weight", TORCH_CONV)
            else:
                sources[path] = Source(f"{prefix}stem.norm.{TORCH_GN[m[2]]}")
        elif m := BLOCK.match(path):
            sources[path] = _timm_block_source(m, prefix)
    return sources
