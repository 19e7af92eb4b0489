"""Fixtures of the reliability suite: one small exported classifier, loaded the way TF Serving loads it."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import keras_vitres
from keras_vitres.export import export_saved_model


@dataclasses.dataclass
class Served:
    path: str
    serve: object  # the serving_default concrete function
    serve_bytes: object  # the serving_bytes concrete function
    loaded: object  # the restored object, kept alive with its variables


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """ResNet-8 (CIFAR stem, random weights with a non-trivial head) exported and loaded with TensorFlow alone."""
    model = keras_vitres.ResNet(8, stem="cifar", classifier_activation=None, name="resnet8_served")
    head = model.get_layer("predictions")
    rng = np.random.default_rng(0)
    head.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in head.get_weights()])
    path = export_saved_model(model, tmp_path_factory.mktemp("served"), preprocessing="unit", top_k=3)
    loaded = tf.saved_model.load(path)
    return Served(path, loaded.signatures["serving_default"], loaded.signatures["serving_bytes"], loaded)
