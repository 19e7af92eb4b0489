"""Weights by name: keras.applications' ResNet files served by a local HTTP server, verified by their md5, loaded
into the keras.applications layout with its preprocessing as the model's first layer; and a Kaggle handle that
cannot be reached (no network is used)."""

import functools
import hashlib
import http.server
import json
import os
import threading
import time

import keras
import numpy as np
import pytest

import keras_vitres
from keras_vitres.layers import ImagePreprocessing, find_preprocessing
from keras_vitres.presets import PRESETS
from tests.weights.test_keras_applications import randomise, save_legacy_weights

SMALL = (64, 64, 3)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An HTTP server on 127.0.0.1 serving a folder; yields (folder, base URL, request log)."""
    folder = tmp_path_factory.mktemp("published")
    requests = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/resnet/", requests
    httpd.shutdown()
    httpd.server_close()


def md5_of(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def published_resnet50(server):
    """keras.applications' own ResNet50 (random weights, BN statistics included) written in the layout of its
    published files, with and without the top; returns (source models, {kind: md5})."""
    folder, _, _ = server
    (folder / "resnet").mkdir()
    full = randomise(keras.applications.ResNet50(weights=None, classifier_activation=None))
    notop = keras.applications.ResNet50(weights=None, include_top=False, input_shape=SMALL)
    for layer in notop.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())
    top_file = save_legacy_weights(full, folder / "resnet" / "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    notop_file = save_legacy_weights(notop, folder / "resnet" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    return dict(top=full, notop=notop), dict(top=md5_of(top_file), notop=md5_of(notop_file))


@pytest.fixture
def pinned(server, published_resnet50, monkeypatch, tmp_path):
    """The preset's pinned md5 table and keras.applications' base URL pointed at the test's files and server."""
    _, url, requests = server
    _, hashes = published_resnet50
    files = PRESETS["resnet50"]["weights"]["imagenet"]["files"]
    for kind, digest in hashes.items():
        monkeypatch.setitem(files[kind], "md5", digest)
    monkeypatch.setenv("KERAS_VITRES_KERAS_APPLICATIONS_URL", url)
    monkeypatch.setenv("KERAS_VITRES_CACHE", str(tmp_path / "cache"))
    requests.clear()
    return tmp_path / "cache", requests


def caffe(images):
    return keras.applications.resnet.preprocess_input(np.array(images))


def test_resnet50_imagenet_is_keras_applications_model_with_its_weights_and_preprocessing(pinned, published_resnet50):
    cache, requests = pinned
    sources, _ = published_resnet50
    model = keras_vitres.ResNet50(weights="imagenet", classifier_activation=None)
    assert requests == ["/resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5"]
    assert sorted(os.listdir(cache)) == ["resnet50_weights_tf_dim_ordering_tf_kernels.h5"]
    # The keras.applications layout (conv biases: its parameter count), preprocessing as the first layer.
    assert model.count_params() == sources["top"].count_params() == 25_636_712
    assert isinstance(model.layers[1], ImagePreprocessing) and model.layers[1].name == "preprocessing"
    described = find_preprocessing(model).preprocessing
    assert (described.channel_order, described.mean, described.image_size) == ("bgr", (103.939, 116.779, 123.68),
                                                                                (224, 224))
    images = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(sources["top"](caffe(images), training=False))
    actual = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    # The cache answers the next time: no second request.
    keras_vitres.build_model("resnet50", weights="imagenet")
    assert len(requests) == 1


def test_without_top_the_notop_file_is_fetched(pinned, published_resnet50):
    _, requests = pinned
    sources, _ = published_resnet50
    model = keras_vitres.ResNet50(weights="imagenet", include_top=False, input_shape=SMALL)
    assert requests == ["/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    assert find_preprocessing(model).preprocessing.image_size == SMALL[:2]  # the model's own input size
    images = np.random.default_rng(2).uniform(0, 255, (2, *SMALL)).astype("float32")
    expected = keras.ops.convert_to_numpy(sources["notop"](caffe(images), training=False))
    actual = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_a_file_that_fails_its_md5_is_refused_with_both_hashes(pinned, published_resnet50, monkeypatch):
    cache, _ = pinned
    _, hashes = published_resnet50
    files = PRESETS["resnet50"]["weights"]["imagenet"]["files"]
    monkeypatch.setitem(files["notop"], "md5", "0" * 32)
    with pytest.raises(ValueError, match=f"md5 {hashes['notop']}, but {'0' * 32} was expected"):
        keras_vitres.ResNet50(weights="imagenet", include_top=False, input_shape=SMALL)
    assert os.listdir(cache) == []  # neither the file nor a partial one


def test_weight_names_options_and_failures(pinned, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"Did you mean 'imagenet'.*named weights are \['imagenet', 'keras_hub_imagenet', 'timm_tv_in1k'\]"):
        keras_vitres.ResNet50(weights="imagenett")
    with pytest.raises(ValueError, match=r"Its named weights are none"):
        keras_vitres.build_model("resnet20", weights="imagenet")
    with pytest.raises(ValueError, match="need use_bias=True; received use_bias=False"):
        keras_vitres.ResNet50(weights="imagenet", use_bias=False)
    with pytest.raises(ValueError, match="need version='v1'; received version='v1.5'"):
        keras_vitres.build_model("resnet50_keras", weights="imagenet", version="v1.5")
    with pytest.raises(ValueError, match="need preprocessing=.*bgr.*received preprocessing='imagenet'"):
        keras_vitres.ResNet50(weights="imagenet", preprocessing="imagenet")
    # No server there: the error names the URL, the cache path and what to do offline, at once.
    monkeypatch.setenv("KERAS_VITRES_KERAS_APPLICATIONS_URL", "http://127.0.0.1:9/resnet/")
    with pytest.raises(OSError) as error:
        keras_vitres.ResNet50(weights="imagenet", include_top=False, input_shape=SMALL)
    message = str(error.value)
    assert "http://127.0.0.1:9/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(pinned[0] / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5") in message
    assert "download" in message and "elsewhere" in message and "weights=" in message


def test_preset_weights_lists_entries_that_are_complete():
    from keras_vitres.layers import Preprocessing

    for name in keras_vitres.list_presets():
        for weight_name, entry in keras_vitres.preset_weights(name).items():
            assert entry["source"] in ("keras.applications", "url", "keras_hub", "hf_hub"), (name, weight_name)
            Preprocessing.from_dict(entry["preprocessing"])  # a valid description
            assert entry["description"] and entry["licence"] and "config" in entry and "top1" in entry
    weights = keras_vitres.preset_weights("resnet101_keras")
    assert weights["imagenet"]["files"]["top"]["md5"] == "f1aeb4b969a6efcfb50fad2f0c20cfc5"
    weights["imagenet"]["files"]["top"]["md5"] = "changed"  # a copy: the registry keeps its own
    assert keras_vitres.preset_weights("resnet101_keras")["imagenet"]["files"]["top"]["md5"] != "changed"
    assert json.dumps(keras_vitres.preset_weights("vit_base_patch16_224"))  # plain data


@pytest.mark.extras
def test_an_unreachable_kaggle_fails_at_once_naming_the_handle_the_cache_and_what_to_do(monkeypatch, tmp_path):
    """kagglehub has no endpoint to point at a local server (no variable; kagglesdk's KAGGLE_API_ENVIRONMENT names
    fixed hosts), so the error path is what is tested: every request goes to a proxy where nothing listens, as
    behind a firewall, and the call fails at once."""
    pytest.importorskip("keras_hub")
    for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    for key in ("NO_PROXY", "no_proxy", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle"))  # no credentials of this machine's
    handle = PRESETS["resnet18"]["weights"]["keras_hub_imagenet"]["handle"]
    start = time.perf_counter()
    with pytest.raises(OSError) as error:
        keras_vitres.ResNet18(weights="keras_hub_imagenet")
    message = " ".join(str(error.value).split())
    assert f"Could not load the keras-hub preset {handle!r}" in message and str(tmp_path / "kagglehub") in message
    assert f"from_preset({handle!r}).save_to_preset(DIR) elsewhere" in message and "weights=" in message
    assert time.perf_counter() - start < 60, "failed, but not at once"  # keras-hub's import included
