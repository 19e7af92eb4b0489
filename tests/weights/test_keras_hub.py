"""keras-hub backbones converted into the package's models: small ViTBackbone and ResNetBackbone configurations
saved with `save_to_preset` to a local folder, loaded back with `from_preset`, converted, outputs compared (float32,
1e-5). No network: the presets are local folders."""

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402

import keras_vitres  # noqa: E402
from keras_vitres.layers import find_preprocessing  # noqa: E402
from keras_vitres.presets import PRESETS  # noqa: E402

# CI's third step runs these, with the optional extras installed (without them they skip).
pytestmark = pytest.mark.extras

VIT = dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)


def randomise(model, seed=0):
    """Random values in every variable, so that no weight is left at a telling default: kernels at He scale and BN
    statistics near 1, which keep the activations of order one (then 1e-5 is a meaningful tolerance)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "variance" in variable.path or "gamma" in variable.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2 and "position" not in variable.path and "token" not in variable.path:
            value = rng.normal(0, np.sqrt(1 / np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0, 0.2, shape)
        variable.assign(value.astype("float32"))
    return model


@pytest.fixture(scope="module")
def vit_preset(tmp_path_factory):
    backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), **VIT)
    classifier = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=5, activation=None)
    randomise(classifier)
    folder = tmp_path_factory.mktemp("hub") / "vit_small"
    classifier.save_to_preset(str(folder))
    return folder, classifier


@pytest.fixture(scope="module")
def resnet_preset(tmp_path_factory):
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[2, 2], stackwise_num_strides=[1, 2], block_type="bottleneck_block",
        use_pre_activation=False, image_shape=(None, None, 3),
    )  # fmt: skip
    classifier = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=5, activation=None)
    randomise(classifier, seed=1)
    folder = tmp_path_factory.mktemp("hub") / "resnet_small"
    classifier.save_to_preset(str(folder))
    return folder, classifier


def ours_vit(**kwargs):
    return keras_vitres.VisionTransformer(input_shape=(32, 32, 3), **VIT, **kwargs)


def ours_resnet(**kwargs):
    return keras_vitres.ResNet(stem="imagenet", block="bottleneck", stage_blocks=(2, 2), stage_filters=(64, 16),
                               version="v1.5", input_shape=(64, 64, 3), **kwargs)  # fmt: skip


@pytest.mark.backend_agnostic  # keras-hub's backbone and ours, both on JAX too
def test_vit_backbone_converts_with_equal_outputs(vit_preset):
    folder, _ = vit_preset
    backbone = keras_hub.models.Backbone.from_preset(str(folder))  # the preset as saved, read back
    model = ours_vit(include_top=False, weights=backbone)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(backbone(images))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), expected, atol=1e-5, rtol=1e-5)


def test_vit_classifier_brings_its_head(vit_preset):
    folder, _ = vit_preset
    classifier = keras_hub.models.ImageClassifier.from_preset(str(folder))
    model = ours_vit(classes=5, classifier_activation=None, weights=classifier)
    images = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(classifier.backbone(images))[:, 0] @ keras.ops.convert_to_numpy(
        classifier.output_dense.kernel) + keras.ops.convert_to_numpy(classifier.output_dense.bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), expected, atol=1e-5, rtol=1e-5)
    # From a backbone alone the head is new: zeros, as for fine-tuning (arXiv:2010.11929 §3.2).
    model = ours_vit(classes=5, weights=classifier.backbone)
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("predictions").kernel))


def test_resnet_backbone_and_classifier_convert_with_equal_outputs(resnet_preset):
    folder, _ = resnet_preset
    backbone = keras_hub.models.Backbone.from_preset(str(folder))
    images = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    model = ours_resnet(include_top=False, weights=backbone)
    expected = keras.ops.convert_to_numpy(backbone(images))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), expected, atol=1e-5, rtol=1e-5)
    classifier = keras_hub.models.ImageClassifier.from_preset(str(folder))
    model = ours_resnet(classes=5, classifier_activation=None, weights=classifier)
    expected = keras.ops.convert_to_numpy(classifier(images))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"version='v1.5'"):
        keras_vitres.ResNet(stem="imagenet", block="bottleneck", stage_blocks=(2, 2), stage_filters=(64, 16),
                            input_shape=(64, 64, 3), weights=backbone)  # fmt: skip  (v1: shapes fit, function not)
    with pytest.raises(ValueError, match="need a ResNet"):
        ours_vit(weights=backbone)


def test_named_keras_hub_weights_build_with_their_preprocessing(vit_preset, monkeypatch):
    """A preset row whose weights are a keras-hub preset (here the local folder stands for the Kaggle handle)."""
    folder, classifier = vit_preset
    entry = dict(source="keras_hub", handle=str(folder), classifier=True, config=dict(approximate_gelu=False),
                 preprocessing=dict(image_size=(32, 32), scale=1 / 127.5, offset=-1.0), description="test",
                 licence="test", top1=None)  # fmt: skip
    row = dict(PRESETS["vit_digits_patch4_32"], config=dict(input_shape=(32, 32, 3), classes=5, **VIT),
               weights={"hub": entry})  # fmt: skip
    monkeypatch.setitem(PRESETS, "vit_digits_patch4_32", row)
    model = keras_vitres.build_model("vit_digits_patch4_32", weights="hub", classifier_activation=None)
    assert find_preprocessing(model).preprocessing.offset == -1.0
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(classifier.backbone(pixels / 127.5 - 1.0))[:, 0] @ keras.ops.convert_to_numpy(
        classifier.output_dense.kernel) + keras.ops.convert_to_numpy(classifier.output_dense.bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(pixels)), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="need approximate_gelu=False; received approximate_gelu=True"):
        keras_vitres.build_model("vit_digits_patch4_32", weights="hub", approximate_gelu=True)
    monkeypatch.setitem(entry, "handle", str(folder.parent / "missing"))
    with pytest.raises(OSError, match=r"Could not load the keras-hub preset .*missing.*save_to_preset\(DIR\)"):
        keras_vitres.build_model("vit_digits_patch4_32", weights="hub")
