"""Weight names of published Vision Transformers mapped onto the package's ViT (arXiv:2010.11929).

Official `.npz` checkpoints (google-research/vision_transformer; flax, kernels already in Keras' layout):
    embedding/{kernel,bias}, cls, Transformer/posembed_input/pos_embedding (class token included),
    Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1/{query,key,value,out}, LayerNorm_2,
    MlpBlock_3/Dense_{0,1}}, Transformer/encoder_norm, pre_logits (optional), head.
big_vision `.npz`: the same under `params/`, with `params/pos_embedding` for the patches only (the class token
    gets no position embedding), blocks named LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1,
    MlpBlock_0, and optionally all blocks stacked in one `Transformer/encoderblock/...` tensor (scan layout).
timm state dicts (PyTorch layouts, transposed here): patch_embed.proj, cls_token, pos_embed,
    blocks.{i}.{norm1, attn.qkv (q, k, v fused), attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, pre_logits.fc, head.
torchvision state dicts: conv_proj, class_token, encoder.pos_embedding, encoder.layers.encoder_layer_{i}.{ln_1,
    self_attention.in_proj_* (fused), self_attention.out_proj, ln_2, mlp.0, mlp.3}, encoder.ln,
    heads.pre_logits, heads.head.

The official checkpoints were trained with tanh-approximate GELU (flax's default). timm and torchvision run their
ViTs with exact GELU (`nn.GELU`), also the paper's JAX-trained checkpoints that timm converted unchanged
(`.orig_in21k`, `.augreg`): exact GELU reproduces timm's outputs, tanh-approximate the original JAX model's. A model
built with the other form than the source computes gets a warning, since its outputs then differ slightly.
"""

import re
import warnings

from keras_vitres.layers.transformer import TransformerBlock
from keras_vitres.weights.mapping import (
    IDENTITY,
    TORCH_CONV,
    TORCH_LINEAR,
    Source,
    fused_qkv_bias,
    fused_qkv_kernel,
    square_grid,
    stacked,
    torch_attention_output,
)

BLOCK = re.compile(r"^encoder_block_(\d+)/(\w+)/(?:(\w+)/)?(\w+)$")
LN = {"gamma": "scale", "beta": "bias"}
TORCH_LN = {"gamma": "weight", "beta": "bias"}
TORCH_PARAM = {"kernel": "weight", "bias": "bias"}


def check_vit(model, source_name):
    names = {layer.name for layer in model.layers}
    if "patch_embedding" not in names:
        raise ValueError(f"{source_name} weights are for a Vision Transformer; model {model.name!r} is not one.")
    if "stem_conv" in names and "stem_norm" not in names:
        raise ValueError(
            f"{source_name} weights cannot be loaded into the hybrid model {model.name!r}: the published R50+ViT "
            "checkpoints use a ResNet with group norm and weight standardisation, and this hybrid has the batch-norm "
            "trunk. Build it with trunk='bit' (the default)."
        )


def npz_root(tensor_file):
    """The prefix of an official `.npz`'s names: "params/" for big_vision, "" otherwise."""
    return "params/" if "params/embedding/kernel" in tensor_file else ""


def position_grid(model):
    """(prefix tokens, (gh, gw)) of the model's position embedding."""
    layer = model.get_layer("position_embedding")
    grid = layer.grid_size if isinstance(layer.grid_size, (tuple, list)) else (layer.grid_size, layer.grid_size)
    return layer.num_prefix_tokens, tuple(grid)


def file_prefix_tokens(tensor_file, key):
    """1 when the file's position embedding has a row for the class token, 0 when it covers the patches only."""
    shape = tensor_file.shape(key) if key in tensor_file else None
    if shape is None or len(shape) != 3:
        return 1
    return 0 if square_grid(shape[1]) else 1


def warn_gelu(model, approximate, source):
    """Warns when the model's GELU is not the form `source` computes (a phrase: "X checkpoints were trained with")."""
    blocks = [layer for layer in model.layers if isinstance(layer, TransformerBlock)]
    if blocks and any(block.approximate_gelu != approximate for block in blocks):
        warnings.warn(
            f"{source} {'tanh-approximate' if approximate else 'exact'} GELU; model {model.name!r} uses "
            f"{'exact' if approximate else 'tanh-approximate'} GELU, so its outputs differ slightly from the source's. "
            f"Build it with approximate_gelu={approximate} to reproduce them.",
            stacklevel=4,
        )


def count_blocks(model):
    return sum(1 for layer in model.layers if isinstance(layer, TransformerBlock))


def _first_present(tensor_file, candidates):
    """The first candidate name the file has; else the first, which `assign_weights` reports as missing in order."""
    return next((key for key in candidates if key in tensor_file), candidates[0])


def npz_vit_sources(model, tensor_file, approximate_gelu=True):
    """{model weight path: Source} for an official or big_vision ViT `.npz` (see the module docstring), or for
    weights under its names from another source (keras-hub, which runs the same JAX-trained checkpoints with exact
    GELU: `approximate_gelu=False`)."""
    source_name = "The official ViT .npz" if approximate_gelu else f"The {tensor_file.format_name} ViT"
    check_vit(model, source_name)
    warn_gelu(model, approximate_gelu, f"{source_name} checkpoints were trained with" if approximate_gelu else
              f"{tensor_file.format_name} runs its ViT checkpoints (the paper's, trained in JAX with tanh GELU) with")
    root = npz_root(tensor_file)
    if f"{root}embedding/kernel" not in tensor_file:
        raise ValueError(
            f"`weights` file {tensor_file.path!r} is not a ViT checkpoint in the official or big_vision layout: it has no "
            f"'embedding/kernel' (its first tensors are {tensor_file.keys()[:5]})."
        )
    num_layers = count_blocks(model)
    scan = f"{root}Transformer/encoderblock_0/LayerNorm_0/scale" not in tensor_file and any(
        k.startswith(f"{root}Transformer/encoderblock/") for k in tensor_file.keys()
    )
    first = f"{root}Transformer/encoderblock{'' if scan else '_0'}"
    attention = (
        "MultiHeadDotProductAttention_1"
        if f"{first}/MultiHeadDotProductAttention_1/query/kernel" in tensor_file
        else "MultiHeadDotProductAttention_0"
    )
    mlp_norm = "LayerNorm_2" if f"{first}/LayerNorm_2/scale" in tensor_file else "LayerNorm_1"
    mlp = "MlpBlock_3" if f"{first}/MlpBlock_3/Dense_0/kernel" in tensor_file else "MlpBlock_0"
    position = _first_present(tensor_file, [f"{root}Transformer/posembed_input/pos_embedding", f"{root}pos_embedding"])
    parts = {
        "attention_norm": "LayerNorm_0",
        "mlp_norm": mlp_norm,
        "mlp_dense_1": f"{mlp}/Dense_0",
        "mlp_dense_2": f"{mlp}/Dense_1",
    }
    sources = {}
    for variable in model.weights:
        path = variable.path
        top, _, weight = path.partition("/")
        if path.startswith("patch_embedding/projection/"):
            sources[path] = Source(f"{root}embedding/{path.split('/')[-1]}")
        elif path == "class_token/token":
            sources[path] = Source(f"{root}cls")
        elif path == "position_embedding/embedding":
            sources[path] = Source(
                position, role="position", file_prefix_tokens=file_prefix_tokens(tensor_file, position)
            )
        elif top == "encoder_norm":
            sources[path] = Source(f"{root}Transformer/encoder_norm/{LN[weight]}")
        elif top == "pre_logits":
            sources[path] = Source(f"{root}pre_logits/{weight}")
        elif top == "predictions":
            sources[path] = Source(f"{root}head/{weight}", role="head")
        elif m := BLOCK.match(path):
            index, part, sub, weight = int(m[1]), m[2], m[3], m[4]
            block = f"{root}Transformer/encoderblock" + ("" if scan else f"_{index}")
            if part == "attention":
                name = f"{block}/{attention}/{'out' if sub == 'attention_output' else sub}/{weight}"
            else:
                name = f"{block}/{parts[part]}/{LN.get(weight, weight) if 'norm' in part else weight}"
            sources[path] = Source(name, stacked(index, num_layers) if scan else IDENTITY)
    return sources


def _warn_dropped_pre_logits(model, tensor_file, prefix):
    names = {layer.name for layer in model.layers}
    if "pre_logits" not in names and "predictions" in names and any(k.startswith(prefix) for k in tensor_file.keys()):
        warnings.warn(
            f"`weights` file {tensor_file.path!r} has a pre-logits layer that model {model.name!r} does not; it is "
            "dropped, as the paper does when fine-tuning (§3.1). Build with representation_size=... to keep it.",
            stacklevel=4,
        )


def npz_vit_ignorable(model, tensor_file):
    """File tensors a model may leave unused: optimiser state, and pre-logits/head the model does not have."""
    names = {layer.name for layer in model.layers}
    root = npz_root(tensor_file)
    drop = []
    if "pre_logits" not in names:
        drop.append(f"{root}pre_logits/")
    if "predictions" not in names:
        drop.append(f"{root}head/")
    _warn_dropped_pre_logits(model, tensor_file, f"{root}pre_logits/")
    return lambda key: not key.startswith(root) or any(key.startswith(d) for d in drop)


TORCH_VIT_NAMES = {  # flavour: (marker key, {our part: their name}) with {i} for the block index
    "timm": dict(
        marker="patch_embed.proj.weight",
        patch="patch_embed.proj",
        cls="cls_token",
        position="pos_embed",
        block="blocks.{i}",
        attention_norm="norm1",
        qkv="attn.qkv",
        attention_output="attn.proj",
        mlp_norm="norm2",
        mlp_dense_1="mlp.fc1",
        mlp_dense_2="mlp.fc2",
        encoder_norm="norm",
        pre_logits="pre_logits.fc",
        head="head",
    ),
    "torchvision": dict(
        marker="conv_proj.weight",
        patch="conv_proj",
        cls="class_token",
        position="encoder.pos_embedding",
        block="encoder.layers.encoder_layer_{i}",
        attention_norm="ln_1",
        qkv="self_attention.in_proj_",  # in_proj_weight / in_proj_bias
        attention_output="self_attention.out_proj",
        mlp_norm="ln_2",
        mlp_dense_1="mlp.0",
        mlp_dense_2="mlp.3",
        encoder_norm="encoder.ln",
        pre_logits="heads.pre_logits",
        head="heads.head",
    ),
}


def torch_vit_flavour(tensor_file):
    for flavour, names in TORCH_VIT_NAMES.items():
        if names["marker"] in tensor_file:
            return flavour
    return None


def torch_vit_sources(model, tensor_file):
    """{model weight path: Source} for a timm or torchvision ViT state dict (see the module docstring)."""
    check_vit(model, "timm/torchvision ViT")
    warn_gelu(model, False, "timm and torchvision run their ViT checkpoints (timm's copies of the paper's among them, "
              "trained in JAX with tanh GELU) with")
    flavour = torch_vit_flavour(tensor_file)
    names = TORCH_VIT_NAMES[flavour]
    qkv_index = {"query": 0, "key": 1, "value": 2}

    def param(prefix, weight):
        if flavour == "torchvision" and prefix.endswith("in_proj_"):
            return f"{prefix}{TORCH_PARAM[weight]}"
        return f"{prefix}.{TORCH_PARAM.get(weight, TORCH_LN.get(weight))}"

    sources = {}
    for variable in model.weights:
        path = variable.path
        top, _, weight = path.partition("/")
        if path.startswith("patch_embedding/projection/"):
            w = path.split("/")[-1]
            sources[path] = Source(param(names["patch"], w), TORCH_CONV if w == "kernel" else IDENTITY)
        elif path == "class_token/token":
            sources[path] = Source(names["cls"])
        elif path == "position_embedding/embedding":
            key = names["position"]
            sources[path] = Source(key, role="position", file_prefix_tokens=file_prefix_tokens(tensor_file, key))
        elif top == "encoder_norm":
            sources[path] = Source(f"{names['encoder_norm']}.{TORCH_LN[weight]}")
        elif top in ("pre_logits", "predictions"):
            prefix = names["pre_logits" if top == "pre_logits" else "head"]
            transform = TORCH_LINEAR if weight == "kernel" else IDENTITY
            sources[path] = Source(param(prefix, weight), transform, role="head" if top == "predictions" else "weight")
        elif m := BLOCK.match(path):
            index, part, sub, weight = int(m[1]), m[2], m[3], m[4]
            block = names["block"].format(i=index)
            if part == "attention" and sub in qkv_index:
                transform = fused_qkv_kernel(qkv_index[sub]) if weight == "kernel" else fused_qkv_bias(qkv_index[sub])
                sources[path] = Source(param(f"{block}.{names['qkv']}", weight), transform)
            elif part == "attention":
                transform = torch_attention_output() if weight == "kernel" else IDENTITY
                sources[path] = Source(param(f"{block}.{names['attention_output']}", weight), transform)
            elif part in ("attention_norm", "mlp_norm"):
                sources[path] = Source(f"{block}.{names[part]}.{TORCH_LN[weight]}")
            else:
                transform = TORCH_LINEAR if weight == "kernel" else IDENTITY
                sources[path] = Source(param(f"{block}.{names[part]}", weight), transform)
    return sources


def torch_vit_ignorable(model, tensor_file):
    layer_names = {layer.name for layer in model.layers}
    names = TORCH_VIT_NAMES[torch_vit_flavour(tensor_file)]
    drop = []
    if "pre_logits" not in layer_names:
        drop.append(names["pre_logits"] + ".")
    if "predictions" not in layer_names:
        drop.append(names["head"] + ".")
    _warn_dropped_pre_logits(model, tensor_file, names["pre_logits"] + ".")
    return lambda key: any(key.startswith(d) for d in drop)
