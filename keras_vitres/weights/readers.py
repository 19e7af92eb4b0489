"""Weight-file readers that show each tensor's name, shape and dtype before any data is read.

Every format is opened so that loading cannot run code or reach outside the file:
    .npz          NumPy zip archive; headers parsed from the zip members, data read with `allow_pickle=False`.
    .safetensors  the safetensors library's NumPy API (a JSON header and raw bytes; never a pickle).
    .h5           h5py; external links, soft links, external and virtual datasets are refused before use.
    .pth/.pt/.bin/.ckpt  PyTorch pickles: refused, with the command that converts them to safetensors.
A converter compares the declared shape of every tensor with the model before it calls `read`, so a file that
declares a huge tensor fails fast, without allocating it.
"""

import os
import zipfile

import h5py
import numpy as np
from safetensors import safe_open

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")
SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip
MAX_HDF5_OBJECTS = 200_000


class TensorFile:
    """A weight file as named tensors: `keys()`, `shape(key)` and `dtype(key)` from headers, `read(key)` for data."""

    format_name = "weights"

    def __init__(self, path):
        self.path = os.fspath(path)
        self._shapes, self._dtypes = {}, {}

    def keys(self):
        return list(self._shapes)

    def __contains__(self, key):
        return key in self._shapes

    def shape(self, key):
        return self._shapes[key]

    def dtype(self, key):
        return self._dtypes[key]

    def read(self, key):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _npy_header(fp, member, path):
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except ValueError as error:
        raise ValueError(f"`weights` file {path!r}: member {member!r} is not a valid .npy array ({error}).") from None
    return tuple(int(d) for d in shape), dtype


class NpzTensors(TensorFile):
    """A `.npz` archive. Object arrays (which NumPy stores as pickles) are refused when the file is opened."""

    format_name = "npz"

    def __init__(self, path):
        super().__init__(path)
        try:
            with zipfile.ZipFile(self.path) as archive:
                for info in archive.infolist():
                    key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                    with archive.open(info) as fp:
                        shape, dtype = _npy_header(fp, info.filename, self.path)
                    if dtype.hasobject:
                        raise ValueError(
                            f"`weights` file {self.path!r}: array {key!r} holds Python objects, which NumPy stores as a "
                            "pickle that could run code when loaded; weight files must hold numeric arrays only."
                        )
                    self._shapes[key], self._dtypes[key] = shape, dtype.name
        except zipfile.BadZipFile as error:
            raise ValueError(f"`weights` file {self.path!r} is not a valid .npz archive ({error}).") from None
        self._npz = np.load(self.path, allow_pickle=False)

    def read(self, key):
        return self._npz[key]

    def close(self):
        self._npz.close()


class SafetensorsTensors(TensorFile):
    """A `.safetensors` file, read through the safetensors library's NumPy API (no PyTorch needed)."""

    format_name = "safetensors"

    def __init__(self, path):
        super().__init__(path)
        try:
            self._file = safe_open(self.path, framework="numpy")
            self._file.__enter__()
            for key in self._file.keys():
                tensor = self._file.get_slice(key)
                self._shapes[key] = tuple(int(d) for d in tensor.get_shape())
                self._dtypes[key] = SAFETENSORS_DTYPES.get(tensor.get_dtype(), tensor.get_dtype())
        except Exception as error:  # the library raises its own SafetensorError for a malformed header
            raise ValueError(f"`weights` file {self.path!r} is not a valid safetensors file ({error}).") from None

    def metadata(self):
        return self._file.metadata() or {}

    def read(self, key):
        return self._file.get_tensor(key)

    def close(self):
        self._file.__exit__(None, None, None)


def check_hdf5_self_contained(h5file, path):
    """Raises a ValueError if an HDF5 file links or points to data outside itself: external links, soft links
    (which Keras never writes), external datasets (raw data in other files) or virtual datasets (views of others)."""
    seen, stack, count = set(), [h5file], 0
    while stack:
        group = stack.pop()
        for name in group:
            count += 1
            if count > MAX_HDF5_OBJECTS:
                raise ValueError(f"`weights` file {path!r} holds more than {MAX_HDF5_OBJECTS} objects; refused.")
            where = f"{group.name.rstrip('/')}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise ValueError(
                    f"`weights` file {path!r}: {where!r} is an external link to {link.filename!r}:{link.path!r}; "
                    "weight files that reach into other files are refused."
                )
            if isinstance(link, h5py.SoftLink):
                raise ValueError(f"`weights` file {path!r}: {where!r} is a soft link to {link.path!r}; refused.")
            item = group[name]
            address = h5py.h5o.get_info(item.id).addr
            if address in seen:
                continue
            seen.add(address)
            if isinstance(item, h5py.Group):
                stack.append(item)
            elif isinstance(item, h5py.Dataset):
                if item.external:
                    raise ValueError(
                        f"`weights` file {path!r}: dataset {where!r} stores its data in external files "
                        f"{[e[0] for e in item.external]}; refused."
                    )
                if item.is_virtual:
                    raise ValueError(f"`weights` file {path!r}: dataset {where!r} is a virtual dataset; refused.")


def check_hdf5_sizes(h5file, path, max_elements, model_name):
    """Raises a ValueError if a dataset of the file declares more elements than `max_elements`, from the headers
    only: a compressed or unallocated dataset may declare gigabytes in a file of a few kilobytes."""
    oversized = []

    def visit(name, item):
        if isinstance(item, h5py.Dataset) and item.size > max_elements and not oversized:
            oversized.append((name, item.shape, item.dtype))

    h5file.visititems(visit)
    if oversized:
        name, shape, dtype = oversized[0]
        raise ValueError(
            f"`weights` file {path!r} does not fit model {model_name!r}: dataset {name!r} declares shape {shape} "
            f"({dtype}), more elements than the model's largest weight ({max_elements:,}); refused before reading."
        )


def open_hdf5(path):
    """Opens an HDF5 file read-only after checking that it is self-contained; returns the h5py.File."""
    try:
        h5file = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"`weights` file {path!r} is not a valid HDF5 file ({error}).") from None
    try:
        check_hdf5_self_contained(h5file, path)
    except Exception:
        h5file.close()
        raise
    return h5file


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


class KerasH5Tensors(TensorFile):
    """A legacy Keras HDF5 weight file (Keras 2 `save_weights`/`save`, keras.applications' published files).

    Tensors are keyed "layer_name/weight_name" (e.g. "conv1_conv/kernel", ":0" suffixes dropped), in the file's
    own layer and weight order. `is_legacy_keras_h5` tells whether a file has this layout.
    """

    format_name = "Keras HDF5"

    def __init__(self, path, h5file=None):
        super().__init__(path)
        self._h5 = h5file if h5file is not None else open_hdf5(self.path)
        root = self._h5["model_weights"] if "model_weights" in self._h5 else self._h5
        self._datasets = {}
        for layer_name in root.attrs.get("layer_names", []):
            layer_name = _text(layer_name)
            group = root[layer_name]
            for weight_name in group.attrs.get("weight_names", []):
                weight_name = _text(weight_name)
                dataset = group[weight_name]
                key = f"{layer_name}/{weight_name.split('/')[-1].split(':')[0]}"
                self._datasets[key] = dataset
                self._shapes[key], self._dtypes[key] = tuple(dataset.shape), dataset.dtype.name

    def layer_names(self):
        return list(dict.fromkeys(key.split("/")[0] for key in self._datasets))

    def read(self, key):
        return self._datasets[key][()]

    def close(self):
        self._h5.close()


def is_legacy_keras_h5(h5file):
    root = h5file["model_weights"] if "model_weights" in h5file else h5file
    return "layer_names" in root.attrs


def keras3_layers(h5file):
    """[(group name, [variable shapes])] of a Keras 3 `.weights.h5` file's top-level `layers`, in file order, for
    the layers that hold variables; None when the file does not have that layout.

    Keras 3 keys these files by class name and position (`layers/conv2d_5/vars/0`), not by layer name.
    """
    group = h5file.get("layers")
    if not isinstance(group, h5py.Group) or is_legacy_keras_h5(h5file):
        return None
    layers = []
    for name, layer in group.items():
        variables = layer.get("vars") if isinstance(layer, h5py.Group) else None
        if isinstance(variables, h5py.Group) and len(variables):
            shapes = [tuple(variables[k].shape) for k in sorted(variables, key=lambda k: int(k) if k.isdigit() else -1)
                      if isinstance(variables[k], h5py.Dataset)]
            layers.append((name, shapes))
    return layers


def describe_hdf5(h5file, limit=3):
    """A short description of an HDF5 weight file for error messages: its layout and its first few names, with
    shapes (never its data)."""
    def listing(items, total):
        shown = "; ".join(f"{name} {', '.join(str(shape) for shape in shapes)}" for name, shapes in items[:limit])
        return shown + ("; ..." if total > limit else "")

    if is_legacy_keras_h5(h5file):
        tensors = KerasH5Tensors("", h5file)
        names = tensors.layer_names()
        first = [(n, [tensors.shape(k) for k in tensors.keys() if k.split("/")[0] == n]) for n in names[:limit]]
        return f"legacy Keras HDF5 weights of {len(names)} layers ({listing(first, len(names))})"
    layers = keras3_layers(h5file)
    if layers is not None:
        named = [(f"layers/{name}", shapes) for name, shapes in layers]
        return f"Keras 3 weights of {len(layers)} layers with variables ({listing(named, len(layers))})"
    top = [(name, [item.shape] if isinstance(item, h5py.Dataset) else ["(group)"]) for name, item in h5file.items()]
    return f"HDF5 objects {listing(top, len(top))}" if top else "an empty HDF5 file"


def describe_model_weights(model, limit=3):
    """A short description of what a model expects, for error messages: its weight count and first few weights."""
    first = "; ".join(f"{w.path} {tuple(w.shape)}" for w in model.weights[:limit])
    return f"{len(model.weights)} weights ({first}{'; ...' if len(model.weights) > limit else ''})"


class KerasModelTensors(TensorFile):
    """A live Keras model's weights as a TensorFile, keyed "layer_name/weight_name" like `KerasH5Tensors`."""

    format_name = "Keras model"

    def __init__(self, model):
        super().__init__(f"<keras model {model.name!r}>")
        self._variables = {}
        for layer in model.layers:
            for variable in layer.weights:
                key = f"{layer.name}/{variable.name.split('/')[-1].split(':')[0]}"
                self._variables[key] = variable
                self._shapes[key], self._dtypes[key] = tuple(variable.shape), np.dtype(variable.dtype).name

    def read(self, key):
        return np.asarray(self._variables[key].numpy())


def refuse_pickle(model, path):
    """The loader registered for PyTorch pickle suffixes: explains why they are refused and how to convert."""
    path = os.fspath(path)
    target = os.path.splitext(os.path.basename(path))[0] + ".safetensors"
    raise ValueError(
        f"`weights` file {path!r} is a PyTorch pickle; loading a pickle can run arbitrary code, so keras-vitres "
        "refuses it. Convert it once to safetensors, in an environment you trust, then pass the .safetensors file:\n"
        '    python -c "import torch; from safetensors.torch import save_file; '
        f"sd = torch.load({path!r}, map_location='cpu', weights_only=True); "
        "sd = sd.get('state_dict', sd.get('model', sd)); "
        f'save_file({{k: v.contiguous() for k, v in sd.items()}}, {target!r})"\n'
        "(Hugging Face hosts most timm checkpoints as model.safetensors already.)"
    )


def check_float(tensor_file, key):
    dtype = tensor_file.dtype(key)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"`weights` file {tensor_file.path!r}: tensor {key!r} has dtype {dtype}; weights must be one of {FLOAT_DTYPES}."
        )
