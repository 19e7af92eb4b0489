"""The embedded offline default: scikit-learn's handwritten digits, upscaled to 32x32 RGB.

`sklearn.datasets.load_digits` ships with scikit-learn (no download): 1,797 real 8x8 scans of handwritten digits
(UCI "Optical Recognition of Handwritten Digits"), 4-bit grey levels 0..16, ten classes. They are rescaled to
0..255, upscaled bilinearly to 32x32 (the CIFAR input size of the ResNet paper's §4.2 nets) and repeated to three
channels, so every CIFAR preset trains on them unchanged in a few minutes on a CPU.
"""

import numpy as np

from keras_vitres.data.splits import stratified_split, take

IMAGE_SIZE = (32, 32)
TEST_SIZE = 360  # 20% of 1,797, as 1,437 train / 360 test
SPLIT_SEED = 0  # the test split is fixed, so accuracies are comparable across runs


def read_digits(image_size=IMAGE_SIZE):
    """Returns (train, test, class_names) for the digits, with a fixed stratified 1,437 / 360 split.

    Args:
        image_size: (height, width) to upscale the 8x8 scans to; (32, 32) by default.
    """
    import tensorflow as tf  # lazy: +3 s on the JAX backend (keras_vitres/data/__init__.py)
    from sklearn.datasets import load_digits  # lazy: 1.5 s to import, for this dataset only

    digits = load_digits()
    grey = digits.images.astype(np.float32) * (255.0 / 16.0)  # 4-bit grey levels 0..16 -> 0..255
    # Bilinear upscaling with half-pixel centres; no antialiasing is needed when enlarging.
    large = tf.image.resize(grey[..., None], image_size, method="bilinear").numpy()
    x = np.repeat(np.clip(np.round(large), 0, 255).astype(np.uint8), 3, axis=-1)
    y = digits.target.astype(np.int64)
    keep, holdout = stratified_split(y, TEST_SIZE, SPLIT_SEED)
    return take((x, y), keep), take((x, y), holdout), [str(i) for i in range(10)]
