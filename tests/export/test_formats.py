"""Every family in every format, run in its own runtime: ONNX Runtime, OpenVINO and LiteRT in fresh processes that
import neither Keras nor TensorFlow, each checking all families at once, against the Keras model.

Tiny models of the public builders (32x32 inputs, one or two blocks), logits out, with random heads and BatchNorm
statistics so that every layer's arithmetic shows in the outputs. Then `keras-vitres predict`'s path (NumPy/PIL
decoding and each runtime, `load_exported`) against the SavedModel's `serving_bytes` signature on real photos.
"""

import io
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_vitres
from keras_vitres.export import export_model, load_exported, read_export_metadata
from keras_vitres.export.images import prepare_image
from keras_vitres.layers import Preprocessing
from tests.helpers import FLOAT32_EPS, sample_photos, tiny_vit

for runtime_module in ("tf2onnx", "onnxruntime", "openvino", "ai_edge_litert"):
    pytest.importorskip(runtime_module)

# The runtimes' extras; also slow (about 55 s of exports and runtimes on one core), so that the default suite leaves them to CI's
# slow+extras step even where the runtimes are installed.
pytestmark = [pytest.mark.extras, pytest.mark.slow]

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIMES = ("onnx", "openvino", "litert")
TINY_HYBRID = dict(trunk="batchnorm", resnet_stage_blocks=(1, 1), resnet_stage_filters=(8, 16), hidden_dim=32,
                   num_layers=1, num_heads=2, mlp_dim=64, input_shape=(32, 32, 3), classes=5)  # fmt: skip
# name -> (builder, the preprocessing given to the export: presets, a mean/std, and a crop with bicubic resizing)
FAMILIES = {
    "resnet_cifar": (lambda: keras_vitres.ResNet(8, stem="cifar", classifier_activation=None),
                     {"mean": [125.3, 123.0, 113.9], "std": [63.0, 62.1, 66.7]}),
    "resnet_imagenet": (lambda: keras_vitres.ResNet(stem="imagenet", block="bottleneck", stage_blocks=(1, 1),
                                                    stage_filters=(8, 16), version="v1.5", input_shape=(32, 32, 3),
                                                    classes=5, classifier_activation=None), "imagenet"),
    "bit": (lambda: keras_vitres.BiTResNet(stage_blocks=(1, 1), input_shape=(32, 32, 3), classes=5,
                                           classifier_activation=None), "unit"),
    "vit": (lambda: tiny_vit(approximate_gelu=False),
            {"scale": 1 / 127.5, "offset": -1.0, "crop_fraction": 0.875, "interpolation": "bicubic"}),
    "hybrid": (lambda: keras_vitres.HybridViT(**TINY_HYBRID, approximate_gelu=False, classifier_activation=None),
               "inception"),
}
# float32 runtimes reorder sums (matmul blocking, fused convolution + BatchNorm, their own GELU kernels), so each
# layer's result may move by a few ulps of the sums' terms; through these nets that stays below 1e-4 of the logits'
# scale (measured here: at most 5e-6, BiT's weight standardisation). A wrong layer, scale or axis moves the
# log-probabilities by 1e-2 of it or more.
RELATIVE_TOLERANCE = 1e-4


def randomized(model, seed, pixels, preprocessing):
    """`model` with a random head and random BatchNorm statistics (the builders start both at fixed values), the
    head scaled so that the logits of `pixels` have a standard deviation of 1.5 (probabilities far from 0 and 1)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, variance.shape)])
    head = model.get_layer("predictions")
    kernel, bias = (rng.normal(0, 1.0, w.shape).astype("float32") for w in head.get_weights())
    head.set_weights([kernel, bias * 0])
    spread = keras_logits(model, pixels, preprocessing).std()
    head.set_weights([kernel * (1.5 / spread), bias])
    return model


def keras_logits(model, pixels, preprocessing):
    return keras.ops.convert_to_numpy(model(Preprocessing.resolve(preprocessing).apply_numpy(pixels), training=False))


def log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def assert_matches_logits(probabilities, logits, what, tolerance=RELATIVE_TOLERANCE):
    """log(probabilities) equals log_softmax(logits) within `tolerance` times the logits' scale (their largest
    distance from their row's mean): the comparison of the logits themselves, up to each row's constant."""
    scale = np.abs(logits - logits.mean(-1, keepdims=True)).max()
    error = np.abs(np.log(np.asarray(probabilities, np.float64)) - log_softmax(logits)).max()
    assert error <= tolerance * scale, f"{what}: error {error:.3g} is {error / scale:.3g} of the logits' scale"
    return error / scale


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Each family exported in every format; the runtimes' outputs from one fresh process per runtime."""
    root = tmp_path_factory.mktemp("formats")
    rng = np.random.default_rng(0)
    cases = {}
    for i, (name, (build, preprocessing)) in enumerate(FAMILIES.items()):
        pixels = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
        model = randomized(build(), i, pixels, preprocessing)
        names = [f"{name}_class_{c}" for c in range(model.output_shape[-1])]
        paths = {fmt: export_model(model, root / name / fmt, fmt, class_names=names, top_k=3,
                                   preprocessing=preprocessing, preset=f"tiny_{name}", weights="random")
                 for fmt in ("saved_model", *RUNTIMES)}
        cases[name] = dict(model=model, names=names, pixels=pixels, paths=paths, preprocessing=preprocessing,
                           logits=keras_logits(model, pixels, preprocessing))
    np.savez(root / "requests.npz", **{f"pixels_{i}": c["pixels"] for i, c in enumerate(cases.values())})
    results = {}
    for runtime in RUNTIMES:
        out = root / f"{runtime}.npz"
        subprocess.run([sys.executable, os.path.join(HERE, "runtime_client.py"), runtime, str(root / "requests.npz"),
                        str(out), *[c["paths"][runtime] for c in cases.values()]],
                       check=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        results[runtime] = dict(np.load(out, allow_pickle=False))
    return cases, results


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_family_runs_in_the_runtime_alone_and_matches_keras(exports, runtime):
    cases, results = exports
    answer = results[runtime]
    assert list(answer["imported"]) == []
    for i, (name, case) in enumerate(cases.items()):
        probabilities = answer[f"{i}_probabilities"]
        assert 0.05 < probabilities.max() < 0.999, f"{name}: saturated outputs would prove little"
        assert_matches_logits(probabilities, case["logits"], f"{name} in {runtime}")
        top = np.argsort(-case["logits"], axis=-1, kind="stable")[:, :3]
        np.testing.assert_array_equal(answer[f"{i}_classes"], top, err_msg=name)
        np.testing.assert_allclose(answer[f"{i}_scores"], np.take_along_axis(probabilities, top, -1), rtol=FLOAT32_EPS)
        np.testing.assert_array_equal(answer[f"{i}_labels"], case["names"])
        if runtime != "openvino":  # OpenVINO's names are in labels.txt only
            np.testing.assert_array_equal(answer[f"{i}_class_names"], np.array(case["names"])[top])


def test_litert_runs_the_transformers_with_builtin_ops_and_its_gelu(exports):
    _, results = exports
    for i, name in enumerate(FAMILIES):
        ops = set(results["litert"][f"{i}_ops"])
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), f"{name}: {sorted(ops)}"
        assert ("GELU" in ops) == (name in ("vit", "hybrid")), f"{name}: {sorted(ops)}"


def test_sidecar_metadata_states_provenance_format_and_precision(exports):
    cases, _ = exports
    for name, case in cases.items():
        for fmt, path in case["paths"].items():
            meta = read_export_metadata(path)
            assert (meta["format"], meta["precision"], meta["preset"], meta["weights"]) == (
                fmt, "f32", f"tiny_{name}", "random")
            assert meta["image_size"] == [32, 32] and meta["created"].endswith("+00:00")
            assert meta["class_names"] == case["names"] and os.path.isfile(os.path.join(path, "labels.txt"))
            assert set(meta["files"].values()) <= set(os.listdir(path))
        vit = read_export_metadata(cases["vit"]["paths"]["onnx"])
        assert vit["crop_fraction"] == 0.875 and vit["resize_method"] == "bicubic"
    assert read_export_metadata(cases["vit"]["paths"]["openvino"])["runtime"] == {"INFERENCE_PRECISION_HINT": "f32"}


def encoded_photos():
    """Real photos as the files a user has: JPEG at full size (300 to 640 pixels a side), PNG at 48x40."""
    from PIL import Image

    files = []
    for photo in sample_photos().values():
        for fmt, image in (("JPEG", Image.fromarray(photo)), ("PNG", Image.fromarray(photo).resize((40, 48)))):
            buffer = io.BytesIO()
            image.save(buffer, fmt, quality=90)
            files.append(buffer.getvalue())
    return files


@pytest.mark.parametrize("fmt", RUNTIMES)
def test_predict_matches_the_saved_models_bytes_signature_on_real_photos(exports, fmt):
    """The predict path (decoding, resize and crop in NumPy/PIL and TensorFlow's JPEG decoder, then the runtime)
    against the SavedModel's own decoding: the pixels agree to 2e-4 (the resize's summation order), so the outputs
    agree as the float32 runtimes do."""
    import tensorflow as tf

    cases, _ = exports
    files = encoded_photos()
    for name, case in cases.items():
        serve_bytes = tf.saved_model.load(case["paths"]["saved_model"]).signatures["serving_bytes"]
        expected = serve_bytes(image_bytes=tf.constant(files))["probabilities"].numpy()
        exported = load_exported(case["paths"][fmt])
        pixels = np.stack([prepare_image(f, exported.metadata) for f in files])
        answer = exported.predict(pixels)
        assert_matches_logits(answer["probabilities"], np.log(expected.astype(np.float64)), f"{name} via {fmt}")
        np.testing.assert_array_equal(answer["classes"][:, 0], expected.argmax(-1), err_msg=name)
        np.testing.assert_array_equal(answer["class_names"][:, 0], np.array(case["names"])[expected.argmax(-1)])


def test_litert_refuses_ops_without_builtin_kernels_at_export(tmp_path):
    """An op LiteRT has only through the Flex delegate (here a bare erf) fails the export with its name, and nothing
    is written: never a file that fails to load."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(keras.ops.erf)(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x), name="with_erf")
    with pytest.raises(ValueError, match=r"with_erf.*builtin ops only.*Erf.*Flex"):
        export_model(model, tmp_path / "out", "litert", output="logits")
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []
