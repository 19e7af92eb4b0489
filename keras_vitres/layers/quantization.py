"""Quantised sublayers of a saved composite layer.

`Model.quantize("int8")` quantises the leaf layers (Dense, EinsumDense) by changing their dtype policy. A composite
layer recreates its sublayers from its own arguments when a .keras file loads, so they would come back unquantised
and their int8 weights would not load. Its config therefore states their policies in a
`keras.dtype_policies.DTypePolicyMap` keyed by layer path, from which the sublayers take theirs: the pattern of that
class's docstring and of keras-hub's backbones.
"""

import keras


def with_sublayer_policies(layer, config, sublayers):
    """`config` (the layer's `get_config()`) with `dtype` a map of the quantised `sublayers`' policies, if any."""
    if isinstance(layer.dtype_policy, keras.dtype_policies.DTypePolicyMap):
        return config  # loaded with one: its sublayers already read their policies from it
    quantized = {sub.path: sub.dtype_policy for sub in sublayers if sub.quantization_mode is not None}
    if not quantized:
        return config
    policies = keras.dtype_policies.DTypePolicyMap(default_policy=layer.dtype_policy, policy_map=quantized)
    return {**config, "dtype": policies}
