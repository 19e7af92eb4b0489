"""The ResNet + ViT hybrid (arXiv:2010.11929, §3.1 "Hybrid Architecture" and Appendix D.2 / Table 5).

The patch embedding is applied to a ResNet feature map with "patch size" 1: for R50+ViT-B/16 the ResNet-50 trunk
keeps its stem and first three stages, stage 3 grows from 6 to 9 blocks and stage 4 is dropped, so a 224x224
image becomes a 14x14 grid of 1024-channel features, each projected to one token. The hybrid is a
`VisionTransformer` with a `trunk`; `HybridViT` builds it with the paper's defaults.

Two trunks (`trunk=`):
    "bit" (the default): the paper's, a ResNet with group norm and weight-standardised convolutions as in the
        ViT repository's hybrid (google-research/vision_transformer `vit_jax/models_resnet.py`: post-activation
        bottlenecks with the stride on the 3x3, "SAME" padding, group norm epsilon 1e-6, weight standardisation
        (w - mean) / (std + 1e-5), and a stem of convolution, group norm, ReLU and max-pool). The published R50+ViT
        checkpoints load into it.
    "batchnorm": the package's ResNet v1.5 (or v1) bottleneck trunk with batch norm (`keras_vitres.models.resnet`).
"""

import inspect

from keras_vitres.models.vit import HYBRID_TRUNK, VisionTransformer

HYBRID_DEFAULTS = dict(trunk="bit", **HYBRID_TRUNK, name="r50_vit")  # where they differ from VisionTransformer's


def HybridViT(**kwargs):
    """Builds the ResNet-trunk + ViT hybrid (arXiv:2010.11929, §3.1): `VisionTransformer` with a `trunk`.

    Args:
        **kwargs: the arguments of `VisionTransformer`, with the paper's defaults for the hybrid: `trunk="bit"`,
            the R50 trunk's `resnet_stage_blocks=(3, 4, 9)` and `resnet_stage_filters=(64, 128, 256)`, whose feature
            map is cut into 1x1 patches for ViT-B, and `name="r50_vit"`.

    Returns:
        A `keras.Model`.

    Examples:
        >>> model = HybridViT(resnet_stage_blocks=(1, 1), resnet_stage_filters=(32, 64), hidden_dim=32, num_layers=1,
        ...                   num_heads=2, mlp_dim=64, input_shape=(64, 64, 3), classes=10)
        >>> tuple(model.get_layer("position_embedding").embedding.shape)
        (1, 65, 32)
    """
    arguments = {**HYBRID_DEFAULTS, **kwargs}
    if arguments["trunk"] is None:
        raise ValueError("`trunk` of a HybridViT must be 'bit' or 'batchnorm' (VisionTransformer builds a ViT without "
                         "one); received trunk=None.")  # fmt: skip
    return VisionTransformer(**arguments)


# help(), inspect.signature and the builders' argument checks see VisionTransformer's arguments with these defaults.
HybridViT.__signature__ = inspect.signature(VisionTransformer).replace(parameters=[
    p.replace(default=HYBRID_DEFAULTS.get(name, p.default))
    for name, p in inspect.signature(VisionTransformer).parameters.items()
])  # fmt: skip
