"""Keras layers of the ResNet and ViT families; each is registered under the package name "keras_vitres"."""

from keras_vitres.layers.attention import MultiHeadAttention
from keras_vitres.layers.convolution import StandardizedConv2D
from keras_vitres.layers.embedding import ClassToken, PatchEmbedding, PositionEmbedding, resample_position_embedding
from keras_vitres.layers.normalization import BatchNormalization
from keras_vitres.layers.pooling import TokenPooling
from keras_vitres.layers.preprocessing import (
    PREPROCESSING_PRESETS,
    ImagePreprocessing,
    Preprocessing,
    find_preprocessing,
)
from keras_vitres.layers.residual import BasicBlock, BottleneckBlock, GroupNormBottleneck, Shortcut
from keras_vitres.layers.transformer import DropPath, TransformerBlock, gelu

__all__ = [
    "PREPROCESSING_PRESETS",
    "BasicBlock",
    "BatchNormalization",
    "BottleneckBlock",
    "ClassToken",
    "DropPath",
    "GroupNormBottleneck",
    "ImagePreprocessing",
    "MultiHeadAttention",
    "PatchEmbedding",
    "PositionEmbedding",
    "Preprocessing",
    "Shortcut",
    "StandardizedConv2D",
    "TokenPooling",
    "TransformerBlock",
    "find_preprocessing",
    "gelu",
    "resample_position_embedding",
]
