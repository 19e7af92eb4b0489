"""The ResNet + ViT hybrid (arXiv:2010.11929, §3.1 "Hybrid Architecture"): `VisionTransformer` with a `trunk`.

The patch embedding cuts a ResNet's feature map into 1x1 patches. For R50+ViT-B/16 the ResNet-50 trunk keeps its
stem and first three stages, stage 3 grows from 6 to 9 blocks, and a 224x224 image becomes 14x14 tokens. Trunks:
    "bit": the paper's, as the ViT repository's `vit_jax/models_resnet.py` (its checkpoints load into it): group norms
        of 32 groups (widths are multiples of 32), weight standardisation (w - mean) / (std + 1e-5), post-activation
        bottlenecks striding their 3x3, "SAME" padding, a stem of convolution, group norm, ReLU and max-pool.
    "batchnorm": the package's batch-norm ResNet v1.5 (or v1) bottlenecks (`keras_vitres.models.resnet`).
"""

import inspect

from keras_vitres.models.vit import HYBRID_TRUNK, VisionTransformer

HYBRID_DEFAULTS = dict(trunk="bit", **HYBRID_TRUNK, name="r50_vit")  # where they differ from VisionTransformer's


def HybridViT(**kwargs):
    """Builds the hybrid: `VisionTransformer` with the paper's defaults for it (`HYBRID_DEFAULTS`: the "bit" trunk,
    the R50 trunk's stages, the name "r50_vit"), which any of its keyword arguments overrides.

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


# help() and inspect.signature (which training/ reads) show VisionTransformer's arguments with these defaults.
HybridViT.__signature__ = inspect.signature(VisionTransformer).replace(parameters=[
    p.replace(default=HYBRID_DEFAULTS.get(name, p.default))
    for name, p in inspect.signature(VisionTransformer).parameters.items()
])  # fmt: skip
