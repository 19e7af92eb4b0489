"""One loader per file format, and `load_weights`, which the builders call for their `weights=` argument.

Loaders take a model and never import the builders. Each opens the file with a reader of `readers` (which refuses
what could run code or reach outside the file), recognises the checkpoint family by its tensor names, maps it onto
the model (`resnet`, `vit`, `bit`) and assigns it with `mapping.assign_weights`.
"""

import contextlib
import math
import os
import re
import zipfile

import keras
import numpy as np

import keras_vitres.data.augment  # noqa: F401  (ExactAreaCutMix, which a saved model may hold)
import keras_vitres.layers  # noqa: F401  (every layer a saved model may hold)
from keras_vitres.weights import bit, resnet, vit
from keras_vitres.weights.former_keys import current_copy, holds_former_keys
from keras_vitres.weights.keras_hub import load_keras_hub
from keras_vitres.weights.mapping import Source, assign_weights
from keras_vitres.weights.readers import (
    PICKLE_SUFFIXES,
    KerasH5Tensors,
    KerasModelTensors,
    NpzTensors,
    SafetensorsTensors,
    TensorFile,
    check_hdf5_sizes,
    describe_hdf5,
    describe_model_weights,
    is_legacy_keras_h5,
    keras3_layers,
    open_hdf5,
    refuse_pickle,
)

STATE_DICT_PREFIXES = ("module.", "model.", "state_dict.")  # left by DataParallel and training wrappers
# keras.applications ResNets by their number of convolutions (each followed by its BatchNormalization).
KERAS_APPLICATIONS_RESNETS = {53: "ResNet50", 104: "ResNet101", 155: "ResNet152"}


class _Renamed(TensorFile):
    """A TensorFile seen without a prefix that every key shares."""

    def __init__(self, inner, prefix):
        super().__init__(inner.path)
        self.format_name, self._inner, self._prefix = inner.format_name, inner, prefix
        for key in inner.keys():
            self._shapes[key[len(prefix) :]] = inner.shape(key)
            self._dtypes[key[len(prefix) :]] = inner.dtype(key)

    def read(self, key):
        return self._inner.read(self._prefix + key)

    def close(self):
        self._inner.close()


def _strip_wrapper_prefix(tensor_file):
    keys = tensor_file.keys()
    for prefix in STATE_DICT_PREFIXES:
        if keys and all(k.startswith(prefix) for k in keys):
            return _Renamed(tensor_file, prefix)
    return tensor_file


def _has_head(model):
    return "predictions" in {layer.name for layer in model.layers}


def _assign_vit(model, tensor_file, sources, ignorable, trunk_sources=None):
    """Assigns a ViT checkpoint through its family's `sources` and `ignorable` mappings, resampling the position
    embedding to the model's patch grid; a hybrid's trunk comes through `trunk_sources`."""
    mapping = sources(model, tensor_file)
    if bit.is_hybrid(model):
        mapping.update(trunk_sources(model, tensor_file))
    return assign_weights(
        model,
        tensor_file,
        mapping,
        ignorable=ignorable(model, tensor_file),
        position_grid=vit.position_grid(model),
    )


def load_npz(model, path):
    """Loads an official `.npz`: a ViT (google-research/vision_transformer, big_vision) into a ViT, the ViT
    repository's R50+ViT into the hybrid with the BiT trunk, or a BiT ResNet (google-research/big_transfer) into a
    `BiTResNet`.

    The head is left at its initialisation when the number of classes differs, and the position embedding is
    resampled to the model's patch grid. Returns a dict: number of weights loaded, whether the head was reset and
    whether the position embedding was resampled.
    """
    with NpzTensors(path) as tensor_file:
        if bit.BIT_NPZ_MARKER in tensor_file:
            sources = bit.npz_bit_sources(model, tensor_file)
            return assign_weights(model, tensor_file, sources, ignorable=bit.npz_bit_ignorable(model))
        return _assign_vit(model, tensor_file, vit.npz_vit_sources, vit.npz_vit_ignorable,
                           lambda m, f: bit.hybrid_trunk_npz_sources(m, f, vit.npz_root(f)))  # fmt: skip


def load_safetensors(model, path):
    """Loads a timm / torchvision state dict saved as `.safetensors` (ResNet v1.5, ViT, timm's R50+ViT hybrid or
    BiT `resnetv2_*_bit`), without PyTorch."""
    with SafetensorsTensors(path) as opened:
        tensor_file = _strip_wrapper_prefix(opened)
        if vit.torch_vit_flavour(tensor_file):
            return _assign_vit(model, tensor_file, vit.torch_vit_sources, vit.torch_vit_ignorable,
                               bit.hybrid_trunk_timm_sources)  # fmt: skip
        if bit.TIMM_BIT_MARKER in tensor_file and "stages.0.blocks.0.conv1.weight" in tensor_file:
            sources = bit.timm_bit_sources(model, tensor_file)
            return assign_weights(model, tensor_file, sources, ignorable=bit.timm_bit_ignorable(model))
        if "conv1.weight" in tensor_file and "layer1.0.conv1.weight" in tensor_file:
            if not resnet.is_resnet(model):
                raise ValueError(f"`weights` file {os.fspath(path)!r} holds a ResNet; model {model.name!r} is not one.")
            sources = resnet.torch_resnet_sources(model, tensor_file)
            has_head = _has_head(model)
            return assign_weights(
                model,
                tensor_file,
                sources,
                ignorable=lambda k: resnet.torch_resnet_ignorable(k) or (not has_head and k.startswith("fc.")),
            )
        raise ValueError(
            f"`weights` file {os.fspath(path)!r} is not a timm/torchvision ResNet or ViT state dict (no 'conv1.weight' + "
            f"'layer1.0.conv1.weight', 'patch_embed.proj.weight' or 'conv_proj.weight'); its first tensors are "
            f"{tensor_file.keys()[:5]}."
        )


def _load_keras_applications(model, tensor_file):
    if not resnet.is_resnet(model):
        raise ValueError(f"keras.applications ResNet weights need a ResNet; model {model.name!r} is not one.")
    sources = resnet.keras_applications_sources(model, tensor_file)
    has_head = _has_head(model)
    return assign_weights(
        model, tensor_file, sources, ignorable=lambda k: not has_head and k.split("/")[0] in resnet.KERAS_HEADS
    )


def keras_applications_resnet(h5file):
    """Recognises a Keras 3 `.weights.h5` saved from keras.applications ResNet50/101/152 by its structure.

    Returns (application name, classes or None without a top, input channels), or None when the file is not one:
    only Conv2D, BatchNormalization and at most one Dense layer hold variables, as many convolutions as batch
    norms (53, 104 or 155), and a 7x7 stem convolution first.
    """
    layers = keras3_layers(h5file)
    if not layers:
        return None
    kinds = {}
    for name, _ in layers:
        kind = re.sub(r"_\d+$", "", name)
        kinds[kind] = kinds.get(kind, 0) + 1
    convs = kinds.get("conv2d", 0)
    if set(kinds) - {"conv2d", "batch_normalization", "dense"} or kinds.get("batch_normalization") != convs:
        return None
    shapes = dict(layers)
    stem, dense = shapes.get("conv2d", [()])[0], shapes.get("dense")
    if convs not in KERAS_APPLICATIONS_RESNETS or len(stem) != 4 or stem[:2] != (7, 7) or kinds.get("dense", 0) > 1:
        return None
    return KERAS_APPLICATIONS_RESNETS[convs], (dense[-1][0] if dense else None), stem[2]


def _load_keras3_applications(model, path, found):
    """Builds the keras.applications ResNet the file was saved from, loads it there with Keras' own loader (the
    file's keys follow that model's layer order), then converts by layer name as `load_keras_applications` does."""
    application, classes, channels = found
    if not resnet.is_resnet(model):
        raise ValueError(
            f"`weights` file {path!r} holds a keras.applications {application} (Keras 3 .weights.h5); model "
            f"{model.name!r} is not a ResNet (build e.g. keras_vitres.build_model('{application.lower()}_keras'))."
        )
    source = getattr(keras.applications, application)(
        weights=None,
        include_top=classes is not None,
        classes=classes or 1000,
        input_shape=(224, 224, channels) if classes else (None, None, channels),
    )
    try:
        source.load_weights(path)
    except Exception as error:  # Keras raises several types; its message can run to thousands of characters
        raise ValueError(
            f"`weights` file {path!r} has the structure of keras.applications {application} (Keras 3 .weights.h5), "
            f"but Keras {keras.__version__} cannot load it into one ({type(error).__name__}); files written by Keras "
            "3.15 load (docs/weights.md)."
        ) from None
    return load_keras_applications(model, source)


def load_h5(model, path):
    """Loads an HDF5 weight file, once its headers show it self-contained (no external links or datasets) and no
    dataset larger than the model's largest weight.

    keras.applications ResNet files are converted by layer name into the v1 ImageNet ResNets with conv biases
    (presets `resnet50_keras`, ...): the published legacy `.h5` files (`conv1_conv`, `conv2_block1_0_conv`, `probs`)
    and the Keras 3 `.weights.h5` of those models, recognised by their structure (`keras_applications_resnet`).
    Any other file goes to Keras' own loader, through a copy under the current keys when it was written before a
    layer class was renamed (`former_keys`); one that does not fit gets an error describing the file and the model.
    """
    path = os.fspath(path)
    h5file = open_hdf5(path)
    found, former = None, False
    try:
        largest = max((math.prod(weight.shape) for weight in model.weights), default=0)
        check_hdf5_sizes(h5file, path, largest, model.name)
        if is_legacy_keras_h5(h5file):
            tensor_file = KerasH5Tensors(path, h5file)
            if "conv1_conv" in tensor_file.layer_names() and "stem_conv" in {layer.name for layer in model.layers}:
                return _load_keras_applications(model, tensor_file)
        else:
            found = keras_applications_resnet(h5file)
            former = not found and holds_former_keys(h5file, model)
        holds = describe_hdf5(h5file)
    finally:
        h5file.close()
    if found:
        return _load_keras3_applications(model, path, found)
    with current_copy(path, model) if former else contextlib.nullcontext(path) as readable:
        try:
            model.load_weights(readable)
        except Exception:  # Keras raises several types for a file that does not fit; its message is Keras' internals
            raise ValueError(
                f"`weights` file {path!r} does not fit model {model.name!r}: the file holds {holds}; the model "
                f"expects {describe_model_weights(model)}. docs/weights.md lists the files that load."
            ) from None
    return dict(loaded=len(model.weights), head_reset=False, resampled=False)


def load_keras_applications(model, source):
    """Copies the weights of a live `keras.applications` ResNet50/101/152 model into a package ResNet.

    Useful where the network is reachable: `keras.applications.ResNet50(weights="imagenet")`, then convert. (A Keras 3
    `.weights.h5` of these models loads through `weights=` directly, see `load_h5`.)

    Args:
        model: a package ResNet with conv biases, v1 bottlenecks (e.g. `build_model("resnet50_keras")`).
        source: the keras.applications model.
    """
    return _load_keras_applications(model, KerasModelTensors(source))


# The loader of each file suffix, in the order they are tried (`.weights.h5` ends in `.h5`: `load_h5` checks it and
# hands it to Keras). PyTorch pickles are refused with the command that converts them.
LOADERS = {
    ".npz": load_npz,
    ".safetensors": load_safetensors,
    ".h5": load_h5,
    **{suffix: refuse_pickle for suffix in PICKLE_SUFFIXES},
}


def is_keras_hub_model(value):
    """Whether `value` is a keras-hub model (a backbone or task), judged without importing keras_hub."""
    return any(cls.__module__.startswith("keras_hub.") for cls in type(value).__mro__)


def load_weights(model, weights):
    """Loads `weights` (None, the path of a local file, or a keras-hub backbone) into `model`; returns `model`.

    The loader is chosen by the file's suffix (`LOADERS`); a `.keras` file is read with `safe_mode=True` and copied
    by weight path (`_copy_weights`); a keras-hub model is converted by `keras_hub.load_keras_hub`. What was loaded
    from a file is left on the model as `model.loaded_weights`: the path, the number of weights loaded, "head_reset"
    (the classifier left at its initialisation, its classes differing) and "resampled" (the position embedding).
    """
    if weights is None:
        return model
    if is_keras_hub_model(weights):
        load_keras_hub(model, weights)
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            "`weights` must be None, the path of a local weights file or a keras-hub backbone (named weights go "
            f"through the presets: keras_vitres.preset_weights(name) lists them); received weights={weights!r:.200}."
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`weights` file not found: weights={path!r}.")
    for suffix, loader in LOADERS.items():
        if path.endswith(suffix):
            _report(model, path, loader(model, path))
            return model
    if path.endswith(".keras"):
        source = load_keras_model(path, argument="weights")
        _report(model, path, _copy_weights(source, model, path))
        return model
    known = sorted([".weights.h5", ".keras", *LOADERS])
    raise ValueError(f"`weights` has an unknown file type: weights={path!r}; expected one of {known}.")


def _report(model, path, result):
    object.__setattr__(model, "loaded_weights", dict(file=path, **result))  # untracked: not saved with the model


class _ModelTensors(TensorFile):
    """A live Keras model's weights as a TensorFile keyed by their Keras paths ("encoder_block_0/mlp/dense_1/kernel",
    the same paths in every model a builder makes, whatever its name)."""

    format_name = "Keras model"

    def __init__(self, model, path):
        super().__init__(path)
        self._variables = {v.path: v for v in model.weights}
        for key, variable in self._variables.items():
            self._shapes[key], self._dtypes[key] = tuple(variable.shape), np.dtype(variable.dtype).name

    def read(self, key):
        return np.asarray(keras.ops.convert_to_numpy(self._variables[key]))


def _network(source):
    """The network inside a saved model: a training run's model.keras is `input -> preprocessing -> network`."""
    nested = [layer for layer in source.layers if isinstance(layer, keras.Model)]
    return nested[0] if len(nested) == 1 else source


def _copy_weights(source, model, path):
    """Copies a `.keras` model's weights into `model` by weight path (a run's model.keras: its network's).

    The classifier head ("predictions") is left at its initialisation when its shape differs (fine-tuning on other
    classes), and a ViT's position embedding is resampled to the model's patch grid (arXiv:2010.11929 §3.2); every
    other tensor must match in name and shape.
    """
    source = _network(source)
    tensor_file = _ModelTensors(source, path)
    sources, names = {}, {layer.name for layer in model.layers}
    for variable in model.weights:
        role = "head" if variable.path.startswith("predictions/") else "weight"
        prefix_tokens = 0
        if variable.path == "position_embedding/embedding" and variable.path in tensor_file:
            role = "position"
            prefix_tokens = source.get_layer("position_embedding").num_prefix_tokens
        sources[variable.path] = Source(variable.path, role=role, file_prefix_tokens=prefix_tokens)
    return assign_weights(
        model, tensor_file, sources,
        ignorable=lambda key: key.startswith("predictions/") and "predictions" not in names,
        position_grid=vit.position_grid(model) if "position_embedding" in names else None,
    )


def load_keras_model(path, argument="model"):
    """Reads a `.keras` file with `safe_mode=True` and no compile state; `argument` is the name the caller's user
    knows the path by (`weights`, `model`, `SOURCE`). Every class a saved model can hold is registered by this
    module's imports.

    Keras says "File not found" for a file that exists but is truncated or not a zip archive; the errors here tell a
    missing file from a corrupt one, so that a user looks for a broken download rather than a typo.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`{argument}` file not found: {argument}={path!r}.")
    corrupt = (f"`{argument}` file {path!r} exists but is corrupt or not a .keras archive (a .keras file is a zip "
               "archive; a truncated download or a different format gives this): save or download it again.")
    if not zipfile.is_zipfile(path):
        raise ValueError(corrupt)
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"{corrupt} ({type(error).__name__}: {error})") from None
