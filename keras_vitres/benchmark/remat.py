"""Rematerialisation (gradient checkpointing) of whole residual blocks, to train deep or wide models in less memory.

A rematerialised block keeps only its input for the backward pass and recomputes its forward pass there, instead
of storing every intermediate activation (Chen et al. 2016, arXiv:1604.06174): activation memory falls from
O(layers x block width) to O(blocks), for about one extra forward pass of compute per step.

`keras.RematScope(mode="list_of_layers")` cannot be used on these blocks with the TensorFlow backend: Keras passes
`training=` as a keyword argument, and `tf.recompute_grad` (what `keras.remat` is on TensorFlow) rejects keyword
arguments inside a `tf.function` ("The custom_gradient decorator currently supports keywords arguments only when
eager execution is enabled"). `RematBlock` therefore closes over `training` and hands `keras.remat` a function of
the block input alone, which works on TensorFlow and JAX. BatchNorm's moving statistics are updated once per step,
as without rematerialisation: on TensorFlow the recomputation runs in a `keras.StatelessScope` that drops its
updates; on JAX the block returns its new statistics through `jax.checkpoint` (see `RematBlock._call_jax`).
"""

import keras

BLOCK_CLASSES = ("BasicBlock", "BottleneckBlock", "TransformerBlock")


class RematBlock(keras.layers.Layer):
    """Calls `layer` under `keras.remat`, so its activations are recomputed in the backward pass.

    The wrapped layer (and so its weights) is shared, not copied.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_remat", dtype=layer.dtype_policy, **kwargs)
        self.layer = layer

    def call(self, x, training=None):
        if keras.backend.backend() == "jax":
            return self._call_jax(x, training)
        calls = []

        def forward(inputs):
            calls.append(None)
            if len(calls) == 1:
                return self.layer(inputs, training=training)
            # The recomputation in the backward pass: its state updates (BatchNorm moving statistics) were already
            # made by the forward pass, so they are collected in a stateless scope and dropped.
            with keras.StatelessScope():
                return self.layer(inputs, training=training)

        return keras.remat(forward)(x)

    def _call_jax(self, x, training):
        # jax.checkpoint traces `forward` apart: a state update made inside it (BatchNorm's moving statistics,
        # recorded by the trainer's stateless scope) would leak a tracer. Return the new state as outputs instead
        # and assign it outside, where it replaces the leaked value.
        state = self.layer.non_trainable_variables

        def forward(inputs):
            return self.layer(inputs, training=training), [variable.value for variable in state]

        outputs, new_state = keras.remat(forward)(x)
        for variable, value in zip(state, new_state):
            variable.assign(value)
        return outputs

    def compute_output_spec(self, x, training=None):
        return self.layer.compute_output_spec(x)


def block_names(model):
    """Names of the model's residual blocks (ResNet basic/bottleneck blocks, ViT encoder blocks)."""
    return [layer.name for layer in model.layers if type(layer).__name__ in BLOCK_CLASSES]


def rematerialize(model, layer_names=None):
    """Returns a model that shares `model`'s layers and weights and recomputes its blocks in the backward pass.

    Args:
        model: a functional `keras.Model`, e.g. from `keras_vitres.build_model`.
        layer_names: names of the layers to rematerialise; by default every residual block (`block_names`).

    Returns:
        A new functional `keras.Model` computing the same function with the same variables.

    Raises:
        ValueError: no layer to rematerialise, or a name that is not a layer of `model`.
    """
    names = list(block_names(model) if layer_names is None else layer_names)
    known = {layer.name for layer in model.layers}
    unknown = [name for name in names if name not in known]
    if not names or unknown:
        raise ValueError(
            f"`layer_names` must name layers of model {model.name!r}; received layer_names={layer_names!r}"
            + (f" (unknown: {unknown})" if unknown else " and the model has no residual block to rematerialise")
            + "."
        )
    wanted = set(names)

    def wrap(layer):
        return RematBlock(layer) if layer.name in wanted else layer

    return keras.models.clone_model(model, clone_function=wrap)
