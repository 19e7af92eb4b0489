"""The named weights that come from timm's copies on the Hugging Face hub, as the preset rows declare them: BiT-M,
the R50+ViT hybrid and the paper's ViTs. Each test serves a file in timm's layout under the row's own repository
and pinned revision from a stand-in hub on 127.0.0.1 (huggingface_hub's real download), builds the preset by
weight name at a tiny size, and compares the outputs with a NumPy forward written from the official parameter
names."""

import keras
import numpy as np
import pytest
from safetensors.numpy import save

import keras_vitres
from tests.weights.bit_reference import (
    bit_forward,
    bit_to_timm,
    hybrid_trunk_forward,
    hybrid_trunk_to_timm,
    random_bit,
    random_hybrid_trunk,
)
from tests.weights.reference_forward import (
    official_to_timm,
    random_official_vit,
    random_torch_resnet,
    resnet_forward,
    vit_forward,
)
from tests.weights.test_hf_hub import hub, serve_entry  # noqa: F401  (hub: the fixture)

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
