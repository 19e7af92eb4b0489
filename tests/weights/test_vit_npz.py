"""Official and big_vision ViT `.npz` checkpoints, checked against a NumPy forward pass written from the names."""

import io
import zipfile

import keras
import numpy as np
import pytest

import keras_vitres
from keras_vitres.layers import resample_position_embedding
from keras_vitres.weights import load_npz
from tests.helpers import tiny_vit
from tests.weights.reference_forward import official_to_big_vision, random_official_vit, vit_forward

CONFIG = dict(patch=8, hidden=32, layers=2, heads=2, mlp=64, classes=5, grid=4)


def predict(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


@pytest.fixture(scope="module")
def checkpoint():
    rng = np.random.default_rng(0)
    params = random_official_vit(rng, **CONFIG)
    images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    return params, images, vit_forward(params, images, num_heads=2)


def write_npz(path, params):
    np.savez(path, **params)
    return str(path)


@pytest.mark.backend_agnostic
def test_official_npz_reproduces_the_reference_forward(checkpoint, tmp_path):
    params, images, expected = checkpoint
    assert np.abs(expected).max() > 0.5  # a forward that carries signal, not a row of zeros
    model = tiny_vit(weights=write_npz(tmp_path / "ViT-tiny.npz", params))
    np.testing.assert_allclose(predict(model, images), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("scan", [False, True], ids=["big_vision", "big_vision_scan"])
def test_big_vision_layouts_give_the_same_function(checkpoint, tmp_path, scan):
    params, images, expected = checkpoint
    path = write_npz(tmp_path / "bv.npz", official_to_big_vision(params, scan=scan))
    model = tiny_vit()
    report = load_npz(model, path)
    assert report["loaded"] == len(model.weights) and not report["head_reset"] and not report["resampled"]
    np.testing.assert_allclose(predict(model, images), expected, atol=1e-4, rtol=1e-4)


def test_new_classes_and_resolution_reset_the_head_and_resample_positions(checkpoint, tmp_path):
    params, *_ = checkpoint
    path = write_npz(tmp_path / "vit.npz", params)
    with pytest.warns(UserWarning, match=r"head \['head/kernel', 'head/bias'\] has shapes \[\(32, 5\), \(5,\)\]"):
        model = tiny_vit(input_shape=(48, 40, 3), classes=3, weights=path)
    position = model.get_layer("position_embedding").embedding.numpy()
    expected = resample_position_embedding(params["Transformer/posembed_input/pos_embedding"], (4, 4), (6, 5))
    np.testing.assert_allclose(position, keras.ops.convert_to_numpy(expected), atol=1e-6)
    assert position.shape == (1, 31, 32)
    np.testing.assert_array_equal(model.get_layer("predictions").kernel.numpy(), 0.0)  # left at its zero init
    weights = {w.path: w.numpy() for w in model.weights}
    np.testing.assert_array_equal(
        weights["encoder_block_1/attention/query/kernel"],
        params["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel"],
    )


def test_global_average_pooling_checkpoint(checkpoint, tmp_path):
    params, images, _ = checkpoint
    gap = {k: v for k, v in params.items() if k != "cls"}
    gap["Transformer/posembed_input/pos_embedding"] = params["Transformer/posembed_input/pos_embedding"][:, 1:]
    model = tiny_vit(use_class_token=False, weights=write_npz(tmp_path / "gap.npz", gap))
    expected = vit_forward(gap, images, num_heads=2)
    np.testing.assert_allclose(predict(model, images), expected, atol=1e-4, rtol=1e-4)


def test_pre_logits_kept_or_dropped(tmp_path):
    rng = np.random.default_rng(3)
    params = random_official_vit(rng, **CONFIG, representation=16)
    images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    path = write_npz(tmp_path / "in21k.npz", params)
    model = tiny_vit(representation_size=16, weights=path)
    np.testing.assert_allclose(predict(model, images), vit_forward(params, images, num_heads=2), atol=1e-4, rtol=1e-4)
    with pytest.warns(UserWarning) as caught:
        tiny_vit(classes=10, weights=path)  # fine-tuning: no pre-logits, a new head
    messages = " ".join(str(w.message) for w in caught)
    assert "pre-logits layer" in messages and "left at its initialisation" in messages


def test_exact_gelu_model_is_warned(checkpoint, tmp_path):
    params, *_ = checkpoint
    with pytest.warns(UserWarning, match="tanh-approximate GELU"):
        tiny_vit(approximate_gelu=False, weights=write_npz(tmp_path / "vit.npz", params))


def test_mismatches_name_the_first_tensor_that_does_not_fit(checkpoint, tmp_path):
    params, *_ = checkpoint
    path = write_npz(tmp_path / "vit.npz", params)
    with pytest.raises(
        ValueError,
        match=r"tensor 'embedding/kernel' has shape \(8, 8, 3, 32\) in the file, "
        r"expected \(8, 8, 3, 64\) for the model's 'patch_embedding/projection/kernel'",
    ):
        tiny_vit(hidden_dim=64, mlp_dim=128, weights=path)
    with pytest.raises(
        ValueError, match=r"tensor 'embedding/kernel' has shape \(8, 8, 3, 32\) in the file, expected \(16, 16, 3, 32\)"
    ):
        tiny_vit(patch_size=16, weights=path)
    with pytest.raises(ValueError, match="no tensor 'Transformer/encoderblock_2/LayerNorm_0/scale'"):
        tiny_vit(num_layers=3, weights=path)
    with pytest.raises(ValueError, match=r"no place for its tensors \['Transformer/encoderblock_1/"):
        tiny_vit(num_layers=1, weights=path)
    with pytest.raises(ValueError, match="no tensor 'cls'"):
        load_npz(tiny_vit(), write_npz(tmp_path / "gap.npz", {k: v for k, v in params.items() if k != "cls"}))
    with pytest.raises(ValueError, match="not a ViT checkpoint"):
        tiny_vit(weights=write_npz(tmp_path / "other.npz", {"conv1/kernel": np.zeros((3, 3), "float32")}))
    with pytest.raises(ValueError, match="for a Vision Transformer"):
        keras_vitres.ResNet(8, stem="cifar", weights=path)


def test_unsafe_or_oversized_npz_fail_before_reading(tmp_path):
    np.savez(tmp_path / "pickle.npz", cls=np.array([{"not": "a tensor"}], dtype=object))
    with pytest.raises(ValueError, match="holds Python objects"):
        tiny_vit(weights=str(tmp_path / "pickle.npz"))
    # A 12-byte member whose header declares a 40 GB kernel: refused from the header, nothing is allocated.
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)}
        )
        archive.writestr("embedding/kernel.npy", header.getvalue() + b"\0" * 12)
    with pytest.raises(ValueError, match=r"'embedding/kernel' has shape \(100000, 100000\) in the file"):
        tiny_vit(weights=str(tmp_path / "huge.npz"))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(ValueError, match="not a valid .npz"):
        tiny_vit(weights=str(tmp_path / "broken.npz"))
    ints = {k: v.astype("int32") for k, v in random_official_vit(np.random.default_rng(0), **CONFIG).items()}
    with pytest.raises(ValueError, match="has dtype int32"):
        tiny_vit(weights=write_npz(tmp_path / "ints.npz", ints))
