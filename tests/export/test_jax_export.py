"""A ViT built and trained on JAX exports to a SavedModel that TensorFlow alone serves (CI's JAX step runs this).

JAX's erf lowers to an op that the TensorFlow side of its export cannot run ("unregistered operation
'vhlo.composite_v2'"); the exact GELU off TensorFlow is arithmetic and exp (`keras_vitres.layers.gelu`), which
exports as plain TensorFlow ops.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.helpers import tiny_vit

pytestmark = pytest.mark.backend_agnostic

# TensorFlow alone: Keras, keras_vitres and JAX unimportable (TensorFlow's SavedModel loader imports Keras when it
# can, so it is blocked rather than checked for, as tests/export/serving_client.py does).
SERVE = """
import sys
for blocked in ("keras", "keras_vitres", "tf_keras", "jax"):
    sys.modules[blocked] = None
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
np.save(sys.argv[3], loaded.serve(tf.constant(np.load(sys.argv[2]))).numpy())
"""


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the JAX to TensorFlow export; CI's JAX step runs it")
def test_a_vit_trained_on_jax_is_served_by_tensorflow_alone(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_vit(approximate_gelu=False)  # the exact GELU, which broke this export before
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    before = [np.array(w) for w in model.trainable_weights]
    model.fit(x, rng.integers(0, 5, 8), batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(b, np.array(w)) for b, w in zip(before, model.trainable_weights))
    model.export(str(tmp_path / "served"), format="tf_saved_model", verbose=False)
    np.save(tmp_path / "x.npy", x)
    subprocess.run([sys.executable, "-c", SERVE, str(tmp_path / "served"), str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npy")], check=True, timeout=300,
                   env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"})
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    served = np.load(tmp_path / "y.npy")
    # The same float32 graph in two compilers: a few float32 roundings of the logits' scale.
    np.testing.assert_allclose(served, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)
