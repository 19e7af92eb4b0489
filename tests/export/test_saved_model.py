"""SavedModel export: the TF Serving contract, checked with TensorFlow alone in a fresh process."""

import io
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data as photos

import keras_vitres
from keras_vitres.export import (
    apply_preprocessing_numpy,
    export_saved_model,
    read_export_metadata,
    resize_like_serving,
    resolve_preprocessing,
)
from tests.helpers import tiny_vit

HERE = os.path.dirname(os.path.abspath(__file__))
CIFAR_NORMALISATION = {"mean": [125.3, 123.0, 113.9], "std": [63.0, 62.1, 66.7]}
SUBPROCESS_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def photo_batch(size):
    """Real photographs (scikit-image's cat and astronaut), as encoded files and as exact-size pixels."""
    small = [
        np.asarray(Image.fromarray(p).resize(size[::-1], Image.BILINEAR))
        for p in (photos.chelsea(), photos.astronaut())
    ]
    png = [encode(p, "PNG") for p in small]  # already at the model's size: decoded pixels are exact
    jpeg = [
        encode(photos.astronaut(), "JPEG", quality=90),
        encode(photos.chelsea(), "JPEG", quality=85),
    ]  # resized in-graph
    return np.stack(small).astype("float32"), png, jpeg


def tiny_vit_with_head():
    model = tiny_vit(classes=10, name="tiny_vit")
    head = model.get_layer("predictions")  # zero-initialised: give it weights, or every class scores the same
    rng = np.random.default_rng(1)
    head.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in head.get_weights()])
    return model


def keras_probabilities(model, images, preprocessing):
    scores = keras.ops.convert_to_numpy(
        model(apply_preprocessing_numpy(images, resolve_preprocessing(preprocessing)), training=False)
    )
    return (
        scores
        if model.layers[-1].activation.__name__ == "softmax"
        else keras.ops.convert_to_numpy(keras.ops.softmax(scores))
    )


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Two exports (a ResNet ending in softmax with class names, a ViT ending in logits) and their served outputs."""
    root = tmp_path_factory.mktemp("exports")
    rng = np.random.default_rng(0)
    cases = [
        dict(
            model=keras_vitres.ResNet(8, stem="cifar"),
            preprocessing=CIFAR_NORMALISATION,
            class_names=["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        ),
        dict(model=tiny_vit_with_head(), preprocessing="inception", class_names=None),
    ]
    requests = {}
    for i, case in enumerate(cases):
        case["path"] = export_saved_model(
            case["model"],
            root / case["model"].name,
            class_names=case["class_names"],
            top_k=3,
            preprocessing=case["preprocessing"],
        )
        case["float"] = rng.uniform(0, 255, (5, 32, 32, 3)).astype("float32")
        case["exact"], png, case["jpeg"] = photo_batch((32, 32))
        jpeg = case["jpeg"]
        requests[f"float_{i}"] = case["float"]
        for kind, files in (("png", png), ("jpeg", jpeg)):
            requests.update({f"{kind}_{i}_{j}": np.frombuffer(f, np.uint8) for j, f in enumerate(files)})
    np.savez(root / "requests.npz", **requests)
    subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "serving_client.py"),
            str(root / "requests.npz"),
            str(root / "results.npz"),
            *[c["path"] for c in cases],
        ],
        check=True,
        env=SUBPROCESS_ENV,
        timeout=300,
    )
    results = dict(np.load(root / "results.npz", allow_pickle=False))
    return cases, results


def test_layout_is_tf_serving_versions(exports):
    cases, _ = exports
    for case in cases:
        parent, version = os.path.split(case["path"])
        assert version == "1"
        assert os.path.isfile(os.path.join(case["path"], "saved_model.pb"))
        assert os.path.isdir(os.path.join(case["path"], "variables"))
        assert sorted(os.listdir(parent)) == ["1"]  # no staging folder left behind
    meta = read_export_metadata(cases[1]["path"])
    assert meta["model_output"] == "logits" and meta["image_size"] == [32, 32]
    assert meta["preprocessing"]["scale"] == pytest.approx(1 / 127.5) and meta["preprocessing"]["source"] == "export"


def test_loads_without_keras_and_matches_the_keras_model(exports):
    cases, results = exports
    assert list(results["keras_imported"]) == []
    for i, case in enumerate(cases):
        expected = keras_probabilities(case["model"], case["float"], case["preprocessing"])
        assert 0.05 < expected.max() < 0.999, "outputs saturated: the comparison would prove little"
        np.testing.assert_allclose(results[f"float_{i}_probabilities"], expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(results[f"single_{i}_probabilities"], expected[:1], atol=1e-5, rtol=0)
        np.testing.assert_allclose(results[f"float_{i}_probabilities"].sum(-1), 1.0, atol=1e-5)
        top = np.argsort(-expected, axis=-1, kind="stable")[:, :3]
        np.testing.assert_array_equal(results[f"float_{i}_classes"], top)
        np.testing.assert_allclose(results[f"float_{i}_scores"], np.take_along_axis(expected, top, -1), atol=1e-5)


def test_class_names_follow_the_top_classes(exports):
    cases, results = exports
    names = np.array(cases[0]["class_names"])
    served = results["float_0_class_names"].astype(str)
    np.testing.assert_array_equal(served, names[results["float_0_classes"]])
    assert "float_1_class_names" not in results  # no names given, no output


def test_bytes_signature_matches_float_path_on_real_photos(exports):
    cases, results = exports
    for i, case in enumerate(cases):
        # PNG at the model's size: the decoded pixels are the original ones, so bytes == Keras on those pixels.
        np.testing.assert_array_equal(results[f"png_{i}_pixels"], case["exact"])
        expected = keras_probabilities(case["model"], case["exact"], case["preprocessing"])
        np.testing.assert_allclose(results[f"png_{i}_probabilities"], expected, atol=1e-5, rtol=0)
        # JPEG at 512x512 and 300x451, decoded and resized inside the graph: same as the float path on the
        # pixels TensorFlow decodes and resizes the same way.
        np.testing.assert_allclose(
            results[f"jpeg_{i}_probabilities"], results[f"jpeg_{i}_via_float"], atol=1e-5, rtol=0
        )
        decoded = [tf.io.decode_jpeg(requests_jpeg) for requests_jpeg in case["jpeg"]]
        np.testing.assert_allclose(
            np.stack([resize_like_serving(d, (32, 32)) for d in decoded]), results[f"jpeg_{i}_pixels"]
        )
        expected = keras_probabilities(case["model"], results[f"jpeg_{i}_pixels"], case["preprocessing"])
        np.testing.assert_allclose(results[f"jpeg_{i}_probabilities"], expected, atol=1e-5, rtol=0)
        assert results[f"jpeg_{i}_classes"].shape == (2, 3)


def test_saved_model_cli_lists_both_signatures(exports):
    cases, _ = exports
    shown = subprocess.run(
        ["saved_model_cli", "show", "--all", "--dir", cases[0]["path"]],
        check=True,
        capture_output=True,
        text=True,
        env=SUBPROCESS_ENV,
        timeout=300,
    ).stdout
    default = shown.split("signature_def['serving_default']")[1].split("Method name")[0]
    as_bytes = shown.split("signature_def['serving_bytes']")[1].split("Method name")[0]
    assert "inputs['images']" in default and "DT_FLOAT" in default and "(-1, 32, 32, 3)" in default
    assert "inputs['image_bytes']" in as_bytes and "DT_STRING" in as_bytes
    for signature in (default, as_bytes):
        for output in ("probabilities", "classes", "scores", "class_names"):
            assert f"outputs['{output}']" in signature


def test_wrong_inputs_get_clear_errors_and_the_next_request_works(exports):
    cases, _ = exports
    loaded = tf.saved_model.load(cases[0]["path"])
    serve, serve_bytes = loaded.signatures["serving_default"], loaded.signatures["serving_bytes"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="float"):
        serve(images=tf.zeros((1, 32, 32, 3), tf.int32))
    for shape in [(1, 31, 32, 3), (32, 32, 3), (1, 32, 32, 1)]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected shape \[\?,32,32,3\]"):
            serve(images=tf.zeros(shape))
    gif = encode(photos.chelsea(), "GIF")
    for bad in [b"not an image", gif, b""]:
        with pytest.raises(tf.errors.InvalidArgumentError, match="neither JPEG nor PNG"):
            serve_bytes(image_bytes=tf.constant([bad]))
    with pytest.raises(tf.errors.InvalidArgumentError):
        serve_bytes(image_bytes=tf.constant([encode(photos.chelsea(), "PNG")[:200]]))  # truncated PNG
    ok = serve_bytes(image_bytes=tf.constant([encode(photos.chelsea(), "JPEG")]))
    assert ok["probabilities"].shape == (1, 10)


def test_versions_increment_and_never_overwrite_silently(tmp_path):
    model = keras_vitres.ResNet(8, stem="cifar")
    assert export_saved_model(model, tmp_path).endswith(os.sep + "1")
    assert export_saved_model(model, tmp_path).endswith(os.sep + "2")
    with pytest.raises(FileExistsError, match="Version 2 already exists"):
        export_saved_model(model, tmp_path, version=2)
    assert export_saved_model(model, tmp_path, version=2, overwrite=True).endswith(os.sep + "2")
    assert export_saved_model(model, tmp_path, version=10).endswith(os.sep + "10")
    assert sorted(os.listdir(tmp_path), key=int) == ["1", "2", "10"]


def test_model_with_its_own_preprocessing_layer_takes_raw_pixels(tmp_path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255, name="preprocessing")(inputs)
    outputs = keras_vitres.ResNet(8, stem="cifar", classifier_activation=None)(x)
    model = keras.Model(inputs, outputs, name="runner_model")
    with pytest.raises(ValueError, match="normalise twice"):
        export_saved_model(model, tmp_path, preprocessing="unit")
    path = export_saved_model(model, tmp_path)
    assert read_export_metadata(path)["preprocessing"]["source"] == "model layer"
    assert read_export_metadata(path)["preprocessing"]["layer"] == "Rescaling"
    assert read_export_metadata(path)["model_output"] == "logits"  # found inside the nested model
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images))
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(images, training=False)))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5, rtol=0)


def test_a_model_with_an_image_preprocessing_layer_is_served_and_described_by_it(tmp_path):
    from keras_vitres.layers import Preprocessing

    mean = np.random.default_rng(3).uniform(0, 255, (32, 32, 3))
    description = Preprocessing(image_size=(32, 32), mean=mean, std=64.0, interpolation="nearest",
                                crop_fraction=0.5)
    inputs = keras.Input((32, 32, 3))
    x = description.layer(name="preprocessing", dtype="float32")(inputs)
    model = keras.Model(inputs, keras_vitres.ResNet(8, stem="cifar")(x), name="described")
    path = export_saved_model(model, tmp_path)
    meta = read_export_metadata(path)
    assert meta["preprocessing"]["source"] == "model layer" and meta["preprocessing"]["layer"] == "ImagePreprocessing"
    assert Preprocessing.from_dict({k: meta["preprocessing"][k] for k in Preprocessing.fields()}) == description
    assert meta["preprocessing"]["formula"] == "(x - mean (per pixel and channel)) / 64"
    assert meta["resize_method"] == "nearest" and "central 0.5" in meta["signatures"]["serving_bytes"]["applies"]
    # The bytes signature keeps the central half, resizes with nearest neighbours, then the model's layer applies.
    photo = np.asarray(Image.fromarray(photos.chelsea()).resize((64, 64), Image.BILINEAR))
    served = tf.saved_model.load(path).signatures["serving_bytes"](image_bytes=tf.constant([encode(photo, "PNG")]))
    pixels = resize_like_serving(photo, (32, 32), "nearest", crop_fraction=0.5)
    np.testing.assert_array_equal(pixels, photo[16:48, 16:48].astype("float32"))
    expected = keras.ops.convert_to_numpy(model(pixels[None], training=False))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5, rtol=0)


def test_a_keras_preprocessing_layer_of_an_older_run_is_described_by_what_it_computes():
    from keras_vitres.export import model_preprocessing

    rng = np.random.default_rng(4)
    raw = rng.uniform(0, 255, (2, 4, 5, 3)).astype("float32")
    per_pixel = rng.uniform(0, 255, (4, 5, 3)).astype("float32")
    name = dict(name="preprocessing")
    layers = [
        keras.layers.Normalization(axis=(1, 2, 3), mean=per_pixel, variance=np.ones_like(per_pixel), **name),
        keras.layers.Normalization(axis=-1, mean=[1.0, 2.0, 3.0], variance=[4.0, 9.0, 16.0], **name),
        keras.layers.Rescaling(1 / 127.5, offset=-1.0, **name),
        keras.layers.Identity(**name),
    ]
    for layer in layers:
        inputs = keras.Input((4, 5, 3))
        model = keras.Model(inputs, layer(inputs))
        description, found = model_preprocessing(model)
        assert found is layer, type(layer).__name__
        np.testing.assert_allclose(description.apply_numpy(raw), model.predict(raw, verbose=0), atol=1e-4)
    inputs = keras.Input((4, 5, 3))
    assert model_preprocessing(keras.Model(inputs, keras.layers.Flatten()(inputs))) == (None, None)


def test_models_of_any_size_need_an_image_size(tmp_path):
    model = keras_vitres.ResNet(8, stem="cifar", input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="image_size"):
        export_saved_model(model, tmp_path)
    path = export_saved_model(model, tmp_path, image_size=(24, 40), preprocessing="unit")
    served = tf.saved_model.load(path).signatures["serving_bytes"](
        image_bytes=tf.constant([encode(photos.chelsea(), "PNG")])
    )
    assert served["probabilities"].shape == (1, 10)
    assert read_export_metadata(path)["image_size"] == [24, 40]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(class_names=["a", "b"]), ValueError, "list of 10 strings"),
        (dict(top_k=0), ValueError, "top_k"),
        (dict(preprocessing="nonsense"), ValueError, "preprocessing"),
        (dict(preprocessing={"mean": [1, 2]}), ValueError, "one per channel"),
        (dict(preprocessing={"std": 0}), ValueError, "positive"),
        (dict(preprocessing={"shift": 1}), ValueError, "unknown keys"),
        (dict(image_size=(64, 64)), ValueError, "must match the model's input"),
        (dict(output="maybe"), ValueError, "output"),
        (dict(version=0), ValueError, "version"),
        (dict(resize_method="fancy"), ValueError, "resize_method"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, error, match):
    model = keras_vitres.ResNet(8, stem="cifar")
    with pytest.raises(error, match=match):
        export_saved_model(model, tmp_path, **kwargs)
    assert not os.listdir(tmp_path) if os.path.isdir(tmp_path) else True


def test_output_kind_is_required_for_other_endings(tmp_path):
    model = keras_vitres.ResNet(8, stem="cifar", classifier_activation="sigmoid")
    with pytest.raises(ValueError, match="output='probabilities' or output='logits'"):
        export_saved_model(model, tmp_path)
    path = export_saved_model(model, tmp_path, output="logits", top_k=50)
    assert read_export_metadata(path)["top_k"] == 10  # capped at the number of classes
