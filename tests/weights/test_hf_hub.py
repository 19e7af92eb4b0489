"""Named weights from the Hugging Face hub, end to end: the preset rows' own entries (repository, file, pinned
revision) served by a stand-in hub on 127.0.0.1 (tests/weights/hub_server.py) and fetched with the installed
huggingface_hub's real `hf_hub_download`, then loaded with their preprocessing. The first test runs as a user
would, in a fresh process that imports nothing first: the first call downloads (with huggingface_hub's progress
bar) and loads, the second asks the hub nothing, and a third, offline with the hub gone, loads from the cache.
No network."""

import sys

import keras
import numpy as np
import pytest
from safetensors.numpy import save

import keras_vitres
from keras_vitres.presets import PRESETS
from tests.weights import reference_forward as reference
from tests.weights.hub_server import COMMIT, hub_environment, run_fresh
from tests.weights.test_state_dicts import VIT

# CI's third step runs these, with the optional extras installed (without them they skip).
pytestmark = pytest.mark.extras

TINY_RESNET = dict(stage_blocks=(1, 1), stage_filters=(8, 16), input_shape=(40, 40, 3), classes=6,
                   classifier_activation=None)  # fmt: skip
TINY_VIT = dict(patch_size=8, hidden_dim=32, num_layers=1, num_heads=2, mlp_dim=64, input_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """A torchvision-layout ResNet-18 at 8/16 filters and a timm ViT without head (as timm's `.orig_in21k`), as
    safetensors files, with the ResNet's reference outputs on raw pixels (ImageNet mean/std, as the row)."""
    folder = tmp_path_factory.mktemp("published")
    rng = np.random.default_rng(29)
    resnet = reference.random_torch_resnet(rng, bottleneck=False, stage_blocks=(1, 1), stage_filters=(8, 16),
                                           classes=6)
    (folder / "resnet.safetensors").write_bytes(save({k: np.ascontiguousarray(v) for k, v in resnet.items()}))
    vit = reference.official_to_timm(reference.random_official_vit(rng, patch=8, hidden=32, layers=1, heads=2, mlp=64,
                                                                   classes=5, grid=4))
    (folder / "vit.safetensors").write_bytes(save({k: v for k, v in vit.items() if not k.startswith("head")}))
    pixels = rng.uniform(0, 255, (2, 40, 40, 3)).astype("float32")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = reference.resnet_forward(resnet, ((pixels / 255 - mean) / std).astype("float32"), bottleneck=False)
    np.save(folder / "pixels.npy", pixels)
    return folder, expected, vit["cls_token"]


USER = """
import json, os, sys, time
from pathlib import Path
import numpy as np
from tests.weights.hub_server import FakeHub, sha256  # the standard library only
folder = Path(os.environ["PUBLISHED"])
{serve}
import keras_vitres
from keras_vitres.presets import PRESETS

def build():
    start = time.perf_counter()
    resnet = keras_vitres.ResNet18(weights="timm_tv_in1k", {resnet})
    vit = keras_vitres.ViTB16(weights="timm_imagenet21k", {vit})
    return resnet, vit, time.perf_counter() - start

{pin}
resnet, vit, first = build()
out = dict(first=first, outputs=np.asarray(resnet(np.load(folder / "pixels.npy"))).tolist(),
           cls=np.asarray(vit.get_layer("class_token").weights[0]).ravel().tolist())
{again}
print(json.dumps(out))
"""
NAMED = (("resnet18", "timm_tv_in1k", "resnet"), ("vit_base_patch16_224", "timm_imagenet21k", "vit"))
PIN = f"""
for preset, name, file in {NAMED!r}:
    entry = PRESETS[preset]["weights"][name]
    if entry.get("sha256"):  # the tiny file stands in for the published one: pin its hash instead
        entry["sha256"] = sha256((folder / (file + ".safetensors")).read_bytes())
"""
AGAIN = """
hub.requests.clear()
_, _, out["second"] = build()
out["second_requests"] = hub.requests
hub.stop()  # the user's next session, offline: no hub at all
os.environ["HF_HUB_OFFLINE"] = "1"
resnet, _, out["offline"] = build()
out["offline_outputs"] = np.asarray(resnet(np.load(folder / "pixels.npy"))).tolist()
"""


def test_named_weights_in_a_fresh_process_download_once_then_load_offline(tmp_path, tiny_files):
    pytest.importorskip("huggingface_hub")
    folder, expected, cls_token = tiny_files
    serve = "hub = FakeHub()\nos.environ['HF_ENDPOINT'] = hub.url\n"
    for preset, name, file in NAMED:  # each row's own repository, at its pinned revision
        entry = PRESETS[preset]["weights"][name]
        serve += (f"hub.publish({entry['repo_id']!r}, 'model.safetensors', (folder / '{file}.safetensors').read_bytes(), "
                  f"commit={entry.get('revision') or COMMIT!r})\n")  # fmt: skip
    resnet = ", ".join(f"{k}={v!r}" for k, v in TINY_RESNET.items())
    vit = ", ".join(f"{k}={v!r}" for k, v in TINY_VIT.items())
    env = hub_environment(tmp_path, PUBLISHED=folder)
    # TQDM_POSITION=-1: huggingface_hub's switch that shows its bars where stderr is not a terminal, as here.
    online = run_fresh(USER.format(serve=serve, resnet=resnet, vit=vit, pin=PIN, again=AGAIN), dict(env, TQDM_POSITION="-1"))
    np.testing.assert_allclose(online["outputs"], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_array_equal(np.float32(online["cls"]), cls_token.ravel())
    assert online["second_requests"] == []  # the record answers: the hub is not asked again
    assert "100%" in online["stderr"] and "model.safetensors" in online["stderr"]  # huggingface_hub's progress bar
    np.testing.assert_array_equal(online["offline_outputs"], online["outputs"])
    print(f"first {online['first']:.2f} s, second {online['second']:.2f} s, offline {online['offline']:.2f} s")


@pytest.mark.parametrize("module, preset, weights", [("huggingface_hub", "resnet18", "timm_tv_in1k"),
                                                     ("keras_hub", "resnet50", "keras_hub_imagenet")])
def test_a_missing_extra_names_it(monkeypatch, module, preset, weights):
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    with pytest.raises(ImportError, match=rf"needs the optional package '{module}'.*pip install \"keras-vitres\[hub\]\""):
        keras_vitres.build_model(preset, weights=weights)


@pytest.fixture
def hub_preset(hub, monkeypatch):
    """A small ViT preset whose named weights "timm" are a test repository's model.safetensors on the hub."""
    entry = dict(source="hf_hub", repo_id="timm/vit_test_patch8_32", filename="model.safetensors",
                 config=dict(approximate_gelu=False), preprocessing=dict(image_size=(32, 32), scale=1 / 127.5, offset=-1.0),
                 description="test", licence="test", top1=None)  # fmt: skip
    config = dict(input_shape=(32, 32, 3), classes=10, patch_size=VIT["patch"], hidden_dim=VIT["hidden"],
                  num_layers=VIT["layers"], num_heads=VIT["heads"], mlp_dim=VIT["mlp"])  # fmt: skip
    monkeypatch.setitem(PRESETS, "vit_digits_patch4_32", dict(PRESETS["vit_digits_patch4_32"], config=config,
                                                              weights={"timm": entry}))  # fmt: skip
    return entry


def test_training_from_named_weights_applies_their_preprocessing_once(hub, hub_preset, tmp_path):
    """`train --weights NAME`: the run takes the weights' preprocessing, crop and size, the model applies it once
    (the network built with the weights carries it), and with a learning rate of 0 the trained model computes
    exactly the checkpoint's function on raw pixels."""
    from keras_vitres.training import resolve_config, train

    params = reference.random_official_vit(np.random.default_rng(8), **dict(VIT, classes=10))
    hub.publish(hub_preset["repo_id"], hub_preset["filename"], save(reference.official_to_timm(params)))
    with pytest.raises(ValueError, match=r"weights='timm' bring their own preprocessing .* received "
                                         r"normalization='pixel_mean'"):  # fmt: skip
        resolve_config("digits_vit", weights="timm", normalization="pixel_mean")
    config = resolve_config("digits_vit", weights="timm", steps=2, warmup_epochs=0, learning_rate=0.0, weight_decay=0.0,
                            run_dir=str(tmp_path / "run"), mixed_precision="float32")  # fmt: skip
    assert (config.recipe.normalization, config.recipe.crop_fraction) == ("weights", 1.0)
    assert tuple(config.recipe.image_size) == (32, 32)
    train(config, verbose=0)
    trained = keras.saving.load_model(str(tmp_path / "run" / "model.keras"), safe_mode=True)
    network = trained.layers[-1]
    layers = [layer.name for layer in trained.layers] + [layer.name for layer in network.layers]
    assert layers.count("preprocessing") == 1 and network.get_layer("preprocessing").get_config()["offset"] == -1.0
    pixels = np.random.default_rng(9).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = reference.vit_forward(params, pixels / 127.5 - 1.0, num_heads=2, approximate_gelu=False)
    got = keras.ops.convert_to_numpy(trained(pixels))
    if np.allclose(got.sum(-1), 1.0):  # a softmax head
        expected = np.exp(expected - expected.max(-1, keepdims=True))
        expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
