"""FusedBatchNormalization: TensorFlow's fused kernel computes what Keras' layer and the NumPy reference compute."""

import keras
import numpy as np
import pytest

from keras_vitres.layers import FusedBatchNormalization
from tests import reference
from tests.helpers import assert_close, assert_within_rounding

pytestmark = pytest.mark.backend_agnostic

ON_TENSORFLOW = keras.backend.backend() == "tensorflow"


def _pair(shape, rng, **kwargs):
    """Ours and Keras' layer, built for `shape`, with the same random gamma, beta and moving statistics."""
    ours, theirs = FusedBatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    values = dict(
        gamma=rng.normal(1.0, 0.3, shape[-1]), beta=rng.normal(0.0, 0.3, shape[-1]),
        moving_mean=rng.normal(0.0, 1.0, shape[-1]), moving_variance=rng.uniform(0.5, 2.0, shape[-1]),
    )  # fmt: skip
    for layer in (ours, theirs):
        layer.build(shape)
        for name, value in values.items():
            getattr(layer, name).assign(value.astype("float32"))
    return ours, theirs, values


def _train_step(layer, x):
    """Output, gradients of the loss sum(y * p) for a fixed seeded p w.r.t. input, gamma and beta, and the moving
    statistics after (`_TRAIN_STEP_RESULTS`). dL/dy is the fixed p, so no factor of y's size multiplies y's
    rounding into the gradients."""
    stats = [layer.moving_mean, layer.moving_variance]
    if not ON_TENSORFLOW:  # the gradients are checked on TensorFlow, where the fused kernel runs
        y = layer(x, training=True)
        return [keras.ops.convert_to_numpy(v) for v in (y, *stats)]
    import tensorflow as tf

    projection = tf.constant(np.random.default_rng(8).standard_normal(x.shape).astype("float32"))
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, "float32") * projection)
    grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
    return [keras.ops.convert_to_numpy(v) for v in (y, *grads, *stats)]


_TRAIN_STEP_RESULTS = (["output", "input gradient", "gamma gradient", "beta gradient"] if ON_TENSORFLOW
                       else ["output"]) + ["moving mean", "moving variance"]


@pytest.mark.parametrize("shape", [(8, 5, 5, 16), (3, 7, 6, 8), (1, 1, 1, 4)], ids=str)
def test_training_matches_keras_and_numpy(shape):
    """Same normalized output, input/gamma/beta gradients and moving-statistics update as Keras' layer; odd
    batches, odd maps and a single value per channel (whose batch variance is 0) included."""
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, shape).astype("float32")
    ours, theirs, values = _pair(shape, rng, momentum=0.9, epsilon=1e-5)
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    # Keras' layer computes x * inv + (beta - mean * inv), inv = gamma / sqrt(var + eps): where the variance is 0 (one
    # value per channel) inv is about 316 gamma, and its rounding is of the size of the terms that cancel, x * inv.
    scale = np.abs(x * values["gamma"] / np.sqrt(var + 1e-5)).max() + np.abs(values["beta"]).max()
    for name, a, b in zip(_TRAIN_STEP_RESULTS, _train_step(ours, x), _train_step(theirs, x)):
        # Sums over up to 200 values per channel in another order: log2(200) = 8 roundings of the largest term, 4x
        # that (measured 2.5 ulps).
        assert_close(a, b, 32, scale=scale if name == "output" else None, name=name)
    y = keras.ops.convert_to_numpy(ours(x, training=True))
    assert_close(y, reference.batch_norm(x, values["gamma"], values["beta"], mean, var, 1e-5), 32, scale=scale,
                 name="output")  # fmt: skip
    assert_close(ours.moving_variance, (values["moving_variance"] * 0.9 + var * 0.1) * 0.9 + var * 0.1, 16,
                 name="moving variance")  # fmt: skip


def test_inference_uses_the_moving_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 6, 6, 8)).astype("float32")
    ours, theirs, values = _pair(x.shape, rng, epsilon=1.001e-5)
    expected = reference.batch_norm(x, *values.values(), 1.001e-5)
    for layer in (ours, theirs):
        # One affine map per value from the moving statistics (measured 1.5 ulps).
        assert_close(layer(x, training=False), expected, 16, name=layer.name)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours.moving_mean), values["moving_mean"].astype("float32"))


def test_frozen_layer_normalizes_with_moving_statistics_in_training():
    """trainable=False (fine-tuning with frozen BN) keeps inference behaviour and the statistics, as in Keras."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3, 3, 8)).astype("float32")
    ours, _, values = _pair(x.shape, rng)
    ours.trainable = False
    y = keras.ops.convert_to_numpy(ours(x, training=True))
    assert_close(y, reference.batch_norm(x, *values.values(), 1e-3), 16, name="frozen")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours.moving_variance), values["moving_variance"].astype("float32"))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_output_dtype_and_float32_statistics(policy):
    keras.config.set_dtype_policy(policy)
    x = np.random.default_rng(3).normal(1.0, 2.0, (4, 4, 4, 8)).astype("float32")
    layer = FusedBatchNormalization(momentum=0.0)
    y = layer(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == policy.split("_")[1]
    assert keras.backend.standardize_dtype(layer.moving_mean.dtype) == "float32"
    # The statistics are accumulated in float32 from the inputs as rounded to the compute dtype, so they equal the
    # float32 mean of the rounded inputs (not x's own mean, which differs by up to u * max|x|).
    rounded = keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.cast(x, policy.split("_")[1]), "float32"))
    # A float32 mean of 64 values: log2(64) = 6 roundings of the largest (measured 0).
    assert_close(layer.moving_mean, rounded.mean(axis=(0, 1, 2)), 16, scale=np.abs(rounded).max(), name="moving mean")


def test_bfloat16_policy_predicts_trains_and_computes_as_keras_layer():
    """Under the pure "bfloat16" policy the variables are bfloat16, as Keras' layer's, and TensorFlow's fused kernel
    (which takes float32 scale, offset and statistics whatever x's type) gets them as float32: predict and fit run,
    and the outputs, gradients and updated statistics are the float32 layer's on the same rounded inputs and weights,
    within the budget of the roundings on their way (bfloat16 input, the output, dL/dy, the gradient; 4) that Keras'
    own layer meets too."""
    keras.config.set_dtype_policy("bfloat16")
    rng = np.random.default_rng(7)
    x = rng.normal(2.0, 3.0, (4, 5, 5, 8)).astype("float32")
    ours, theirs, _ = _pair(x.shape, rng, momentum=0.9, epsilon=1e-5)
    assert {w.dtype for w in ours.weights} == {w.dtype for w in theirs.weights} == {"bfloat16"}
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype="float32")
    reference.build(x.shape)
    reference.set_weights([w.astype("float32") for w in ours.get_weights()])
    rounded = keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32"))
    expected = _train_step(reference, rounded) + [reference(rounded, training=False)]
    for layer in (ours, theirs):
        results = _train_step(layer, x) + [layer(x, training=False)]
        for name, value, target in zip(_TRAIN_STEP_RESULTS + ["inference output"], results, expected):
            assert_within_rounding(value, target, "bfloat16", roundings=4, name=f"{layer.name} {name}")

    inputs = keras.Input(x.shape[1:])
    features = keras.layers.Flatten()(FusedBatchNormalization(name="bn")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(features))
    assert keras.backend.standardize_dtype(model.predict(x, verbose=0).dtype) == "bfloat16"
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    gamma = keras.ops.convert_to_numpy(model.get_layer("bn").gamma).copy()
    loss = model.fit(x, np.ones((len(x), 1), "float32"), epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss) and not np.array_equal(gamma, keras.ops.convert_to_numpy(model.get_layer("bn").gamma))


@pytest.mark.skipif(not ON_TENSORFLOW, reason="the fused kernel is TensorFlow's")
@pytest.mark.parametrize("fused, training", [(None, True), (None, False), (False, True)])
def test_tensorflow_graph_uses_the_fused_kernel_unless_disabled(fused, training):
    import tensorflow as tf

    layer = FusedBatchNormalization(fused=fused)
    layer.build((None, 4, 4, 8))
    graph = tf.function(lambda x: layer(x, training=training)).get_concrete_function(
        tf.TensorSpec((None, 4, 4, 8), "float32")
    ).graph
    op_types = {op.type for op in graph.get_operations()}
    assert ("FusedBatchNormV3" in op_types) == (fused is None)


def test_other_ranks_use_keras_implementation():
    x = np.random.default_rng(4).normal(size=(6, 5)).astype("float32")
    y = keras.ops.convert_to_numpy(FusedBatchNormalization(epsilon=1e-5)(x, training=True))
    assert_close(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), 16, name="rank 2")


def test_fused_true_where_the_kernel_does_not_apply_names_the_argument():
    with pytest.raises(ValueError, match=r"fused=True.*input_shape=\(None, 5\)"):
        FusedBatchNormalization(fused=True).build((None, 5))
    if not ON_TENSORFLOW:
        with pytest.raises(ValueError, match="backend="):
            FusedBatchNormalization(fused=True).build((None, 4, 4, 8))
    with pytest.raises(ValueError, match="received fused='yes'"):
        FusedBatchNormalization(fused="yes")


def test_config_holds_fused_and_keras_arguments():
    config = FusedBatchNormalization(fused=False, momentum=0.9, epsilon=1e-5).get_config()
    assert config["fused"] is False and config["momentum"] == 0.9 and config["epsilon"] == 1e-5
    assert FusedBatchNormalization.from_config(config).get_config() == config


@pytest.mark.parametrize("training", [False, True])
def test_call_after_bias_is_the_layer_applied_to_the_biased_input(training):
    """The conv-bias fold (inference) and its fallback (training) give Keras' BN of `x + bias`, statistics too."""
    rng = np.random.default_rng(5)
    x = rng.normal(1.0, 2.0, (4, 5, 5, 8)).astype("float32")
    bias = rng.normal(0.0, 1.0, 8).astype("float32")
    ours, theirs, _ = _pair(x.shape, rng, momentum=0.9, epsilon=1e-5)
    assert ours.folds_bias(keras.ops.convert_to_tensor(x), training) == (ON_TENSORFLOW and not training)
    y = ours.call_after_bias(keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(bias), training=training)
    # The bias folded into the kernel's offset: two more roundings (measured 1 ulp).
    assert_close(y, theirs(x + bias, training=training), 16, name="output")
    for name in ("moving_mean", "moving_variance"):
        assert_close(getattr(ours, name), getattr(theirs, name), 16, name=name)


@pytest.mark.skipif(not ON_TENSORFLOW, reason="the fold is on TensorFlow's fused path")
def test_folded_bias_keeps_every_gradient_in_inference_mode():
    """Fine-tuning under `training=False` (the Keras transfer-learning pattern) still trains the conv bias: the fold
    puts it in the kernel's offset, which is differentiable, not in its mean, whose gradient TensorFlow drops."""
    import tensorflow as tf

    rng = np.random.default_rng(6)
    x = tf.constant(rng.normal(1.0, 2.0, (3, 4, 4, 8)).astype("float32"))
    bias = tf.Variable(rng.normal(0.0, 1.0, 8).astype("float32"))
    ours, theirs, _ = _pair(x.shape, rng, epsilon=1e-5)

    def grads(layer, forward):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = forward()
            loss = tf.reduce_sum(y * tf.sin(y))
        return tape.gradient(loss, [x, bias, layer.gamma.value, layer.beta.value])

    folded = grads(ours, lambda: ours.call_after_bias(x, bias, training=False))
    plain = grads(theirs, lambda: theirs(x + bias, training=False))
    for name, a, b in zip(("input", "bias", "gamma", "beta"), folded, plain):
        assert a is not None
        # Gradients summed over 48 values per channel (measured 3.4 ulps).
        assert_close(a, b, 32, name=f"{name} gradient")
