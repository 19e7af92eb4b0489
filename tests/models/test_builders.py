"""Builders: keras.applications arguments, saving, features, resolution change, bad input."""

import inspect
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_vitres
from keras_vitres import HybridViT, ResNet, VisionTransformer, feature_extractor, resize_vit
from tests.helpers import assert_keras_round_trip

# CI's JAX step runs what goes through a backend's numerics (saving and loading, training, resizing), for one net of
# each block and shortcut kind; graph shapes and argument checks run on TensorFlow only. Mixed precision: every family
# under every policy in test_precision.py.
ALSO_ON_JAX = pytest.mark.backend_agnostic

TINY_VIT = dict(patch_size=8, hidden_dim=32, num_layers=2, num_heads=2, mlp_dim=64, input_shape=(32, 32, 3), classes=5)
TINY_HYBRID = dict(trunk="batchnorm", resnet_stage_blocks=(1, 1), resnet_stage_filters=(8, 16), hidden_dim=32,
                   num_layers=1, num_heads=2, mlp_dim=64, input_shape=(32, 32, 3), classes=5)  # fmt: skip
TINY_BIT_HYBRID = {**TINY_HYBRID, "trunk": "bit", "resnet_stage_filters": (32, 64)}
FIXTURES = Path(__file__).parent / "fixtures"

SMALL_MODELS = {
    "resnet_a": lambda: ResNet(8, shortcut="A"),
    "resnet_b": lambda: ResNet(8, shortcut="B"),
    "resnet_c": lambda: ResNet(8, shortcut="C"),
    "plain": lambda: ResNet(8, shortcut=None),
    "bottleneck_v15": lambda: ResNet(stem="imagenet", block="bottleneck", stage_blocks=(1, 1), stage_filters=(8, 16),
                                     version="v1.5", input_shape=(64, 64, 3), classes=5),  # fmt: skip
    "vit": lambda: VisionTransformer(**TINY_VIT),
    "vit_gap_prelogits": lambda: VisionTransformer(**TINY_VIT, use_class_token=False, representation_size=16),
    "hybrid": lambda: HybridViT(**TINY_HYBRID),
    "hybrid_bit": lambda: HybridViT(**TINY_BIT_HYBRID),
}


def _images(model, batch=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (batch, *model.input_shape[1:])).astype("float32")


def small_models(*on_jax):
    """The SMALL_MODELS kinds as parameters, `on_jax` of them marked for CI's JAX step."""
    return [pytest.param(kind, marks=[ALSO_ON_JAX] if kind in on_jax else []) for kind in sorted(SMALL_MODELS)]


@pytest.mark.parametrize("kind", small_models("resnet_a", "bottleneck_v15", "vit", "hybrid_bit"))
def test_keras_round_trip_with_safe_mode(kind, tmp_path):
    model = SMALL_MODELS[kind]()
    restored = assert_keras_round_trip(model, _images(model), tmp_path)
    assert [layer.name for layer in restored.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("kind", small_models("resnet_a", "resnet_c", "bottleneck_v15", "vit", "vit_gap_prelogits",
                                              "hybrid_bit"))
def test_one_training_step_lowers_the_loss(kind):
    model = SMALL_MODELS[kind]()
    x = _images(model, batch=8)
    y = np.arange(8) % model.output_shape[-1]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    # One batch per epoch: each epoch's loss is the training-mode loss before that step. (Inference-mode loss can
    # rise early on in the nets with batch norm, whose moving statistics lag five steps behind.)
    losses = model.fit(x, y, epochs=5, batch_size=8, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    assert np.isfinite(model.evaluate(x, y, verbose=0))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel export needs TensorFlow")
@pytest.mark.parametrize("kind", ["resnet_a", "vit"])
def test_saved_model_round_trip(kind, tmp_path):
    import tensorflow as tf

    model = SMALL_MODELS[kind]()
    x = _images(model)
    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(x).numpy(), keras.ops.convert_to_numpy(model(x)), atol=1e-5)


def test_include_top_false_and_pooling():
    assert ResNet(20, include_top=False).output_shape == (None, 8, 8, 64)
    assert ResNet(20, include_top=False, pooling="avg").output_shape == (None, 64)
    assert ResNet(18, stem="imagenet", include_top=False, pooling="max").output_shape == (None, 512)
    assert ResNet(18, stem="imagenet", include_top=False, input_shape=(None, None, 3)).output_shape == (None, None, None, 512)
    vit = dict(TINY_VIT, include_top=False)
    assert VisionTransformer(**vit).output_shape == (None, 17, 32)
    assert VisionTransformer(**vit, pooling="token").output_shape == (None, 32)
    assert VisionTransformer(**vit, pooling="avg").output_shape == (None, 32)
    assert VisionTransformer(**vit, use_class_token=False).output_shape == (None, 16, 32)


def test_vit_b16_has_the_papers_shapes():
    model = keras_vitres.ViTB16()
    assert model.get_layer("patch_embedding").output.shape == (None, 196, 768)
    assert model.get_layer("position_embedding").embedding.shape == (1, 197, 768)
    attention = model.get_layer("encoder_block_0").attention
    assert attention.num_heads == 12 and attention.key_dim == 64
    assert model.get_layer("encoder_block_0").mlp_dense_1.units == 3072
    assert sum(layer.name.startswith("encoder_block_") for layer in model.layers) == 12


def test_feature_extractor_returns_stages_and_blocks():
    resnet = keras_vitres.ResNet50(input_shape=(64, 64, 3))
    features = feature_extractor(resnet)
    shapes = {k: tuple(v.shape) for k, v in features.output.items()}
    assert shapes == {"stage1": (None, 16, 16, 256), "stage2": (None, 8, 8, 512), "stage3": (None, 4, 4, 1024),
                      "stage4": (None, 2, 2, 2048)}  # fmt: skip
    x = _images(resnet)
    out = features(x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out["stage4"]).mean(axis=(1, 2)),
        keras.ops.convert_to_numpy(keras.Model(resnet.input, resnet.get_layer("avg_pool").output)(x)),
        atol=1e-5,
    )
    vit_features = feature_extractor(VisionTransformer(**TINY_VIT))
    assert sorted(vit_features.output) == ["encoder_block_0", "encoder_block_1"]
    custom = feature_extractor(resnet, {"early": "stem_relu"})
    assert tuple(custom.output["early"].shape) == (None, 32, 32, 64)
    with pytest.raises(ValueError, match="'nope'"):
        feature_extractor(resnet, ["nope"])


@ALSO_ON_JAX
@pytest.mark.parametrize("kind", ["vit", "hybrid"])
def test_resize_keeps_weights_and_resamples_position_embedding(kind):
    model = SMALL_MODELS[kind]()
    x = _images(model)
    same = resize_vit(model, model.input_shape[1:])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(same(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)

    bigger = resize_vit(model, (64, 48, 3))  # a non-square grid
    stride = 8  # patch 8 for the tiny ViT; stem 4 x one stride-2 stage for the tiny hybrid
    assert bigger.input_shape == (None, 64, 48, 3)
    assert bigger.get_layer("position_embedding").embedding.shape == (1, 1 + (64 // stride) * (48 // stride), 32)
    old = bigger.get_layer("encoder_block_0").get_weights()
    for a, b in zip(old, model.get_layer("encoder_block_0").get_weights()):
        np.testing.assert_array_equal(a, b)
    prefix = keras.ops.convert_to_numpy(bigger.get_layer("position_embedding").embedding)[0, 0]
    np.testing.assert_array_equal(prefix, keras.ops.convert_to_numpy(model.get_layer("position_embedding").embedding)[0, 0])
    assert bigger(_images(bigger)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"input_shape=\(60, 48, 3\)"):
        resize_vit(model, (60, 48, 3))


@ALSO_ON_JAX
def test_weights_argument_loads_a_local_file(tmp_path):
    source = ResNet(8)
    path = str(tmp_path / "resnet8.weights.h5")
    source.save_weights(path)
    loaded = ResNet(8, weights=path)
    x = _images(source)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(source(x)), atol=1e-6)
    source.save(str(tmp_path / "resnet8.keras"))
    from_keras = ResNet(8, weights=str(tmp_path / "resnet8.keras"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(from_keras(x)), keras.ops.convert_to_numpy(source(x)), atol=1e-6)


def test_mismatched_weights_file_is_a_clear_error(tmp_path):
    path = str(tmp_path / "resnet14.keras")
    ResNet(14).save(path)
    with pytest.raises(ValueError, match="resnet14.keras"):
        ResNet(8, weights=path)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        ResNet(8, weights=str(tmp_path / "missing.weights.h5"))
    other = tmp_path / "weights.ckpt.json"
    other.write_bytes(b"\0")
    with pytest.raises(ValueError, match="unknown file type"):
        ResNet(8, weights=str(other))


@pytest.mark.parametrize("build, message", [
    (lambda: ResNet(57), r"6n\+2.*depth=57"),
    (lambda: ResNet(19, stem="imagenet"), "depth=19"),
    (lambda: keras_vitres.ResNet20(shortcut="D"), "shortcut='D'"),
    (lambda: ResNet(20, stem="tiny"), "stem='tiny'"),
    (lambda: ResNet(20, block="wide"), "block='wide'"),
    (lambda: ResNet(20, input_shape=(32, 32)), r"input_shape=\(32, 32\)"),
    (lambda: ResNet(20, pooling="sum", include_top=False), "pooling='sum'"),
    (lambda: ResNet(20, classes=0), "classes=0"),
    (lambda: keras_vitres.ViTB16(input_shape=(225, 225, 3)), r"input_shape=\(225, 225, 3\)"),
    (lambda: VisionTransformer(**dict(TINY_VIT, input_shape=(None, None, 3))), "height and width"),
    (lambda: VisionTransformer(**dict(TINY_VIT, num_heads=3)), "hidden_dim=32, num_heads=3"),
    (lambda: VisionTransformer(**dict(TINY_VIT, include_top=False, pooling="token", use_class_token=False)),
     "pooling='token'"),
    (lambda: keras_vitres.build_model("resnet_20"), "name='resnet_20'.*resnet20"),
    (lambda: keras_vitres.ResNet20(input_shape=(3, 32, 32)), r"channels-first.*input_shape=\(32, 32, 3\)"),
    (lambda: keras_vitres.ViTTi16(input_shape=(3, 224, 224)), r"channels-first.*input_shape=\(224, 224, 3\)"),
    (lambda: keras_vitres.ResNet50(input_shape=(31, 64, 3)), r"at least 32x32.*input_shape=\(31, 64, 3\)"),
    (lambda: keras_vitres.ResNet18(input_shape=(16, 16, 3)), r"at least 32x32.*input_shape=\(16, 16, 3\)"),
    (lambda: HybridViT(**dict(TINY_HYBRID, trunk="gn")), "trunk='gn'"),
    (lambda: HybridViT(**dict(TINY_HYBRID, trunk="bit")), r"multiples of 32; received resnet_stage_filters=\(8, 16\)"),
])  # fmt: skip
def test_bad_arguments_name_the_argument_and_value(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_the_hybrid_is_a_vit_with_a_trunk():
    """HybridViT is VisionTransformer(trunk=...) with the paper's defaults, signature included; `patch_size` cuts the
    trunk's feature map (1 by default); the trunk's arguments are checked, and refused without a trunk."""
    assert HybridViT(**TINY_HYBRID).get_config() == VisionTransformer(**TINY_HYBRID, name="r50_vit").get_config()
    for build, message in [
        (lambda: HybridViT(**dict(TINY_HYBRID, trunk=None)), "trunk=None"),
        (lambda: VisionTransformer(**TINY_VIT, resnet_stage_blocks=(1, 1)), r"resnet_stage_blocks=\(1, 1\), trunk=None"),
        (lambda: HybridViT(**dict(TINY_BIT_HYBRID, resnet_version="v1")), "'v1.5'.*resnet_version='v1'"),
        (lambda: HybridViT(**dict(TINY_HYBRID, resnet_stage_filters=(8,))), r"2 positive ints.*filters=\(8,\)"),
        (lambda: HybridViT(**TINY_HYBRID, patch_size=0), "patch_size=0"),
        (lambda: HybridViT(**TINY_HYBRID, patch_size=3), r"multiples of the patch size 24.*input_shape=\(32, 32, 3\)"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            build()
    defaults = {n: p.default for n, p in inspect.signature(HybridViT).parameters.items()}
    assert defaults == {**{n: p.default for n, p in inspect.signature(VisionTransformer).parameters.items()},
                        "trunk": "bit", "resnet_stage_blocks": (3, 4, 9), "resnet_stage_filters": (64, 128, 256),
                        "resnet_version": "v1.5", "name": "r50_vit"}  # fmt: skip
    patches = HybridViT(**TINY_HYBRID, patch_size=2)  # 32 / 8 (the trunk's stride) / 2: a 2x2 grid
    assert patches.get_layer("position_embedding").embedding.shape == (1, 1 + 2 * 2, 32)


def test_keras_files_of_earlier_versions_load():
    """A tiny ViT and a tiny batch-norm hybrid saved by commit 1cf512a (before the hybrid became a ViT option) load
    and compute what the same builder call makes today with their weights."""
    tiny = dict(hidden_dim=8, num_layers=1, num_heads=2, mlp_dim=8, input_shape=(16, 16, 3), classes=2)
    for fixture, built in [
        ("vit_1cf512a.keras", VisionTransformer(patch_size=8, **tiny)),
        ("hybrid_1cf512a.keras", HybridViT(trunk="batchnorm", resnet_stage_blocks=(1,), resnet_stage_filters=(4,), **tiny)),
    ]:  # fmt: skip
        restored = keras.saving.load_model(FIXTURES / fixture, safe_mode=True)
        assert [layer.name for layer in restored.layers] == [layer.name for layer in built.layers], fixture
        built.set_weights(restored.get_weights())
        x = _images(built)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(built(x)))


def test_smallest_inputs_and_grey_or_rgba_images_still_build():
    assert ResNet(18, stem="imagenet", input_shape=(32, 32, 3)).output_shape == (None, 1000)
    assert ResNet(8, input_shape=(8, 8, 1)).output_shape == (None, 10)  # CIFAR nets take small inputs
    assert ResNet(8, input_shape=(4, 28, 4)).output_shape == (None, 10)  # RGBA is channels-last, not refused


def test_wrong_channel_count_is_a_clear_error():
    model = ResNet(8)
    with pytest.raises(ValueError, match=r"expected axis -1 of input shape to have value 3.*\(1, 32, 32, 1\)"):
        model(np.zeros((1, 32, 32, 1), "float32"))


@ALSO_ON_JAX
def test_docstring_examples_run():
    import doctest

    import keras_vitres.models.features
    import keras_vitres.models.resnet
    import keras_vitres.models.vit
    import keras_vitres.presets.build
    import keras_vitres.presets.table

    for module in (keras_vitres.models.resnet, keras_vitres.models.vit, keras_vitres.models.features,
                   keras_vitres.presets.build, keras_vitres.presets.table):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


@pytest.mark.slow
def test_resnet1202_builds_and_trains_one_step():
    import time

    start = time.perf_counter()
    model = keras_vitres.ResNet1202()
    build_seconds = time.perf_counter() - start
    # Eagerly: the same ops, without tracing 1,202 layers into a graph (minutes on 2 cores, seconds eagerly).
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                  run_eagerly=True)
    x = _images(model, batch=4)
    before = keras.ops.convert_to_numpy(model.get_layer("predictions").kernel).copy()
    history = model.fit(x, np.arange(4) % 10, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(keras.ops.convert_to_numpy(model.get_layer("predictions").kernel), before)
    assert sum(layer.name.startswith("stage") for layer in model.layers) == 600
    print(f"ResNet-1202 build {build_seconds:.1f} s")


def _initializer_of(layer_config):
    return keras.initializers.get(layer_config["kernel_initializer"]).__class__.__name__


def test_initializers_follow_weights(tmp_path):
    """From scratch: Keras' defaults (glorot patch embedding, non-zero head); with loaded weights: the paper's
    (lecun_normal patch embedding, zero head for a replaced classifier); explicit arguments win either way. (A hybrid
    is the same builder with a trunk: test_the_hybrid_is_a_vit_with_a_trunk.)"""
    builder, config = VisionTransformer, TINY_VIT
    scratch = builder(**config)
    assert _initializer_of(scratch.get_layer("patch_embedding").get_config()) == "GlorotUniform"
    assert _initializer_of(scratch.get_layer("predictions").get_config()) == "GlorotUniform"
    assert np.abs(keras.ops.convert_to_numpy(scratch.get_layer("predictions").kernel)).max() > 0
    path = str(tmp_path / "vit.weights.h5")
    scratch.save_weights(path)
    loaded = builder(**config, weights=path)
    assert _initializer_of(loaded.get_layer("patch_embedding").get_config()) == "LecunNormal"
    assert _initializer_of(loaded.get_layer("predictions").get_config()) == "Zeros"
    explicit = builder(**config, patch_kernel_initializer="he_normal", head_kernel_initializer="zeros",
                       encoder_kernel_initializer={"class_name": "Orthogonal", "config": {"seed": 1}})
    assert _initializer_of(explicit.get_layer("patch_embedding").get_config()) == "HeNormal"
    assert not np.any(keras.ops.convert_to_numpy(explicit.get_layer("predictions").kernel))
    block = explicit.get_layer("encoder_block_0")
    assert _initializer_of(block.get_config()) == "Orthogonal"
    assert block.attention.get_config()["kernel_initializer"]["class_name"] == "Orthogonal"
    assert_keras_round_trip(explicit, _images(explicit), tmp_path)


@pytest.mark.parametrize("argument", ["patch_kernel_initializer", "head_kernel_initializer",
                                      "encoder_kernel_initializer"])
def test_bad_initializer_names_the_argument(argument):
    with pytest.raises(ValueError, match=rf"`{argument}` must be .*received {argument}='glorot_unifrom'"):
        VisionTransformer(**TINY_VIT, **{argument: "glorot_unifrom"})
    with pytest.raises(ValueError, match=rf"received {argument}=3"):
        HybridViT(**TINY_HYBRID, **{argument: 3})


def test_saved_vit_without_initializer_keys_still_loads(tmp_path):
    """A .keras file written before the initialiser arguments existed (no `kernel_initializer` in its encoder
    blocks' configs) loads, with the blocks' former initialiser."""
    import json
    import zipfile

    model = VisionTransformer(**TINY_VIT)
    path = tmp_path / "new.keras"
    model.save(path)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                blocks = [layer for layer in config["config"]["layers"] if layer["class_name"] == "TransformerBlock"]
                assert blocks and all(block["config"].pop("kernel_initializer") for block in blocks)
                data = json.dumps(config).encode()
            target.writestr(item, data)
    restored = keras.saving.load_model(old, safe_mode=True)
    x = _images(model)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)
    assert _initializer_of(restored.get_layer("encoder_block_0").get_config()) == "GlorotUniform"
