"""ViT analyses: attention read block by block, rollout, mean attention distance, position-embedding similarity."""

import keras
import numpy as np
import pytest

from keras_vitres import feature_extractor
from keras_vitres.analysis import (
    attention_rollout,
    encoder_attention,
    max_attention_distance,
    mean_attention_distance,
    position_embedding_similarity,
    rollout_map,
    uniform_attention_distance,
    vit_analysis,
)
from keras_vitres.analysis.vit import patch_distances, similarity_mosaic, token_grid
from tests.analysis.conftest import assert_png
from tests.helpers import tiny_vit


def small_vit(use_class_token=True, input_shape=(16, 24, 3)):
    """A 4x6 grid of 4x4 patches, three blocks."""
    return tiny_vit(patch_size=4, num_layers=3, input_shape=input_shape, use_class_token=use_class_token)


def test_attention_is_read_from_the_blocks_the_model_runs():
    model = small_vit()
    images = np.random.default_rng(0).normal(size=(3, 16, 24, 3)).astype("float32")
    attention = encoder_attention(model, images, batch_size=2)  # two batches, concatenated
    assert attention.shape == (3, 3, 2, 1 + 4 * 6, 1 + 4 * 6)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    assert (attention >= 0).all()
    # Running the blocks one by one gives the model's own last block output, so the weights are the model's.
    last = feature_extractor(model, ["encoder_block_2"]).predict(images, verbose=0)["encoder_block_2"]
    x = keras.Model(model.input, model.get_layer("encoder_block_0").input)(images)
    for i in range(3):
        x = model.get_layer(f"encoder_block_{i}")(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(x), last, atol=1e-5)
    # And the attention of the first block is MultiHeadAttention's on the normalised tokens.
    block = model.get_layer("encoder_block_0")
    tokens = keras.Model(model.input, block.input)(images)
    normed = block.attention_norm(tokens)
    _, scores = block.attention(normed, normed, return_attention_scores=True)
    np.testing.assert_allclose(attention[0], keras.ops.convert_to_numpy(scores), atol=1e-6)


def test_token_grid_of_a_non_square_input():
    assert token_grid(small_vit()) == ((4, 6), (4, 4), 1)
    assert token_grid(small_vit(use_class_token=False)) == ((4, 6), (4, 4), 0)


def test_rollout_rows_sum_to_one_and_the_map_has_the_grid_shape():
    model = small_vit()
    images = np.random.default_rng(1).normal(size=(2, 16, 24, 3)).astype("float32")
    rollout = attention_rollout(encoder_attention(model, images))
    assert rollout.shape == (2, 25, 25)
    np.testing.assert_allclose(rollout.sum(-1), 1.0, atol=1e-9)
    heat = rollout_map(rollout, (4, 6), num_prefix_tokens=1)
    assert heat.shape == (2, 4, 6)
    assert (heat >= 0).all() and (heat.sum(axis=(1, 2)) <= 1 + 1e-9).all()


def test_rollout_is_the_product_of_the_mixed_attention_matrices():
    rng = np.random.default_rng(2)
    raw = rng.random((3, 1, 2, 4, 4))
    attention = raw / raw.sum(-1, keepdims=True)
    mixed = [0.5 * a.mean(axis=1)[0] + 0.5 * np.eye(4) for a in attention]
    expected = mixed[2] @ mixed[1] @ mixed[0]
    np.testing.assert_allclose(attention_rollout(attention)[0], expected, atol=1e-12)
    # No residual mixing and one layer: the rollout is the head-averaged attention itself.
    np.testing.assert_allclose(attention_rollout(attention[:1], residual_weight=0.0)[0], attention[0, 0].mean(0))


def test_rollout_map_without_class_token_averages_the_rows():
    rollout = np.random.default_rng(3).random((1, 4, 4))
    np.testing.assert_allclose(rollout_map(rollout, (2, 2), num_prefix_tokens=0)[0], rollout[0].mean(0).reshape(2, 2))


def _attention_to(targets, tokens, prefix=0):
    """One layer, image and head whose query i puts all its weight on token targets[i]."""
    attention = np.zeros((1, 1, 1, tokens, tokens))
    for i, j in enumerate(targets):
        attention[0, 0, 0, prefix + i, prefix + j] = 1.0
    if prefix:
        attention[0, 0, 0, :prefix, :] = 1.0 / tokens
    return attention


def test_attention_distance_on_constructed_patterns():
    grid, patch = (3, 4), 8
    n = 12
    # Every query attends to itself: distance 0.
    assert mean_attention_distance(_attention_to(range(n), n), grid, patch, 0)[0, 0] == 0.0
    # Every query attends to the patch one row below (the last row to the one above): distance one patch.
    below = [i + 4 if i < 8 else i - 4 for i in range(n)]
    np.testing.assert_allclose(mean_attention_distance(_attention_to(below, n), grid, patch, 0), [[8.0]])
    # Every query attends to the opposite corner of the grid... the corners reach the maximum distance.
    corner = [11 if i == 0 else 0 for i in range(n)]
    distance = np.hypot(2 * 8, 3 * 8)
    assert max_attention_distance(grid, patch) == pytest.approx(distance)
    expected = (distance + sum(np.hypot(8 * (i // 4), 8 * (i % 4)) for i in range(1, n))) / n
    np.testing.assert_allclose(mean_attention_distance(_attention_to(corner, n), grid, patch, 0), [[expected]])
    # Uniform attention: the mean of all pairwise centre distances.
    uniform = np.full((1, 1, 1, n, n), 1.0 / n)
    centres = [(8 * (i // 4), 8 * (i % 4)) for i in range(n)]
    brute = np.mean([np.hypot(a[0] - b[0], a[1] - b[1]) for a in centres for b in centres])
    np.testing.assert_allclose(mean_attention_distance(uniform, grid, patch, 0), [[brute]])
    assert uniform_attention_distance(grid, patch) == pytest.approx(brute)


def test_attention_distance_ignores_the_class_token_and_renormalises():
    n = 4
    attention = np.zeros((1, 1, 1, n + 1, n + 1))
    for i in range(n):  # half on the class token, half on the horizontal neighbour
        attention[0, 0, 0, 1 + i, 0] = 0.5
        attention[0, 0, 0, 1 + i, 1 + (i ^ 1)] = 0.5
    attention[0, 0, 0, 0, :] = 1 / (n + 1)
    np.testing.assert_allclose(mean_attention_distance(attention, (2, 2), (16, 10), 1), [[10.0]])


def test_attention_distance_of_a_model_is_within_bounds():
    model = small_vit()
    images = np.random.default_rng(4).normal(size=(2, 16, 24, 3)).astype("float32")
    distance = mean_attention_distance(encoder_attention(model, images), (4, 6), 4, 1)
    assert distance.shape == (3, 2)
    assert (distance >= 0).all() and (distance <= max_attention_distance((4, 6), 4)).all()


def test_patch_distances_are_euclidean_between_centres():
    d = patch_distances((2, 3), (4, 5))
    assert d.shape == (6, 6)
    assert d[0, 5] == pytest.approx(np.hypot(4, 10))
    np.testing.assert_allclose(d, d.T)


def test_position_embedding_similarity_of_a_model():
    model = small_vit()
    similarity = position_embedding_similarity(model)
    assert similarity.shape == (24, 24)  # the class token is dropped
    np.testing.assert_allclose(np.diag(similarity), 1.0, atol=1e-12)
    np.testing.assert_array_equal(similarity, similarity.T)
    assert (np.abs(similarity) <= 1 + 1e-12).all()
    embedding = keras.ops.convert_to_numpy(model.get_layer("position_embedding").embedding)[0, 1:]
    i, j = 3, 17
    cosine = embedding[i] @ embedding[j] / np.linalg.norm(embedding[i]) / np.linalg.norm(embedding[j])
    assert similarity[i, j] == pytest.approx(cosine, abs=1e-6)  # the reference is computed in float32


def test_position_embedding_similarity_of_a_constructed_embedding():
    angles = np.linspace(0, np.pi, 5)
    embedding = np.stack([np.cos(angles), np.sin(angles)], axis=-1)[None]  # unit vectors at known angles
    similarity = position_embedding_similarity(embedding)
    np.testing.assert_allclose(similarity, np.cos(angles[:, None] - angles[None]), atol=1e-12)
    with pytest.raises(ValueError, match="model_or_embedding"):
        position_embedding_similarity(np.zeros((2, 3, 4, 5)))


def test_similarity_mosaic_places_each_patch_tile():
    similarity = np.arange(36.0).reshape(6, 6)
    mosaic = similarity_mosaic(similarity, (2, 3))
    assert mosaic.shape == (2 * 3, 3 * 4)
    np.testing.assert_array_equal(mosaic[3:5, 4:7], similarity[4].reshape(2, 3))  # patch (1, 1)
    assert np.isnan(mosaic[2]).all()


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="attention"):
        attention_rollout(np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(np.ones((1, 1, 1, 2, 2)) / 2, head_fusion="median")
    with pytest.raises(ValueError, match="residual_weight"):
        attention_rollout(np.ones((1, 1, 1, 2, 2)) / 2, residual_weight=2)
    with pytest.raises(ValueError, match="grid_size"):
        mean_attention_distance(np.ones((1, 1, 1, 5, 5)) / 5, (3, 3), 4, 1)
    with pytest.raises(ValueError, match="TransformerBlock"):
        encoder_attention(keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten()]), np.zeros((1, 4, 4, 3)))


def test_vit_analysis_trains_and_writes_the_figure(tiny_digits, tmp_path):
    from keras_vitres.analysis import TrainingSettings

    settings = TrainingSettings(epochs=1, learning_rate=1e-3, optimizer="adam")
    result = vit_analysis(data=tiny_digits, settings=settings, figure_path=tmp_path / "vit.png", num_images=2,
                          patch_size=4, hidden_dim=16, num_layers=2, num_heads=2, mlp_dim=32)
    assert result.grid_size == (4, 4) and result.patch_size == (4, 4)
    assert np.asarray(result.rollout_maps).shape == (2, 4, 4)
    assert np.asarray(result.attention_distance).shape == (2, 2)
    assert np.asarray(result.position_similarity).shape == (16, 16)
    assert 0.0 <= result.val_error <= 1.0
    assert_png(result.figure)
    assert "images" not in result.to_dict()


def test_vit_analysis_of_a_given_model_checks_the_image_size():
    model = small_vit()
    images = np.random.default_rng(5).normal(size=(2, 16, 24, 3)).astype("float32")
    result = vit_analysis(model, images=images)
    assert result.val_error is None and result.grid_size == (4, 6)
    assert np.asarray(result.rollout_maps).shape == (2, 4, 6)
    with pytest.raises(ValueError, match=r"\(N, 16, 24, 3\)"):
        vit_analysis(model, images=np.zeros((1, 32, 32, 3), "float32"))
