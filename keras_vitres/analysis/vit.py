"""What a Vision Transformer attends to and what its position embedding learns (arXiv:2010.11929, §4.5).

- `attention_rollout` (Abnar & Zuidema 2020, arXiv:2005.00928; the ViT paper's Fig. 6 and 14): what the output
  attends to, through the residual connections of every block; `rollout_map` puts it on the patch grid.
- `mean_attention_distance` (Fig. 7 right, Fig. 11): how far each head looks, in pixels.
- `position_embedding_similarity` (Fig. 7 center, Fig. 10): how alike the learned embeddings of the patches are.

Attention weights are read block by block with `TransformerBlock(..., return_attention_scores=True)`, so any
model built by `VisionTransformer` or `HybridViT` is analysed as it is.
"""

import dataclasses

import keras
import numpy as np

from keras_vitres.analysis.experiment import (
    AnalysisResult,
    TrainingSettings,
    error_rate,
    load_analysis_data,
    predict_probabilities,
    train_new_model,
)
from keras_vitres.layers.transformer import TransformerBlock
from keras_vitres.models import VisionTransformer
from keras_vitres.training.curves import pyplot, save_figure

HEAD_FUSIONS = ("mean", "max", "min")


def _pair(value):
    return (value, value) if np.isscalar(value) else tuple(value)


def encoder_blocks(model):
    """The model's `TransformerBlock`s in depth order (layers named "encoder_block_{i}"), or raises."""
    blocks = [layer for layer in model.layers if isinstance(layer, TransformerBlock)]
    if not blocks:
        raise ValueError(
            f"Model {model.name!r} has no TransformerBlock layers; build it with VisionTransformer or HybridViT."
        )
    return sorted(blocks, key=lambda layer: int(layer.name.rsplit("_", 1)[-1]))


def token_grid(model):
    """(grid_size (gh, gw), patch size in input pixels (ph, pw), num_prefix_tokens) of a ViT or hybrid; a hybrid's
    patch is its trunk's total stride."""
    try:
        position = model.get_layer("position_embedding")
    except ValueError as error:
        raise ValueError(f"Model {model.name!r} has no 'position_embedding' layer; is it a ViT?") from error
    grid = _pair(position.grid_size)
    height, width = model.input_shape[1:3]
    return grid, (height // grid[0], width // grid[1]), position.num_prefix_tokens


def encoder_attention(model, images, batch_size=32):
    """Runs the encoder of a ViT or hybrid block by block on `images` (N, H, W, C, as the model takes them) and
    returns every block's attention weights: float64 (num_layers, N, num_heads, tokens, tokens), rows summing to
    1. Memory grows as tokens squared: pass a few images for large models."""
    blocks = encoder_blocks(model)
    for previous, block in zip(blocks, blocks[1:]):
        if block.input is not previous.output:
            raise ValueError(
                f"Model {model.name!r}: {block.name!r} does not take {previous.name!r}'s output directly, so the "
                "blocks cannot be run one by one."
            )
    embed = keras.Model(model.input, blocks[0].input, name=f"{model.name}_tokens")
    images = np.asarray(images, dtype="float32")
    if images.ndim != 4 or len(images) < 1:
        raise ValueError(f"`images` must be a non-empty batch (N, H, W, C); received an array of shape {images.shape}.")
    batches = []
    for start in range(0, len(images), batch_size):
        x = embed(images[start:start + batch_size], training=False)
        layers = []
        for block in blocks:
            x, scores = block(x, training=False, return_attention_scores=True)
            layers.append(np.asarray(keras.ops.convert_to_numpy(scores), dtype=np.float64))
        batches.append(np.stack(layers))
    return np.concatenate(batches, axis=1)


def attention_rollout(attention, residual_weight=0.5, head_fusion="mean"):
    """Attention rollout (Abnar & Zuidema 2020): how much each token's output draws on each input token.

    A'_l = (1 - residual_weight) * fuse_heads(A_l) + residual_weight * I, rows renormalised to sum to 1, and
    R = A'_L ... A'_1 (the first block is applied first).

    Args:
        attention: array (num_layers, N, num_heads, tokens, tokens), e.g. from `encoder_attention`.
        residual_weight: float in [0, 1]. Weight of the identity standing for the residual connection (0.5).
        head_fusion: "mean" (the paper's), "max" or "min" over heads.

    Returns:
        float64 array (N, tokens, tokens) whose rows sum to 1.

    Examples:
        >>> uniform = np.full((2, 1, 1, 3, 3), 1 / 3)
        >>> attention_rollout(uniform)[0].round(3).tolist()
        [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]]
    """
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim != 5 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(
            "`attention` must have shape (num_layers, N, num_heads, tokens, tokens); received shape "
            f"{attention.shape}."
        )
    if not 0.0 <= residual_weight <= 1.0:
        raise ValueError(f"`residual_weight` must be in [0, 1]; received residual_weight={residual_weight!r}.")
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"`head_fusion` must be one of {HEAD_FUSIONS}; received head_fusion={head_fusion!r}.")
    fused = getattr(np, head_fusion)(attention, axis=2)  # (L, N, T, T)
    identity = np.eye(attention.shape[-1])
    rollout = np.broadcast_to(identity, fused.shape[1:]).copy()
    for layer in fused:
        mixed = (1.0 - residual_weight) * layer + residual_weight * identity
        mixed = mixed / mixed.sum(axis=-1, keepdims=True)
        rollout = mixed @ rollout
    return rollout


def rollout_map(rollout, grid_size, num_prefix_tokens=1):
    """A rollout (N, tokens, tokens) as a map over the (gh, gw) patch grid, float64 (N, gh, gw): the row of the class
    token (the first of `num_prefix_tokens`), whose entries sum to at most 1 (the rest is its attention to itself),
    or without one the mean row."""
    rollout = np.asarray(rollout, dtype=np.float64)
    gh, gw = _pair(grid_size)
    if rollout.ndim != 3 or rollout.shape[1] != num_prefix_tokens + gh * gw:
        raise ValueError(
            f"`rollout` must have shape (N, {num_prefix_tokens + gh * gw}, {num_prefix_tokens + gh * gw}) for "
            f"grid_size={grid_size!r} and num_prefix_tokens={num_prefix_tokens}; received shape {rollout.shape}."
        )
    rows = rollout[:, 0] if num_prefix_tokens else rollout.mean(axis=1)
    return rows[:, num_prefix_tokens:].reshape(-1, gh, gw)


def patch_distances(grid_size, patch_size):
    """Distances in pixels between the centres of every pair of patches, (gh * gw, gh * gw), row-major order."""
    gh, gw = _pair(grid_size)
    ph, pw = _pair(patch_size)
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    centres = np.stack([rows.ravel() * ph, cols.ravel() * pw], axis=-1).astype(np.float64)
    return np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))


def max_attention_distance(grid_size, patch_size):
    """The largest distance between two patch centres, in pixels: the bound of `mean_attention_distance`."""
    return float(patch_distances(grid_size, patch_size).max())


def uniform_attention_distance(grid_size, patch_size):
    """The mean attention distance of a head that attends to every patch equally: the mean of all centre
    distances. Heads well below it attend locally, heads near it globally."""
    return float(patch_distances(grid_size, patch_size).mean())


def mean_attention_distance(attention, grid_size, patch_size, num_prefix_tokens=1):
    """Mean attention distance per head, in pixels (ViT paper Fig. 7 right and Fig. 11).

    For a query patch i, sum_j a_ij * d(i, j) over the patch tokens j, with the weights renormalised over the
    patches (the class token has no position), averaged over the query patches and the images.

    Args:
        attention: array (num_layers, N, num_heads, tokens, tokens), e.g. from `encoder_attention`.
        grid_size: (gh, gw) of the patch grid.
        patch_size: patch height and width in pixels.
        num_prefix_tokens: tokens before the grid (1 with a class token).

    Returns:
        float64 array (num_layers, num_heads), within [0, `max_attention_distance(grid_size, patch_size)`].

    Examples:
        Every patch of a 2x2 grid of 16-pixel patches attends only to its horizontal neighbour:

        >>> to_neighbour = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], float)
        >>> mean_attention_distance(to_neighbour[None, None, None], (2, 2), 16, num_prefix_tokens=0)
        array([[16.]])
    """
    attention = np.asarray(attention, dtype=np.float64)
    gh, gw = _pair(grid_size)
    tokens = num_prefix_tokens + gh * gw
    if attention.ndim != 5 or attention.shape[-2:] != (tokens, tokens):
        raise ValueError(
            f"`attention` must have shape (num_layers, N, num_heads, {tokens}, {tokens}) for grid_size="
            f"{grid_size!r} and num_prefix_tokens={num_prefix_tokens}; received shape {attention.shape}."
        )
    patches = attention[..., num_prefix_tokens:, num_prefix_tokens:]
    weights = patches / np.maximum(patches.sum(axis=-1, keepdims=True), 1e-12)
    per_query = (weights * patch_distances(grid_size, patch_size)).sum(axis=-1)  # (L, N, H, patches)
    return per_query.mean(axis=(1, 3))


def position_embedding_similarity(model_or_embedding, num_prefix_tokens=None):
    """Cosine similarity between the position embeddings of every pair of patches (ViT paper Fig. 7 center).

    Args:
        model_or_embedding: a ViT/hybrid model, or an embedding array (tokens, D) or (1, tokens, D).
        num_prefix_tokens: leading tokens to drop (the class token); by default the model's, else 0.

    Returns:
        float64 array (patches, patches), symmetric, ones on the diagonal; row i on the grid is the tile of patch i
        in the paper's figure.

    Examples:
        >>> embedding = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
        >>> position_embedding_similarity(embedding).round(3).tolist()
        [[1.0, 0.0, 0.707], [0.0, 1.0, 0.707], [0.707, 0.707, 1.0]]
    """
    if isinstance(model_or_embedding, keras.Model):
        layer = model_or_embedding.get_layer("position_embedding")
        embedding = keras.ops.convert_to_numpy(layer.embedding)
        if num_prefix_tokens is None:
            num_prefix_tokens = layer.num_prefix_tokens
    else:
        embedding = model_or_embedding
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.ndim == 3 and embedding.shape[0] == 1:
        embedding = embedding[0]
    if embedding.ndim != 2:
        raise ValueError(
            f"`model_or_embedding` must be a ViT model or an array (tokens, D); received shape {embedding.shape}."
        )
    embedding = embedding[num_prefix_tokens or 0:]
    unit = embedding / np.maximum(np.linalg.norm(embedding, axis=-1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    return (similarity + similarity.T) / 2  # exactly symmetric despite round-off


@dataclasses.dataclass
class VitAnalysisResult(AnalysisResult):
    """The ViT analyses of one model.

    Attributes:
        grid_size: (gh, gw) of the patch grid.
        patch_size: (ph, pw) in pixels.
        rollout_maps: list (images) of gh x gw lists, the class token's rollout over the patches.
        attention_distance: list (layers) of lists (heads), mean attention distance in pixels.
        max_distance: the largest possible attention distance, in pixels.
        uniform_distance: the attention distance of uniform attention over the patches, in pixels.
        position_similarity: list (patches) of lists (patches), cosine similarities.
        val_error: validation error of the model when this analysis trained it, else None.
        images: the images analysed.
    """

    EXCLUDE = ("images",)

    grid_size: tuple
    patch_size: tuple
    rollout_maps: list
    attention_distance: list
    max_distance: float
    uniform_distance: float
    position_similarity: list
    val_error: float = None
    figure: str = None
    images: object = dataclasses.field(default=None, repr=False)


def tiny_vit(image_shape, classes, patch_size=4, hidden_dim=64, num_layers=4, num_heads=4, mlp_dim=128, **kwargs):
    """A small ViT for the offline analyses: a 32x32 input with 4x4 patches is an 8x8 grid of tokens."""
    return VisionTransformer(
        patch_size=patch_size,
        hidden_dim=hidden_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        mlp_dim=mlp_dim,
        input_shape=image_shape,
        classes=classes,
        name="vit_tiny",
        **kwargs,
    )


def vit_analysis(model=None, images=None, data=None, settings=None, figure_path=None, num_images=4, **vit_args):
    """Attention rollout, mean attention distance and position-embedding similarity of a ViT.

    Args:
        model: a trained ViT or hybrid. None trains `tiny_vit(**vit_args)` on `data` with `settings` first.
        images: array (N, H, W, C) to compute attention on, preprocessed as the model expects; by default the
            first `num_images` validation images of `data`.
        data: an `AnalysisData`; by default `load_analysis_data("digits")` (used when training, or for images).
        settings: a `TrainingSettings` for training (by default Adam, learning rate 1e-3, 10 epochs).
        figure_path: optional path of a PNG to write (`plot_vit`).
        num_images: int. Images to compute attention on when `images` is None.
        **vit_args: `tiny_vit` arguments when training.

    Returns:
        A `VitAnalysisResult`.
    """
    val_error = None
    if model is None or images is None:
        data = data if data is not None else load_analysis_data("digits")
    if model is None:
        settings = settings or TrainingSettings(epochs=10, learning_rate=1e-3, optimizer="adam", batch_size=64)
        model, _ = train_new_model(lambda: tiny_vit(data.image_shape, data.num_classes, **vit_args), data, settings)
        val_error = error_rate(predict_probabilities(model, data.x_val), data.y_val)
    if images is None:
        images = data.x_val[:num_images]
    images = np.asarray(images, dtype="float32")
    expected = tuple(model.input_shape[1:])
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"`images` must be a batch of shape (N, {', '.join(map(str, expected))}) for model {model.name!r}; "
            f"received shape {images.shape} (resize them, e.g. `load_analysis_data(..., image_size=...)`)."
        )
    grid, patch, prefix = token_grid(model)
    attention = encoder_attention(model, images)
    maps = rollout_map(attention_rollout(attention), grid, prefix)
    result = VitAnalysisResult(
        grid_size=tuple(int(g) for g in grid),
        patch_size=tuple(int(p) for p in patch),
        rollout_maps=maps.tolist(),
        attention_distance=mean_attention_distance(attention, grid, patch, prefix).tolist(),
        max_distance=max_attention_distance(grid, patch),
        uniform_distance=uniform_attention_distance(grid, patch),
        position_similarity=position_embedding_similarity(model).tolist(),
        val_error=val_error,
        images=np.asarray(images),
    )
    return result.plotted(plot_vit, figure_path)


def _display(image):
    image = np.asarray(image, dtype=np.float64)
    image = (image - image.min()) / max(image.max() - image.min(), 1e-12)
    return image.mean(axis=-1) if image.shape[-1] != 3 else image


def similarity_mosaic(similarity, grid_size):
    """Arranges the tiles of `position_embedding_similarity` as the paper's figure: tile (r, c) is row r * gw + c
    reshaped to the grid; tiles are separated by one NaN pixel. Returns a (gh * (gh + 1), gw * (gw + 1)) array."""
    gh, gw = _pair(grid_size)
    similarity = np.asarray(similarity, dtype=np.float64)
    mosaic = np.full((gh * (gh + 1), gw * (gw + 1)), np.nan)
    for r in range(gh):
        for c in range(gw):
            tile = similarity[r * gw + c].reshape(gh, gw)
            mosaic[r * (gh + 1):r * (gh + 1) + gh, c * (gw + 1):c * (gw + 1) + gw] = tile
    return mosaic


def plot_vit(result, path):
    """Writes the rollout maps over their images (top), the position-embedding similarity tiles (bottom left) and
    the mean attention distance per head against depth (bottom right) to `path`; returns `path`."""
    plt = pyplot()
    maps = np.asarray(result.rollout_maps)
    shown = min(len(maps), 4)
    figure = plt.figure(figsize=(2.6 * max(shown, 4), 8))
    grid = figure.add_gridspec(2, 2 * max(shown, 4), height_ratios=(1, 1.6))
    height, width = result.grid_size[0] * result.patch_size[0], result.grid_size[1] * result.patch_size[1]
    for i in range(shown):
        axis = figure.add_subplot(grid[0, 2 * i:2 * i + 2])
        if result.images is not None:
            axis.imshow(_display(result.images[i]), cmap="gray", extent=(0, width, height, 0))
        overlay = maps[i] / max(maps[i].max(), 1e-12)
        axis.imshow(overlay, cmap="inferno", alpha=0.6, extent=(0, width, height, 0), interpolation="bilinear")
        axis.set_title(f"attention rollout {i + 1}", fontsize=9)
        axis.axis("off")
    half = max(shown, 4)
    axis = figure.add_subplot(grid[1, :half])
    picture = axis.imshow(similarity_mosaic(result.position_similarity, result.grid_size), cmap="viridis",
                          vmin=-1, vmax=1)
    axis.set_title("position embedding similarity (Fig. 7 center)", fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
    figure.colorbar(picture, ax=axis, fraction=0.046, label="cosine similarity")
    axis = figure.add_subplot(grid[1, half:])
    distance = np.asarray(result.attention_distance)
    for layer, heads in enumerate(distance):
        axis.scatter(np.full(len(heads), layer), heads, s=18, color="tab:blue")
    axis.axhline(result.uniform_distance, color="gray", linestyle="--", linewidth=1)
    axis.annotate("uniform attention", (0, result.uniform_distance), xytext=(0, 4), textcoords="offset points",
                  fontsize=8, color="gray")
    axis.set_xlabel("network depth (layer)")
    axis.set_ylabel("mean attention distance (pixels)")
    axis.set_ylim(0, result.max_distance)
    axis.set_title("mean attention distance per head (Fig. 7 right)", fontsize=9)
    axis.grid(alpha=0.3)
    title = "ViT: attention rollout, position embeddings, attention distance"
    if result.val_error is not None:
        title += f" (validation error {100 * result.val_error:.1f}%)"
    figure.suptitle(title)
    return save_figure(figure, path)
