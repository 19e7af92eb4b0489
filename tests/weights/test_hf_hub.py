"""Named weights from the Hugging Face hub: a timm safetensors file laid out as a hub cache entry (blobs/<sha256>,
snapshots/<revision>/<file> linking to it, refs/main), read with HF_HUB_OFFLINE=1 and verified by the package
against the sha256 that names the blob. No network."""

import hashlib
import os
import sys

import keras
import numpy as np
import pytest

import keras_vitres
from keras_vitres.presets import PRESETS
from tests.weights.reference_forward import official_to_timm, random_official_vit, vit_forward
from tests.weights.test_state_dicts import VIT, write

# CI's third step runs these, with the optional extras installed (without them they skip).
pytestmark = pytest.mark.extras

REPO, REVISION = "timm/vit_test_patch8_32", "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A timm ViT state dict (safetensors), its bytes, and the reference outputs on [-1, 1] images."""
    rng = np.random.default_rng(3)
    params = random_official_vit(rng, **VIT)
    path = write(tmp_path_factory.mktemp("timm") / "model.safetensors", official_to_timm(params))
    pixels = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = vit_forward(params, pixels / 127.5 - 1.0, num_heads=2, approximate_gelu=False)
    with open(path, "rb") as f:
        return f.read(), pixels, expected


def put_in_cache(cache, data, repo_id=REPO):
    """Lays `data` out as huggingface_hub's cache does for `repo_id`; returns the blob's path."""
    digest = hashlib.sha256(data).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / REVISION).mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    blob = repo / "blobs" / digest
    blob.write_bytes(data)
    link = repo / "snapshots" / REVISION / "model.safetensors"
    if os.path.lexists(link):
        link.unlink()
    link.symlink_to(os.path.join("..", "..", "blobs", digest))
    return blob


@pytest.fixture
def hub_preset(monkeypatch, tmp_path):
    """A small ViT preset whose named weights "timm" are the test repository's model.safetensors."""
    entry = dict(source="hf_hub", repo_id=REPO, filename="model.safetensors", config=dict(approximate_gelu=False),
                 preprocessing=dict(image_size=(32, 32), scale=1 / 127.5, offset=-1.0), description="test",
                 licence="test", top1=None)  # fmt: skip
    config = dict(input_shape=(32, 32, 3), classes=VIT["classes"], patch_size=VIT["patch"], hidden_dim=VIT["hidden"],
                  num_layers=VIT["layers"], num_heads=VIT["heads"], mlp_dim=VIT["mlp"])  # fmt: skip
    monkeypatch.setitem(PRESETS, "vit_digits_patch4_32", dict(PRESETS["vit_digits_patch4_32"], config=config,
                                                              weights={"timm": entry}))  # fmt: skip
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def build():
    return keras_vitres.build_model("vit_digits_patch4_32", weights="timm", classifier_activation=None)


def test_a_cached_file_is_verified_then_loaded_with_its_preprocessing(hub_preset, checkpoint):
    pytest.importorskip("huggingface_hub")
    data, pixels, expected = checkpoint
    put_in_cache(hub_preset, data)
    model = build()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(pixels)), expected, atol=1e-4, rtol=1e-4)


def test_a_corrupted_cache_file_is_deleted_and_never_loaded_offline(hub_preset, checkpoint):
    pytest.importorskip("huggingface_hub")
    data, _, _ = checkpoint
    blob = put_in_cache(hub_preset, data)
    blob.write_bytes(data[:-8] + b"tampered")  # same size class of damage: huggingface_hub would not notice
    with pytest.raises(OSError) as error:
        build()
    message = " ".join(str(error.value).split())
    assert f"but {blob.name} was expected (the hub's LFS sha256" in message and "it was deleted" in message
    assert REPO in message and str(hub_preset) in message and "HF_HUB_OFFLINE" in message and "weights=" in message
    assert not blob.exists()


def test_a_corrupted_cache_file_is_fetched_again(hub_preset, checkpoint, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    data, pixels, expected = checkpoint
    blob = put_in_cache(hub_preset, data)
    blob.write_bytes(b"\0" * len(data))
    real, calls = hub.hf_hub_download, []

    def hub_download(*args, force_download=False, **kwargs):  # the hub, answering a forced download
        calls.append(force_download)
        if force_download:
            put_in_cache(hub_preset, data)
        return real(*args, **kwargs)

    monkeypatch.setattr(hub, "hf_hub_download", hub_download)
    model = build()
    assert calls == [False, True]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(pixels)), expected, atol=1e-4, rtol=1e-4)


def test_a_file_the_hub_cache_does_not_have_fails_at_once_offline(hub_preset):
    pytest.importorskip("huggingface_hub")
    with pytest.raises(OSError, match=r"Could not fetch 'model.safetensors' of the Hugging Face repository "
                                      r"'timm/vit_test_patch8_32'.*HF_HUB_OFFLINE is set.*download .* elsewhere"):
        build()


@pytest.mark.parametrize("module, preset, weights", [("huggingface_hub", None, "timm"),
                                                     ("keras_hub", "resnet50", "keras_hub_imagenet")])
def test_a_missing_extra_names_it(hub_preset, monkeypatch, module, preset, weights):
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    with pytest.raises(ImportError, match=rf"needs the optional package '{module}'.*pip install \"keras-vitres\[hub\]\""):
        keras_vitres.build_model(preset or "vit_digits_patch4_32", weights=weights)


def test_training_from_named_weights_applies_their_preprocessing_once(hub_preset, tmp_path):
    """`train --weights NAME`: the run takes the weights' preprocessing, crop and size, the model applies it once
    (the network built with the weights carries it), and with a learning rate of 0 the trained model computes
    exactly the checkpoint's function on raw pixels."""
    pytest.importorskip("huggingface_hub")
    from keras_vitres.training import resolve_config, train

    params = random_official_vit(np.random.default_rng(8), **dict(VIT, classes=10))
    put_in_cache(hub_preset, open(write(tmp_path / "ten.safetensors", official_to_timm(params)), "rb").read())
    with pytest.raises(ValueError, match=r"weights='timm' bring their own preprocessing .* received "
                                         r"preprocessing='pixel_mean'"):  # fmt: skip
        resolve_config("digits_vit", weights="timm", preprocessing="pixel_mean")
    config = resolve_config("digits_vit", weights="timm", steps=2, warmup_epochs=0, learning_rate=0.0, weight_decay=0.0,
                            run_dir=str(tmp_path / "run"), mixed_precision="float32")  # fmt: skip
    assert (config["recipe"]["preprocessing"], config["recipe"]["crop_fraction"]) == ("weights", 1.0)
    assert tuple(config["recipe"]["image_size"]) == (32, 32)
    train(config, verbose=0)
    trained = keras.saving.load_model(str(tmp_path / "run" / "model.keras"), safe_mode=True)
    network = trained.layers[-1]
    layers = [layer.name for layer in trained.layers] + [layer.name for layer in network.layers]
    assert layers.count("preprocessing") == 1 and network.get_layer("preprocessing").get_config()["offset"] == -1.0
    pixels = np.random.default_rng(9).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = vit_forward(params, pixels / 127.5 - 1.0, num_heads=2, approximate_gelu=False)
    got = keras.ops.convert_to_numpy(trained(pixels))
    if np.allclose(got.sum(-1), 1.0):  # a softmax head
        expected = np.exp(expected - expected.max(-1, keepdims=True))
        expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
