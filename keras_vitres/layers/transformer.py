"""Transformer encoder block of the Vision Transformer (arXiv:2010.11929, eq. 2-3) and stochastic depth."""

import keras
from keras import ops

from keras_vitres.layers.attention import ViTMultiHeadAttention
from keras_vitres.layers.quantization import with_sublayer_policies
from keras_vitres.layers.remat import check_remat, rematerialized

SQRT_HALF = 0.7071067811865476
# erfc(z) = t * exp(-z**2 + P(t)), t = 1 / (1 + |z| / 2), z >= 0: a Chebyshev fit with a relative error below 1.2e-7
# everywhere (Press et al., Numerical Recipes, 2nd ed. §6.2, `erfcc`). P's coefficients, highest power first.
ERFC_CHEBYSHEV = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418,
                  0.37409196, 1.00002368, -1.26551223)


def _erfc(z):
    """erfc(z) from elementwise arithmetic and exp alone (the relative error is below 1.2e-7, so erfc(z) stays
    accurate where it is tiny, the GELU's negative tail)."""
    magnitude = ops.abs(z)
    t = 1.0 / (1.0 + 0.5 * magnitude)
    poly = ERFC_CHEBYSHEV[0]
    for coefficient in ERFC_CHEBYSHEV[1:]:
        poly = poly * t + coefficient
    tail = t * ops.exp(poly - magnitude * magnitude)
    return ops.where(z >= 0, tail, 2.0 - tail)


def gelu(x, approximate=False):
    """GELU (Hendrycks & Gimpel, arXiv:1606.08415): `x * Phi(x)`, or its tanh approximation.

    The exact form is computed in float32 and cast back (TensorFlow's fused `Gelu` op and its gradient are slower on
    CPU: 1.2x in float32, 1.5x in bfloat16; `benchmarks/results/cpu_notes.md`), as `0.5 * x * (1 + erf(x / sqrt 2))`
    on TensorFlow: its `Erf` kernel, and the arrangement the TFLite converter fuses into LiteRT's builtin `GELU`.
    On the other backends it is `0.5 * x * erfc(-x / sqrt 2)`, with erfc from arithmetic and exp (`_erfc`): JAX's
    erf becomes an op that its TensorFlow export cannot run, and XLA fuses the arithmetic. TensorFlow keeps its erf
    because without XLA it runs each op of the arithmetic form as a kernel of its own, a measurable part of a ViT
    step (benchmarks/gelu_forms.py).
    Both are within 1e-6 of `x * (0.5 + 0.5 * erf(x / sqrt 2))` for every float32 input. The tanh form is Keras'.
    """
    if approximate:
        return keras.activations.gelu(x, approximate=True)
    y = ops.cast(x, "float32")
    if keras.backend.backend() == "tensorflow":
        return ops.cast(0.5 * y * (1.0 + ops.erf(y * SQRT_HALF)), x.dtype)
    return ops.cast(0.5 * y * _erfc(-y * SQRT_HALF), x.dtype)


@keras.saving.register_keras_serializable(package="keras_vitres")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a whole residual branch per sample (Huang et al., arXiv:1603.09382).

    During training each sample's branch is zeroed with probability `rate` and the survivors are scaled by
    1 / (1 - rate), so the expectation is unchanged; at inference the layer is the identity.

    Args:
        rate: float in [0, 1). Probability of dropping the branch.
        seed: int or None. Seed of the layer's random generator.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"`rate` must be in [0, 1); received rate={rate!r}.")
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype))
        return x * mask / ops.cast(keep, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="keras_vitres")
class TransformerBlock(keras.layers.Layer):
    """Pre-norm encoder block: x + MSA(LN(x)), then x + MLP(LN(x)) (arXiv:2010.11929, eq. 2-3).

    Attention is `keras.layers.MultiHeadAttention` (through `keras_vitres.layers.ViTMultiHeadAttention`, which only
    computes its core with cheaper matmuls on TensorFlow), whose kernels (hidden, heads, head_dim) have the layout of
    the official checkpoints and which uses the backend's fused attention where it can. The MLP has two dense
    layers with GELU in between; dropout follows each dense layer and the attention output, as in the paper's
    Appendix B.1.

    Args:
        num_heads: int. Number of attention heads; must divide `hidden_dim`.
        hidden_dim: int. Token width D.
        mlp_dim: int. Width of the MLP's hidden layer (4 D in the paper).
        dropout_rate: float. Dropout after the attention and each MLP dense layer.
        attention_dropout_rate: float. Dropout on the attention weights.
        drop_path_rate: float. Stochastic depth rate of both residual branches.
        layer_norm_epsilon: float. LayerNorm epsilon (1e-6 in the reference code).
        approximate_gelu: bool. Use the tanh approximation of GELU, as flax does and as the published `.npz`
            checkpoints were trained; False (exact GELU) matches timm and keras-hub.
        kernel_initializer: initializer of every dense kernel: the attention's query, key, value and output
            projections and both MLP layers ("glorot_uniform", as the paper's code and Keras' defaults).
        remat: bool. Recompute the block's activations in the backward pass instead of storing them (less training
            memory for about one more forward pass; see `keras_vitres.layers.remat`).

    Call arguments:
        x: (batch, tokens, hidden_dim).
        return_attention_scores: bool. Also return the attention weights (batch, heads, tokens, tokens).
    """

    def __init__(
        self,
        num_heads,
        hidden_dim,
        mlp_dim,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        approximate_gelu=False,
        kernel_initializer="glorot_uniform",
        remat=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_dim % num_heads:
            raise ValueError(
                f"`hidden_dim` must be divisible by `num_heads`; received hidden_dim={hidden_dim}, num_heads={num_heads}."
            )
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.mlp_dim = mlp_dim
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        self.approximate_gelu = approximate_gelu
        self.kernel_initializer = kernel_initializer
        check_remat(remat)
        self.remat = remat

        dense_init = dict(kernel_initializer=kernel_initializer, bias_initializer=keras.initializers.RandomNormal(stddev=1e-6))
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="attention_norm"
        )
        self.attention = ViTMultiHeadAttention(
            num_heads=num_heads,
            key_dim=hidden_dim // num_heads,
            dropout=attention_dropout_rate,
            kernel_initializer=kernel_initializer,
            dtype=self.dtype_policy,
            name="attention",
        )
        self.attention_dropout = keras.layers.Dropout(dropout_rate, dtype=self.dtype_policy, name="attention_dropout")
        self.mlp_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="mlp_norm")
        self.mlp_dense_1 = keras.layers.Dense(mlp_dim, dtype=self.dtype_policy, name="mlp_dense_1", **dense_init)
        self.mlp_dense_2 = keras.layers.Dense(hidden_dim, dtype=self.dtype_policy, name="mlp_dense_2", **dense_init)
        self.mlp_dropout = keras.layers.Dropout(dropout_rate, dtype=self.dtype_policy, name="mlp_dropout")
        self.drop_path = DropPath(drop_path_rate, dtype=self.dtype_policy, name="drop_path")

    def build(self, input_shape):
        if input_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"TransformerBlock(hidden_dim={self.hidden_dim}) received tokens of width {input_shape[-1]} "
                f"(input shape {tuple(input_shape)})."
            )
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_dense_1.build(input_shape)
        self.mlp_dense_2.build(tuple(input_shape[:-1]) + (self.mlp_dim,))

    def call(self, x, training=None, return_attention_scores=False):
        # Layer.__call__ has cast x already; Keras' compute_output_spec traces `call` on the spec as given (float32
        # under a mixed policy), where the residual sum would mix float32 and the sublayers' compute dtype.
        x = ops.cast(x, self.compute_dtype)
        if self.remat and training and not return_attention_scores:
            return rematerialized(self, lambda inputs: self._forward(inputs, training), x)
        return self._forward(x, training, return_attention_scores)

    def _forward(self, x, training, return_attention_scores=False):
        y = self.attention_norm(x)
        if return_attention_scores:
            y, scores = self.attention(y, y, training=training, return_attention_scores=True)
        else:
            y = self.attention(y, y, training=training)
        x = x + self.drop_path(self.attention_dropout(y, training=training), training=training)

        y = self.mlp_norm(x)
        y = gelu(self.mlp_dense_1(y), approximate=self.approximate_gelu)
        y = self.mlp_dropout(y, training=training)
        y = self.mlp_dropout(self.mlp_dense_2(y), training=training)
        x = x + self.drop_path(y, training=training)
        return (x, scores) if return_attention_scores else x

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            hidden_dim=self.hidden_dim,
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            drop_path_rate=self.drop_path_rate,
            layer_norm_epsilon=self.layer_norm_epsilon,
            approximate_gelu=self.approximate_gelu,
            kernel_initializer=keras.initializers.serialize(keras.initializers.get(self.kernel_initializer)),
            remat=self.remat,
        )
        return with_sublayer_policies(self, config, (*self.attention.projections, self.mlp_dense_1, self.mlp_dense_2))
