"""keras.applications ResNet weight files -> the package's v1 ResNets with conv biases (presets resnet*_keras)."""

import time

import h5py
import keras
import numpy as np
import pytest
from keras.src.applications import resnet as keras_resnet
from keras.src.legacy.saving import legacy_h5_format

import keras_vitres
from keras_vitres.weights import load_h5, load_keras_applications


def randomise(model, seed=0):
    """Random weights everywhere, BN moving statistics included, at scales that keep activations finite."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c), rng.uniform(0.5, 2.0, c)]
            )
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, *bias = layer.get_weights()
            fan_in = np.prod(kernel.shape[:3])
            layer.set_weights(
                [rng.normal(0, np.sqrt(2 / fan_in), kernel.shape)] + [rng.normal(0, 0.1, b.shape) for b in bias]
            )
        elif isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            layer.set_weights(
                [rng.normal(0, 1 / np.sqrt(kernel.shape[0]), kernel.shape), rng.normal(0, 0.1, bias.shape)]
            )
    return model


def save_legacy_weights(model, path, head_name=None):
    """Writes the layout of keras.applications' published files (Keras 2 `save_weights` to .h5), optionally with
    the classifier renamed as in the keras_applications releases ("probs")."""
    if head_name:
        model.get_layer("predictions").name = head_name
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def small_keras_resnet(classes=7, include_top=True, pooling=None):
    """keras.applications' own ResNet factory on a small stage configuration (same stem and v1 blocks)."""

    def stack_fn(x):
        x = keras_resnet.stack_residual_blocks_v1(x, 64, 2, stride1=1, name="conv2")
        return keras_resnet.stack_residual_blocks_v1(x, 16, 2, name="conv3")

    return keras_resnet.ResNet(
        stack_fn,
        False,
        True,
        name="small_resnet",
        include_top=include_top,
        weights=None,
        input_shape=(64, 64, 3),
        pooling=pooling,
        classes=classes,
        classifier_activation=None,
    )


def small_ours(**kwargs):
    config = dict(
        stem="imagenet",
        block="bottleneck",
        stage_blocks=(2, 2),
        stage_filters=(64, 16),
        use_bias=True,
        bn_epsilon=1.001e-5,
        input_shape=(64, 64, 3),
        classes=7,
        classifier_activation=None,
    )
    return keras_vitres.ResNet(**{**config, **kwargs})


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    source = randomise(small_keras_resnet())
    path = save_legacy_weights(source, tmp_path_factory.mktemp("h5") / "small_resnet.h5", head_name="probs")
    images = np.random.default_rng(1).uniform(-2, 2, (3, 64, 64, 3)).astype("float32")
    return str(path), images, keras.ops.convert_to_numpy(source(images, training=False)), source


def test_published_layout_loads_through_weights_argument(small_file):
    path, images, expected, _ = small_file
    model = small_ours(weights=path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(images, training=False)), expected, atol=1e-4, rtol=1e-4
    )


def test_full_model_legacy_h5_and_live_model(small_file, tmp_path):
    _, images, expected, source = small_file
    source.save(tmp_path / "full.h5")  # legacy full-model file: weights under /model_weights
    model = small_ours()
    load_h5(model, tmp_path / "full.h5")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(images, training=False)), expected, atol=1e-4, rtol=1e-4
    )
    model = small_ours()
    report = load_keras_applications(model, source)
    assert report["loaded"] == len(model.weights) and not report["head_reset"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(images, training=False)), expected, atol=1e-4, rtol=1e-4
    )


def test_other_class_count_resets_the_head_and_keeps_the_features(small_file):
    path, images, _, source = small_file
    features = keras.Model(source.input, source.get_layer("avg_pool").output)
    expected = keras.ops.convert_to_numpy(features(images, training=False))
    with pytest.warns(UserWarning, match="left at its initialisation"):
        model = small_ours(classes=3, weights=path)
    trunk = keras.Model(model.input, model.get_layer("avg_pool").output)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(trunk(images, training=False)), expected, atol=1e-4, rtol=1e-4
    )
    notop = small_ours(include_top=False, pooling="avg", weights=path)  # the file's head is simply not needed
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(notop(images, training=False)), expected, atol=1e-4, rtol=1e-4
    )


def test_mismatched_model_names_the_first_tensor_that_does_not_fit(small_file):
    path, *_ = small_file
    with pytest.raises(
        ValueError,
        match=r"tensor 'conv3_block1_0_conv/kernel' has shape \(1, 1, 256, 64\) in the file, "
        r"expected \(1, 1, 256, 128\)",
    ):
        small_ours(stage_filters=(64, 32), weights=path)
    with pytest.raises(ValueError, match="no tensor 'conv2_block3_1_conv/kernel'"):
        small_ours(stage_blocks=(3, 2), weights=path)
    with pytest.raises(ValueError, match="model has no place for its tensors"):
        small_ours(stage_blocks=(1, 2), weights=path)
    with pytest.raises(ValueError, match="version='v1'"):
        small_ours(version="v1.5", weights=path)
    with pytest.raises(ValueError, match="use_bias=True"):
        small_ours(use_bias=False, weights=path)


def test_hdf5_files_reaching_outside_are_refused(tmp_path):
    model = keras_vitres.ResNet(8, stem="cifar")
    (tmp_path / "elsewhere.h5").write_bytes(b"")
    with h5py.File(tmp_path / "elsewhere.h5", "w") as f:
        f["x"] = np.ones(3)
    with h5py.File(tmp_path / "link.h5", "w") as f:
        f["stem_conv"] = h5py.ExternalLink("elsewhere.h5", "/x")
    with pytest.raises(ValueError, match="external link to 'elsewhere.h5'"):
        keras_vitres.ResNet(8, stem="cifar", weights=str(tmp_path / "link.h5"))
    with h5py.File(tmp_path / "external.weights.h5", "w") as f:
        f.create_dataset("data", shape=(4,), dtype="f4", external=[("/etc/hostname", 0, 16)])
    with pytest.raises(ValueError, match="stores its data in external files"):
        load_h5(model, tmp_path / "external.weights.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not a valid HDF5 file"):
        load_h5(model, tmp_path / "junk.h5")


def test_keras_own_weight_files_still_load(tmp_path):
    source = keras_vitres.ResNet(8, stem="cifar")
    source.set_weights([w + 0.5 for w in source.get_weights()])
    source.save_weights(tmp_path / "r8.weights.h5")
    model = keras_vitres.ResNet(8, stem="cifar", weights=str(tmp_path / "r8.weights.h5"))
    for a, b in zip(source.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="does not fit model"):
        keras_vitres.ResNet(14, stem="cifar", weights=str(tmp_path / "r8.weights.h5"))


@pytest.mark.slow
def test_keras_applications_resnet50_gives_identical_outputs(tmp_path):
    start = time.perf_counter()
    source = randomise(keras.applications.ResNet50(weights=None, classifier_activation=None))
    path = save_legacy_weights(source, tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5", head_name="probs")
    images = np.random.default_rng(0).uniform(-2, 2, (2, 224, 224, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(source(images, training=False))
    model = keras_vitres.build_model("resnet50_keras", weights=str(path), classifier_activation=None)
    assert model.count_params() == source.count_params() == 25_636_712
    actual = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(actual, expected, atol=1e-4 * np.abs(expected).max(), rtol=1e-4)
    print(f"ResNet50 conversion test: {time.perf_counter() - start:.1f} s")


# Keras 3 `.weights.h5` files written by keras.applications itself (`save_weights`), loaded through `weights=`.
# Keras 3 keys them by class name and position, so the test writes them with the installed Keras (3.15.1 when this
# was written; docs/weights.md states the versions checked).
KERAS3_RESNETS = [
    ("ResNet50", "resnet50_keras"),
    pytest.param("ResNet101", "resnet101_keras", marks=pytest.mark.slow),
    pytest.param("ResNet152", "resnet152_keras", marks=pytest.mark.slow),
]
SMALL_IMAGES = (64, 64, 3)  # the weights do not depend on the resolution; 64x64 keeps the test fast


def keras3_file(tmp_path, application, **kwargs):
    source = randomise(getattr(keras.applications, application)(weights=None, input_shape=SMALL_IMAGES,
                                                                classifier_activation=None, **kwargs))
    path = str(tmp_path / f"{application.lower()}.weights.h5")
    source.save_weights(path)
    return source, path


@pytest.mark.parametrize("application, preset", KERAS3_RESNETS)
def test_keras3_weights_of_keras_applications_load_through_weights_argument(application, preset, tmp_path):
    source, path = keras3_file(tmp_path, application)
    with h5py.File(path) as f:
        assert "layers" in f and "layer_names" not in f.attrs  # the Keras 3 layout, not the legacy one
    images = np.random.default_rng(0).uniform(-120, 130, (2, *SMALL_IMAGES)).astype("float32")
    expected = keras.ops.convert_to_numpy(source(images, training=False))
    model = keras_vitres.build_model(preset, weights=path, input_shape=SMALL_IMAGES, classifier_activation=None)
    assert model.count_params() == source.count_params()
    actual = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(actual, expected, atol=1e-5 * max(1.0, np.abs(expected).max()), rtol=1e-5)


def test_keras3_resnet50_without_top_and_wrong_models(tmp_path):
    source, path = keras3_file(tmp_path, "ResNet50", include_top=False, pooling="avg")
    images = np.random.default_rng(1).uniform(-120, 130, (2, *SMALL_IMAGES)).astype("float32")
    expected = keras.ops.convert_to_numpy(source(images, training=False))
    features = keras_vitres.build_model("resnet50_keras", include_top=False, pooling="avg", input_shape=SMALL_IMAGES,
                                        weights=path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features(images, training=False)), expected,
                               atol=1e-5 * max(1.0, np.abs(expected).max()), rtol=1e-5)
    with pytest.warns(UserWarning, match="left at its initialisation"):  # a file without a head, a model with one
        keras_vitres.build_model("resnet50_keras", input_shape=SMALL_IMAGES, classes=3, weights=path)
    with pytest.raises(ValueError, match="use_bias=True") as error:  # the torchvision layout: no conv biases
        keras_vitres.build_model("resnet50", input_shape=SMALL_IMAGES, weights=path)
    assert len(str(error.value)) < 400
    with pytest.raises(ValueError, match="no tensor 'conv4_block7_1_conv/kernel'") as error:
        keras_vitres.build_model("resnet101_keras", input_shape=SMALL_IMAGES, weights=path)
    assert len(str(error.value)) < 400
    with pytest.raises(ValueError, match=r"keras.applications ResNet50 .*is not a ResNet") as error:
        keras_vitres.VisionTransformer(num_layers=1, input_shape=SMALL_IMAGES, weights=path)  # ViT-B's widths
    assert len(str(error.value)) < 400
    with h5py.File(path, "a") as f:  # the same safety checks as every HDF5 file, before Keras reads anything
        f["layers/conv2d/vars/extra"] = h5py.ExternalLink("elsewhere.h5", "/x")
    with pytest.raises(ValueError, match="external link to 'elsewhere.h5'"):
        keras_vitres.build_model("resnet50_keras", include_top=False, input_shape=SMALL_IMAGES, weights=path)


def test_a_file_of_no_known_layout_gets_a_short_error(tmp_path):
    keras_vitres.ResNet(14, stem="cifar").save_weights(tmp_path / "r14.weights.h5")
    with pytest.raises(ValueError) as error:
        keras_vitres.ResNet(8, stem="cifar", weights=str(tmp_path / "r14.weights.h5"))
    message = str(error.value)
    assert "r14.weights.h5" in message and "does not fit model 'resnet8'" in message
    assert "the file holds Keras 3 weights of" in message and "layers/" in message  # what the file holds
    assert "the model expects" in message and "stem_conv/kernel (3, 3, 3, 16)" in message  # what the model wants
    assert len(message) < 600, message
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["embeddings"] = np.zeros((3, 4), "float32")
        f["head/kernel"] = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match=r"holds HDF5 objects embeddings \(3, 4\); head \(group\)") as error:
        keras_vitres.ResNet(8, stem="cifar", weights=str(tmp_path / "other.h5"))
    assert len(str(error.value)) < 600
