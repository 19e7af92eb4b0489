"""Multi-head self-attention of the Vision Transformer (arXiv:2010.11929, eq. 5-8 of Appendix A), on Keras' layer.

`ViTMultiHeadAttention` is `keras.layers.MultiHeadAttention` (same arguments, sublayers and weights, so the official
checkpoints and the converters are unchanged) whose `call` computes softmax(q k^T / sqrt(d)) v itself between the
layer's public projections where that is faster, and is Keras' `call` everywhere else:

- TensorFlow: batched matmuls, with the query scaled before the product and the softmax in float32, instead of
  Keras' einsums (which transpose inside) and scaled (tokens x tokens) logits: faster ViT training on CPU
  (`benchmarks/results/cpu_notes.md`, "Attention core").
- JAX: `jax.nn.dot_product_attention` with its implementation chosen up front: cuDNN's fused attention (Dao et al.
  2022, arXiv:2205.14135) where JAX accepts the call, with query, key and value padded to even lengths and the true
  lengths passed, since cuDNN refuses odd token counts (ViT's 197) when it differentiates; XLA's elsewhere. Keras'
  own tries cuDNN, logs its refusal and falls back to an unfused XLA attention (`docs/benchmarks.md`). XLA's CPU
  backend cannot compile its float16 attention (float32 accumulation), so float16 on a CPU takes the matmul core.

Keras' `call` runs for attention scores, implicit masks, dropout on the attention weights in training, masks on
TensorFlow, gates, sliding windows, other ranks and attention axes, and the other backends.
"""

import functools
import math

import keras
from keras import ops

from keras_vitres.layers.former_names import register_former_name
from keras_vitres.layers.quantization import with_sublayer_policies

CUDNN_DTYPES = ("bfloat16", "float16")  # cuDNN's fused attention computes in half precision only
MIN_COMPUTE_CAPABILITY = (8, 0)  # Ampere; Keras asks the same of its flash attention


@functools.cache
def _cudnn_takes(dtype, head_dim):
    """Whether cuDNN's fused attention takes (batch, tokens, heads, `head_dim`) tensors of `dtype` on JAX's default
    device: a CUDA GPU of compute capability 8.0 or newer on which JAX accepts the call (cuDNN present, the head width
    within its limit), asked through `jax.eval_shape` on abstract tensors, once per process: nothing runs or logs."""
    import jax

    if jax.default_backend() != "gpu":
        return False
    capability = str(getattr(jax.devices()[0], "compute_capability", "0.0"))
    if tuple(int(part) for part in capability.split(".")) < MIN_COMPUTE_CAPABILITY:
        return False
    spec = jax.ShapeDtypeStruct((1, 2, 1, head_dim), dtype)
    try:
        jax.eval_shape(functools.partial(jax.nn.dot_product_attention, implementation="cudnn"), spec, spec, spec)
    except Exception:  # JAX's refusal, whatever its type: XLA's attention instead
        return False
    return True


def cudnn_attention_applies(query, key, value):
    """True where `jax.nn.dot_product_attention(..., implementation="cudnn")` takes these (batch, tokens, heads,
    head_dim) tensors once their lengths are even."""
    dtype = keras.backend.standardize_dtype(query.dtype)
    head_dim = query.shape[-1]
    return (
        dtype in CUDNN_DTYPES
        and query.dtype == key.dtype == value.dtype
        and key.shape[-1] == value.shape[-1] == head_dim
        and head_dim % 8 == 0
        and _cudnn_takes(dtype, head_dim)
    )


def padded_attention(query, key, value, scale, implementation="cudnn"):
    """`jax.nn.dot_product_attention` with query, key and value padded to even lengths and the true lengths given:
    the padded keys are masked out and the padded query rows dropped, so it equals the unpadded attention.
    `implementation="xla"` computes the same padded problem with XLA (the tests compare the two)."""
    import jax
    import jax.numpy as jnp

    batch, tokens, sources = query.shape[0], query.shape[1], key.shape[1]

    def pad(x, length):
        return jnp.pad(x, ((0, 0), (0, length % 2), (0, 0), (0, 0))) if length % 2 else x

    output = jax.nn.dot_product_attention(
        pad(query, tokens), pad(key, sources), pad(value, sources), scale=scale,
        query_seq_lengths=jnp.full((batch,), tokens, "int32"), key_value_seq_lengths=jnp.full((batch,), sources, "int32"),
        implementation=implementation,
    )  # fmt: skip
    return output[:, :tokens]


def jax_attention(query, key, value, scale, mask=None, is_causal=False, fused=None):
    """Attention on JAX with its implementation chosen up front: cuDNN's fused kernel where it applies (`fused` None
    or True, no mask, not causal, `cudnn_attention_applies`), else XLA's. Never raises to fall back, so nothing is
    logged."""
    import jax

    if fused is not False and mask is None and not is_causal and cudnn_attention_applies(query, key, value):
        return padded_attention(query, key, value, scale, implementation="cudnn")
    return jax.nn.dot_product_attention(query, key, value, mask=mask, scale=scale, is_causal=is_causal,
                                        implementation="xla")  # fmt: skip


def matmul_attention(query, key, value, scale):
    """softmax(q k^T * scale) v of (batch, tokens, heads, head_dim) tensors as batched matmuls, the query scaled first
    (tokens x head_dim values instead of tokens x tokens) and the softmax computed in float32, as Keras does."""
    # (batch, tokens, heads, head_dim) -> (batch, heads, tokens, head_dim); keys -> (batch, heads, head_dim, tokens)
    query = ops.transpose(query * ops.cast(scale, query.dtype), (0, 2, 1, 3))
    logits = ops.matmul(query, ops.transpose(key, (0, 2, 3, 1)))
    probs = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), value.dtype)
    return ops.transpose(ops.matmul(probs, ops.transpose(value, (0, 2, 1, 3))), (0, 2, 1, 3))


@keras.saving.register_keras_serializable(package="keras_vitres")
class ViTMultiHeadAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` with a matmul attention core on TensorFlow and cuDNN's fused attention for
    any token count on JAX (see the module docstring).

    Args:
        flash_attention: as in Keras' layer: None (default) to let JAX use cuDNN's fused attention where it applies,
            False (or `keras.config.disable_flash_attention()`) to keep XLA's.
        **kwargs: the other arguments of `keras.layers.MultiHeadAttention` (`num_heads`, `key_dim`, `dropout`, ...).

    Examples:
        >>> import numpy as np
        >>> layer = ViTMultiHeadAttention(num_heads=2, key_dim=4)
        >>> x = np.random.default_rng(0).normal(size=(3, 5, 8)).astype("float32")
        >>> tuple(layer(x, x).shape)
        (3, 5, 8)
    """

    def __init__(self, *args, flash_attention=None, **kwargs):
        super().__init__(*args, flash_attention=flash_attention, **kwargs)
        self._fused = flash_attention or keras.config.is_flash_attention_enabled()  # as Keras' layer reads it

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        config = self.get_config()
        # The core attends over the one token axis of (batch, tokens, width) inputs, with neither gate nor window.
        self._core_fits = (len(query_shape) == 3 and len(self.attention_axes) == 1 and not config["use_gate"]
                           and config["sliding_window"] is None)  # fmt: skip

    @property
    def projections(self):
        """The query, key, value and output projections (EinsumDense), once built."""
        return (self.query_dense, self.key_dense, self.value_dense, self.output_dense) if self.built else ()

    def get_config(self):
        return with_sublayer_policies(self, super().get_config(), self.projections)

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
             return_attention_scores=False, training=None, use_causal_mask=False):  # fmt: skip
        core = self._core(query, (query_mask, value_mask, key_mask), attention_mask is not None or use_causal_mask,
                          return_attention_scores, training)  # fmt: skip
        if core is None:
            return super().call(query, value, key=key, query_mask=query_mask, value_mask=value_mask,
                                key_mask=key_mask, attention_mask=attention_mask,
                                return_attention_scores=return_attention_scores, training=training,
                                use_causal_mask=use_causal_mask)  # fmt: skip
        query = self.query_dense(query)
        key = self.key_dense(value if key is None else key)
        value = self.value_dense(value)
        scale = 1.0 / math.sqrt(float(self.key_dim))
        if core == "matmul":
            return self.output_dense(matmul_attention(query, key, value, scale))
        if attention_mask is not None:  # (batch, T, S) -> (batch, 1, T, S): broadcast over heads, as Keras does
            while len(attention_mask.shape) < 4:
                attention_mask = ops.expand_dims(attention_mask, -3)
            attention_mask = ops.cast(attention_mask, "bool")
        output = jax_attention(query, key, value, scale, mask=attention_mask, is_causal=use_causal_mask,
                               fused=self._fused)  # fmt: skip
        return self.output_dense(output)

    def _core(self, query, implicit_masks, masked, return_attention_scores, training):
        """"matmul" or "jax" where this layer computes the attention core itself, None where Keras' `call` runs."""
        backend = keras.backend.backend()
        if (backend not in ("tensorflow", "jax") or not self._core_fits or return_attention_scores
                or any(mask is not None for mask in implicit_masks)):  # fmt: skip
            return None
        if self.dropout > 0.0 and (training or backend != "jax"):  # dropout on the attention weights: Keras' path
            return None
        if backend == "jax":
            import jax

            if keras.backend.standardize_dtype(query.dtype) != "float16" or jax.default_backend() != "cpu":
                return "jax"
        return None if masked else "matmul"


# Files saved before the rename (keras-vitres 0.1.0) name this class "keras_vitres>MultiHeadAttention".
register_former_name(ViTMultiHeadAttention, "MultiHeadAttention")
