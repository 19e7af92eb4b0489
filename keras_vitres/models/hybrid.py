"""The ResNet + ViT hybrid (arXiv:2010.11929, §3.1 "Hybrid Architecture" and Appendix D.2 / Table 5).

The patch embedding is applied to a ResNet feature map with "patch size" 1: for R50+ViT-B/16 the ResNet-50 trunk
keeps its stem and first three stages, stage 3 grows from 6 to 9 blocks and stage 4 is dropped, so a 224x224
image becomes a 14x14 grid of 1024-channel features, each projected to one token.

Two trunks (`trunk=`):
    "bit" (the default): the paper's, a ResNet with group norm and weight-standardised convolutions as in the
        ViT repository's hybrid (google-research/vision_transformer `vit_jax/models_resnet.py`: post-activation
        bottlenecks with the stride on the 3x3, "SAME" padding, group norm epsilon 1e-6, weight standardisation
        (w - mean) / (std + 1e-5), and a stem of convolution, group norm, ReLU and max-pool). The published R50+ViT
        checkpoints load into it.
    "batchnorm": the package's ResNet v1.5 (or v1) bottleneck trunk with batch norm (`keras_vitres.models.resnet`).
"""

import keras

from keras_vitres.layers.embedding import grid_size_for
from keras_vitres.models.bit import VIT_HYBRID_TRUNK, standardized_stages, standardized_stem
from keras_vitres.models.common import check_input_shape, preprocess_inputs
from keras_vitres.models.resnet import resnet_stages, resnet_stem
from keras_vitres.models.vit import check_vit_args, vit_from_features

TRUNKS = ("bit", "batchnorm")


def HybridViT(
    *,
    trunk="bit",
    resnet_stage_blocks=(3, 4, 9),
    resnet_stage_filters=(64, 128, 256),
    resnet_version="v1.5",
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
    name="r50_vit",
):
    """Builds a ResNet-trunk + ViT hybrid as a functional `keras.Model` (arXiv:2010.11929, §3.1).

    The arguments after `resnet_version` are those of `VisionTransformer`, initialisers included (their defaults
    follow `weights` in the same way; here the patch embedding projects 1x1 "patches" of the trunk's features). The
    total stride is 4 * 2**(stages - 1) (16 for three stages), so H and W must be multiples of it.

    Args:
        trunk: "bit" (group norm and weight standardisation, the paper's; widths must be multiples of 32) or
            "batchnorm" (the package's batch-norm bottlenecks). See the module docstring.
        resnet_stage_blocks: bottleneck blocks per ResNet stage ((3, 4, 9) for the paper's R50 trunk).
        resnet_stage_filters: filters per stage; outputs have 4x as many channels.
        resnet_version: "v1" or "v1.5" bottlenecks of the "batchnorm" trunk (the "bit" trunk strides its 3x3).

    Returns:
        A `keras.Model`.
    """
    check_vit_args(num_heads, hidden_dim, use_class_token, include_top, pooling, classes, classifier_activation,
                   num_layers=num_layers, mlp_dim=mlp_dim, representation_size=representation_size)
    input_shape = check_input_shape(input_shape, require_size=True)
    stride = 4 * 2 ** (len(resnet_stage_blocks) - 1)
    grid_size = grid_size_for(input_shape, stride)

    if trunk not in TRUNKS:
        raise ValueError(f"`trunk` must be one of {TRUNKS}; received trunk={trunk!r}.")
    if trunk == "bit" and any(not isinstance(f, int) or f % 32 for f in resnet_stage_filters):
        raise ValueError(
            "The 'bit' trunk's group norms have 32 groups, so its widths must be multiples of 32; received "
            f"resnet_stage_filters={tuple(resnet_stage_filters)!r} (or build with trunk='batchnorm')."
        )

    inputs = keras.Input(input_shape, name="images")
    pixels = preprocess_inputs(inputs, preprocessing)
    if trunk == "bit":
        x = standardized_stem(pixels, resnet_stage_filters[0], **VIT_HYBRID_TRUNK)
        x = standardized_stages(x, resnet_stage_blocks, resnet_stage_filters, remat=remat, **VIT_HYBRID_TRUNK)
    else:
        x = resnet_stem(pixels, "imagenet", resnet_stage_filters[0])
        x = resnet_stages(x, "bottleneck", resnet_stage_blocks, resnet_stage_filters, shortcut="B",
                          version=resnet_version, remat=remat)  # fmt: skip
    return vit_from_features(
        inputs,
        x,
        grid_size,
        patch_size=1,
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
