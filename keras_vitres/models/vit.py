"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", arXiv:2010.11929).

The image is cut into P x P patches, each linearly projected to D; a class token is prepended and a learned
position embedding added (eq. 1); L pre-norm encoder blocks follow (eq. 2-3), then a final LayerNorm and the
head on the class token (eq. 4) or on the average of the patch tokens (Appendix D.3). Layers are named
`patch_embedding`, `class_token`, `position_embedding`, `encoder_block_{i}` (0-based, as the official
`encoderblock_{i}`), `encoder_norm`, `pre_logits` and `predictions`.
"""

import keras
import numpy as np

from keras_vitres.layers.embedding import (
    AddPositionEmbedding,
    ClassToken,
    PatchEmbedding,
    grid_size_for,
    resample_position_embedding,
)
from keras_vitres.layers.pooling import TokenPooling
from keras_vitres.layers.transformer import TransformerBlock
from keras_vitres.models.common import (
    check_head_args,
    check_input_shape,
    check_positive_int,
    classifier,
    load_weights,
    preprocess_inputs,
)

VIT_POOLINGS = (None, "token", "avg", "max")


# Initialisers of a ViT trained from scratch (weights=None) and of one whose weights are loaded, by argument. From
# scratch, Keras' defaults: with a 4x4x3 patch (fan-in 48), lecun_normal draws the patch kernel about 3x larger than
# glorot_uniform, and a zero head starts every class at the same score (measurements: docs/models.md). With loaded
# weights, the paper's choices (big_vision, timm): a lecun_normal patch embedding and a zero-initialised head when it
# is replaced for new classes (fine-tuning, §3.2).
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


def vit_from_features(
    inputs,
    features,
    grid_size,
    *,
    patch_size,
    hidden_dim,
    num_layers,
    num_heads,
    mlp_dim,
    use_class_token,
    representation_size,
    dropout_rate,
    attention_dropout_rate,
    drop_path_rate,
    layer_norm_epsilon,
    approximate_gelu,
    remat,
    patch_kernel_initializer,
    head_kernel_initializer,
    encoder_kernel_initializer,
    include_top,
    weights,
    pooling,
    classes,
    classifier_activation,
    name,
):
    """The ViT shared by `VisionTransformer` and `HybridViT`, from `features` (images or a trunk's feature map) on:
    patch embedding, class token, position embedding, the encoder blocks, the final LayerNorm and the head; returns the
    `keras.Model` from `inputs`, with `weights` loaded.

    Stochastic depth grows linearly from 0 at the first block to `drop_path_rate` at the last (as in DeiT/timm).
    Initialisers that are None take their default for `weights` (`INITIALIZERS`).
    """
    patch_kernel_initializer = resolve_initializer("patch_kernel_initializer", patch_kernel_initializer, weights)
    head_kernel_initializer = resolve_initializer("head_kernel_initializer", head_kernel_initializer, weights)
    encoder_kernel_initializer = resolve_initializer("encoder_kernel_initializer", encoder_kernel_initializer)

    tokens = PatchEmbedding(patch_size, hidden_dim, kernel_initializer=patch_kernel_initializer,
                            name="patch_embedding")(features)
    x = ClassToken(name="class_token")(tokens) if use_class_token else tokens
    x = AddPositionEmbedding(grid_size, num_prefix_tokens=int(use_class_token), name="position_embedding")(x)
    x = keras.layers.Dropout(dropout_rate, name="embedding_dropout")(x)
    for i in range(num_layers):
        x = TransformerBlock(
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            mlp_dim=mlp_dim,
            dropout_rate=dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            drop_path_rate=drop_path_rate * i / max(num_layers - 1, 1),
            layer_norm_epsilon=layer_norm_epsilon,
            approximate_gelu=approximate_gelu,
            kernel_initializer=encoder_kernel_initializer,
            remat=remat,
            name=f"encoder_block_{i}",
        )(x)
    x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="encoder_norm")(x)

    # The head: the class token or the average for the classifier, else as `pooling` says.
    prefix = int(use_class_token)
    if include_top:
        x = TokenPooling("token" if use_class_token else "avg", num_prefix_tokens=prefix, name="token_pooling")(x)
        if representation_size:
            x = keras.layers.Dense(representation_size, activation="tanh", name="pre_logits")(x)
        x = classifier(x, classes, classifier_activation, kernel_initializer=head_kernel_initializer)
    elif pooling is not None:
        x = TokenPooling(pooling, num_prefix_tokens=prefix, name="token_pooling")(x)
    return load_weights(keras.Model(inputs, x, name=name), weights)


def check_vit_args(num_heads, hidden_dim, use_class_token, include_top, pooling, classes, classifier_activation,
                   *, num_layers=1, mlp_dim=1, representation_size=None):
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


def VisionTransformer(
    *,
    patch_size=16,
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
    include_top=True,
    weights=None,
    input_shape=(224, 224, 3),
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    preprocessing=None,
    name="vit",
):
    """Builds a Vision Transformer as a functional `keras.Model` (arXiv:2010.11929).

    Args:
        patch_size: int or (int, int). Patch size P (16, 32 or 14 in the paper).
        hidden_dim: int. Token width D (Table 1).
        num_layers: int. Encoder blocks L.
        num_heads: int. Attention heads; `hidden_dim / num_heads` is the head width (64 in every preset).
        mlp_dim: int. MLP width (4 D).
        use_class_token: bool. Prepend a class token and classify from it (the paper's default); False
            classifies from the average of the patch tokens (global average pooling, Appendix D.3).
        representation_size: int or None. Width of the tanh "pre-logits" layer used in pre-training (§3.1).
        dropout_rate, attention_dropout_rate, drop_path_rate: regularisation (Appendix B.1; drop path as DeiT).
        layer_norm_epsilon: float. LayerNorm epsilon (1e-6).
        approximate_gelu: bool. tanh-approximate GELU, to match the published `.npz` checkpoints exactly.
        remat: bool. Recompute each encoder block's activations in the backward pass instead of storing them: less
            training memory (73% less for ViT-B/16 and 77% for ViT-L/16 on CPU with TensorFlow; with JAX on one H200
            GPU ViT-B/16's compiled step at batch 64 needs 1,594 instead of 10,043 MiB of temporaries;
            docs/benchmarks.md) for about 1.25x the step time on CPU. Keras on JAX compiling for the CPU saves
            nothing.
        patch_kernel_initializer: initializer of the patch embedding's kernel (a Keras initializer name, dict or
            instance). None: "glorot_uniform" (Keras' default) when `weights` is None, "lecun_normal" (the paper's
            code, big_vision and timm) when weights are loaded. lecun_normal suits 16x16 patches; with 4x4x3 patches
            (fan-in 48) it draws the kernel about 3x larger than glorot_uniform and the first tokens saturate
            (docs/models.md gives the measurements on the digits).
        head_kernel_initializer: initializer of the classifier's kernel. None: "glorot_uniform" when `weights` is
            None (a zero head gives every class the same score and slows the start from scratch); "zeros" when
            weights are loaded, as the paper does when it replaces the head for new classes (§3.2, fine-tuning).
        encoder_kernel_initializer: initializer of the encoder's dense kernels (attention query, key, value and
            output, and both MLP layers): "glorot_uniform", as the paper's code and Keras, with or without weights.
        include_top: bool. End with the classifier; otherwise return tokens (or pooled features, see `pooling`).
        weights: None, the path of a local weights file, or a keras-hub `ViTBackbone` to convert. Named weights
            are the presets' (`keras_vitres.preset_weights(name)` lists them).
        input_shape: (H, W, C) with H and W multiples of the patch size.
        pooling: with `include_top=False`: None (the whole token sequence, (batch, tokens, D)), "token"
            (the class token), "avg" or "max" (over the patch tokens).
        classes: int. Number of classes.
        classifier_activation: activation of the classifier ("softmax", or None for logits).
        preprocessing: None (the model takes its inputs as they are), or what it applies to raw [0, 255] RGB
            pixels as its first layer (an `ImagePreprocessing` named "preprocessing"): a name ("inception",
            "imagenet", ...), a dict of `Preprocessing` fields or a `Preprocessing`.
        name: model name.

    Returns:
        A `keras.Model`.

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
    grid_size = grid_size_for(input_shape, patch_size)

    inputs = keras.Input(input_shape, name="images")
    return vit_from_features(
        inputs,
        preprocess_inputs(inputs, preprocessing),
        grid_size,
        patch_size=patch_size,
        hidden_dim=hidden_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        mlp_dim=mlp_dim,
        use_class_token=use_class_token,
        representation_size=representation_size,
        dropout_rate=dropout_rate,
        attention_dropout_rate=attention_dropout_rate,
        drop_path_rate=drop_path_rate,
        layer_norm_epsilon=layer_norm_epsilon,
        approximate_gelu=approximate_gelu,
        remat=remat,
        patch_kernel_initializer=patch_kernel_initializer,
        head_kernel_initializer=head_kernel_initializer,
        encoder_kernel_initializer=encoder_kernel_initializer,
        include_top=include_top,
        weights=weights,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


def resize_vit(model, input_shape):
    """Returns a copy of a ViT (or hybrid) for a new input resolution, keeping its weights (arXiv:2010.11929, §3.2).

    Every weight is copied; the position embedding is resampled bilinearly to the new patch grid, which may be
    non-square.

    Args:
        model: a model built by `VisionTransformer` or `HybridViT`.
        input_shape: the new (H, W, C); H and W must be multiples of the model's total stride.

    Returns:
        A new `keras.Model`.
    """
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
