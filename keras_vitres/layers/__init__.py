"""Keras layers of the ResNet and ViT families; each is registered under the package name "keras_vitres"."""

from keras_vitres.layers.attention import ViTMultiHeadAttention
from keras_vitres.layers.convolution import StandardizedConv2D
from keras_vitres.layers.embedding import AddPositionEmbedding, ClassToken, PatchEmbedding, resample_position_embedding
from keras_vitres.layers.normalization import FusedBatchNormalization
from keras_vitres.layers.pooling import TokenPooling
from keras_vitres.layers.preprocessing import (
    PREPROCESSING_CONVENTIONS,
    ImagePreprocessing,
    Preprocessing,
    find_preprocessing,
)
from keras_vitres.layers.residual import BasicBlock, BottleneckBlock, GroupNormBottleneck, Shortcut
from keras_vitres.layers.transformer import DropPath, TransformerBlock, gelu

__all__ = [
    "PREPROCESSING_CONVENTIONS",
    "AddPositionEmbedding",
    "BasicBlock",
    "BottleneckBlock",
    "ClassToken",
    "DropPath",
    "FusedBatchNormalization",
    "GroupNormBottleneck",
    "ImagePreprocessing",
    "PatchEmbedding",
    "Preprocessing",
    "Shortcut",
    "StandardizedConv2D",
    "TokenPooling",
    "TransformerBlock",
    "ViTMultiHeadAttention",
    "find_preprocessing",
    "gelu",
    "resample_position_embedding",
]
