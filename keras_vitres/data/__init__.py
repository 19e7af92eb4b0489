"""Datasets and input pipelines: CIFAR archives, image folders, the embedded digits default, tf.data pipelines.

TensorFlow is imported inside the functions that build tf.data graphs: the builders import this package (for
`checks`), and under the JAX backend importing TensorFlow as well takes 3 s more (measured with Keras 3.15).
"""

from keras_vitres.data.augment import AUGMENTS
from keras_vitres.data.datasets import list_datasets, load_dataset
from keras_vitres.data.folder import image_folder_dataset
from keras_vitres.data.pipeline import make_pipeline, pixel_mean
from keras_vitres.data.splits import DataSplits

__all__ = [
    "AUGMENTS",
    "DataSplits",
    "image_folder_dataset",
    "list_datasets",
    "load_dataset",
    "make_pipeline",
    "pixel_mean",
]
