"""Calibration images for int8 exports: the pixels the runtimes' quantizers measure activation ranges on.

Post-training quantization (NNCF for OpenVINO, `onnxruntime.quantization`, the LiteRT converter) needs a few
representative inputs; the run's own images are best (`calibration=` of `export_model`, `--calibration` of
`keras-vitres export`). Without them, crops of scikit-learn's two sample photos stand in: real photographs, so the
ranges are those of natural images, though not of the model's classes.
"""

import os

import numpy as np

from keras_vitres.export.images import IMAGE_SUFFIXES, prepare_image, resize_and_crop

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


def image_files(folder, count=None, seed=0):
    """The JPEG and PNG files under `folder` (recursively, hidden files and folders left out), sorted; `count` of
    them drawn at random (seeded) when there are more. Nothing is decoded."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(root, n) for n in names if not n.startswith(".") and n.lower().endswith(IMAGE_SUFFIXES)]
    found.sort()
    if count is not None and len(found) > count:
        found = sorted(np.random.default_rng(seed).choice(found, count, replace=False).tolist())
    return found


def _read_files(paths, geometry):
    images = []
    for path in paths:
        with open(path, "rb") as f:
            try:
                images.append(prepare_image(f.read(), geometry))
            except ValueError as error:
                raise ValueError(f"Calibration image {path!r}: {error}") from None
    return np.stack(images)


def check_calibration(calibration, contract):
    """The calibration pixels as a float32 (N, H, W, C) array, from `calibration`:

    None (crops of the sample photos), a folder (up to 16 of its JPEG and PNG files, drawn at random, seeded), a list
    of image files (decoded, resized and cropped as the bytes signature does), or raw pixels (N, H, W, C).
    """
    size, channels = tuple(contract.image_size), contract.channels
    if calibration is None:
        return sample_calibration(size)
    geometry = dict(image_size=size, preprocessing=dict(crop_fraction=contract.crop_fraction),
                    resize_method=contract.resize_method, antialias=contract.antialias, max_pixels=contract.max_pixels)
    if isinstance(calibration, (str, os.PathLike)):
        if not os.path.isdir(calibration):
            raise FileNotFoundError(f"`calibration` folder not found: {os.fspath(calibration)!r}.")
        paths = image_files(calibration, DEFAULT_CALIBRATION_IMAGES)
        if not paths:
            raise ValueError(f"`calibration` folder {os.fspath(calibration)!r} holds no JPEG or PNG files.")
        return _read_files(paths, geometry)
    if isinstance(calibration, (list, tuple)) and calibration and isinstance(calibration[0], (str, os.PathLike)):
        return _read_files(calibration, geometry)
    array = np.asarray(calibration, np.float32)
    if array.ndim != 4 or tuple(array.shape[1:]) != (*size, channels) or len(array) == 0:
        raise ValueError(
            f"`calibration` must be a folder, image files, or raw pixels of shape (N, {size[0]}, {size[1]}, "
            f"{channels}) with N >= 1; received an array of shape {array.shape}."
        )
    return array
