"""Test settings shared by the whole suite."""

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with a clean Keras session and the float32 policy, so tests do not leak into each other.

    The garbage a test leaves is collected after it, but what was alive before it is frozen out of the collector
    (`gc.freeze`): a full collection walks the ~470k objects of TensorFlow and Keras, 0.2-0.8 s a test on 2 cores.
    """
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session(free_memory=False)
    gc.collect()
    gc.freeze()
