"""Official BiT `.npz` and R50+ViT `.npz` checkpoints, and timm's safetensors of both, checked against NumPy forward
passes written from the official parameter names (tests/weights/bit_reference.py)."""

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_vitres
from keras_vitres.weights import load_npz, load_safetensors
from tests.weights.bit_reference import (
    bit_forward,
    bit_to_timm,
    hybrid_forward,
    hybrid_trunk_to_timm,
    random_bit,
    random_hybrid_trunk,
)
from tests.weights.reference_forward import official_to_timm, random_official_vit

# The converters are NumPy: one check per file layout's forward runs under JAX too (the layers' numerics there).
BIT = dict(stage_blocks=(2, 1), input_shape=(32, 32, 3), classes=5, classifier_activation=None, name="bit_tiny")
HYBRID = dict(resnet_stage_blocks=(1, 1), resnet_stage_filters=(32, 64), hidden_dim=32, num_layers=2, num_heads=2,
              mlp_dim=64, input_shape=(32, 32, 3), classes=5, classifier_activation=None, approximate_gelu=True)  # fmt: skip


def predict(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


@pytest.fixture(scope="module")
def bit_checkpoint():
    rng = np.random.default_rng(0)
    params = random_bit(rng, stage_blocks=(2, 1), width=64, classes=5)
    images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    return params, images, bit_forward(params, images)


@pytest.fixture(scope="module")
def hybrid_checkpoint():
    rng = np.random.default_rng(1)
    params = random_hybrid_trunk(rng, stage_blocks=(1, 1), width=32)
    params.update(random_official_vit(rng, patch=1, channels=256, hidden=32, layers=2, heads=2, mlp=64, classes=5,
                                      grid=4))  # fmt: skip
    images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    return params, images, hybrid_forward(params, images, num_heads=2)


@pytest.mark.backend_agnostic
def test_bit_npz_reproduces_the_reference_forward(bit_checkpoint, tmp_path):
    params, images, expected = bit_checkpoint
    assert np.abs(expected).std() > 0.5  # a forward that carries signal
    np.savez(tmp_path / "BiT-M-R50x1.npz", **params)
    model = keras_vitres.BiTResNet(**BIT, weights=str(tmp_path / "BiT-M-R50x1.npz"))
    np.testing.assert_allclose(predict(model, images), expected, atol=1e-5, rtol=1e-5)


def test_timm_bit_safetensors_give_the_same_function(bit_checkpoint, tmp_path):
    params, images, expected = bit_checkpoint
    save_file(bit_to_timm(params), str(tmp_path / "resnetv2_50x1_bit.safetensors"))
    model = keras_vitres.BiTResNet(**BIT)
    report = load_safetensors(model, str(tmp_path / "resnetv2_50x1_bit.safetensors"))
    assert report == dict(loaded=len(model.weights), head_reset=False, resampled=False)
    np.testing.assert_allclose(predict(model, images), expected, atol=1e-5, rtol=1e-5)


def test_bit_features_and_new_heads(bit_checkpoint, tmp_path):
    params, images, _ = bit_checkpoint
    path = str(tmp_path / "bit.npz")
    np.savez(path, **params)
    features = keras_vitres.BiTResNet(**{**BIT, "include_top": False, "pooling": "avg"}, weights=path)
    kernel = params["resnet/head/conv2d/kernel"][0, 0]
    logits = predict(features, images) @ kernel + params["resnet/head/conv2d/bias"]
    np.testing.assert_allclose(logits, bit_forward(params, images), atol=1e-5, rtol=1e-5)
    with pytest.warns(UserWarning, match="left at its initialisation"):
        model = keras_vitres.BiTResNet(**{**BIT, "classes": 3}, weights=path)  # fine-tuning: a new head
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("predictions").kernel))


def test_bit_mismatches_name_what_does_not_fit(bit_checkpoint, tmp_path):
    params, *_ = bit_checkpoint
    path = str(tmp_path / "bit.npz")
    np.savez(path, **params)
    with pytest.raises(ValueError, match="no tensor 'resnet/block1/unit03/a/group_norm/gamma'"):
        keras_vitres.BiTResNet(**{**BIT, "stage_blocks": (3, 1)}, weights=path)
    with pytest.raises(ValueError, match=r"no place for its tensors \['resnet/block1/unit02/"):
        keras_vitres.BiTResNet(**{**BIT, "stage_blocks": (1, 1)}, weights=path)
    with pytest.raises(ValueError, match=r"'resnet/root_block/standardized_conv2d/kernel' has shape \(7, 7, 3, 64\)"):
        keras_vitres.BiTResNet(**{**BIT, "width_multiplier": 2}, weights=path)
    with pytest.raises(ValueError, match="pre-activation group-norm bottlenecks; model 'resnet8' has none"):
        keras_vitres.ResNet(8, stem="cifar", weights=path)


@pytest.mark.backend_agnostic
def test_r50_vit_npz_reproduces_the_official_hybrid(hybrid_checkpoint, tmp_path):
    params, images, expected = hybrid_checkpoint
    assert params["gn_root/scale"].shape == (1, 1, 1, 32)  # the released file's pre-linen layout
    assert np.abs(expected).std() > 0.5
    np.savez(tmp_path / "R50+ViT-B_16.npz", **params)
    model = keras_vitres.HybridViT(**HYBRID, weights=str(tmp_path / "R50+ViT-B_16.npz"))
    np.testing.assert_allclose(predict(model, images), expected, atol=1e-5, rtol=1e-5)


def test_r50_vit_npz_with_linen_group_norms(hybrid_checkpoint, tmp_path):
    params, images, expected = hybrid_checkpoint
    linen = {k: v.reshape(-1) if v.ndim == 4 and v.shape[:3] == (1, 1, 1) else v for k, v in params.items()}
    np.savez(tmp_path / "linen.npz", **linen)
    model = keras_vitres.HybridViT(**HYBRID)
    report = load_npz(model, str(tmp_path / "linen.npz"))
    assert report["loaded"] == len(model.weights) and not report["head_reset"]
    np.testing.assert_allclose(predict(model, images), expected, atol=1e-5, rtol=1e-5)


def test_timm_hybrid_safetensors_give_the_same_function(hybrid_checkpoint, tmp_path):
    params, images, expected = hybrid_checkpoint
    state = {**official_to_timm(params), **hybrid_trunk_to_timm(params)}
    assert state["patch_embed.proj.weight"].shape == (32, 256, 1, 1)
    save_file(state, str(tmp_path / "vit_base_r50_s16_384.safetensors"))
    with pytest.warns(UserWarning, match="tanh-approximate"):  # timm's ViTs use exact GELU; these weights do not
        model = keras_vitres.HybridViT(**HYBRID, weights=str(tmp_path / "vit_base_r50_s16_384.safetensors"))
    np.testing.assert_allclose(predict(model, images), expected, atol=1e-5, rtol=1e-5)


def test_batchnorm_hybrid_refuses_the_official_files(hybrid_checkpoint, tmp_path):
    params, *_ = hybrid_checkpoint
    np.savez(tmp_path / "R50+ViT-B_16.npz", **params)
    with pytest.raises(ValueError, match="has the batch-norm trunk. Build it with trunk='bit'"):
        keras_vitres.HybridViT(**{**HYBRID, "trunk": "batchnorm"}, weights=str(tmp_path / "R50+ViT-B_16.npz"))
    plain_vit = {k: v for k, v in params.items() if not k.startswith(("conv_root", "gn_root", "block"))}
    np.savez(tmp_path / "vit.npz", **plain_vit)
    with pytest.raises(ValueError, match="no tensor 'conv_root/kernel'"):
        keras_vitres.HybridViT(**HYBRID, weights=str(tmp_path / "vit.npz"))
