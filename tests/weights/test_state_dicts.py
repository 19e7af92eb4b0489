"""timm / torchvision state dicts saved as safetensors, read without PyTorch, against NumPy references."""

import keras
import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_vitres
from keras_vitres.weights import load_safetensors
from tests.helpers import tiny_vit
from tests.weights.reference_forward import (
    official_to_timm,
    random_official_vit,
    random_torch_resnet,
    resnet_forward,
    timm_to_torchvision,
    vit_forward,
)


def predict(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


def write(path, state_dict, **metadata):
    save_file(
        {k: np.ascontiguousarray(v) for k, v in state_dict.items()}, str(path), metadata=metadata or {"format": "pt"}
    )
    return str(path)


RESNETS = {
    "basic": dict(bottleneck=False, stage_blocks=(2, 1), stage_filters=(8, 16)),
    "bottleneck_v1.5": dict(bottleneck=True, stage_blocks=(1, 2), stage_filters=(8, 16)),
}


def our_resnet(kind, **kwargs):
    config = RESNETS[kind]
    defaults = dict(
        stem="imagenet",
        block="bottleneck" if config["bottleneck"] else "basic",
        stage_blocks=config["stage_blocks"],
        stage_filters=config["stage_filters"],
        version="v1.5",
        input_shape=(40, 40, 3),
        classes=6,
        classifier_activation=None,
    )
    return keras_vitres.ResNet(**{**defaults, **kwargs})


@pytest.mark.parametrize(
    "kind", [pytest.param("basic"), pytest.param("bottleneck_v1.5", marks=pytest.mark.backend_agnostic)]
)
def test_torchvision_resnet_matches_the_pytorch_layout_reference(kind, tmp_path):
    rng = np.random.default_rng(0)
    state_dict = random_torch_resnet(rng, classes=6, **RESNETS[kind])
    images = rng.uniform(-2, 2, (2, 40, 40, 3)).astype("float32")  # 40 is not a power of two: padding matters
    expected = resnet_forward(state_dict, images, bottleneck=RESNETS[kind]["bottleneck"])
    model = our_resnet(kind, weights=write(tmp_path / "resnet.safetensors", state_dict))
    np.testing.assert_allclose(predict(model, images), expected, atol=1e-4 * np.abs(expected).max(), rtol=1e-4)


def test_resnet_checks(tmp_path):
    state_dict = random_torch_resnet(np.random.default_rng(0), classes=6, **RESNETS["bottleneck_v1.5"])
    path = write(tmp_path / "resnet.safetensors", state_dict)
    with pytest.raises(ValueError, match="version='v1.5'"):
        our_resnet("bottleneck_v1.5", version="v1", weights=path)  # same shapes, stride in another place
    with pytest.raises(ValueError, match="use_bias=False"):
        our_resnet("bottleneck_v1.5", use_bias=True, weights=path)
    broken = dict(state_dict, **{"layer1.0.conv2.weight": state_dict["layer1.0.conv2.weight"][:, :4]})
    with pytest.raises(
        ValueError,
        match=r"tensor 'layer1.0.conv2.weight' has shape \(8, 4, 3, 3\) in the file, expected "
        r"\(8, 8, 3, 3\) for the model's 'stage1_block1/conv2/kernel' \(3, 3, 8, 8\)",
    ):
        our_resnet("bottleneck_v1.5", weights=write(tmp_path / "broken.safetensors", broken))
    with pytest.raises(ValueError, match="is not one"):
        keras_vitres.VisionTransformer(
            patch_size=8, hidden_dim=32, num_layers=1, num_heads=2, mlp_dim=64, input_shape=(32, 32, 3), weights=path
        )
    wrapped = write(tmp_path / "ddp.safetensors", {f"module.{k}": v for k, v in state_dict.items()})
    with pytest.warns(UserWarning, match="left at its initialisation"):
        model = our_resnet("bottleneck_v1.5", classes=4, weights=wrapped)  # DataParallel prefix, new head
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").kernel.numpy(), state_dict["conv1.weight"].transpose(2, 3, 1, 0)
    )


VIT = dict(patch=8, hidden=32, layers=2, heads=2, mlp=64, classes=5, grid=4)


def our_vit(**kwargs):
    return tiny_vit(**{"approximate_gelu": False, **kwargs})


@pytest.fixture(scope="module")
def vit_checkpoint():
    rng = np.random.default_rng(1)
    params = random_official_vit(rng, **VIT)
    images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    return params, images, vit_forward(params, images, num_heads=2, approximate_gelu=False)


@pytest.mark.parametrize("flavour", ["timm", "torchvision"])
def test_vit_state_dicts_match_the_reference(vit_checkpoint, tmp_path, flavour):
    params, images, expected = vit_checkpoint
    state_dict = official_to_timm(params)
    if flavour == "torchvision":
        state_dict = timm_to_torchvision(state_dict)
        assert "encoder.layers.encoder_layer_1.self_attention.in_proj_weight" in state_dict
    model = our_vit(weights=write(tmp_path / "vit.safetensors", state_dict))
    np.testing.assert_allclose(predict(model, images), expected, atol=1e-4, rtol=1e-4)


def test_vit_fused_qkv_split_exactly(vit_checkpoint, tmp_path):
    params, *_ = vit_checkpoint
    model = our_vit()
    load_safetensors(model, write(tmp_path / "vit.safetensors", official_to_timm(params)))
    weights = {w.path: w.numpy() for w in model.weights}
    for ours, theirs in (("query", "query"), ("key", "key"), ("value", "value"), ("attention_output", "out")):
        for kind in ("kernel", "bias"):
            np.testing.assert_array_equal(
                weights[f"encoder_block_1/attention/{ours}/{kind}"],
                params[f"Transformer/encoderblock_1/MultiHeadDotProductAttention_1/{theirs}/{kind}"],
            )


def test_bfloat16_files_and_gelu_warning(vit_checkpoint, tmp_path):
    params, *_ = vit_checkpoint
    state_dict = {k: v.astype(ml_dtypes.bfloat16) for k, v in official_to_timm(params).items()}
    with pytest.warns(UserWarning, match="exact GELU"):
        model = our_vit(approximate_gelu=True, weights=write(tmp_path / "bf16.safetensors", state_dict))
    np.testing.assert_array_equal(
        model.get_layer("class_token").token.numpy(), params["cls"].astype(ml_dtypes.bfloat16).astype("float32")
    )


def test_vit_mismatches_are_named(vit_checkpoint, tmp_path):
    params, *_ = vit_checkpoint
    state_dict = official_to_timm(params)
    path = write(tmp_path / "vit.safetensors", state_dict)
    with pytest.raises(
        ValueError,
        match=r"tensor 'blocks.0.mlp.fc1.weight' has shape \(64, 32\) in the file, expected "
        r"\(128, 32\) for the model's 'encoder_block_0/mlp_dense_1/kernel' \(32, 128\)",
    ):
        our_vit(mlp_dim=128, weights=path)
    extra = dict(state_dict, **{"blocks.0.ls1.gamma": np.ones(32, "float32")})  # LayerScale: not in this architecture
    with pytest.raises(ValueError, match=r"no place for its tensors \['blocks.0.ls1.gamma'\]"):
        our_vit(weights=write(tmp_path / "extra.safetensors", extra))
    with pytest.raises(ValueError, match="not a timm/torchvision ResNet or ViT"):
        our_vit(weights=write(tmp_path / "other.safetensors", {"weight": np.zeros(3, "float32")}))
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 32)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        our_vit(weights=str(tmp_path / "junk.safetensors"))


@pytest.mark.parametrize("suffix", [".pth", ".bin", ".pt", ".ckpt"])
def test_pytorch_pickles_are_refused_with_a_conversion_recipe(tmp_path, suffix):
    path = tmp_path / f"resnet50{suffix}"
    path.write_bytes(b"\x80\x04 this would be a pickle")
    with pytest.raises(ValueError, match=r"(?s)PyTorch pickle.*weights_only=True.*save_file.*resnet50.safetensors"):
        keras_vitres.ResNet(8, stem="cifar", weights=str(path))
