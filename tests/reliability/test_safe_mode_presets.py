"""Every registered preset contains no Lambda layer (nested layers included) and loads with safe_mode=True.

Each preset is built once; its layers are walked recursively; its serialised config is checked to name only
Keras built-ins and registered `keras_vitres>` classes; and the config is deserialised with `safe_mode=True` into
an identical model. Presets of a few million parameters also go through a real `.keras` file (weights included)
loaded with `keras.saving.load_model(safe_mode=True)`, one per family and block type (ResNet-20, plain-20,
ResNet-18, ResNet-50, ResNet-50 with conv biases, BiT-R50x1, ViT-Ti/16, and the hybrid R50+ViT-B/16 at 99M parameters and
400 MB). The large presets (ViT-L/H, ResNet-101/152/1202, the hybrid) and, to keep the default suite short, the
110-layer CIFAR nets and the other presets above 12M parameters are marked slow; for them the config is what is round-tripped (building ViT-H
takes minutes and its `.keras` file would be 2.5 GB).
"""

import copy
import json
import os

import keras
import numpy as np
import pytest

import keras_vitres
from tests.helpers import trainable_params

SLOW_PREFIXES = ("vit_large", "vit_huge", "resnet1202", "resnet101", "resnet152", "r50_vit", "resnet110", "plain110")
# A real .keras file, weights included, for one preset of each family and block type (the rest differ by numbers).
FILE_ROUND_TRIP = {"resnet20", "plain20", "resnet18", "resnet50", "resnet50_keras", "vit_tiny_patch16_224",
                   "r50_vit_base_patch16_224", "bit_r50x1"}  # fmt: skip
# Each check builds the model twice (the preset, then from its config): ~4 s for 20M parameters on 2 CPU cores.
# Above 12M parameters only the file round trips stay in the default suite; the rest run with the slow tests.
DEFAULT_MAX_PARAMS = 12_000_000


def is_slow(name):
    if name.startswith(SLOW_PREFIXES):
        return True
    return keras_vitres.get_preset(name)["params"] > DEFAULT_MAX_PARAMS and name not in FILE_ROUND_TRIP


def preset_params():
    for name in keras_vitres.list_presets():
        yield pytest.param(name, marks=[pytest.mark.slow] if is_slow(name) else [], id=name)


def all_layers(model):
    """Every layer of a model, nested sublayers included (Keras 3 tracks them in `_layers`)."""
    stack, seen = list(model.layers), set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack.extend(getattr(layer, "_layers", []))


def serialised_objects(config):
    """Every object of a serialised Keras config: the dicts that carry a `class_name`."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for value in config.values():
            yield from serialised_objects(value)
    elif isinstance(config, list):
        for value in config:
            yield from serialised_objects(value)


def check_config_is_safe(config):
    """Only Keras built-ins and the package's registered classes; no Lambda, no functions from other modules."""
    kinds = set()
    for obj in serialised_objects(config):
        name, module, registered = obj["class_name"], obj.get("module"), obj.get("registered_name")
        if name in ("__keras_tensor__", "__tensor__", "__numpy__", "__tuple__", "__bytes__"):
            continue
        assert name not in ("Lambda", "TFSMLayer"), f"{name} in the config"
        if registered and registered.startswith("keras_vitres>"):
            kinds.add(registered)
            continue
        assert module == "keras" or str(module).startswith("keras."), f"{name} from module {module!r}"
        kinds.add(f"{module}.{name}")
    return kinds


ZEROS = {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": None}


def initializer_configs(config):
    """The serialised initialisers of a config: the values of its `*_initializer` arguments."""
    for obj in serialised_objects(config):
        arguments = obj.get("config")
        for key, value in arguments.items() if isinstance(arguments, dict) else ():
            if key.endswith("_initializer") and isinstance(value, dict):
                yield value


def with_zero_initializers(config):
    """A copy of a serialised config with every `*_initializer` argument set to Zeros."""
    if isinstance(config, dict):
        return {key: ZEROS if key.endswith("_initializer") and isinstance(value, dict)
                else with_zero_initializers(value) for key, value in config.items()}  # fmt: skip
    if isinstance(config, list):
        return [with_zero_initializers(value) for value in config]
    return config


@pytest.mark.parametrize("name", preset_params())
def test_preset_has_no_lambda_and_loads_with_safe_mode(name, tmp_path, record_property):
    model = keras_vitres.build_model(name)
    # The pinned counts and the name, on this build (tests/models/test_presets.py leaves the slow presets to it).
    row = keras_vitres.get_preset(name)
    assert (model.name, model.count_params(), trainable_params(model)) == (name, row["params"], row["trainable_params"])
    layers = list(all_layers(model))
    assert not [layer.name for layer in layers if isinstance(layer, keras.layers.Lambda)]
    assert len(layers) > len(model.layers)  # the walk did reach inside the blocks
    config = json.loads(model.to_json())
    kinds = check_config_is_safe(config)
    record_property("layer_types", len(kinds))

    if name not in FILE_ROUND_TRIP:  # the config alone, deserialised under safe mode
        # Drawing the random initial values again (most of a build: 16 of bit_r152x4's 19 s) proves nothing about
        # the config, so the copy is rebuilt with zero initialisers; each of the original initialisers is
        # deserialised under safe mode on its own.
        for initializer in set(map(json.dumps, initializer_configs(config))):
            assert keras.saving.deserialize_keras_object(json.loads(initializer), safe_mode=True) is not None
        zeroed = with_zero_initializers(config)
        restored = keras.saving.deserialize_keras_object(copy.deepcopy(zeroed), safe_mode=True)  # edits its input
        assert json.loads(restored.to_json()) == zeroed
        assert restored.count_params() == model.count_params() == row["params"]
        return
    path = os.path.join(tmp_path, f"{name}.keras")  # a real file, weights included
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert json.loads(loaded.to_json()) == config
    assert loaded.count_params() == row["params"]
    x = np.random.default_rng(0).uniform(0, 255, (1, *model.input_shape[1:])).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x, training=False)), keras.ops.convert_to_numpy(model(x, training=False))
    )
    record_property("keras_file_mb", round(os.path.getsize(path) / 2**20, 1))
