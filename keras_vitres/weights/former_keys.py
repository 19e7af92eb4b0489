"""Keras 3 `.weights.h5` files written before a class was renamed, read into models of the renamed class.

Keras keys each layer of a model's `layers` by its class name in snake case and a counter that every class of that
snake-case name shares (`layers/batch_normalization_2/vars/0`). A file saved when `FusedBatchNormalization` was
still called `BatchNormalization` keys its layers by the former name, and the counters of Keras' own classes of
that name shift with it. `renamed_keys` computes both keys of every layer, as Keras counts them; `current_copy`
writes a temporary copy of such a file under the current keys, which Keras then loads as usual. The former names
are those `keras_vitres.layers.former_names` registers.
"""

import contextlib
import os
import re
import tempfile

import h5py
import keras


def former_name(cls):
    """The name `cls` was registered under before it was renamed, or its own name."""
    for sub in cls.__subclasses__():
        registered = keras.saving.get_registered_object(f"keras_vitres>{sub.__name__}")
        if registered is sub and vars(sub).get("renamed_to") is cls:  # made by `register_former_name`
            return sub.__name__
    return cls.__name__


def _snake_case(name):
    # Keras' rule for the keys (keras/src/utils/naming.py `to_snake_case`, Keras 3.15).
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _unique(name, counts):
    # Keras' counter (`_get_unique_name`): the first of a name has none, the next ones _1, _2, ...
    counts[name] = counts.get(name, -1) + 1
    return f"{name}_{counts[name]}" if counts[name] else name


def layer_keys(model):
    """[(layer, key under the current class names, key under the former ones)] of `model.layers`, in Keras' order."""
    current, former = {}, {}
    return [(layer, _unique(_snake_case(type(layer).__name__), current),
             _unique(_snake_case(former_name(type(layer))), former)) for layer in model.layers]  # fmt: skip


def renamed_keys(model, current="layers", former="layers"):
    """[(current path, former path)] of the layers whose key changed, nested functional models' layers included."""
    pairs = []
    for layer, now, before in layer_keys(model):
        if now != before:
            pairs.append((f"{current}/{now}", f"{former}/{before}"))
        if isinstance(layer, keras.Model):
            pairs += renamed_keys(layer, f"{current}/{now}/layers", f"{former}/{before}/layers")
    return pairs


def holds_former_keys(h5file, model):
    """Whether the open `h5file` keys the model's renamed layers by their former names rather than the current."""
    pairs = renamed_keys(model)
    return bool(pairs) and all(old in h5file for _, old in pairs) and not all(new in h5file for new, _ in pairs)


def _copy_layers(source, target, model):
    """Copies the groups of `source` (a model's group in the old file) into `target` under the current keys."""
    for name in source:
        if name != "layers":
            source.copy(source[name], target, name)
    if "layers" not in source:
        return
    layers, copied = source["layers"], target.create_group("layers")
    for layer, now, before in layer_keys(model):
        if before not in layers:
            continue  # Keras' own loader then names what is missing
        if isinstance(layer, keras.Model):
            _copy_layers(layers[before], copied.create_group(now), layer)
        else:
            layers.copy(layers[before], copied, now)


@contextlib.contextmanager
def current_copy(path, model):
    """The path of a temporary copy of the `.weights.h5` file `path` with the model's layers under their current
    keys (optimizer state and every other group as they were); removed on exit."""
    with tempfile.TemporaryDirectory(prefix="keras_vitres_") as folder:
        copy = os.path.join(folder, os.path.basename(path))
        with h5py.File(path, "r") as source, h5py.File(copy, "w") as target:
            target.attrs.update(source.attrs)
            _copy_layers(source, target, model)
        yield copy
