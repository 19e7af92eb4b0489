"""Multi-head self-attention of the Vision Transformer (arXiv:2010.11929, eq. 5-8 of Appendix A), on Keras' layer.

`MultiHeadAttention` is `keras.layers.MultiHeadAttention` (same arguments, sublayers, weight names and layout, so the
official checkpoints and the converters are unchanged) with a cheaper attention core on TensorFlow. There Keras'
`ops.dot_product_attention` is a composite (TensorFlow has no fused attention kernel on CPU): `tf.einsum` of
(batch, tokens, heads, head_dim) tensors, which transposes inside, then the scale applied to the (tokens x tokens)
logits. Here the query is scaled before the product (tokens x head_dim values instead of tokens x tokens) and the
heads are moved in front with explicit transposes so that both products are plain batched matmuls; the softmax is
computed in float32 as Keras does. Measured on ViT-S/16 training on 2 CPU cores: 5% to 10% faster per step
(`benchmarks/results/cpu_notes.md`).

On JAX and PyTorch, and with attention masks, dropout on the attention weights or `return_attention_scores=True`,
Keras' own path runs (`jax.nn.dot_product_attention` / cuDNN flash attention on GPUs, PyTorch's SDPA).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vitres")
class MultiHeadAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` with a matmul attention core on TensorFlow (see the module docstring).

    Args:
        **kwargs: the arguments of `keras.layers.MultiHeadAttention` (`num_heads`, `key_dim`, `dropout`, ...).

    Examples:
        >>> import numpy as np
        >>> layer = MultiHeadAttention(num_heads=2, key_dim=4)
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
        if (
            keras.backend.backend() != "tensorflow"
            or attention_mask is not None
            or use_causal_mask
            or return_attention_scores
            or self._dropout > 0.0
            or len(query.shape) != 4
            or len(self._attention_axes) != 1
        ):
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
