"""Reduction of a token sequence to one vector: the class token or an average over the patch tokens."""

import keras
from keras import ops

TOKEN_POOLINGS = ("token", "avg", "max")


@keras.saving.register_keras_serializable(package="keras_vitres")
class TokenPooling(keras.layers.Layer):
    """Pools (batch, tokens, D) to (batch, D) (arXiv:2010.11929, §3.1 and Appendix D.3).

    Args:
        mode: "token" takes the first token (the class token, the paper's default head); "avg" and "max"
            reduce over the patch tokens (the paper's global-average-pooling variant uses "avg").
        num_prefix_tokens: int. Leading non-patch tokens that "avg" and "max" skip.
    """

    def __init__(self, mode="token", num_prefix_tokens=1, **kwargs):
        super().__init__(**kwargs)
        if mode not in TOKEN_POOLINGS:
            raise ValueError(f"`mode` must be one of {TOKEN_POOLINGS}; received mode={mode!r}.")
        if mode == "token" and num_prefix_tokens < 1:
            raise ValueError("mode='token' needs a class token; received num_prefix_tokens=0.")
        self.mode = mode
        self.num_prefix_tokens = num_prefix_tokens

    def call(self, tokens):
        if self.mode == "token":
            return tokens[:, 0]
        patches = tokens[:, self.num_prefix_tokens :]
        return ops.mean(patches, axis=1) if self.mode == "avg" else ops.max(patches, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, num_prefix_tokens=self.num_prefix_tokens)
        return config
