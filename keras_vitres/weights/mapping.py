"""Assigning a file's tensors to a model's weights, checked against the headers before any data is read.

A converter maps every weight of the model (by its Keras path, e.g. "stage1_block1/conv1/kernel") to a
`Source`: the file tensor it comes from and the `Transform` that converts the file's layout into the model's.
`assign_weights` then
  1. checks that each file tensor exists, is floating point and has the shape the transform needs, and stops at
     the first that does not fit with an error naming the tensor, the shape expected and the shape in the file;
  2. refuses file tensors that nothing uses (unless the converter says they may be ignored), so an architecture
     difference never passes silently;
  3. reads each file tensor once and converts it; only when all are read does it assign them, so a file that is
     corrupt halfway leaves the model unchanged.
Two roles relax step 1: "head" (the classifier is left at its initialisation, with a warning, when the file has
no head or one for another number of classes) and "position" (the position embedding is resampled to the model's
patch grid, arXiv:2010.11929 §3.2).
"""

import dataclasses
import math
import warnings

import numpy as np

from keras_vitres.layers.embedding import resample_position_embedding
from keras_vitres.weights.readers import check_float


@dataclasses.dataclass(frozen=True)
class Transform:
    """How a file tensor becomes a model weight.

    Attributes:
        describe: str. The conversion in words, for error messages.
        source_shape: function(target_shape) -> the file shape this conversion needs.
        apply: function(array, target_shape) -> the array in the model's layout.
    """

    describe: str
    source_shape: callable
    apply: callable


IDENTITY = Transform("as stored", lambda t: tuple(t), lambda a, t: a)


def transpose(perm, describe=None):
    """The model's weight is the file tensor transposed by `perm` (e.g. (2, 3, 1, 0): OIHW -> HWIO)."""
    perm = tuple(perm)
    return Transform(
        describe or f"transposed {perm}",
        lambda t: tuple(t[perm.index(j)] for j in range(len(perm))),
        lambda a, t: np.transpose(a, perm),
    )


TORCH_CONV = transpose((2, 3, 1, 0), "PyTorch (out, in, kh, kw) -> Keras (kh, kw, in, out)")
TORCH_LINEAR = transpose((1, 0), "PyTorch (out, in) -> Keras (in, out)")


def fused_qkv_kernel(index):
    """timm's `qkv.weight` (3 D, D) holds q, k and v stacked; part `index` becomes a (D, heads, head_dim) kernel."""

    def apply(a, t):
        width = t[1] * t[2]
        return a[index * width : (index + 1) * width].T.reshape(t)

    return Transform(
        f"part {index} of 3 of a fused (3*D, D) PyTorch qkv weight", lambda t: (3 * t[1] * t[2], t[0]), apply
    )


def fused_qkv_bias(index):
    def apply(a, t):
        width = t[0] * t[1]
        return a[index * width : (index + 1) * width].reshape(t)

    return Transform(f"part {index} of 3 of a fused (3*D,) qkv bias", lambda t: (3 * t[0] * t[1],), apply)


def torch_attention_output():
    """PyTorch's output projection (D, heads * head_dim) -> Keras' (heads, head_dim, D)."""
    return Transform(
        "PyTorch (D, heads*head_dim) -> Keras (heads, head_dim, D)",
        lambda t: (t[2], t[0] * t[1]),
        lambda a, t: a.T.reshape(t),
    )


def stacked(index, num_layers, inner=IDENTITY):
    """big_vision's scanned layout: one tensor holds all `num_layers` blocks on its first axis."""
    return Transform(
        f"block {index} of {num_layers} stacked on the first axis, then {inner.describe}",
        lambda t: (num_layers, *inner.source_shape(t)),
        lambda a, t: inner.apply(a[index], t),
    )


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a model weight comes from: a file tensor, its transform and its role ("weight", "head", "position")."""

    key: str
    transform: Transform = IDENTITY
    role: str = "weight"
    file_prefix_tokens: int = 0  # "position" only: tokens before the patch grid in the file's embedding


def square_grid(tokens):
    """(side, side) when `tokens` is a positive perfect square, else None."""
    side = math.isqrt(tokens) if tokens >= 0 else 0
    return (side, side) if side * side == tokens and side > 0 else None


def resample_position(array, target_shape, file_prefix_tokens, target_prefix_tokens, target_grid):
    """Converts a (1, prefix + gh*gw, D) position embedding to the model's prefix tokens and patch grid."""
    grid = square_grid(array.shape[1] - file_prefix_tokens)
    embedding = np.asarray(resample_position_embedding(array.astype("float32"), grid, target_grid, file_prefix_tokens))
    if target_prefix_tokens > file_prefix_tokens:  # the file's class token had no position embedding (big_vision)
        embedding = np.concatenate([np.zeros((1, 1, embedding.shape[2]), embedding.dtype), embedding], axis=1)
    return embedding.reshape(target_shape)


def describe_shape(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def assign_weights(model, tensor_file, sources, *, ignorable=lambda key: False, position_grid=None):
    """Loads `tensor_file` into `model` following `sources` ({model weight path: Source}).

    Args:
        model: the Keras model.
        tensor_file: a `TensorFile` (see `readers`).
        sources: dict {Keras weight path: Source}; must cover every weight of the model.
        ignorable: function(file key) -> bool: file tensors the model may leave unused.
        position_grid: (prefix_tokens, (gh, gw)) of the model's position embedding, for the "position" role.

    Returns:
        dict with "loaded" (number of weights), "head_reset" (bool), "resampled" (bool).
    """
    variables = {v.path: v for v in model.weights}
    missing = [p for p in variables if p not in sources]
    if missing:
        raise ValueError(
            f"{tensor_file.format_name} weights cannot be mapped onto model {model.name!r}: no file tensor "
            f"corresponds to its weights {missing[:5]}{' ...' if len(missing) > 5 else ''}."
        )
    head = {p: s for p, s in sources.items() if s.role == "head"}
    head_reset = any(s.key not in tensor_file or tensor_file.shape(s.key) != s.transform.source_shape(
        tuple(variables[p].shape)) for p, s in head.items())  # fmt: skip
    plan = [(p, sources[p]) for p in variables if not (head_reset and sources[p].role == "head")]
    resampled = False
    for target, source in plan:
        resampled |= _check_source(model, tensor_file, target, source, tuple(variables[target].shape), position_grid)
    used = {source.key for source in sources.values()}
    unused = [k for k in tensor_file.keys() if k not in used and not ignorable(k)]
    if unused:
        raise _misfit(model, tensor_file, f"the model has no place for its tensors {unused[:5]}"
                      f"{f' and {len(unused) - 5} more' if len(unused) > 5 else ''} (shape "
                      f"{describe_shape(tensor_file.shape(unused[0]))} for the first); the file describes another "
                      "architecture.")  # fmt: skip
    if head_reset:  # warned only once the rest of the file is known to fit
        _warn_head_reset(model, tensor_file, head, variables)
    values = _read_converted(model, tensor_file, plan, variables, position_grid)
    # Assigned only once every tensor has been read and converted: a file that fails halfway leaves the model as
    # it was (at the cost of holding one converted copy of the weights meanwhile).
    for target, value in values.items():
        variables[target].assign(value)
    return dict(loaded=len(plan), head_reset=head_reset, resampled=resampled)


def _misfit(model, tensor_file, detail):
    return ValueError(f"`weights` file {tensor_file.path!r} does not fit model {model.name!r}: {detail}")


def _check_source(model, tensor_file, target, source, target_shape, position_grid):
    """Raises unless the file tensor of `source` can become the weight `target`; returns whether it is resampled."""
    expected = describe_shape(source.transform.source_shape(target_shape))
    if source.key not in tensor_file:
        raise _misfit(model, tensor_file, f"it has no tensor {source.key!r}, expected with shape {expected} for the "
                      f"model's {target!r}.")  # fmt: skip
    check_float(tensor_file, source.key)
    file_shape = tensor_file.shape(source.key)
    if source.role == "position":
        return _check_position(model, tensor_file, target, source, target_shape, position_grid[0])
    if file_shape != source.transform.source_shape(target_shape):
        raise _misfit(model, tensor_file, f"tensor {source.key!r} has shape {describe_shape(file_shape)} in the file, "
                      f"expected {expected} for the model's {target!r} {describe_shape(target_shape)} "
                      f"({source.transform.describe}).")  # fmt: skip
    return False


def _check_position(model, tensor_file, target, source, target_shape, prefix):
    """Raises unless the file's position embedding covers a square grid of patches of the model's width and no
    class token the model lacks; returns whether its grid differs from the model's."""
    file_shape = tensor_file.shape(source.key)
    tokens = file_shape[1] - source.file_prefix_tokens if len(file_shape) == 3 else -1
    if len(file_shape) != 3 or file_shape[0] != 1 or file_shape[2] != target_shape[2] or not square_grid(tokens):
        raise _misfit(model, tensor_file, f"position embedding {source.key!r} has shape {describe_shape(file_shape)} "
                      f"in the file, expected (1, {source.file_prefix_tokens} + a square grid of patches, "
                      f"{target_shape[2]}) for the model's {target!r} {describe_shape(target_shape)}.")  # fmt: skip
    if source.file_prefix_tokens > prefix:
        raise _misfit(model, tensor_file, f"its position embedding {source.key!r} {describe_shape(file_shape)} "
                      "covers a class token, but the model has none (build it with use_class_token=True).")
    return tokens != target_shape[1] - prefix


def _warn_head_reset(model, tensor_file, head, variables):
    shapes = {s.key: tensor_file.shape(s.key) for s in head.values() if s.key in tensor_file}
    warnings.warn(
        f"`weights` file {tensor_file.path!r}: the classifier head {list(shapes) or '(absent)'} "
        f"{'has shapes ' + str(list(shapes.values())) if shapes else 'is not in the file'}, which does not fit "
        f"model {model.name!r}'s {[tuple(variables[p].shape) for p in head]}; the head is left at its "
        "initialisation (train it, e.g. for fine-tuning).",
        stacklevel=4,
    )


def _read_converted(model, tensor_file, plan, variables, position_grid):
    """{weight path: its value in the model's layout and dtype}, reading each file tensor once, however many
    weights it feeds."""
    by_key = {}
    for target, source in plan:
        by_key.setdefault(source.key, []).append((target, source))
    values = {}
    for key, uses in by_key.items():
        array = _read(model, tensor_file, key)
        for target, source in uses:
            variable = variables[target]
            target_shape = tuple(variable.shape)
            if source.role == "position":
                value = resample_position(array, target_shape, source.file_prefix_tokens, *position_grid)
            else:
                value = source.transform.apply(array, target_shape)
            values[target] = np.asarray(value, dtype="float32").astype(variable.dtype)
    return values


def _read(model, tensor_file, key):
    try:
        array = np.asarray(tensor_file.read(key))
    except Exception as error:  # zipfile, h5py, numpy and safetensors each raise their own types
        raise ValueError(
            f"`weights` file {tensor_file.path!r}: tensor {key!r} could not be read ({type(error).__name__}: "
            f"{error}); the file is truncated or corrupt. Model {model.name!r} was left unchanged."
        ) from None
    if tuple(array.shape) != tensor_file.shape(key):
        raise ValueError(f"`weights` file {tensor_file.path!r}: tensor {key!r} holds {array.shape}, not the declared "
                         f"{tensor_file.shape(key)}.")  # fmt: skip
    return array
