"""Checks every layer and model of the package must pass (the keras-hub pattern of shared test helpers)."""

import os

import keras
import numpy as np

# float32's machine epsilon (2**-23): tolerances in the suite are multiples of it times the size of what is compared.
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def assert_close(actual, expected, ulps, scale=None, name="result"):
    """Asserts that float32 `actual` is within `ulps` float32 ulps of `scale` of `expected`, element by element.

    `scale` is the size of the values the computation rounds: by default the largest |expected|, for results whose
    terms are no larger than they are; where every expected value is 0, the result must be 0. Returns the largest
    error in those ulps.
    """
    actual, expected = (np.asarray(keras.ops.convert_to_numpy(v), "float64") for v in (actual, expected))
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} against {expected.shape}"
    scale = float(np.abs(expected).max()) if scale is None else float(scale)
    if scale == 0:  # every expected value is an exact 0, with nothing to scale a rounding by: so must the result be
        np.testing.assert_array_equal(actual, expected, err_msg=name)
        return 0.0
    error = float(np.abs(actual - expected).max()) / (FLOAT32_EPS * scale)
    assert error <= ulps, f"{name}: error of {error:.1f} float32 ulps of {scale:.3g}, beyond {ulps}"
    return error


def trainable_params(model):
    """How many trainable parameters `model` has (Keras' `count_params` counts all of them)."""
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def assert_keras_round_trip(model, inputs, tmp_path):
    """Saves `model` as .keras and reloads it with safe_mode=True; the outputs must be the same.

    The same weights through the same operations: up to a few float32 roundings of the largest output, where the
    reloaded model's kernels run in another order (8 float32 ulps of it).
    """
    path = os.path.join(tmp_path, f"{model.name}.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    expected = keras.ops.convert_to_numpy(model(inputs, training=False)).astype("float32")
    actual = keras.ops.convert_to_numpy(restored(inputs, training=False)).astype("float32")
    np.testing.assert_allclose(actual, expected, atol=8 * FLOAT32_EPS * np.abs(expected).max(), rtol=0)
    return restored


def assert_trains_and_saves(layer, input_shape, tmp_path, call=None, batch_size=2):
    """One training step through a model built on `layer` changes its weights (where it has some) at a finite loss,
    and the trained model's .keras file reloads to the same outputs: what Keras' `run_layer_test` does not check.

    `call(layer, x)` applies the layer to the model's input (by default `layer(x)`).
    """
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype("float32")
    inputs = keras.Input(input_shape)
    outputs = layer(inputs) if call is None else call(layer, inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(outputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    before = [keras.ops.convert_to_numpy(w).copy() for w in layer.trainable_weights]
    history = model.fit(x, np.ones((batch_size, 1), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights]
    if before:
        assert any(not np.array_equal(b, a) for b, a in zip(before, after)), "a training step changed no weight"
    assert_keras_round_trip(model, x, tmp_path)


def tiny_vit(**overrides):
    """A two-block ViT on 32x32 inputs (patch 8, width 32, 2 heads, logits out, tanh GELU as the official
    checkpoints): small enough to build in a second, with every part a real preset has."""
    import keras_vitres

    config = dict(
        patch_size=8,
        hidden_dim=32,
        num_layers=2,
        num_heads=2,
        mlp_dim=64,
        input_shape=(32, 32, 3),
        classes=5,
        classifier_activation=None,
        approximate_gelu=True,
    )
    return keras_vitres.VisionTransformer(**{**config, **overrides})


# Unit roundoff of the low-precision formats (half the distance from 1 to the next number): 8 and 11 significand
# bits. A result rounded once to such a format has a relative error of at most u.
UNIT_ROUNDOFF = {"bfloat16": 2.0**-8, "float16": 2.0**-11}


def rounding_error(actual, reference, dtype, scale=None):
    """The norm-wise relative error ||actual - reference|| / ||reference|| of a low-precision result against the
    float32 result of the same computation, in units of `dtype`'s unit roundoff u.

    `scale` replaces ||reference|| where the exact result is zero or cancels: the error is then measured against the
    size of the terms that cancel.
    """
    actual, reference = (np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(v, "float32")), "float64")
                         for v in (actual, reference))
    scale = np.linalg.norm(reference) if scale is None else scale
    return float(np.linalg.norm(actual - reference) / scale / UNIT_ROUNDOFF[dtype])


def assert_within_rounding(actual, reference, dtype, roundings, scale=None, name="result"):
    """Asserts that a low-precision result is within the error budget of `roundings` roundings of the float32 one.

    Each well-conditioned step of a computation (a matmul accumulating in float32, an elementwise function, a cast)
    adds at most about u of relative error, so a result whose longest path through the computation rounds
    `roundings` times stays within `roundings * u` of the float32 result (first order, norm-wise). A real difference
    (a wrong scale, a wrong axis, a skipped term) changes the result by far more than that.
    """
    error = rounding_error(actual, reference, dtype, scale)
    assert error <= roundings, f"{name}: error {error:.1f}u exceeds the budget of {roundings} roundings of {dtype}"
    return error


def sample_photos():
    """Real photos available offline: scikit-image's astronaut, coffee, chelsea, rocket and scikit-learn's china and
    flower (uint8 RGB, 300 to 640 pixels a side), by name."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
            "rocket": data.rocket(), "china": china, "flower": flower}


def write_photo_folder(root, names, per_class=12, seed=0, sizes=(40, 90), corrupt=0):
    """Writes a class-per-sub-folder image folder: each class holds random crops of one photo, of random sizes
    (`sizes`: the range of the crop's sides, so the images differ in size and shape), as JPEG and PNG files in
    turn, and `corrupt` unreadable files in the first class. Returns the class names (sorted)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = sample_photos()
    for name in names:
        photo = photos[name]
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            side = rng.integers(sizes[0], sizes[1] + 1)
            h, w = side, int(side * rng.uniform(0.7, 1.4))
            # a crop of a random window, about a third of the photo, shrunk to (h, w)
            ch, cw = photo.shape[0] // 2, photo.shape[1] // 2
            top, left = rng.integers(0, photo.shape[0] - ch), rng.integers(0, photo.shape[1] - cw)
            crop = Image.fromarray(photo[top : top + ch, left : left + cw]).resize((w, h), Image.BILINEAR)
            if i % 2:
                crop.save(os.path.join(folder, f"{i:03d}.png"))
            else:
                crop.save(os.path.join(folder, f"{i:03d}.jpg"), quality=90)
    for i in range(corrupt):
        with open(os.path.join(root, names[0], f"broken{i}.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff not really a jpeg")
    return sorted(names)
