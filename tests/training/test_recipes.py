"""Recipes: the papers' settings, per-preset adjustments, overrides, and what the runner builds from them."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from keras_vitres.layers import Preprocessing
from keras_vitres.training import RECIPES, Recipe, bit_hyperrule, get_recipe, list_recipes
from keras_vitres.training.factories import build_optimizer, build_schedule, build_training_model


def test_the_paper_cifar_recipe():
    # arXiv:1512.03385 §4.2.
    recipe = get_recipe("cifar_resnet")
    assert (recipe.batch_size, recipe.optimizer, recipe.momentum, recipe.learning_rate) == (128, "sgd", 0.9, 0.1)
    assert (recipe.weight_decay, recipe.weight_decay_mode) == (1e-4, "l2")
    assert (recipe.schedule, recipe.decay_boundaries, recipe.decay_factor, recipe.steps) == (
        "step", (32000, 48000), 0.1, 64000)
    assert (recipe.validation_size, recipe.augment, recipe.normalization) == (5000, "cifar", "pixel_mean")
    assert recipe.warmup_until_accuracy is None  # ResNet-20..56 start at 0.1
    schedule = build_schedule(recipe, total_steps=64000, warmup_steps=0)
    rates = [float(schedule(s)) for s in (0, 31999, 32000, 47999, 48000, 63999)]
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


@pytest.mark.parametrize("preset", ["resnet110", "resnet1202"])
def test_deep_cifar_resnets_warm_up_at_001_until_error_below_80_percent(preset):
    recipe = get_recipe("cifar_resnet", preset=preset)
    assert recipe.preset == preset
    assert (recipe.warmup_mode, recipe.warmup_learning_rate, recipe.warmup_until_accuracy) == ("constant", 0.01, 0.2)
    schedule = build_schedule(recipe, total_steps=64000, warmup_steps=recipe.warmup_steps)
    assert schedule.adaptive and float(schedule(0)) == pytest.approx(0.01)
    schedule.release(400)  # "about 400 iterations"
    np.testing.assert_allclose([float(schedule(s)) for s in (399, 400, 32000, 48000)], [0.01, 0.1, 0.01, 0.001],
                               rtol=1e-6)


def test_overrides_beat_preset_adjustments_and_unknown_names_are_refused():
    assert get_recipe("cifar_resnet", preset="resnet110", warmup_learning_rate=0.02).warmup_learning_rate == 0.02
    assert get_recipe("cifar_resnet", batch_size=64).batch_size == 64
    assert get_recipe("cifar_resnet").batch_size == 128  # the registry row is unchanged
    with pytest.raises(ValueError, match="Did you mean 'cifar_resnet'"):
        get_recipe("cifar_resnets")
    with pytest.raises(ValueError, match="did you mean 'learning_rate'"):
        get_recipe("cifar_resnet", learning_rat=0.1)
    assert list_recipes() == sorted(RECIPES) and {"cifar_resnet", "vit_small_data", "digits_resnet"} <= set(RECIPES)


@pytest.mark.parametrize(
    "field, value",
    [("optimizer", "lamb"), ("schedule", "exponential"), ("augment", "autoaugment"), ("batch_size", 0),
     ("label_smoothing", 1.0), ("decay_boundaries", (48000, 32000)), ("warmup_until_accuracy", 1.5),
     ("normalization", "imagenet"), ("model_overrides", {"classes": 5}), ("learning_rate", -0.1)],
)
def test_invalid_fields_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        get_recipe("cifar_resnet", **{field: value})


def test_every_recipe_is_valid_and_serialisable():
    for name, recipe in RECIPES.items():
        assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
        assert recipe.name == name and recipe.description


def test_the_former_name_of_a_field_is_still_read():
    """`normalization` was called `preprocessing`: config.json files written before the rename, and `--set`, work."""
    assert get_recipe("cifar_resnet", preprocessing="rescale").normalization == "rescale"
    row = {**get_recipe("digits_vit").to_dict()}
    row["preprocessing"] = row.pop("normalization")
    assert Recipe.from_dict(row) == get_recipe("digits_vit")


def test_l2_weight_decay_gives_the_paper_sgd_gradient():
    recipe = get_recipe("cifar_resnet", model_overrides={"depth": 8})
    model = build_training_model(recipe, (32, 32), 10, Preprocessing())
    network = model.layers[2]
    kernel = network.get_layer("stem_conv").kernel
    penalty = network.get_layer("stem_conv").kernel_regularizer
    # d/dw of 5e-5 * ||w||^2 is 1e-4 * w: SGD's "weight decay of 0.0001".
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = penalty(kernel.value)
    np.testing.assert_allclose(tape.gradient(value, kernel.value), 1e-4 * kernel.numpy(), rtol=1e-5)
    assert len(model.losses) == sum(1 for w in model.trainable_weights if w.name == "kernel")  # every kernel


def test_l2_mode_needs_a_builder_with_kernel_regularizer_and_adamw_skips_norms():
    with pytest.raises(ValueError, match="weight_decay_mode='decoupled'"):
        build_training_model(get_recipe("vit_small_data", weight_decay_mode="l2",
                                        model_overrides={"patch_size": 8, "num_layers": 1}),
                             (32, 32), 10, Preprocessing())
    recipe = get_recipe("vit_small_data")
    optimizer = build_optimizer(recipe, 1e-3)
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.weight_decay == 0.05
    assert optimizer.global_clipnorm == 1.0
    model = build_training_model(
        dataclasses.replace(recipe, model_overrides={"patch_size": 8, "hidden_dim": 16, "num_layers": 1,
                                                     "num_heads": 2, "mlp_dim": 32}),
        (32, 32), 10, "inception")
    optimizer.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert any(p.endswith("kernel") for p in decayed)
    assert not any(p.endswith(("bias", "gamma", "beta", "token", "embedding")) for p in decayed), decayed


def test_bit_hyperrule():
    """arXiv:1912.11370 §3.3, with the numbers of big_transfer's bit_hyperrule.py: SGD 0.9 at 0.003, batch 512, a
    linear warmup, /10 at 30/60/90% (of 10k or 20k steps), MixUp 0.1 from 20k examples, resolution by image area."""
    recipe = get_recipe("bit_hyperrule")
    assert (recipe.optimizer, recipe.momentum, recipe.learning_rate, recipe.batch_size) == ("sgd", 0.9, 0.003, 512)
    assert (recipe.preset, recipe.dataset, recipe.normalization) == ("bit_r50x1", "cifar10", "rescale")
    assert (recipe.steps, recipe.warmup_steps, recipe.decay_boundaries) == (10_000, 500, (3000, 6000, 9000))
    assert (recipe.mixup_alpha, recipe.image_size, recipe.weight_decay) == (0.1, (128, 128), 0.0)
    schedule = build_schedule(recipe, total_steps=recipe.steps, warmup_steps=recipe.warmup_steps)
    rates = [float(schedule(s)) for s in (0, 250, 500, 2999, 3001, 5999, 6001, 8999, 9001, 9999)]
    np.testing.assert_allclose(rates, [0, 0.0015, 0.003, 0.003, 3e-4, 3e-4, 3e-5, 3e-5, 3e-6, 3e-6], rtol=1e-5,
                               atol=1e-12)  # fmt: skip
    small = get_recipe("bit_hyperrule", **bit_hyperrule(5_000, (224, 224)))
    assert (small.steps, small.warmup_steps, small.decay_boundaries, small.mixup_alpha, small.image_size) == (
        500, 100, (200, 300, 400), 0.0, (480, 480))
    large = bit_hyperrule(1_281_167, (64, 64))
    assert (large["steps"], large["decay_boundaries"], large["mixup_alpha"], large["image_size"]) == (
        20_000, (6000, 12_000, 18_000), 0.1, 128)
    assert bit_hyperrule(20_000, (96, 96))["mixup_alpha"] == 0.1 and bit_hyperrule(20_000, (96, 96))["image_size"] == 480
    model = build_training_model(get_recipe("bit_hyperrule", model_overrides=dict(stage_blocks=(1, 1))), (32, 32),
                                 10, "inception")  # fmt: skip
    assert model.output_shape == (None, 10) and model.get_layer("bit_r50x1").get_layer("stage2_block1")
    with pytest.raises(ValueError, match="dataset_size=0"):
        bit_hyperrule(0, (32, 32))
    with pytest.raises(ValueError, match="image_size=32"):
        bit_hyperrule(100, 32)
