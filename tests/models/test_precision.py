"""Every model family under every dtype policy: it builds, predicts and takes a training step (keras-hub's
`run_precision_test`, on whole models), with and without its preprocessing layer and classifier.

What docs/models.md states is asserted, not skipped: under a mixed policy every layer computes in the low precision
and the variables stay float32; under "bfloat16" the variables are bfloat16 too; the classifier computes in float32
(logits and losses are float32) and the preprocessing layer in float32, under every policy.
"""

import keras
import numpy as np
import pytest

from keras_vitres import BiTResNet, HybridViT, ResNet, VisionTransformer
from keras_vitres.layers import find_preprocessing
from keras_vitres.training import resolve_jit_compile

TINY_VIT = dict(hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32, input_shape=(32, 32, 3))
# The smallest model each builder allows on 32x32 inputs, and the preprocessing its weights use.
FAMILIES = {
    "resnet_cifar": (lambda **kw: ResNet(stem="cifar", stage_blocks=(1, 1), stage_filters=(8, 16), **kw), "imagenet"),
    "resnet_imagenet": (lambda **kw: ResNet(stem="imagenet", block="bottleneck", stage_blocks=(1, 1),
                                            stage_filters=(8, 16), input_shape=(32, 32, 3), **kw), "imagenet"),
    "bit": (lambda **kw: BiTResNet(stage_blocks=(1,), input_shape=(32, 32, 3), **kw), "inception"),  # width 64: x1
    "vit": (lambda **kw: VisionTransformer(patch_size=8, **TINY_VIT, **kw), "inception"),
    "hybrid_bit": (lambda **kw: HybridViT(trunk="bit", resnet_stage_blocks=(1,), resnet_stage_filters=(32,),
                                          **TINY_VIT, **kw), "inception"),  # widths: multiples of 32 groups
    "hybrid_batchnorm": (lambda **kw: HybridViT(trunk="batchnorm", resnet_stage_blocks=(1,), resnet_stage_filters=(8,),
                                                **TINY_VIT, **kw), "inception"),
}
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16", "bfloat16")
ON_JAX = keras.backend.backend() == "jax"
# CI's JAX step (about 4 minutes already) runs three combinations, one per kind of trunk (plain, batch-norm and
# group-norm convolutions, attention), one per low precision: each model compiles two XLA programs there, and the first
# model of a policy also compiles its initialisers op by op (seconds each on XLA's CPU backend; 87 s for one
# combination per family). The rest is marked slow on JAX and runs on TensorFlow in the default suite;
# `KERAS_BACKEND=jax pytest -m backend_agnostic tests/models/test_precision.py` runs the whole matrix on JAX.
JAX_STEP = {("vit", "mixed_float16"), ("resnet_cifar", "bfloat16"), ("bit", "mixed_bfloat16")}
MATRIX = [pytest.param(family, policy, marks=[pytest.mark.backend_agnostic]
                       + ([pytest.mark.slow] if ON_JAX and (family, policy) not in JAX_STEP else []))
          for family in FAMILIES for policy in POLICIES]  # fmt: skip


def _applied_training_step(model, x, y):
    """`train_on_batch` (the compiled step of `fit`) until the optimizer applies a step; returns the loss.

    Under mixed_float16 Keras wraps the optimizer in a LossScaleOptimizer, which skips a step whose scaled gradients
    overflow float16 and halves its scale (dynamic loss scaling, starting at 2**15): each skip is asserted as such.
    """
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    for _ in range(8):
        scaler = model.optimizer if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) else None
        scale = None if scaler is None else _loss_scale(scaler)
        loss = model.train_on_batch(x, y)
        assert np.isfinite(loss), f"loss {loss}"
        after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        if any(not np.array_equal(b, a) for b, a in zip(before, after)):
            return loss
        assert scaler is not None, "a training step changed no weight"
        assert _loss_scale(scaler) == scale / 2, "a skipped step kept its scale"
    raise AssertionError("eight steps in a row were skipped")


def _loss_scale(optimizer):
    """A LossScaleOptimizer's current scale (its initial one until its first step builds it)."""
    return float(keras.ops.convert_to_numpy(optimizer.dynamic_scale)) if optimizer.built else optimizer.initial_scale


def _check(model, policy, with_head):
    """The documented dtypes of every layer and variable, then a prediction and an applied training step."""
    policy = keras.DTypePolicy(policy)
    preprocessing = find_preprocessing(model)
    assert (preprocessing is not None) == with_head
    if with_head:
        assert preprocessing.compute_dtype == "float32" and preprocessing.output.dtype == "float32"
        head = model.get_layer("predictions")
        assert head.compute_dtype == "float32" and {w.dtype for w in head.weights} == {"float32"}
    body = [layer for layer in model.layers if layer.name not in ("images", "preprocessing", "predictions")]
    assert {layer.compute_dtype for layer in body} == {policy.compute_dtype}
    assert {w.dtype for layer in body for w in layer.weights} == {policy.variable_dtype}

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255 if with_head else 1, (2, 32, 32, 3)).astype("float32")
    outputs = model.predict_on_batch(x)
    expected_dtype = "float32" if with_head else policy.compute_dtype
    assert keras.backend.standardize_dtype(outputs.dtype) == expected_dtype
    assert np.isfinite(outputs.astype("float32")).all()
    if with_head:
        loss, y = keras.losses.SparseCategoricalCrossentropy(from_logits=True), np.array([0, 1])
    else:
        loss, y = "mse", np.zeros(outputs.shape, "float32")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=resolve_jit_compile())
    _applied_training_step(model, x, y)


@pytest.mark.parametrize("family, policy", MATRIX)
def test_family_builds_predicts_and_trains_under_the_policy(family, policy):
    """With its preprocessing layer and classifier (logits), and without either (the features)."""
    keras.config.set_dtype_policy(policy)
    build, preprocessing = FAMILIES[family]
    _check(build(classes=3, classifier_activation=None, preprocessing=preprocessing), policy, with_head=True)
    _check(build(include_top=False), policy, with_head=False)
