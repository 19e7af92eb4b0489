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
