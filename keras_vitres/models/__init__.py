"""Functional-API builders: the general `ResNet`, `BiTResNet`, `VisionTransformer` and `HybridViT`, and model
utilities."""

from keras_vitres.models.bit import BiTResNet
from keras_vitres.models.features import feature_extractor
from keras_vitres.models.hybrid import HybridViT
from keras_vitres.models.resnet import ResNet
from keras_vitres.models.vit import VisionTransformer, resize_vit

__all__ = ["BiTResNet", "HybridViT", "ResNet", "VisionTransformer", "feature_extractor", "resize_vit"]
