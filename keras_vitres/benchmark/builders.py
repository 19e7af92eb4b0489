"""Model builders of the Keras benchmark candidates, run inside a worker process (see `worker.py`); the PyTorch
peers are in `torch_peers.py`, which never imports Keras.

Every builder returns a model that maps images (batch, H, W, 3) to float32 logits over `classes`, so all candidates
train with the same loss and optimizer.
"""

import keras
from keras import ops

from keras_vitres.layers.pooling import TokenPooling
from keras_vitres.models.vit import VisionTransformer
from keras_vitres.presets.build import build_model


def _logits_head(x, classes):
    """The classifier shared by every peer: a float32 Dense (as our builders' `predictions` layer)."""
    return keras.layers.Dense(classes, dtype="float32", name="predictions")(x)


def preset(image_shape, classes, *, preset, overrides=None, remat=False):
    """Ours: a registered preset with logits output; `remat=True` recomputes its blocks in the backward pass."""
    overrides = {**(overrides or {}), **({"remat": True} if remat else {})}
    return build_model(preset, input_shape=image_shape, classes=classes, classifier_activation=None, **overrides)


def vision_transformer(image_shape, classes, **config):
    """Ours: the general ViT builder (the tiny stand-in of --quick)."""
    return VisionTransformer(input_shape=image_shape, classes=classes, classifier_activation=None, **config)


def cifar_resnet_functional(image_shape, classes, *, depth):
    """The CIFAR ResNet of arXiv:1512.03385 §4.2 (option A shortcuts) as one flat functional graph.

    Built from `keras.layers` only, with the shortcut's subsample-and-zero-pad in `Lambda` layers: the code a
    user would write without a model zoo. Same layers, shapes and parameter count as our `resnet{depth}`.
    """
    n = (depth - 2) // 6

    def conv_bn(x, filters, strides, name):
        if strides > 1:  # pad 1 on each side, as our blocks (and PyTorch) do for strided 3x3 convolutions
            x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="valid" if strides > 1 else "same",
                                use_bias=False, kernel_initializer="he_normal", name=name)(x)
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)

    def zero_pad_shortcut(x, filters):
        extra = filters - x.shape[-1]
        return ops.pad(x[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    inputs = keras.Input(image_shape)
    x = keras.layers.ReLU()(conv_bn(inputs, 16, 1, "stem"))
    for s, filters in enumerate((16, 32, 64)):
        for b in range(n):
            strides = 2 if s > 0 and b == 0 else 1
            y = keras.layers.ReLU()(conv_bn(x, filters, strides, f"s{s}b{b}_conv1"))
            y = conv_bn(y, filters, 1, f"s{s}b{b}_conv2")
            if strides > 1:
                x = keras.layers.Lambda(zero_pad_shortcut, arguments=dict(filters=filters))(x)
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _logits_head(x, classes), name=f"functional_resnet{depth}")


def keras_applications_resnet50(image_shape, classes):
    """keras.applications.ResNet50 without weights, logits output."""
    return keras.applications.ResNet50(
        weights=None, input_shape=image_shape, classes=classes, classifier_activation=None
    )


def keras_hub_resnet(image_shape, classes, *, depth=50):
    """keras-hub ResNetBackbone (the ResNet-50 layout of its presets) + global average pooling + Dense."""
    import keras_hub  # the optional "hub" extra, only in the worker of this peer

    blocks = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[depth]
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=blocks,
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="bottleneck_block",
        image_shape=image_shape,
    )
    inputs = keras.Input(image_shape)
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    return keras.Model(inputs, _logits_head(x, classes), name=f"keras_hub_resnet{depth}")


def keras_hub_vit(image_shape, classes, *, patch_size, hidden_dim, num_layers, num_heads, mlp_dim):
    """keras-hub ViTBackbone + the class token + Dense: the head of the ViT paper and of our builder."""
    import keras_hub  # the optional "hub" extra, only in the worker of this peer

    backbone = keras_hub.models.ViTBackbone(
        image_shape=image_shape,
        patch_size=patch_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        mlp_dim=mlp_dim,
    )
    inputs = keras.Input(image_shape)
    x = TokenPooling("token", name="token_pooling")(backbone(inputs))
    return keras.Model(inputs, _logits_head(x, classes), name="keras_hub_vit")


BUILDERS = {
    f.__name__: f
    for f in (
        preset,
        vision_transformer,
        cifar_resnet_functional,
        keras_applications_resnet50,
        keras_hub_resnet,
        keras_hub_vit,
    )
}
