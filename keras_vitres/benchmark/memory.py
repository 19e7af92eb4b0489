"""What one training step keeps from its forward pass for its backward pass: the memory rematerialisation saves.

Reverse-mode differentiation stores, for the backward pass, the intermediate tensors ("residuals") that the
derivatives need; with `remat=True` a block stores only its input and recomputes the rest (Chen et al. 2016,
arXiv:1604.06174). `saved_activations` counts those tensors exactly from JAX's autodiff of the model's training
step, traced on abstract shapes: nothing runs, so the figure costs seconds even for ResNet-1202 at batch 128 and
does not depend on the machine's load. It is the memory that a compiler keeping the rematerialisation barriers
(XLA on GPUs, measured on an H200: `benchmarks/results/remat_gpu.md`) holds across the step, before any fusion of
cheap element-wise operations.

`compiled_step_memory` gives what XLA actually allocates for the same step on the device JAX runs on. On CPU, XLA
removes the barriers and merges the recomputation with the forward pass (common-subexpression elimination), so
there remat saves nothing; TensorFlow's `tf.recompute_grad`, which is `keras.remat` on that backend, does save
(`benchmarks/remat_memory.py` measures it).
"""

import collections
import math

import keras

SavedActivations = collections.namedtuple("SavedActivations", ["bytes", "tensors"])


def _jax(what):
    """The `jax` module, or a ValueError naming the backend unless Keras runs on JAX."""
    if keras.backend.backend() != "jax":
        raise ValueError(f"{what} needs the JAX backend; received KERAS_BACKEND={keras.backend.backend()!r} "
                         "(set KERAS_BACKEND=jax before importing Keras).")  # fmt: skip
    import jax  # the optional "jax" extra, importable only where Keras runs on it

    return jax


def _training_loss(model):
    """The loss of one training step as a pure function of (trainable, non-trainable, images, labels)."""

    def loss_fn(trainable, non_trainable, images, labels):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, images, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return keras.ops.mean(loss), non_trainable

    return loss_fn


def _abstract_step_inputs(jax, model, batch_size):
    def abstract(variables):
        return [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in variables]

    images = jax.ShapeDtypeStruct((batch_size, *model.input_shape[1:]), "float32")
    labels = jax.ShapeDtypeStruct((batch_size,), "int32")
    return abstract(model.trainable_variables), abstract(model.non_trainable_variables), images, labels


def kept_tensors(model, batch_size):
    """The tensors a training step of `model` keeps from its forward pass for the backward pass: a list of
    `jax.core.ShapedArray` (`.shape`, `.dtype`), one per distinct tensor.

    The step is the loss (sparse categorical cross-entropy on the model's logits) as a function of the weights, the
    BatchNorm and dropout state and the batch, traced by `jax.vjp` on abstract shapes. The step's own inputs
    (weights, batch) are not listed: they are held with or without rematerialisation.

    Args:
        model: a Keras model with a fully defined input shape (batch excluded) that outputs logits.
        batch_size: int. Images per step.

    Raises:
        ValueError: naming the backend, unless Keras runs on JAX.
    """
    jax = _jax("kept_tensors")
    from jax.extend.core import Literal  # with `jax`, above

    loss_fn = _training_loss(model)
    jaxpr, (_, backward) = jax.make_jaxpr(lambda *args: jax.vjp(loss_fn, *args), return_shape=True)(
        *_abstract_step_inputs(jax, model, batch_size)
    )
    num_residuals = len(jax.tree.leaves(backward))  # the closure of the backward function: what it keeps
    residuals = jaxpr.jaxpr.outvars[len(jaxpr.jaxpr.outvars) - num_residuals :]
    inputs = set(jaxpr.jaxpr.invars)
    kept = {v: None for v in residuals if not isinstance(v, Literal) and v not in inputs}  # distinct, in order
    return [v.aval for v in kept]


def saved_activations(model, batch_size):
    """`SavedActivations(bytes, tensors)`: the total size and number of the tensors of `kept_tensors`."""
    _jax("saved_activations")
    kept = kept_tensors(model, batch_size)
    return SavedActivations(sum(math.prod(a.shape) * a.dtype.itemsize for a in kept), len(kept))


def compiled_step_memory(model, batch_size):
    """Compiles the training step of `saved_activations` with XLA (no execution) and returns its memory analysis.

    The result's `temp_size_in_bytes` is every intermediate buffer live at once at the step's peak, as XLA's buffer
    assignment on the default JAX device lays them out; `argument_size_in_bytes` and `output_size_in_bytes` are the
    weights and batch, and the gradients.
    """
    jax = _jax("compiled_step_memory")
    loss_fn = _training_loss(model)

    def train_step(trainable, non_trainable, images, labels):
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, images, labels
        )
        return loss, grads, non_trainable

    return jax.jit(train_step).lower(*_abstract_step_inputs(jax, model, batch_size)).compile().memory_analysis()
