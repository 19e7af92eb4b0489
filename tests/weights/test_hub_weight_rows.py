"""The named weights that come from timm's copies on the Hugging Face hub, as the preset rows declare them: BiT-M,
the R50+ViT hybrid and the paper's ViTs. Each test serves a file in timm's layout under the row's own repository
and pinned revision from a stand-in hub on 127.0.0.1 (huggingface_hub's real download), builds the preset by
weight name at a tiny size, and compares the outputs with a NumPy forward written from the official parameter
names."""

import ast
import importlib.util
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from safetensors.numpy import save

import keras_vitres
from keras_vitres.layers import Preprocessing
from keras_vitres.presets import PRESETS
from tests.weights.bit_reference import (
    bit_forward,
    bit_to_timm,
    hybrid_trunk_forward,
    hybrid_trunk_to_timm,
    random_bit,
    random_hybrid_trunk,
)
from tests.weights.conftest import serve_entry
from tests.weights.reference_forward import (
    official_to_timm,
    random_official_vit,
    random_torch_resnet,
    resnet_forward,
    vit_forward,
)
from tests.weights.timm_cfgs import pretrained_cfg, timm_folder

# CI's third step runs these, with the optional extras installed (without them they skip).
pytestmark = pytest.mark.extras

TINY_VIT = dict(hidden_dim=32, num_layers=2, num_heads=2, mlp_dim=64, input_shape=(32, 32, 3), classes=5,
                classifier_activation=None)  # fmt: skip


def pixels(seed):
    return np.random.default_rng(seed).uniform(0, 255, (2, 32, 32, 3)).astype("float32")


def outputs(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


def test_bit_m_by_name(hub, monkeypatch):
    entry = keras_vitres.preset_weights("bit_r50x1")["imagenet21k+imagenet2012"]
    assert entry["repo_id"] == "timm/resnetv2_50x1_bit.goog_in21k_ft_in1k"
    assert entry["preprocessing"]["image_size"] == (448, 448) and entry["preprocessing"]["crop_fraction"] == 1.0
    params = random_bit(np.random.default_rng(0), stage_blocks=(2, 1), width=64, classes=5)
    serve_entry(hub, monkeypatch, "bit_r50x1", "imagenet21k+imagenet2012", save(bit_to_timm(params)))
    model = keras_vitres.build_model("bit_r50x1", weights="imagenet21k+imagenet2012", stage_blocks=(2, 1),
                                     input_shape=(32, 32, 3), classes=5, classifier_activation=None)  # fmt: skip
    assert tuple(model.get_layer("preprocessing").get_config()["image_size"]) == (32, 32)
    images = pixels(1)
    np.testing.assert_allclose(outputs(model, images), bit_forward(params, images / 127.5 - 1), atol=1e-4, rtol=1e-4)


def test_bit_m_21k_head_starts_at_zero_for_other_classes(hub, monkeypatch):
    entry = keras_vitres.preset_weights("bit_r101x3")["imagenet21k"]
    assert entry["repo_id"] == "timm/resnetv2_101x3_bit.goog_in21k"
    params = random_bit(np.random.default_rng(2), stage_blocks=(1, 1), width=192, classes=7)
    serve_entry(hub, monkeypatch, "bit_r101x3", "imagenet21k", save(bit_to_timm(params)))
    with pytest.warns(UserWarning, match="left at its initialisation"):
        model = keras_vitres.build_model("bit_r101x3", weights="imagenet21k", stage_blocks=(1, 1),
                                         input_shape=(32, 32, 3), classes=3)  # fmt: skip
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("predictions").kernel))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("post_norm").gamma),
                                  params["resnet/group_norm/gamma"])  # fmt: skip


def test_r50_vit_by_name(hub, monkeypatch):
    entry = keras_vitres.preset_weights("r50_vit_base_patch16_224")["imagenet21k+imagenet2012"]
    assert entry["repo_id"] == "timm/vit_base_r50_s16_384.orig_in21k_ft_in1k"
    assert entry["preprocessing"]["image_size"] == (384, 384) and entry["config"]["trunk"] == "bit"
    rng = np.random.default_rng(3)
    params = random_hybrid_trunk(rng, stage_blocks=(1, 1), width=32)
    params.update(random_official_vit(rng, patch=1, channels=256, hidden=32, layers=2, heads=2, mlp=64, classes=5,
                                      grid=4))  # fmt: skip
    serve_entry(hub, monkeypatch, "r50_vit_base_patch16_224", "imagenet21k+imagenet2012", save({**official_to_timm(params), **hybrid_trunk_to_timm(params)}))
    model = keras_vitres.build_model("r50_vit_base_patch16_224", weights="imagenet21k+imagenet2012",
                                     resnet_stage_blocks=(1, 1), resnet_stage_filters=(32, 64), **TINY_VIT)
    images = pixels(4)
    features = hybrid_trunk_forward(params, images / 127.5 - 1)
    expected = vit_forward(params, features, num_heads=2, approximate_gelu=False)  # as timm runs them: exact GELU
    np.testing.assert_allclose(outputs(model, images), expected, atol=1e-4, rtol=1e-4)


def test_the_papers_vit_from_timm_by_name(hub, monkeypatch):
    entry = keras_vitres.preset_weights("vit_base_patch16_224")["timm_imagenet_384"]
    assert entry["repo_id"] == "timm/vit_base_patch16_384.orig_in21k_ft_in1k"
    assert entry["preprocessing"]["interpolation"] == "bicubic"
    params = random_official_vit(np.random.default_rng(5), patch=8, hidden=32, layers=2, heads=2, mlp=64, classes=5,
                                 grid=4)  # fmt: skip
    serve_entry(hub, monkeypatch, "vit_base_patch16_224", "timm_imagenet_384", save(official_to_timm(params)))
    model = keras_vitres.build_model("vit_base_patch16_224", weights="timm_imagenet_384", patch_size=8, **TINY_VIT)
    images = pixels(6)
    expected = vit_forward(params, images / 127.5 - 1, num_heads=2, approximate_gelu=False)
    np.testing.assert_allclose(outputs(model, images), expected, atol=1e-4, rtol=1e-4)


def test_torchvision_resnet_from_timm_by_name(hub, monkeypatch):
    entry = keras_vitres.preset_weights("resnet50")["timm_tv_in1k"]
    assert entry["repo_id"] == "timm/resnet50.tv_in1k" and entry["config"]["version"] == "v1.5"
    rng = np.random.default_rng(7)
    state_dict = random_torch_resnet(rng, classes=6, bottleneck=True, stage_blocks=(1, 2), stage_filters=(8, 16))
    serve_entry(hub, monkeypatch, "resnet50", "timm_tv_in1k", save({k: np.ascontiguousarray(v) for k, v in state_dict.items()}))
    model = keras_vitres.build_model("resnet50", weights="timm_tv_in1k", block="bottleneck", stage_blocks=(1, 2),
                                     stage_filters=(8, 16),
                                     input_shape=(40, 40, 3), classes=6, classifier_activation=None)  # fmt: skip
    images = rng.uniform(0, 255, (2, 40, 40, 3)).astype("float32")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = resnet_forward(state_dict, ((images / 255 - mean) / std).astype("float32"), bottleneck=True)
    np.testing.assert_allclose(outputs(model, images), expected, atol=1e-4 * np.abs(expected).max(), rtol=1e-4)


# What docs/weights.md's table states as the check of a Hugging Face row, by (revision pinned, sha256 pinned).
CHECKS = {
    (True, True): "revision and sha256 pinned: the bytes read must have the pinned sha256",
    (False, True): "sha256 pinned: the bytes read must have it",
    (True, False): "revision pinned: the bytes read must have the sha256 the hub reports for that commit",
    (False, False): "nothing published to pin: the bytes read must have the sha256 the hub reports",
}


# --- Each row against the source it cites -------------------------------------------------------------------------

# keras-hub's ResNet presets as its conversion script made them (tools/checkpoint_conversion/
# convert_resnet_checkpoints.py, PRESET_MAP; not part of the installed package), read 2026-12-08 at
# https://github.com/keras-team/keras-hub/blob/7eea6c8155cf375079e5da4c55d670d27f705ce9/tools/checkpoint_conversion/convert_resnet_checkpoints.py
KERAS_HUB_RESNET_SOURCES = {"resnet_18_imagenet": "timm/resnet18.a1_in1k", "resnet_50_imagenet": "timm/resnet50.a1_in1k",
                            "resnet_101_imagenet": "timm/resnet101.a1_in1k",
                            "resnet_152_imagenet": "timm/resnet152.a1_in1k"}  # fmt: skip


@pytest.fixture(scope="module")
def timm_source():
    folder = timm_folder()
    if folder is None or not (folder / "models" / "resnet.py").exists():
        pytest.skip("timm's source is not here (pip install --no-deps --target DIR timm; KERAS_VITRES_TIMM_SOURCE=DIR/timm)")
    return folder


def timm_family(model):
    """The timm model file that declares `model`'s pretrained_cfg."""
    if model.startswith("resnetv2_"):
        return "resnetv2"
    if model.startswith("vit_base_r50_"):
        return "vision_transformer_hybrid"
    return "vision_transformer" if model.startswith("vit_") else "resnet"


def hf_rows():
    return [(preset, name, entry) for preset, row in PRESETS.items() for name, entry in row["weights"].items()
            if entry["source"] == "hf_hub"]  # fmt: skip


def assert_same_pixels(preprocessing, mean, std, where):
    """The row's arithmetic on [0, 255] pixels equals timm's `(x / 255 - mean) / std` within float32 rounding."""
    pixels = np.array([[[0.0] * 3, [127.5] * 3, [255.0] * 3]], np.float32)
    expected = (pixels / 255 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    np.testing.assert_allclose(Preprocessing.from_dict(preprocessing).apply_numpy(pixels), expected, atol=1e-5,
                               err_msg=str(where))  # fmt: skip


def test_every_timm_row_is_its_pretrained_cfg_in_timm(timm_source):
    """Input size, crop, interpolation, mean/std and licence of every hf_hub row are what timm's default_cfgs state
    for that model (the `.orig_in21k` ViTs included: timm states apache-2.0 for them)."""
    rows = hf_rows()
    assert len(rows) == 27
    for preset, name, entry in rows:
        model, where = entry["repo_id"].removeprefix("timm/"), (preset, name)
        cfg = pretrained_cfg(model, timm_family(model), timm_source)
        assert cfg.get("hf_hub_id") == "timm/", where
        p = entry["preprocessing"]
        assert (tuple(p["image_size"]), p["crop_fraction"], p["interpolation"]) == (
            tuple(cfg["input_size"][1:]), cfg["crop_pct"], cfg["interpolation"]), where
        assert_same_pixels(p, cfg["mean"], cfg["std"], where)
        assert cfg["license"] and entry["licence"].lower().startswith(cfg["license"]), (where, cfg["license"])


def test_keras_hub_resnets_take_the_interpolation_of_the_timm_weights_they_were_converted_from(timm_source):
    """keras-hub converted its ResNet presets from timm's `resnet*.a1_in1k` (KERAS_HUB_RESNET_SOURCES), and its
    timm loader gives the preset the interpolation of their pretrained_cfg: bicubic, which the rows record."""
    spec = importlib.util.find_spec("keras_hub")
    if spec is None:
        pytest.skip("keras-hub is not installed")
    loader = (Path(spec.submodule_search_locations[0]) / "src" / "utils" / "timm" / "preset_loader.py").read_text()
    assert 'interpolation = pretrained_cfg["interpolation"]' in loader  # the converter keeps timm's interpolation
    rows = [(preset, entry) for preset, row in PRESETS.items() for entry in row["weights"].values()
            if entry["source"] == "keras_hub" and "/resnetv1/" in entry["handle"]]  # fmt: skip
    assert len(rows) == 4
    for preset, entry in rows:
        timm_model = KERAS_HUB_RESNET_SOURCES[entry["handle"].split("/")[-2]].removeprefix("timm/")
        cfg = pretrained_cfg(timm_model, "resnet", timm_source)
        assert cfg["interpolation"] == entry["preprocessing"]["interpolation"] == "bicubic", preset
        assert tuple(cfg["input_size"][1:]) == entry["preprocessing"]["image_size"], preset
        assert_same_pixels(entry["preprocessing"], cfg["mean"], cfg["std"], preset)
        assert timm_model in entry["description"], preset


def test_timm_runs_the_papers_jax_checkpoints_with_exact_gelu_and_the_warning_says_so(timm_source, tmp_path):
    """timm's ViT computes exact GELU (`nn.GELU` unless told otherwise), and its `.orig_in21k` files are the
    paper's JAX-trained checkpoints converted (the `vitjx/jx_` files its cfgs cite); the rows build with exact GELU
    to reproduce timm, and a tanh-GELU model loading such a file is told both facts."""
    source = (timm_source / "models" / "vision_transformer.py").read_text()
    tree = ast.parse(source)
    init = next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == "VisionTransformer")
    init = next(node for node in init.body if isinstance(node, ast.FunctionDef) and node.name == "__init__")
    defaults = [ast.unparse(node.value) for node in ast.walk(init)
                if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "act_layer"]  # fmt: skip
    assert defaults and defaults[0].endswith("or nn.GELU"), defaults
    for model in ("vit_base_patch16_224.orig_in21k", "vit_base_patch16_384.orig_in21k_ft_in1k"):
        block = source[source.index(f"'{model}'"):]
        assert "v0.1-vitjx/jx_vit_base" in block[: block.index("),")], model
    entries = [e for _, _, e in hf_rows() if e["repo_id"].startswith("timm/vit_")]
    assert entries and all(e["config"]["approximate_gelu"] is False for e in entries)
    params = random_official_vit(np.random.default_rng(11), patch=8, hidden=32, layers=1, heads=2, mlp=64, classes=5,
                                 grid=4)  # fmt: skip
    path = tmp_path / "timm_vit.safetensors"
    path.write_bytes(save(official_to_timm(params)))
    model = keras_vitres.VisionTransformer(patch_size=8, hidden_dim=32, num_layers=1, num_heads=2, mlp_dim=64,
                                           input_shape=(32, 32, 3), classes=5, approximate_gelu=True)  # fmt: skip
    with pytest.warns(UserWarning, match=r"timm and torchvision run their ViT checkpoints \(timm's copies of the "
                                         r"paper's among them, trained in JAX with tanh GELU\) with exact GELU"):
        keras_vitres.weights.load_weights(model, str(path))


def test_pins_are_well_formed_and_cite_the_hub_page_they_come_from():
    pinned = 0
    for preset, name, entry in hf_rows():
        where = (preset, name)
        if "revision" in entry:
            assert re.fullmatch(r"[0-9a-f]{40}", entry["revision"]), where
            assert entry["revision"][:7] in entry["pin_source"], where
        if "sha256" in entry:
            assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), where
        if "revision" in entry or "sha256" in entry:
            pinned += 1
            assert entry["pin_source"].startswith(f"https://huggingface.co/{entry['repo_id']}/"), where
        else:
            assert "pin_source" not in entry, where
    assert pinned == 18  # the others have nothing published to pin (docs/weights.md says what is checked)


def test_the_docs_table_states_each_rows_check():
    """docs/weights.md's table says, for each Hugging Face row, what is pinned and so what is checked, and its
    licence as the row records it."""
    text = (Path(__file__).parents[2] / "docs" / "weights.md").read_text()
    for preset, name, entry in hf_rows():
        line = next(line for line in text.splitlines() if line.startswith(f"| `{preset}` | `{name}` |"))
        columns = line.split(" | ")
        assert columns[3] == CHECKS[("revision" in entry, "sha256" in entry)], (preset, name, columns[3])
        assert columns[4] == entry["licence"] and entry["repo_id"] in columns[2], (preset, name)
        assert ("revision" not in entry) or f"at `{entry['revision'][:7]}`" in columns[2], (preset, name)
