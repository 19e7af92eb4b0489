"""Weight and model files from strangers: loading one never runs code, never reaches outside the file, never
allocates what the file merely declares, and a file that fails leaves the model as it was.

Every case goes through the path users take: a builder's `weights=` (`keras_vitres.models.common.load_weights`),
`keras_vitres.weights.download`, or the `keras-vitres export` command.
"""

import dataclasses
import hashlib
import io
import json
import os
import pickle
import re
import struct
import urllib.request
import zipfile

import h5py
import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_vitres
from keras_vitres.cli.main import main
from keras_vitres.models.common import load_weights
from keras_vitres.weights import download
from tests.helpers import tiny_vit
from tests.reliability import memory
from tests.weights.reference_forward import official_to_timm, random_official_vit

VIT = dict(patch=8, hidden=32, layers=2, heads=2, mlp=64, classes=5, grid=4)
MAX_GROWTH_MB = 64


@dataclasses.dataclass
class Case:
    name: str
    what: str
    error: type
    pattern: str
    model: str  # "vit" or "resnet": which model the file is loaded into
    make: callable  # make(folder, checkpoint) -> path to load, or a callable that performs the load


CASES = []


def case(name, what, error, pattern, model="vit"):
    def register(make):
        CASES.append(Case(name, what, error, pattern, model, make))
        return make

    return register


class _Payload:
    """Unpickling this creates the marker file: a stand-in for arbitrary code in a malicious pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def marker_of(folder):
    return os.path.join(folder, "code-ran")


def malicious_pickle(folder):
    return pickle.dumps(_Payload(marker_of(folder)))


def write(folder, name, data):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# --- PyTorch pickles and pickles in disguise ---------------------------------------------------------------------

for suffix in (".pth", ".pt", ".bin", ".ckpt", ".pkl"):
    case(
        f"pickle{suffix.replace('.', '_')}",
        f"a malicious PyTorch pickle named model{suffix}",
        ValueError,
        "PyTorch pickle; loading a pickle can run arbitrary code",
    )(lambda folder, ckpt, s=suffix: write(folder, f"model{s}", malicious_pickle(folder)))


@case("pickle_as_npz", "a malicious pickle renamed .npz", ValueError, "not a valid .npz archive")
def _(folder, ckpt):
    return write(folder, "model.npz", malicious_pickle(folder))


@case("pickle_as_safetensors", "a malicious pickle renamed .safetensors", ValueError, "not a valid safetensors file")
def _(folder, ckpt):
    return write(folder, "model.safetensors", malicious_pickle(folder))


@case("pickle_as_h5", "a malicious pickle renamed .h5", ValueError, "not a valid HDF5 file", model="resnet")
def _(folder, ckpt):
    return write(folder, "model.h5", malicious_pickle(folder))


@case("pickle_as_npy", "a malicious pickle named .npy", ValueError, "unknown file type")
def _(folder, ckpt):
    return write(folder, "model.npy", malicious_pickle(folder))


# --- .npz --------------------------------------------------------------------------------------------------------


@case(
    "npz_object_array",
    "a .npz holding a pickled object array (np.save of dtype=object)",
    ValueError,
    "holds Python objects",
)
def _(folder, ckpt):
    return write(folder, "objects.npz", npz_bytes(dict(ckpt, cls=np.array([_Payload(marker_of(folder))], object))))


@case(
    "npz_huge_declared",
    "a 1 KB .npz whose header declares a 100,000 x 100,000 float32 kernel (40 GB)",
    ValueError,
    r"has shape \(100000, 100000\) in the file",
)
def _(folder, ckpt):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, value in ckpt.items():
            member = io.BytesIO()
            if key == "embedding/kernel":
                np.lib.format.write_array_header_1_0(
                    member, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)}
                )
                member.write(b"\0" * 16)
            else:
                np.save(member, value)
            archive.writestr(key + ".npy", member.getvalue())
    return write(folder, "huge.npz", buffer.getvalue())


@case("npz_truncated", "a .npz cut in half", ValueError, "not a valid .npz archive")
def _(folder, ckpt):
    data = npz_bytes(ckpt)
    return write(folder, "cut.npz", data[: len(data) // 2])


@case(
    "npz_bad_crc",
    "a .npz with noise in the last tensor's data (zip CRC mismatch)",
    ValueError,
    "could not be read .BadZipFile.*left unchanged",
)
def _(folder, ckpt):
    data = bytearray(npz_bytes(ckpt))
    members = zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()
    last = [m for m in members if m.file_size > 8192][-1]  # large: the header check does not reach its end
    start = last.header_offset + 30 + len(last.filename.encode()) + len(last.extra)  # local header, then data
    data[start + 4096 : start + 4128] = b"\x01" * 32  # in the array data, past the .npy header
    return write(folder, "crc.npz", bytes(data))


@case(
    "npz_short_data",
    "a .npz whose head tensor holds fewer bytes than its header declares",
    ValueError,
    "could not be read .*left unchanged",
)
def _(folder, ckpt):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, value in ckpt.items():
            member = io.BytesIO()
            np.save(member, value)
            archive.writestr(key + ".npy", member.getvalue()[:-64] if key == "head/kernel" else member.getvalue())
    return write(folder, "short.npz", buffer.getvalue())


@case("npz_bad_npy_header", "a .npz member that is not a .npy array", ValueError, "is not a valid .npy array")
def _(folder, ckpt):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("embedding/kernel.npy", b"\x93NUMPY\x09\x00garbage")
    return write(folder, "header.npz", buffer.getvalue())


@case("npz_integer_tensor", "a .npz whose tensors are int32", ValueError, "has dtype int32")
def _(folder, ckpt):
    return write(folder, "ints.npz", npz_bytes({k: v.astype("int32") for k, v in ckpt.items()}))


# --- safetensors -------------------------------------------------------------------------------------------------


def safetensors_raw(header, data=b""):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@case(
    "safetensors_huge_declared",
    "a .safetensors whose header declares a 40 GB tensor in a 100-byte file",
    ValueError,
    "not a valid safetensors file",
)
def _(folder, ckpt):
    header = {
        "patch_embed.proj.weight": {"dtype": "F32", "shape": [100_000, 100_000], "data_offsets": [0, 40_000_000_000]}
    }
    return write(folder, "huge.safetensors", safetensors_raw(header, b"\0" * 16))


@case(
    "safetensors_header_length",
    "a .safetensors whose 8-byte header length says 2^62",
    ValueError,
    "not a valid safetensors file",
)
def _(folder, ckpt):
    return write(folder, "length.safetensors", struct.pack("<Q", 2**62) + b"{}")


@case(
    "safetensors_bad_json", "a .safetensors with a header that is not JSON", ValueError, "not a valid safetensors file"
)
def _(folder, ckpt):
    return write(folder, "json.safetensors", struct.pack("<Q", 12) + b"{not json!!}")


@case("safetensors_truncated", "a timm ViT .safetensors cut in half", ValueError, "not a valid safetensors file")
def _(folder, ckpt):
    path = os.path.join(folder, "full.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in official_to_timm(ckpt).items()}, path)
    with open(path, "rb") as f:
        data = f.read()
    return write(folder, "cut.safetensors", data[: len(data) // 2])


@case(
    "safetensors_wrong_shape",
    "a timm ViT .safetensors for another width",
    ValueError,
    r"tensor 'patch_embed.proj.weight' has shape \(64, 3, 8, 8\) in the file",
)
def _(folder, ckpt):
    wide = random_official_vit(np.random.default_rng(1), **dict(VIT, hidden=64, mlp=128))
    path = os.path.join(folder, "wide.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in official_to_timm(wide).items()}, path)
    return path


# --- HDF5 (.h5, .weights.h5) --------------------------------------------------------------------------------------


def first_dataset(h5file):
    names = []
    h5file.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names[0]


def keras_weights_file(folder, edit):
    """ResNet-8's own `.weights.h5`, with its first dataset replaced by `edit(file, name, shape, dtype)`."""
    path = os.path.join(folder, "resnet8.weights.h5")
    keras_vitres.ResNet(8, stem="cifar").save_weights(path)
    with h5py.File(path, "r+") as f:
        name = first_dataset(f)
        shape, dtype = f[name].shape, f[name].dtype
        del f[name]
        edit(f, name, shape, dtype)
    return path


def secret_file(folder):
    path = os.path.join(folder, "secret.env")
    with open(path, "wb") as f:
        f.write(b"API_KEY=hunter2".ljust(4096, b"\0"))
    return path


@case(
    "h5_external_link",
    "an .h5 whose group is an external link to another file",
    ValueError,
    "external link to",
    model="resnet",
)
def _(folder, ckpt):
    return keras_weights_file(folder, lambda f, n, s, d: f.__setitem__(n, h5py.ExternalLink(secret_file(folder), "/")))


@case("h5_soft_link", "an .h5 with a soft link", ValueError, "is a soft link", model="resnet")
def _(folder, ckpt):
    return keras_weights_file(folder, lambda f, n, s, d: f.__setitem__(n, h5py.SoftLink("/layers")))


@case(
    "h5_external_dataset",
    "an .h5 dataset whose data is another file (a secrets file): CVE-2026-1669's pattern",
    ValueError,
    "stores its data in external files",
    model="resnet",
)
def _(folder, ckpt):
    secret = secret_file(folder)
    return keras_weights_file(
        folder, lambda f, n, s, d: f.create_dataset(n, shape=s, dtype=d, external=[(secret, 0, 4096)])
    )


@case(
    "h5_virtual_dataset",
    "an .h5 virtual dataset mapping another file",
    ValueError,
    "is a virtual dataset",
    model="resnet",
)
def _(folder, ckpt):
    other = os.path.join(folder, "other.h5")
    with h5py.File(other, "w") as f:
        f["data"] = np.ones(16, "float32")

    def edit(f, name, shape, dtype):
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[:] = h5py.VirtualSource(other, "data", shape=(16,))[: shape[0]]
        f.create_virtual_dataset(name, layout)

    return keras_weights_file(folder, edit)


@case(
    "h5_huge_declared",
    "a 400 KB .weights.h5 with a compressed dataset declaring 40,000 x 40,000 (6 GB)",
    ValueError,
    r"declares shape \(40000, 40000\).*refused before reading",
    model="resnet",
)
def _(folder, ckpt):
    return keras_weights_file(
        folder,
        lambda f, n, s, d: f.create_dataset(
            n, shape=(40_000, 40_000), dtype="f4", chunks=(1000, 1000), compression="gzip"
        ),
    )


@case("h5_truncated", "a .weights.h5 cut in half", ValueError, "not a valid HDF5 file", model="resnet")
def _(folder, ckpt):
    path = keras_weights_file(folder, lambda f, n, s, d: f.create_dataset(n, data=np.ones(s, d)))
    with open(path, "rb") as f:
        data = f.read()
    return write(folder, "cut.weights.h5", data[: len(data) // 2])


# --- .keras archives (through weights= and through `keras-vitres export`) ------------------------------------------


def keras_archive(folder, name, config_edit=None, weights_edit=None, model=None):
    """A `.keras` file of ResNet-8 (or `model`), with its config.json and/or model.weights.h5 rewritten."""
    source = os.path.join(folder, "source.keras")
    (model or keras_vitres.ResNet(8, stem="cifar")).save(source)
    target = os.path.join(folder, name)
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json" and config_edit:
                data = json.dumps(config_edit(json.loads(data))).encode()
            if item.filename == "model.weights.h5" and weights_edit:
                h5_path = os.path.join(folder, "inner.h5")
                with open(h5_path, "wb") as f:
                    f.write(data)
                with h5py.File(h5_path, "r+") as f:
                    name = first_dataset(f)
                    weights_edit(f, name, f[name].shape, f[name].dtype)
                with open(h5_path, "rb") as f:
                    data = f.read()
            zout.writestr(item, data)
    return target


def with_dense_activation(function):
    def edit(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Dense":
                layer["config"]["activation"] = function
        return config

    return edit


def lambda_model(folder):
    marker = marker_of(folder)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: (open(marker, "w").close(), t)[1], name="payload")(inputs)
    return keras.Model(inputs, keras_vitres.ResNet(8, stem="cifar")(x))


@case(
    "keras_lambda",
    "a .keras whose Lambda layer's function writes a file",
    ValueError,
    "deserialization of a `Lambda` layer whose `function` is a Python lambda",
    model="resnet",
)
def _(folder, ckpt):
    path = keras_archive(folder, "lambda.keras", model=lambda_model(folder))
    if os.path.exists(marker_of(folder)):  # building the model ran the lambda once, legitimately
        os.remove(marker_of(folder))
    return path


@case(
    "keras_foreign_module",
    "a .keras whose config names os.system as a function (CVE-2025-1550's pattern)",
    TypeError,
    "could not be deserialized properly",
    model="resnet",
)
def _(folder, ckpt):
    evil = {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}
    return keras_archive(folder, "module.keras", config_edit=with_dense_activation(evil))


@case(
    "keras_enable_unsafe",
    "a .keras whose config calls keras.config.enable_unsafe_deserialization (CVE-2025-9906's pattern)",
    TypeError,
    "could not be deserialized properly",
    model="resnet",
)
def _(folder, ckpt):
    evil = {
        "module": "keras.config",
        "class_name": "function",
        "config": "enable_unsafe_deserialization",
        "registered_name": "function",
    }
    return keras_archive(folder, "unsafe.keras", config_edit=with_dense_activation(evil))


@case(
    "keras_h5_external_dataset",
    "a .keras whose model.weights.h5 reads a secrets file (CVE-2026-1669)",
    ValueError,
    "Not allowed: H5 file with external Dataset",
    model="resnet",
)
def _(folder, ckpt):
    secret = secret_file(folder)

    def edit(f, name, shape, dtype):
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype, external=[(secret, 0, int(np.prod(shape)) * 4)])

    return keras_archive(folder, "external.keras", weights_edit=edit)


@case(
    "keras_h5_huge_declared",
    "a .keras whose model.weights.h5 declares a 9 GB dataset (CVE-2026-0897)",
    ValueError,
    "refusing to load a potential decompression/shape bomb",
    model="resnet",
)
def _(folder, ckpt):
    def edit(f, name, shape, dtype):
        del f[name]
        f.create_dataset(name, shape=(50_000, 50_000), dtype="f4", chunks=(1000, 1000), compression="gzip")

    return keras_archive(folder, "huge.keras", weights_edit=edit)


def truncated_keras(folder):
    path = keras_archive(folder, "model.keras")
    with open(path, "rb") as f:
        data = f.read()
    return write(folder, "cut.keras", data[: len(data) // 2])


CORRUPT_KERAS = r"cut.keras' exists but is corrupt or not a .keras archive"


@case("keras_truncated", "a .keras cut in half, through weights=", ValueError, "`weights` file .*" + CORRUPT_KERAS,
      model="resnet")
def _(folder, ckpt):
    return truncated_keras(folder)


@case("keras_truncated_evaluate", "a .keras cut in half, through evaluate()", ValueError,
      "`model` file .*" + CORRUPT_KERAS, model="resnet")
def _(folder, ckpt):
    from keras_vitres.training import evaluate

    path = truncated_keras(folder)
    return lambda model: evaluate(path)


class CommandFailed(Exception):
    """`keras-vitres` exited with a non-zero status (the message holds it and the command's stderr)."""


@case(
    "cli_export_lambda",
    "`keras-vitres export` of a .keras with a Lambda layer",
    CommandFailed,
    "exit 2: .*Lambda",
    model="resnet",
)
def _(folder, ckpt):
    path = keras_archive(folder, "lambda.keras", model=lambda_model(folder))
    if os.path.exists(marker_of(folder)):
        os.remove(marker_of(folder))
    return lambda model: run_cli(["export", path, os.path.join(folder, "served")])


@case("cli_export_truncated", "`keras-vitres export` of a .keras cut in half", CommandFailed,
      "exit 2: .*`SOURCE` file .*" + CORRUPT_KERAS, model="resnet")
def _(folder, ckpt):
    path = truncated_keras(folder)
    return lambda model: run_cli(["export", path, os.path.join(folder, "served")])


def run_cli(argv):
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    if code != 0:
        raise CommandFailed(f"exit {code}: {err.getvalue().strip()}")
    return code


# --- Downloads ---------------------------------------------------------------------------------------------------


def published(folder):
    source = os.path.join(folder, "server", "ViT-Ti_16.npz")
    os.makedirs(os.path.dirname(source))
    with open(source, "wb") as f:
        f.write(os.urandom(3 * (1 << 20)))
    with open(source, "rb") as f:
        return source, hashlib.sha256(f.read()).hexdigest()


def cache_is_empty(folder):
    cache = os.path.join(folder, "cache")
    assert not os.path.exists(cache) or os.listdir(cache) == [], os.listdir(cache)


@case(
    "download_wrong_hash",
    "a download whose sha256 differs (tampered or corrupted in transit)",
    ValueError,
    "has sha256 [0-9a-f]{64}, but 0{64} was expected; it was deleted",
)
def _(folder, ckpt):
    source, _ = published(folder)

    def load(model):
        try:
            download("file://" + source, "0" * 64, cache_dir=os.path.join(folder, "cache"), progress=False)
        finally:
            cache_is_empty(folder)

    return load


@case("download_interrupted", "a download whose connection drops after 1 MiB", OSError, "connection reset")
def _(folder, ckpt):
    source, digest = published(folder)

    class Dropping(io.BytesIO):
        headers = {}

        def read(self, size=-1):
            if self.tell() >= 1 << 20:
                raise ConnectionResetError("connection reset by peer")
            return super().read(size)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def load(model):
        original = urllib.request.urlopen
        urllib.request.urlopen = lambda url, timeout=None: Dropping(open(source, "rb").read())
        try:
            download(
                "https://example.invalid/ViT-Ti_16.npz", digest, cache_dir=os.path.join(folder, "cache"), progress=False
            )
        finally:
            urllib.request.urlopen = original
            cache_is_empty(folder)

    return load


@case("download_path_traversal", "a download asked to write ../escape.npz", ValueError, "plain file name")
def _(folder, ckpt):
    source, digest = published(folder)
    return lambda model: download(
        "file://" + source, digest, cache_dir=os.path.join(folder, "cache"), fname="../escape.npz"
    )


@case("download_no_hash", "a download without a sha256", ValueError, "Downloads are always verified")
def _(folder, ckpt):
    source, _ = published(folder)
    return lambda model: download("file://" + source, None, cache_dir=os.path.join(folder, "cache"))


# --- the test ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint():
    return random_official_vit(np.random.default_rng(0), **VIT)


@pytest.fixture(scope="module")
def models():
    """One model per kind, shared by the cases: each case checks that its failed load left the weights as they were."""
    return dict(
        vit=tiny_vit(classifier_activation="softmax"),
        resnet=keras_vitres.ResNet(8, stem="cifar"),
    )


def short(error):
    return " ".join(str(error).split())[:300]


@pytest.mark.filterwarnings("ignore:timm/torchvision ViT checkpoints were trained with exact GELU")
@pytest.mark.parametrize("hostile", CASES, ids=[c.name for c in CASES])
def test_hostile_file_is_refused_runs_no_code_and_changes_nothing(
    hostile, tmp_path, checkpoint, models, record_property
):
    folder = str(tmp_path)
    target = hostile.make(folder, checkpoint)
    model = models[hostile.model]
    before = [w.copy() for w in model.get_weights()]

    def attempt():
        return target(model) if callable(target) else load_weights(model, target)

    outcome, growth = memory.peak_growth_mb(attempt)
    assert isinstance(outcome, hostile.error), f"{hostile.what}: expected {hostile.error.__name__}, got {outcome!r}"
    assert re.search(hostile.pattern, str(outcome), re.S), short(outcome)
    assert not os.path.exists(marker_of(folder)), f"{hostile.what}: code from the file ran"
    assert keras.src.saving.serialization_lib.in_safe_mode() is not False, "safe mode was switched off"
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)  # a failed load leaves the model as it was
    record_property("input", hostile.what)
    record_property("outcome", f"{type(outcome).__name__}: {short(str(outcome).replace(folder + os.sep, ''))}")
    if memory.available():
        record_property("rss_growth_mb", round(growth, 1))
        assert growth < MAX_GROWTH_MB, f"{hostile.what}: resident memory rose by {growth:.0f} MiB"
