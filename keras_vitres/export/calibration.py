"""Calibration images for int8 exports: the pixels the runtimes' quantizers measure activation ranges on.

Post-training quantization (NNCF for OpenVINO, `onnxruntime.quantization`, the LiteRT converter) needs a few
representative inputs; the run's own images are best (`calibration=` of `export_model`, `--calibration` of
`keras-vitres export`). Without them, crops of scikit-learn's two sample photos stand in: real photographs, so the
ranges are those of natural images, though not of the model's classes.
"""

import numpy as np

from keras_vitres.export.images import resize_and_crop

DEFAULT_CALIBRATION_IMAGES = 16


def sample_calibration(image_size, count=DEFAULT_CALIBRATION_IMAGES, seed=0):
    """`count` float32 (H, W, 3) raw-pixel crops of scikit-learn's sample photos (china, flower), resized to
    `image_size`: random windows of a third to all of the shorter side, half of them flipped."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    images = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.uniform(1 / 3, 1.0) * min(photo.shape[:2]))
        top, left = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
        crop = resize_and_crop(photo[top : top + side, left : left + side], image_size)
        images.append(crop[:, ::-1] if i % 2 else crop)
    return np.stack(images).astype(np.float32)


def check_calibration(calibration, image_size, channels):
    """The calibration pixels as a float32 (N, H, W, C) array: `calibration` checked, or the sample photos."""
    if calibration is None:
        return sample_calibration(image_size)
    array = np.asarray(calibration, np.float32)
    if array.ndim != 4 or tuple(array.shape[1:]) != (*image_size, channels) or len(array) == 0:
        raise ValueError(
            f"`calibration` must be raw pixels of shape (N, {image_size[0]}, {image_size[1]}, {channels}) with N >= 1; "
            f"received an array of shape {array.shape}."
        )
    return array
