"""ViT input embedding: patches, class token and learned position embedding (arXiv:2010.11929, eq. 1).

z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
"""

import keras
from keras import ops

from keras_vitres.layers.former_names import register_former_name


def _pair(value, name):
    """Returns `value` as a (height, width) tuple of positive ints, or raises naming `name`."""
    if not isinstance(value, (int, list, tuple)):  # tuple() of a float or a string would fail unclearly
        raise ValueError(f"`{name}` must be a positive int or a pair of positive ints; received {name}={value!r}.")
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"`{name}` must be a positive int or a pair of positive ints; received {name}={value!r}.")
    return pair


def resample_position_embedding(embedding, source_grid, target_grid, num_prefix_tokens=1):
    """Resamples a learned position embedding to a new patch grid (arXiv:2010.11929, §3.2).

    The prefix tokens (class token) keep their embedding; the grid part is reshaped to its 2-D layout and
    resized bilinearly, which is what the paper does when fine-tuning at a higher resolution.

    Args:
        embedding: array of shape (1, num_prefix_tokens + gh * gw, D).
        source_grid: (gh, gw) of `embedding`.
        target_grid: (gh', gw') wanted.
        num_prefix_tokens: int. Leading tokens that are not part of the grid.

    Returns:
        A tensor of shape (1, num_prefix_tokens + gh' * gw', D).
    """
    source_grid = _pair(source_grid, "source_grid")
    target_grid = _pair(target_grid, "target_grid")
    embedding = ops.convert_to_tensor(embedding)
    expected = num_prefix_tokens + source_grid[0] * source_grid[1]
    if embedding.shape[1] != expected:
        raise ValueError(
            f"`embedding` has {embedding.shape[1]} tokens but source_grid={source_grid} with "
            f"num_prefix_tokens={num_prefix_tokens} implies {expected}."
        )
    if source_grid == target_grid:
        return embedding
    prefix = embedding[:, :num_prefix_tokens]
    grid = ops.reshape(embedding[:, num_prefix_tokens:], (1, source_grid[0], source_grid[1], -1))
    grid = ops.image.resize(grid, target_grid, interpolation="bilinear", antialias=False)
    grid = ops.reshape(grid, (1, target_grid[0] * target_grid[1], -1))
    return ops.concatenate([ops.cast(prefix, grid.dtype), grid], axis=1)


@keras.saving.register_keras_serializable(package="keras_vitres")
class PatchEmbedding(keras.layers.Layer):
    """Splits an image into non-overlapping patches and projects each to `hidden_dim` (arXiv:2010.11929, §3.1).

    Implemented as a convolution with kernel = stride = patch size, whose kernel (p, p, C, D) has the layout of
    the official checkpoints' `embedding/kernel`.

    Args:
        patch_size: int or (int, int). Patch height and width.
        hidden_dim: int. Width D of each patch token.
        kernel_initializer: initializer for the projection kernel.

    Input: (batch, H, W, C) with H and W multiples of the patch size. Output: (batch, H/p * W/p, D).
    """

    def __init__(self, patch_size, hidden_dim, kernel_initializer="lecun_normal", **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.kernel_initializer = kernel_initializer
        self.projection = keras.layers.Conv2D(
            hidden_dim,
            kernel_size=_pair(patch_size, "patch_size"),
            strides=_pair(patch_size, "patch_size"),
            padding="valid",
            kernel_initializer=kernel_initializer,
            dtype=self.dtype_policy,
            name="projection",
        )

    def build(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        ph, pw = _pair(self.patch_size, "patch_size")
        if height is None or width is None or height % ph or width % pw:
            raise ValueError(
                f"Image height and width must be known multiples of patch_size={self.patch_size!r}; "
                f"received an input of shape {tuple(input_shape)}."
            )
        self.projection.build(input_shape)

    def call(self, images):
        patches = self.projection(images)
        grid_h, grid_w = patches.shape[1], patches.shape[2]
        return ops.reshape(patches, (-1, grid_h * grid_w, self.hidden_dim))

    def compute_output_shape(self, input_shape):
        ph, pw = _pair(self.patch_size, "patch_size")
        return (input_shape[0], (input_shape[1] // ph) * (input_shape[2] // pw), self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            patch_size=self.patch_size,
            hidden_dim=self.hidden_dim,
            kernel_initializer=keras.initializers.serialize(keras.initializers.get(self.kernel_initializer)),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vitres")
class ClassToken(keras.layers.Layer):
    """Prepends a learnable class token x_class to a token sequence (arXiv:2010.11929, eq. 1).

    Initialised to zeros as in the reference implementation. Input (batch, N, D), output (batch, N + 1, D).
    """

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(1, 1, input_shape[-1]), initializer="zeros")

    def call(self, tokens):
        batch_size = ops.shape(tokens)[0]
        token = ops.cast(self.token, tokens.dtype)
        token = ops.broadcast_to(token, (batch_size, 1, ops.shape(tokens)[-1]))
        return ops.concatenate([token, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], length, input_shape[2])


@keras.saving.register_keras_serializable(package="keras_vitres")
class AddPositionEmbedding(keras.layers.Layer):
    """Adds a learned 1-D position embedding E_pos to a token sequence (arXiv:2010.11929, eq. 1 and §3.2).

    Args:
        grid_size: int or (int, int). The patch grid (gh, gw); non-square grids are allowed.
        num_prefix_tokens: int. Tokens before the grid (1 for the class token, 0 without one).
        initializer: initializer of the embedding (normal, stddev 0.02, as in the reference code).

    The embedding has shape (1, num_prefix_tokens + gh * gw, D), the layout of the official checkpoints'
    `Transformer/posembed_input/pos_embedding`.
    """

    def __init__(self, grid_size, num_prefix_tokens=1, initializer=None, **kwargs):
        super().__init__(**kwargs)
        _pair(grid_size, "grid_size")
        if not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
            raise ValueError(f"`num_prefix_tokens` must be an int >= 0; received num_prefix_tokens={num_prefix_tokens!r}.")
        self.grid_size = grid_size
        self.num_prefix_tokens = num_prefix_tokens
        self.initializer = initializer

    @property
    def num_tokens(self):
        grid_h, grid_w = _pair(self.grid_size, "grid_size")
        return self.num_prefix_tokens + grid_h * grid_w

    def build(self, input_shape):
        if input_shape[1] is not None and input_shape[1] != self.num_tokens:
            raise ValueError(
                f"AddPositionEmbedding(grid_size={self.grid_size!r}, num_prefix_tokens={self.num_prefix_tokens}) "
                f"expects {self.num_tokens} tokens; received an input of shape {tuple(input_shape)}."
            )
        initializer = self.initializer or keras.initializers.RandomNormal(stddev=0.02)
        self.embedding = self.add_weight(
            name="embedding", shape=(1, self.num_tokens, input_shape[-1]), initializer=initializer
        )

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_size=self.grid_size,
            num_prefix_tokens=self.num_prefix_tokens,
            initializer=None if self.initializer is None else keras.initializers.serialize(
                keras.initializers.get(self.initializer)
            ),
        )
        return config


# Files saved before the rename (keras-vitres 0.1.0) name this class "keras_vitres>PositionEmbedding".
register_former_name(AddPositionEmbedding, "PositionEmbedding")


def grid_size_for(image_shape, patch_size):
    """Returns the patch grid (gh, gw) of an image of `image_shape` (H, W, C), or raises naming the value."""
    ph, pw = _pair(patch_size, "patch_size")
    height, width = image_shape[0], image_shape[1]
    if height is None or width is None or height % ph or width % pw:
        raise ValueError(
            f"`input_shape` height and width must be multiples of the patch size {patch_size!r}; "
            f"received input_shape={tuple(image_shape)!r}."
        )
    return (height // ph, width // pw)
