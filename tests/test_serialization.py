"""The names a `.keras` file gives the package's classes: none reads as a class of Keras or keras-hub, and a file
saved under the former names (`keras_vitres>BatchNormalization`, ...) still loads with `safe_mode=True`."""

import types
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_vitres.serialization  # noqa: F401  (the documented import: registers every class)
from keras_vitres.data.augment import ExactAreaCutMix
from keras_vitres.layers import AddPositionEmbedding, FusedBatchNormalization, ViTMultiHeadAttention
from tests.helpers import FLOAT32_EPS

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Former registered name -> the class that now answers to it (tests/fixtures/README.md).
RENAMED = {
    "BatchNormalization": FusedBatchNormalization,
    "MultiHeadAttention": ViTMultiHeadAttention,
    "PositionEmbedding": AddPositionEmbedding,
    "CutMix": ExactAreaCutMix,
}


def package_names():
    """{registered name without the package prefix: class} of the names the package writes into new files (the
    former names, which only files saved before a rename hold, left out)."""
    return {name: cls for name, cls in registered().items() if name not in RENAMED}


def registered():
    """{registered name without the package prefix: class} of every class the package registers."""
    return {key.split(">", 1)[1]: cls for key, cls in keras.saving.get_custom_objects().items()
            if key.startswith("keras_vitres>")}  # fmt: skip


def public_class_names(package):
    """The names of the classes reachable from `package` through its public modules (`keras.src` left out)."""
    seen, names, modules = set(), set(), [package]
    while modules:
        module = modules.pop()
        if module.__name__ in seen:
            continue
        seen.add(module.__name__)
        for name in dir(module):
            value = getattr(module, name, None) if not name.startswith("_") else None
            if isinstance(value, type):
                names.add(name)
            elif isinstance(value, types.ModuleType) and value.__name__.startswith(f"{package.__name__}.") and \
                    ".src" not in value.__name__:
                modules.append(value)
    return names


def test_every_class_is_registered_under_its_own_name_and_each_former_name_is_a_subclass():
    names = registered()
    assert len(names) >= 17 + len(RENAMED)
    for name, cls in names.items():
        assert cls.__name__ == name and keras.saving.get_registered_name(cls) == f"keras_vitres>{name}", name
    for former, renamed in RENAMED.items():
        # Keras keeps a layer's weights under its class name, so the former name is a subclass called that.
        assert names[former].__mro__[1] is renamed and renamed.__name__ in names


def test_no_registered_name_is_a_keras_class_name():
    keras_names = public_class_names(keras)
    assert {"BatchNormalization", "CutMix", "MultiHeadAttention", "CosineDecay"} <= keras_names  # the walk finds them
    assert not set(package_names()) & keras_names


@pytest.mark.extras
def test_no_registered_name_is_a_keras_hub_class_name():
    keras_hub = pytest.importorskip("keras_hub")
    hub_names = public_class_names(keras_hub)
    assert {"PositionEmbedding", "TransformerEncoder", "ViTBackbone"} <= hub_names
    assert not set(package_names()) & hub_names


def test_a_file_saved_under_the_former_names_loads_in_safe_mode_and_saves_again(tmp_path):
    model = keras.saving.load_model(FIXTURES / "pre_rename.keras", safe_mode=True)
    for name, cls in [("bn", FusedBatchNormalization), ("mha", ViTMultiHeadAttention),
                      ("position_embedding", AddPositionEmbedding), ("cutmix", ExactAreaCutMix)]:  # fmt: skip
        assert isinstance(model.get_layer(name), cls), name
    assert model.get_layer("bn").momentum == 0.9 and model.get_layer("cutmix").alpha == 1.0
    saved = np.load(FIXTURES / "pre_rename.npz")
    outputs = keras.ops.convert_to_numpy(model(saved["images"], training=False))  # CutMix off
    # Sums of at most 48 terms (the 3x3x3 convolution, the 4x4x4 patches, the attention), five layers deep: another
    # CPU's summation order moves the outputs by a few dozen float32 ulps of their size; 100 bounds that.
    atol = 100 * FLOAT32_EPS * np.abs(saved["outputs"]).max()
    np.testing.assert_allclose(outputs, saved["outputs"], rtol=0, atol=atol)
    model.save(tmp_path / "again.keras")
    again = keras.saving.load_model(tmp_path / "again.keras", safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(saved["images"], training=False)), outputs)
