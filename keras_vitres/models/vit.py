"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", arXiv:2010.11929).

P x P patches of the image, or with a `trunk` of a ResNet's feature map (the hybrid, §3.1), are projected to D; a
class token is prepended and a learned position embedding added (eq. 1); L pre-norm encoder blocks (eq. 2-3), a
final LayerNorm and the head (eq. 4) follow. Layers are named `patch_embedding`, `class_token`, `position_embedding`,
`encoder_block_{i}` (0-based, as the official `encoderblock_{i}`), `encoder_norm`, `pre_logits` and `predictions`,
after a trunk's `stem_*` and `stage{s}_block{b}`.
"""

import keras
import numpy as np

from keras_vitres.data.checks import check_positive_int, is_positive_int
from keras_vitres.layers.embedding import (
    AddPositionEmbedding,
    ClassToken,
    PatchEmbedding,
    grid_size_for,
    resample_position_embedding,
)
from keras_vitres.layers.pooling import TokenPooling
from keras_vitres.layers.residual import BOTTLENECK_VERSIONS
from keras_vitres.layers.transformer import TransformerBlock
from keras_vitres.models.bit import VIT_HYBRID_TRUNK, standardized_stages, standardized_stem
from keras_vitres.models.common import (
    check_head_args,
    check_input_shape,
    check_per_stage,
    classifier,
    load_weights,
    preprocess_inputs,
)
from keras_vitres.models.resnet import resnet_stages, resnet_stem

VIT_POOLINGS = (None, "token", "avg", "max")
TRUNKS = ("bit", "batchnorm")
# The paper's R50 trunk (§4.1): ResNet-50 without stage 4, its layers moved into stage 3; v1.5 strides the 3x3.
HYBRID_TRUNK = dict(resnet_stage_blocks=(3, 4, 9), resnet_stage_filters=(64, 128, 256), resnet_version="v1.5")


# The initialisers that None stands for, from scratch and with loaded weights (VisionTransformer's docstring says why).
INITIALIZERS = {
    "patch_kernel_initializer": dict(scratch="glorot_uniform", pretrained="lecun_normal"),
    "head_kernel_initializer": dict(scratch="glorot_uniform", pretrained="zeros"),
}


def resolve_initializer(argument, value, weights=None):
    """Returns `value`, or when it is None the default of `argument` for a model with or without `weights`; raises a
    ValueError that names the argument unless it is a Keras initializer (name, config dict or instance)."""
    if value is None:
        return INITIALIZERS[argument]["scratch" if weights is None else "pretrained"]
    try:
        initializer = keras.initializers.get(value)
    except (ValueError, TypeError):
        initializer = None
    if initializer is None:
        raise ValueError(
            f"`{argument}` must be None, a Keras initializer name (e.g. 'glorot_uniform', 'lecun_normal', 'zeros'), a "
            f"serialised initializer dict or a keras.initializers.Initializer; received {argument}={value!r}."
        )
    return value


def check_vit_args(num_heads, hidden_dim, use_class_token, include_top, pooling, classes, classifier_activation,
                   *, num_layers, mlp_dim, representation_size):
    """Validates the encoder's sizes and the head's arguments, raising a ValueError that names the argument."""
    check_head_args(include_top, pooling, classes, classifier_activation, poolings=VIT_POOLINGS)
    check_positive_int("num_heads", num_heads)
    check_positive_int("hidden_dim", hidden_dim)
    if hidden_dim % num_heads:
        raise ValueError(
            f"`hidden_dim` must be a multiple of `num_heads`; received hidden_dim={hidden_dim!r}, num_heads={num_heads!r}."
        )
    check_positive_int("num_layers", num_layers)
    check_positive_int("mlp_dim", mlp_dim)
    check_positive_int("representation_size", representation_size, allow_none=True)
    if pooling == "token" and not use_class_token:
        raise ValueError("pooling='token' needs a class token; received pooling='token' with use_class_token=False.")


def check_trunk_args(trunk, resnet_stage_blocks, resnet_stage_filters, resnet_version):
    """Returns the trunk's arguments with their defaults filled in, or None without a trunk; raises a ValueError
    naming the argument."""
    given = dict(resnet_stage_blocks=resnet_stage_blocks, resnet_stage_filters=resnet_stage_filters,
                 resnet_version=resnet_version)  # fmt: skip
    if trunk is None:
        for argument, value in given.items():
            if value is not None:
                raise ValueError(f"`{argument}` configures a hybrid's ResNet trunk: pass trunk='bit' or "
                                 f"'batchnorm' with it, or leave it out; received {argument}={value!r}, trunk=None.")
        return None
    if trunk not in TRUNKS:
        raise ValueError(f"`trunk` must be None or one of {TRUNKS}; received trunk={trunk!r}.")
    args = {**HYBRID_TRUNK, **{k: v for k, v in given.items() if v is not None}}
    blocks = check_per_stage("resnet_stage_blocks", args["resnet_stage_blocks"])
    filters = check_per_stage("resnet_stage_filters", args["resnet_stage_filters"], stages=len(blocks))
    version = args["resnet_version"]
    if version not in BOTTLENECK_VERSIONS or (trunk == "bit" and version != "v1.5"):
        valid = "'v1.5' (the 'bit' trunk strides its 3x3)" if trunk == "bit" else f"one of {BOTTLENECK_VERSIONS}"
        raise ValueError(f"`resnet_version` must be {valid}; received resnet_version={version!r}.")
    if trunk == "bit" and any(f % 32 for f in filters):
        raise ValueError(
            "The 'bit' trunk's group norms have 32 groups, so its widths must be multiples of 32; received "
            f"resnet_stage_filters={filters!r} (or build with trunk='batchnorm')."
        )
    return dict(trunk=trunk, stage_blocks=blocks, stage_filters=filters, version=version)


def token_grid(input_shape, patch_size, trunk_args):
    """Returns (patch_size, grid_size): the patch size, by default 16 pixels or 1 feature of a trunk's map, and the
    grid of patches an `input_shape` image makes; raises a ValueError naming the argument."""
    if patch_size is None:
        patch_size = 16 if trunk_args is None else 1
    if trunk_args is None:
        return patch_size, grid_size_for(input_shape, patch_size)
    stride = 4 * 2 ** (len(trunk_args["stage_blocks"]) - 1)  # the stem's 4, then 2 for each stage after the first
    pair = tuple(patch_size) if isinstance(patch_size, (list, tuple)) else (patch_size, patch_size)
    if len(pair) != 2 or not all(map(is_positive_int, pair)):
        raise ValueError(f"`patch_size` must be None, a positive int or a pair of positive ints; received "
                         f"patch_size={patch_size!r}.")  # fmt: skip
    pixels = stride * patch_size if isinstance(patch_size, int) else (stride * pair[0], stride * pair[1])
    return patch_size, grid_size_for(input_shape, pixels)


def trunk_features(x, trunk, stage_blocks, stage_filters, version, remat):
    """The hybrid's ResNet trunk (`keras_vitres.models.hybrid`): its feature map, which the patch embedding cuts."""
    if trunk == "bit":
        x = standardized_stem(x, stage_filters[0], **VIT_HYBRID_TRUNK)
        return standardized_stages(x, stage_blocks, stage_filters, remat=remat, **VIT_HYBRID_TRUNK)
    x = resnet_stem(x, "imagenet", stage_filters[0])
    return resnet_stages(x, "bottleneck", stage_blocks, stage_filters, shortcut="B", version=version, remat=remat)


def vit_head(x, include_top, pooling, use_class_token, representation_size, classes, classifier_activation,
             kernel_initializer):  # fmt: skip
    """The classifier on the class token or the average of the patch tokens, or the tokens pooled as `pooling` says."""
    prefix = int(use_class_token)
    if not include_top:
        return x if pooling is None else TokenPooling(pooling, num_prefix_tokens=prefix, name="token_pooling")(x)
    x = TokenPooling("token" if use_class_token else "avg", num_prefix_tokens=prefix, name="token_pooling")(x)
    if representation_size:
        x = keras.layers.Dense(representation_size, activation="tanh", name="pre_logits")(x)
    return classifier(x, classes, classifier_activation, kernel_initializer=kernel_initializer)


def VisionTransformer(
    *,
    patch_size=None,
    hidden_dim=768,
    num_layers=12,
    num_heads=12,
    mlp_dim=3072,
    use_class_token=True,
    representation_size=None,
    dropout_rate=0.0,
    attention_dropout_rate=0.0,
    drop_path_rate=0.0,
    layer_norm_epsilon=1e-6,
    approximate_gelu=False,
    remat=False,
    patch_kernel_initializer=None,
    head_kernel_initializer=None,
    encoder_kernel_initializer="glorot_uniform",
    trunk=None,
    resnet_stage_blocks=None,
    resnet_stage_filters=None,
    resnet_version=None,
    include_top=True, weights=None, input_shape=(224, 224, 3), pooling=None,  # keras.applications' arguments
    classes=1000, classifier_activation="softmax",
    preprocessing=None,
    name="vit",
):  # fmt: skip
    """Builds a Vision Transformer, or with a `trunk` the ResNet + ViT hybrid, as a functional `keras.Model`.

    Args:
        patch_size: int or (int, int), P; None: 16, or 1 feature of the trunk's map with a `trunk`.
        hidden_dim, num_layers, num_heads, mlp_dim: D, L, heads and MLP width (Table 1); `hidden_dim / num_heads`
            is the head width.
        use_class_token: classify from a prepended class token (the paper's default), or else from the average of
            the patch tokens (Appendix D.3).
        representation_size: int or None. Width of the tanh "pre-logits" layer of pre-training (§3.1).
        dropout_rate, attention_dropout_rate, drop_path_rate: regularisation (Appendix B.1); drop path grows
            linearly over the blocks up to `drop_path_rate`, as in DeiT and timm.
        layer_norm_epsilon, approximate_gelu: LayerNorm's epsilon; tanh GELU, as the `.npz` checkpoints trained.
        remat: recompute each block in the backward pass: less memory for more time (docs/benchmarks.md).
        patch_kernel_initializer, head_kernel_initializer: None: "glorot_uniform" from scratch (lecun_normal draws
            small patches' kernels about 3x larger, and a zero head gives every class the same score:
            docs/models.md); with loaded `weights` the paper's "lecun_normal" and "zeros" (a replaced head, §3.2).
        encoder_kernel_initializer: of the encoder's dense kernels, with or without weights.
        trunk: None (patches of the image), or the hybrid's ResNet trunk, "bit" or "batchnorm" (`models.hybrid`).
        resnet_stage_blocks, resnet_stage_filters, resnet_version: the trunk's bottlenecks and filters per stage
            (by default the paper's (3, 4, 9), (64, 128, 256); stride 4 * 2**(stages - 1)), and "v1" or "v1.5".
        include_top, weights, input_shape, pooling, classes, classifier_activation, preprocessing: as in `ResNet`.
            `weights` may also be a keras-hub `ViTBackbone`; H and W are multiples of the patch size (times the
            trunk's stride); `pooling` with `include_top=False` is None (all tokens), "token", "avg" or "max".

    Examples:
        >>> model = VisionTransformer(patch_size=8, hidden_dim=64, num_layers=2, num_heads=2, mlp_dim=128,
        ...                           input_shape=(32, 32, 3), classes=10)
        >>> tuple(model.get_layer("position_embedding").embedding.shape)
        (1, 17, 64)
        >>> model.output_shape
        (None, 10)
    """
    check_vit_args(num_heads, hidden_dim, use_class_token, include_top, pooling, classes, classifier_activation,
                   num_layers=num_layers, mlp_dim=mlp_dim, representation_size=representation_size)
    input_shape = check_input_shape(input_shape, require_size=True)
    trunk_args = check_trunk_args(trunk, resnet_stage_blocks, resnet_stage_filters, resnet_version)
    patch_size, grid_size = token_grid(input_shape, patch_size, trunk_args)

    inputs = keras.Input(input_shape, name="images")
    x = preprocess_inputs(inputs, preprocessing)
    if trunk_args is not None:
        x = trunk_features(x, remat=remat, **trunk_args)
    # After the trunk: checking an initializer draws its seed from the global one, and this order keeps the draws.
    patch_kernel_initializer = resolve_initializer("patch_kernel_initializer", patch_kernel_initializer, weights)
    head_kernel_initializer = resolve_initializer("head_kernel_initializer", head_kernel_initializer, weights)
    encoder_kernel_initializer = resolve_initializer("encoder_kernel_initializer", encoder_kernel_initializer)
    x = PatchEmbedding(patch_size, hidden_dim, kernel_initializer=patch_kernel_initializer, name="patch_embedding")(x)
    x = ClassToken(name="class_token")(x) if use_class_token else x
    x = AddPositionEmbedding(grid_size, num_prefix_tokens=int(use_class_token), name="position_embedding")(x)
    x = keras.layers.Dropout(dropout_rate, name="embedding_dropout")(x)
    for i in range(num_layers):
        x = TransformerBlock(
            num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim, dropout_rate=dropout_rate,
            attention_dropout_rate=attention_dropout_rate, drop_path_rate=drop_path_rate * i / max(num_layers - 1, 1),
            layer_norm_epsilon=layer_norm_epsilon, approximate_gelu=approximate_gelu,
            kernel_initializer=encoder_kernel_initializer, remat=remat, name=f"encoder_block_{i}",
        )(x)  # fmt: skip
    x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="encoder_norm")(x)
    x = vit_head(x, include_top, pooling, use_class_token, representation_size, classes, classifier_activation,
                 head_kernel_initializer)  # fmt: skip
    return load_weights(keras.Model(inputs, x, name=name), weights)


def resize_vit(model, input_shape):
    """Returns a copy of a `VisionTransformer` (a hybrid too) for a new (H, W, C) `input_shape`, H and W multiples
    of its total stride: every weight copied, the position embedding resampled bilinearly to the new patch grid,
    which may be non-square (arXiv:2010.11929, §3.2)."""
    input_shape = check_input_shape(input_shape, require_size=True)
    position = model.get_layer("position_embedding")
    old_shape = model.input_shape[1:]
    if input_shape[2] != old_shape[2]:
        raise ValueError(
            f"`input_shape` must keep the model's {old_shape[2]} channels; received input_shape={input_shape!r}."
        )
    old_grid = position.grid_size if isinstance(position.grid_size, (tuple, list)) else (position.grid_size,) * 2
    stride = (old_shape[0] // old_grid[0], old_shape[1] // old_grid[1])
    new_grid = grid_size_for(input_shape, stride)

    config = model.get_config()
    for layer_config in config["layers"]:
        layer_config.pop("build_config", None)  # shapes change with the grid; layers rebuild from the graph
        if layer_config["class_name"] == "InputLayer":
            layer_config["config"]["batch_shape"] = (None, *input_shape)
        elif layer_config["config"].get("name") == "position_embedding":
            layer_config["config"]["grid_size"] = list(new_grid)
    resized = keras.Model.from_config(config)
    for layer in model.layers:
        values = layer.get_weights()
        if layer.name == "position_embedding":
            values = [np.asarray(resample_position_embedding(values[0], old_grid, new_grid, position.num_prefix_tokens))]
        resized.get_layer(layer.name).set_weights(values)
    return resized
