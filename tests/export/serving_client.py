"""Run as a script in a fresh Python process: loads exports with TensorFlow alone and records their outputs.

Usage: python serving_client.py REQUESTS.npz RESULTS.npz EXPORT_DIR [EXPORT_DIR ...]

keras and keras_vitres are made unimportable first, so the exports are shown to need neither. For each export i,
the requests file holds `float_i` (raw pixels), `png_i_j` / `jpeg_i_j` (encoded photos, as uint8); the results file gets every
output of both signatures, and the float signature's outputs on the pixels that the bytes graph decodes and
resizes, computed here with TensorFlow's own decoder.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
for blocked in ("keras", "keras_vitres", "tf_keras"):
    sys.modules[blocked] = None  # `import keras` now raises ImportError

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def as_saveable(array):
    """String outputs come back as object arrays of bytes; store them as unicode so no pickle is needed."""
    return array.astype(bytes).astype(str) if array.dtype == object else array


def evaluation_crop(image, meta):
    """The evaluation crop, written out independently: resize (aspect kept) so the image covers image_size /
    crop_fraction, then take the central image_size."""
    (height, width), (th, tw) = image.shape[:2], meta["image_size"]
    crop = meta["preprocessing"].get("crop_fraction", 1.0)
    scale = max(th / (crop * height), tw / (crop * width))
    new_h, new_w = max(th, int(round(height * scale))), max(tw, int(round(width * scale)))
    if (new_h, new_w) != (height, width):
        image = tf.image.resize(image, (new_h, new_w), method=meta["resize_method"], antialias=meta["antialias"])
    top, left = (new_h - th) // 2, (new_w - tw) // 2
    return image[top : top + th, left : left + tw]


def main(requests_path, results_path, export_dirs):
    requests = np.load(requests_path, allow_pickle=False)
    results = {}
    for i, export_dir in enumerate(export_dirs):
        loaded = tf.saved_model.load(export_dir)
        with open(os.path.join(export_dir, "assets.extra", "keras_vitres.json")) as f:
            meta = json.load(f)
        serve, serve_bytes = loaded.signatures["serving_default"], loaded.signatures["serving_bytes"]
        for key, value in serve(images=tf.constant(requests[f"float_{i}"])).items():
            results[f"float_{i}_{key}"] = as_saveable(value.numpy())
        single = serve(images=tf.constant(requests[f"float_{i}"][:1]))
        results[f"single_{i}_probabilities"] = single["probabilities"].numpy()
        for kind in ("png", "jpeg"):
            files = [requests[k].tobytes() for k in sorted(requests.files) if k.startswith(f"{kind}_{i}_")]
            for key, value in serve_bytes(image_bytes=tf.constant(files)).items():
                results[f"{kind}_{i}_{key}"] = as_saveable(value.numpy())
            pixels = []
            for data in files:
                image = tf.cast(tf.io.decode_image(data, channels=3, expand_animations=False), tf.float32)
                pixels.append(evaluation_crop(image, meta))
            results[f"{kind}_{i}_pixels"] = tf.stack(pixels).numpy()
            results[f"{kind}_{i}_via_float"] = serve(images=tf.stack(pixels))["probabilities"].numpy()
    imported = [
        m for m, module in sys.modules.items() if module is not None and m.split(".")[0] in ("keras", "keras_vitres")
    ]
    results["keras_imported"] = np.array(imported, dtype=str)
    np.savez(results_path, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
