"""Multi-head self-attention of the Vision Transformer (arXiv:2010.11929, eq. 5-8 of Appendix A), on Keras' layer.

`ViTMultiHeadAttention` is `keras.layers.MultiHeadAttention` (same arguments, sublayers, weight names and layout, so the
official checkpoints and the converters are unchanged) with its attention core chosen per backend:

- TensorFlow: Keras' `ops.dot_product_attention` is a composite there (TensorFlow has no fused attention kernel on
  CPU): `tf.einsum` of (batch, tokens, heads, head_dim) tensors, which transposes inside, then the scale applied to
  the (tokens x tokens) logits. Here the query is scaled before the product (tokens x head_dim values instead of
  tokens x tokens) and the heads are moved in front with explicit transposes so that both products are plain batched
  matmuls; the softmax is computed in float32 as Keras does. Measured on ViT-S/16 training on 2 CPU cores: 5% to 10%
  faster per step (`benchmarks/results/cpu_notes.md`).
- JAX: `jax.nn.dot_product_attention`, with the implementation chosen before the call. cuDNN's fused (flash)
  attention (Dao et al. 2022, arXiv:2205.14135) runs where it applies: a CUDA GPU of compute capability 8.0 or newer
  with cuDNN, bfloat16/float16, a head width that is a multiple of 8 and at most what cuDNN takes (256 from Hopper
  on, 128 before), no mask, no dropout on the attention weights in training, no scores returned. JAX's cuDNN rule
  refuses odd token counts when it differentiates (ViT's 197 = 196 patches + the class token), so query, key and value
  are padded to an even length and the true lengths are passed (`query_seq_lengths`, `key_value_seq_lengths`): the
  padded keys are masked out and the padded query rows dropped, so the result is the unpadded attention. Everywhere
  else the XLA implementation is chosen up front. Keras' own `ops.dot_product_attention` tries cuDNN, catches its
  refusal and logs the traceback at ERROR level once per layer and trace, then runs XLA's unfused attention, which
  keeps the (tokens x tokens) probabilities of every head for the backward pass. Measured on one H200 (ViT-B/16,
  batch 128, bfloat16): training 2,274 -> 2,924 img/s and inference 6,390 -> 8,419 img/s (`docs/benchmarks.md`).
- PyTorch: Keras' path (PyTorch's SDPA).

With `return_attention_scores=True` or dropout on the attention weights in training, Keras' explicit path runs on
every backend; masks and causal attention run Keras' path on TensorFlow and PyTorch and the XLA implementation on JAX.
"""

import functools

import keras
from keras import ops

from keras_vitres.layers.former_names import register_former_name

CUDNN_DTYPES = ("bfloat16", "float16")  # cuDNN's fused attention computes in half precision only
MIN_CUDNN_VERSION = 8904  # cuDNN 8.9.4, JAX's minimum for its cuDNN attention
MIN_COMPUTE_CAPABILITY = (8, 0)  # Ampere; Keras asks the same of its flash attention


@functools.cache
def _cudnn_max_head_dim():
    """The widest head cuDNN's fused attention takes on JAX's default device, or 0 where it cannot run there.

    0 unless JAX runs on a CUDA GPU of compute capability 8.0 or newer with cuDNN 8.9.4 or newer; 256 from Hopper
    (compute capability 9.0) on and 128 before, as `jax._src.cudnn.fused_attention_stablehlo` checks. Asked once per
    process; nothing is raised or logged.
    """
    import jax

    if jax.default_backend() != "gpu":
        return 0
    try:
        from jax._src.lib import cuda_versions
    except ImportError:  # a JAX without its CUDA plugin: no cuDNN to call
        return 0
    if cuda_versions is None:
        return 0
    cudnn = cuda_versions.cudnn_get_version()
    device = jax.devices()[0]
    capability = tuple(int(part) for part in str(getattr(device, "compute_capability", "0.0")).split("."))
    if cudnn < MIN_CUDNN_VERSION or capability < MIN_COMPUTE_CAPABILITY:
        return 0
    if capability == (10, 3) and cudnn < 91100:  # JAX's own rule for that architecture
        return 0
    return 256 if capability >= (9, 0) else 128


def cudnn_attention_applies(query, key, value):
    """True where `jax.nn.dot_product_attention(..., implementation="cudnn")` takes these (batch, tokens, heads,
    head_dim) tensors once their lengths are even: see the module docstring."""
    head_dim = query.shape[-1]
    return (
        keras.backend.standardize_dtype(query.dtype) in CUDNN_DTYPES
        and query.dtype == key.dtype == value.dtype
        and key.shape[-1] == value.shape[-1] == head_dim
        and head_dim % 8 == 0
        and head_dim <= _cudnn_max_head_dim()
    )


def padded_attention(query, key, value, scale, implementation="cudnn"):
    """`jax.nn.dot_product_attention` with query, key and value padded to even lengths and the true lengths given.

    The padded keys are masked out by `key_value_seq_lengths` and the padded query rows are dropped from the result,
    so it equals the unpadded attention; cuDNN needs the even lengths to differentiate (see the module docstring).
    `implementation="xla"` computes the same padded problem with XLA (the tests compare the two).
    """
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


@keras.saving.register_keras_serializable(package="keras_vitres")
class ViTMultiHeadAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` with a matmul attention core on TensorFlow and cuDNN's fused attention for
    any token count on JAX (see the module docstring).

    Args:
        **kwargs: the arguments of `keras.layers.MultiHeadAttention` (`num_heads`, `key_dim`, `dropout`, ...);
            with `keras.config.disable_flash_attention()` JAX keeps XLA's attention.

    Examples:
        >>> import numpy as np
        >>> layer = ViTMultiHeadAttention(num_heads=2, key_dim=4)
        >>> x = np.random.default_rng(0).normal(size=(3, 5, 8)).astype("float32")
        >>> tuple(layer(x, x).shape)
        (3, 5, 8)
    """

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        use_causal_mask=False,
    ):
        backend = keras.backend.backend()
        keras_path = (
            backend not in ("tensorflow", "jax")
            or return_attention_scores
            or (self._dropout > 0.0 and (training or backend != "jax"))
            or len(query.shape) != 4
            or len(self._attention_axes) != 1
        )
        if not keras_path and backend == "jax":
            if attention_mask is not None:  # (batch, T, S) -> (batch, 1, T, S): broadcast over heads, as Keras does
                while len(attention_mask.shape) < 4:
                    attention_mask = ops.expand_dims(attention_mask, -3)
                attention_mask = ops.cast(attention_mask, "bool")
            output = jax_attention(query, key, value, self._inverse_sqrt_key_dim, mask=attention_mask,
                                   is_causal=use_causal_mask, fused=self._flash_attention)  # fmt: skip
            return output, None
        if keras_path or attention_mask is not None or use_causal_mask:
            return super()._compute_attention(
                query,
                key,
                value,
                attention_mask=attention_mask,
                training=training,
                return_attention_scores=return_attention_scores,
                use_causal_mask=use_causal_mask,
            )
        # (batch, tokens, heads, head_dim) -> (batch, heads, tokens, head_dim); keys -> (batch, heads, head_dim, tokens)
        query = ops.transpose(query * ops.cast(self._inverse_sqrt_key_dim, query.dtype), (0, 2, 1, 3))
        logits = ops.matmul(query, ops.transpose(key, (0, 2, 3, 1)))
        probs = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), value.dtype)
        return ops.transpose(ops.matmul(probs, ops.transpose(value, (0, 2, 1, 3))), (0, 2, 1, 3)), None


# Files saved before the rename (keras-vitres 0.1.0) name this class "keras_vitres>MultiHeadAttention".
register_former_name(ViTMultiHeadAttention, "MultiHeadAttention")
