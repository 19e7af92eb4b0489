"""The preprocessing that comes with named weights, as the export states and applies it: a model built with the
weights' preprocessing as its first layer, then wrapped for fine-tuning (a new head around it), is exported with
the preprocessing it applies, not with none."""

import keras
import numpy as np
import tensorflow as tf

import keras_vitres
from keras_vitres.export import export_saved_model, read_export_metadata
from keras_vitres.presets.table import CAFFE


def test_a_wrapped_model_exports_the_preprocessing_it_applies(tmp_path):
    base = keras_vitres.ResNet(stem="imagenet", block="bottleneck", stage_blocks=(1, 1), stage_filters=(8, 16),
                               use_bias=True, include_top=False, pooling="avg", input_shape=(32, 32, 3),
                               preprocessing=CAFFE)  # fmt: skip
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(base(inputs)), name="finetuned")
    path = export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"])
    stated = read_export_metadata(path)["preprocessing"]
    assert stated["source"] == "model layer" and stated["layer"] == "ImagePreprocessing"
    assert stated["channel_order"] == "bgr" and stated["mean"] == [103.939, 116.779, 123.68] and stated["std"] == 1.0
    assert stated["image_size"] == [32, 32]  # the model's own size, not the weights' 224
    assert stated["formula"] == "x[..., ::-1] - mean (per channel)"
    # It is applied once, inside the model: the served scores are the Keras model's on raw pixels.
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), keras.ops.convert_to_numpy(model(images)), atol=1e-6)
