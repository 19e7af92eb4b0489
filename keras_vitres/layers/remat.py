"""Rematerialisation (gradient checkpointing) of a layer's forward pass, for the residual and encoder blocks.

A rematerialised block keeps only its input for the backward pass and recomputes its forward pass there, instead
of storing every intermediate activation (Chen et al. 2016, arXiv:1604.06174): activation memory falls from
O(layers x block width) to O(blocks), for about one extra forward pass of compute per step.

The blocks call `rematerialized(self, forward, x)` from their `call` rather than using
`keras.RematScope(mode="list_of_layers")`, which fails on TensorFlow: Keras passes `training=` as a keyword argument,
and `tf.recompute_grad` (what `keras.remat` is there) rejects keyword arguments inside a `tf.function`. State updates
(BatchNorm's moving statistics, dropout seeds) are made once per step, as without rematerialisation: on TensorFlow
the recomputation runs in a `keras.StatelessScope` that starts from the state the forward pass read (so dropout
draws the same masks) and drops its updates; on JAX `jax.checkpoint` traces the forward pass apart, so the new
state leaves it as outputs and is assigned outside.
"""

import keras


def check_remat(remat):
    """Raises a ValueError naming `remat` unless it is a bool."""
    if not isinstance(remat, bool):
        raise ValueError(f"`remat` must be a bool; received remat={remat!r}.")


def remat_saves_memory():
    """False where rematerialisation is known to save no memory: Keras on JAX compiling for the CPU.

    XLA's CPU compiler removes the optimisation barriers that `jax.checkpoint` places around each block and merges
    the recomputation back into the forward pass, so the compiled step keeps what a plain step keeps (measured in
    docs/benchmarks.md). TensorFlow (`tf.recompute_grad`) keeps the recomputation, and so does XLA on GPUs: on one
    H200 with JAX the compiled training step's temporaries fell from 1,134 to 280 MiB for ResNet-110 at batch 128
    and from 10,043 to 1,594 MiB for ViT-B/16 at batch 64 (`benchmarks/results/remat_gpu.md`). TPUs were not
    measured.
    """
    if keras.backend.backend() != "jax":
        return True
    import jax

    return jax.default_backend() != "cpu"


def rematerialized(layer, forward, x):
    """Returns `forward(x)`, computed under `keras.remat` so that the backward pass recomputes it.

    Args:
        layer: the layer whose forward pass this is; its non-trainable variables are the state `forward` updates.
        forward: function of the input tensor alone (close over `training` and other arguments).
        x: the input tensor.
    """
    state = layer.non_trainable_variables
    if keras.backend.backend() == "jax":

        def forward_with_state(inputs):
            return forward(inputs), [variable.value for variable in state]

        outputs, new_state = keras.remat(forward_with_state)(x)
        for variable, value in zip(state, new_state):
            variable.assign(value)
        return outputs

    # Copies read ahead of the forward pass's updates (on TensorFlow `variable.value` is the live variable).
    before = [keras.ops.copy(variable.value) for variable in state]
    calls = []

    def forward_once(inputs):
        calls.append(None)
        if len(calls) == 1:
            return forward(inputs)
        # The recomputation in the backward pass starts from the state the forward pass started from (the same
        # dropout seeds, so the same masks) and drops its updates, which the forward pass already made.
        with keras.StatelessScope(state_mapping=list(zip(state, before))):
            return forward(inputs)

    return keras.remat(forward_once)(x)
