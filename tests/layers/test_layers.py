"""Every layer: Keras' own layer harness, output specs under every policy, a training step, .keras round trip, and
numerics against NumPy."""

import inspect
import math

import keras
import numpy as np
import pytest
from keras.src import testing  # Keras' own layer harness (not public API; keras-hub's layer tests use it too)

from keras_vitres.data.augment import ExactAreaCutMix
from keras_vitres.layers import (
    AddPositionEmbedding,
    BasicBlock,
    BottleneckBlock,
    ClassToken,
    DropPath,
    FusedBatchNormalization,
    GroupNormBottleneck,
    ImagePreprocessing,
    PatchEmbedding,
    Shortcut,
    StandardizedConv2D,
    TokenPooling,
    TransformerBlock,
    ViTMultiHeadAttention,
    gelu,
    resample_position_embedding,
)
from tests import reference
from tests.helpers import (
    UNIT_ROUNDOFF,
    assert_close,
    assert_trains_and_saves,
    assert_within_rounding,
)

pytestmark = pytest.mark.backend_agnostic

# Every public layer (and data.augment's ExactAreaCutMix) with the smallest valid arguments: (class, arguments, input
# shape, output shape, trainable weights, non-trainable weights, seed generators). The shortcut is a projection here
# and zero-pads inside the basic block; the other variants save and train inside the models (tests/models).
LAYER_CASES = {
    "patch_embedding": (PatchEmbedding, dict(patch_size=4, hidden_dim=8), (2, 8, 12, 3), (2, 6, 8), 2, 0, 0),
    "class_token": (ClassToken, {}, (2, 5, 8), (2, 6, 8), 1, 0, 0),
    "position_embedding": (AddPositionEmbedding, dict(grid_size=(2, 3)), (2, 7, 8), (2, 7, 8), 1, 0, 0),
    "token_pooling": (TokenPooling, dict(mode="avg"), (2, 5, 8), (2, 8), 0, 0, 0),
    "drop_path": (DropPath, dict(rate=0.5, seed=1), (2, 5, 8), (2, 5, 8), 0, 0, 1),
    # 2 layer norms x (gamma, beta), query/key/value/output x (kernel, bias), 2 MLP layers x (kernel, bias); the
    # drop path's seed generator (dropouts of rate 0 have none)
    "transformer_block": (TransformerBlock, dict(num_heads=2, hidden_dim=8, mlp_dim=16), (2, 5, 8), (2, 5, 8), 16, 0, 1),
    "attention": (ViTMultiHeadAttention, dict(num_heads=2, key_dim=4),
                  {"query_shape": (2, 5, 8), "value_shape": (2, 5, 8)}, (2, 5, 8), 8, 0, 0),
    "batch_norm": (FusedBatchNormalization, {}, (2, 6, 6, 8), (2, 6, 6, 8), 2, 2, 0),
    "shortcut_projection": (Shortcut, dict(filters=16, strides=2), (2, 8, 8, 8), (2, 4, 4, 16), 3, 2, 0),
    "basic_block": (BasicBlock, dict(filters=8, strides=2, shortcut="A"), (2, 8, 8, 4), (2, 4, 4, 8), 6, 4, 0),
    # three convolutions and their BNs, and the projection shortcut's convolution and BN
    "bottleneck_block": (BottleneckBlock, dict(filters=4, strides=2, version="v1.5"), (2, 8, 8, 8), (2, 4, 4, 16),
                         12, 8, 0),
    "image_preprocessing": (ImagePreprocessing, dict(scale=1 / 127.5, offset=-1.0), (2, 6, 6, 3), (2, 6, 6, 3), 0, 0, 0),
    "standardized_conv": (StandardizedConv2D, dict(filters=4, kernel_size=3), (2, 6, 6, 3), (2, 4, 4, 4), 2, 0, 0),
    # three group norms x (gamma, beta), three convolutions and the projection shortcut's
    "bit_block": (GroupNormBottleneck, dict(filters=8, strides=2, groups=4), (2, 8, 8, 16), (2, 4, 4, 32), 10, 0, 0),
    "cutmix": (ExactAreaCutMix, dict(seed=1), (2, 6, 6, 3), (2, 6, 6, 3), 0, 0, 1),
}
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16", "bfloat16")


class _KerasHarness(testing.TestCase):
    """Keras' `TestCase`, whose `run_layer_test` Keras' and keras-hub's layer tests call, used outside unittest."""

    __test__ = False  # not a test class of its own for pytest

    def runTest(self):  # unittest needs a test method to instantiate the class
        pass


@pytest.mark.parametrize("case", LAYER_CASES)
def test_layer_passes_keras_harness_trains_and_saves(case, tmp_path):
    """Keras' `run_layer_test`: config and serialisation round trips, the weight and seed-generator counts, the
    output shape of a symbolic and an eager call, a compiled training step, and under mixed_float16 the dtype of
    `compute_output_spec` against the call's and float32 variables. Then what it does not check: a training step
    through a model moves the layer's weights, and the trained model's .keras file reloads under safe mode to the
    same outputs. Keras' harness takes no training step for a multi-input layer (the attention): the second part
    takes one through (query, value)."""
    if case == "cutmix" and keras.backend.backend() != "tensorflow":
        pytest.skip("the package applies CutMix in tf.data pipelines, where Keras runs it on TensorFlow")
    layer_class, arguments, input_shape, output_shape, trainable, non_trainable, seeds = LAYER_CASES[case]
    multi_input = isinstance(input_shape, dict)
    _KerasHarness().run_layer_test(
        layer_class, arguments, input_shape=input_shape, expected_output_shape=output_shape,
        expected_num_trainable_weights=trainable, expected_num_non_trainable_weights=non_trainable,
        expected_num_seed_generators=seeds, expected_num_losses=0, run_training_check=not multi_input,
    )  # fmt: skip
    if case == "cutmix" or keras.backend.backend() != "tensorflow":
        # CutMix is an augmentation layer without weights. On JAX the models' round trips and training steps
        # (tests/models/test_builders.py) cover what follows, which would double this test's time in CI's JAX step.
        return
    shape = (input_shape["query_shape"] if multi_input else input_shape)[1:]
    assert_trains_and_saves(layer_class(**arguments, name=case), shape, tmp_path,
                            call=(lambda layer, x: layer(x, x)) if multi_input else None)  # fmt: skip


def _inputs(input_shape):
    """Seeded float32 inputs (a list for the attention's query and value) and their float32 specs."""
    shapes = list(input_shape.values()) if isinstance(input_shape, dict) else [input_shape]
    rng = np.random.default_rng(0)
    return ([rng.uniform(0, 3, shape).astype("float32") for shape in shapes],
            [keras.KerasTensor(shape, "float32") for shape in shapes])  # fmt: skip


def _signature(outputs):
    return [(keras.backend.standardize_dtype(t.dtype), tuple(t.shape)) for t in keras.tree.flatten(outputs)]


# JAX compiles each eager operation on its own, and its CPU backend takes seconds for each bfloat16 convolution: the
# bfloat16 policies run on TensorFlow (the dtype rules checked are the layers' own; the models run them on JAX too).
SPEC_POLICIES = [pytest.param(policy, marks=pytest.mark.skipif(
    "bfloat16" in policy and keras.backend.backend() == "jax", reason="bfloat16 on TensorFlow only (see above)"))
    for policy in POLICIES]


@pytest.mark.parametrize("policy", SPEC_POLICIES)
def test_output_spec_is_what_the_call_returns(policy):
    """For every layer under every policy, `compute_output_spec` of float32 specs (what a caller holding float32
    tensors asks; Keras' harness asks with specs already in the compute dtype) and a symbolic call give the dtype and
    shape that an eager call on float32 inputs returns, attention scores included."""
    for case, (layer_class, arguments, input_shape, *_) in LAYER_CASES.items():
        if case == "cutmix" and "bfloat16" in policy and keras.backend.backend() == "tensorflow":
            # Keras' own CutMix fails the same way (keras.random.beta in bfloat16 on TensorFlow); the data pipeline
            # keeps its augmentation layers float32 (training.factories.dtype_policy).
            with pytest.raises(ValueError, match="requested dtype float32 for Tensor with dtype bfloat16"):
                ExactAreaCutMix(**arguments, dtype=policy)(_inputs(input_shape)[0][0], training=True)
            continue
        layer = layer_class(**arguments, dtype=policy)
        values, specs = _inputs(input_shape)
        variants = [{}]
        if "return_attention_scores" in inspect.signature(layer.call).parameters:
            variants.append(dict(return_attention_scores=True))
        for kwargs in variants:
            called = _signature(layer(*values, **kwargs))
            assert _signature(layer.compute_output_spec(*specs, **kwargs)) == called, (case, kwargs)
            fresh = layer_class(**arguments, dtype=policy)
            assert _signature(fresh(*specs, **kwargs)) == called, (case, kwargs)


def test_every_public_layer_is_covered():
    import keras_vitres.layers as layers

    covered = {case[0] for case in LAYER_CASES.values()}
    public = {getattr(layers, name) for name in layers.__all__
              if isinstance(getattr(layers, name), type) and issubclass(getattr(layers, name), keras.layers.Layer)}
    assert public <= covered, f"layers without a harness test: {public - covered}"


@pytest.mark.parametrize("option, strides, channels, mode, params", [
    ("A", 1, 16, "identity", 0), ("A", 2, 8, "zero_pad", 0), ("B", 1, 16, "identity", 0),
    ("B", 2, 8, "projection", 8 * 16 + 4 * 16), ("C", 1, 16, "projection", 16 * 16 + 4 * 16),
])  # fmt: skip
def test_shortcut_options_follow_the_paper(option, strides, channels, mode, params):
    layer = Shortcut(16, strides=strides, option=option)
    layer.build((None, 8, 8, channels))
    assert layer.mode == mode
    assert layer.count_params() == params


def test_option_a_subsamples_and_zero_pads():
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 4)).astype("float32")
    y = keras.ops.convert_to_numpy(Shortcut(8, strides=2, option="A")(x))
    np.testing.assert_array_equal(y[..., 2:6], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., :2], 0)
    np.testing.assert_array_equal(y[..., 6:], 0)


@pytest.mark.parametrize("strides, size", [(1, 6), (2, 6), (2, 7)])
def test_basic_block_matches_numpy_with_symmetric_padding(strides, size):
    """Strided 3x3 convs pad one pixel on every side (PyTorch's convention), also for even inputs."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, size, size, 4)).astype("float32")
    block = BasicBlock(8, strides=strides, shortcut="B")
    block(x)
    for weight in block.weights:  # random BN statistics, so inference-mode BN is checked too
        if "moving_variance" in weight.path:
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype("float32"))
        elif "moving_mean" in weight.path or "gamma" in weight.path or "beta" in weight.path:
            weight.assign(rng.standard_normal(weight.shape).astype("float32"))
    w = {wt.path.split("/", 1)[1]: keras.ops.convert_to_numpy(wt).astype("float64") for wt in block.weights}

    def bn(v, prefix):
        return reference.batch_norm(
            v, w[f"{prefix}/gamma"], w[f"{prefix}/beta"], w[f"{prefix}/moving_mean"], w[f"{prefix}/moving_variance"], 1e-5
        )

    y = np.maximum(bn(reference.conv2d(x, w["conv1/kernel"], stride=strides, padding=1), "bn1"), 0)
    y = bn(reference.conv2d(y, w["conv2/kernel"], padding=1), "bn2")
    if "shortcut/conv/kernel" in w:
        short = bn(reference.conv2d(x, w["shortcut/conv/kernel"], stride=strides), "shortcut/bn")
    else:
        short = x
    expected = np.maximum(y + short, 0)
    actual = keras.ops.convert_to_numpy(block(x, training=False))
    # Two 3x3 convolutions over 4-8 channels (36-72 products each) and two normalisations against float64 (1.4).
    assert_close(actual, expected, 64, name="basic block")


def _randomize_block(block, rng):
    """Random kernels and BN statistics, so inference-mode BN is checked too; returns the weights by path."""
    for weight in block.weights:
        if "moving_variance" in weight.path:
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype("float32"))
        else:
            weight.assign(rng.standard_normal(weight.shape).astype("float32") * 0.5)
    return {wt.path.split("/", 1)[1]: keras.ops.convert_to_numpy(wt).astype("float64") for wt in block.weights}


@pytest.mark.parametrize("use_bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("version, strides_1x1, strides_3x3", [("v1", 2, 1), ("v1.5", 1, 2)])
def test_bottleneck_matches_numpy_with_the_stride_where_its_version_puts_it(version, strides_1x1, strides_3x3,
                                                                             use_bias):
    """v1 strides the first 1x1 convolution (the paper), v1.5 the 3x3 one (torchvision); odd batch, even map.
    With conv biases (the keras.applications layout) the inference path folds them into the BN kernel."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 8, 8, 16)).astype("float32")
    block = BottleneckBlock(4, strides=2, version=version, use_bias=use_bias)
    block(x)
    w = _randomize_block(block, rng)

    def bn(v, prefix):
        return reference.batch_norm(
            v, w[f"{prefix}/gamma"], w[f"{prefix}/beta"], w[f"{prefix}/moving_mean"], w[f"{prefix}/moving_variance"], 1e-5
        )

    def conv(v, name, **kwargs):
        return reference.conv2d(v, w[f"{name}/kernel"], w.get(f"{name}/bias"), **kwargs)

    y = np.maximum(bn(conv(x, "conv1", stride=strides_1x1), "bn1"), 0)
    y = np.maximum(bn(conv(y, "conv2", stride=strides_3x3, padding=1), "bn2"), 0)
    y = bn(conv(y, "conv3"), "bn3")
    short = bn(conv(x, "shortcut/conv", stride=2), "shortcut/bn")
    actual = keras.ops.convert_to_numpy(block(x, training=False))
    assert actual.shape == block.compute_output_shape(x.shape) == (3, 4, 4, 16)
    # Three convolutions of up to 36 products and four normalisations against float64 (measured 1.8 ulps).
    assert_close(actual, np.maximum(y + short, 0), 64, name="bottleneck")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fold is on TensorFlow's fused BN path")
def test_biased_conv_feeds_the_fused_kernel_directly_in_inference():
    """In inference a biased block runs bias-free convolutions straight into FusedBatchNormV3 (which TensorFlow's
    remapper fuses into one oneDNN call); in training the conv adds its bias as usual."""
    import tensorflow as tf

    block = BasicBlock(8, strides=2, shortcut="B", use_bias=True)
    block.build((None, 8, 8, 4))
    for training, folded in ((False, True), (True, False)):
        graph = tf.function(lambda x, t=training: block(x, training=t)).get_concrete_function(
            tf.TensorSpec((None, 8, 8, 4), "float32")
        ).graph
        bn_inputs = [op.inputs[0].op.type for op in graph.get_operations() if op.type == "FusedBatchNormV3"]
        assert len(bn_inputs) == 3
        assert all(t == "Conv2D" for t in bn_inputs) == folded, bn_inputs


def test_biased_block_in_mixed_bfloat16_inference_matches_float32():
    """The folded bias path reads the kernel under the block's autocast scope: bfloat16 in, bfloat16 out, and the
    float32 block's output rounded (three convolutions, three normalisations, two ReLUs and the sum: 8 roundings)."""
    x = np.random.default_rng(5).standard_normal((2, 8, 8, 16)).astype("float32")
    block = BottleneckBlock(4, strides=2, use_bias=True)
    expected = block(x, training=False)
    block16 = BottleneckBlock(4, strides=2, use_bias=True, dtype="mixed_bfloat16")
    block16.build(x.shape)
    block16.set_weights(block.get_weights())
    actual = block16(x, training=False)
    assert keras.backend.standardize_dtype(actual.dtype) == "bfloat16"
    assert_within_rounding(actual, expected, "bfloat16", roundings=8)


@pytest.mark.parametrize("make_block", [lambda: Shortcut(8, strides=2, option="B"), lambda: BottleneckBlock(2, 2)])
def test_strided_1x1_projections_train_on_odd_batches(make_block):
    """The gradient of TensorFlow 2.21's oneDNN strided 1x1 "valid" conv corrupts the heap (the interpreter aborts)
    on odd batches of even-sized maps; the layers subsample first, so these training steps must simply run."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((13 * 6, 16, 16, 4)).astype("float32")
    inputs = keras.Input((16, 16, 4))
    outputs = keras.layers.GlobalAveragePooling2D()(make_block()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(outputs))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    history = model.fit(x, rng.standard_normal((len(x), 1)), batch_size=13, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and model.layers[1].output.shape == (None, 8, 8, 8)


@pytest.mark.parametrize("approximate", [False, True])
def test_transformer_block_matches_numpy(approximate):
    """x + MSA(LN(x)), then x + MLP(LN(x)) with GELU (ViT paper eq. 2-3)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    block = TransformerBlock(2, 8, 16, approximate_gelu=approximate)
    block(x)
    for weight in block.weights:
        weight.assign(rng.standard_normal(weight.shape).astype("float32") * 0.3)
    w = {wt.path.split("/", 1)[1]: keras.ops.convert_to_numpy(wt).astype("float64") for wt in block.weights}
    y = reference.layer_norm(x, w["attention_norm/gamma"], w["attention_norm/beta"])
    attention, weights = reference.multi_head_attention(
        y,
        w["attention/query/kernel"], w["attention/query/bias"],
        w["attention/key/kernel"], w["attention/key/bias"],
        w["attention/value/kernel"], w["attention/value/bias"],
        w["attention/attention_output/kernel"], w["attention/attention_output/bias"],
    )  # fmt: skip
    h = x + attention
    y = reference.layer_norm(h, w["mlp_norm/gamma"], w["mlp_norm/beta"])
    y = reference.gelu(y @ w["mlp_dense_1/kernel"] + w["mlp_dense_1/bias"], approximate)
    expected = h + y @ w["mlp_dense_2/kernel"] + w["mlp_dense_2/bias"]
    actual, scores = block(x, return_attention_scores=True)  # Keras' attention core
    # Layer norms, 8-wide attention and a 16-wide MLP, in float32 against float64 (measured 0.6 ulps).
    assert_close(actual, expected, 64, name="block (Keras' core)")
    # A softmax over 5 keys of 8-term products (measured 1.4 ulps).
    assert_close(scores, weights, 32, name="scores")
    assert_close(block(x), expected, 64, name="block (ours)")


def _attention_pair(rng, shape, **kwargs):
    """Ours and Keras' MultiHeadAttention with the same random weights."""
    ours, theirs = ViTMultiHeadAttention(**kwargs), keras.layers.MultiHeadAttention(**kwargs)
    for layer in (ours, theirs):
        layer.build(shape, shape)
    for a, b in zip(ours.weights, theirs.weights):
        assert a.path.split("/", 1)[1] == b.path.split("/", 1)[1]
        value = rng.standard_normal(a.shape).astype("float32") * 0.5
        a.assign(value), b.assign(value)
    return ours, theirs


def _attention_results(layer, x, projection):
    """The layer's output and the gradients of the bounded loss sum(y * projection) with respect to the input and
    every weight (on TensorFlow; the output alone elsewhere). dL/dy is the fixed `projection`, so no factor the size
    of y multiplies y's rounding into the gradients, as sum(y * sin(y)) would (by up to |y|)."""
    if keras.backend.backend() != "tensorflow":
        return {"output": layer(x, x)}
    import tensorflow as tf

    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = layer(inputs, inputs)
        loss = tf.reduce_sum(tf.cast(y, "float32") * projection)
    weights = layer.trainable_weights
    gradients = tape.gradient(loss, [inputs, *(w.value for w in weights)])
    return {"output": y, "input gradient": gradients[0],
            **{f"{w.path} gradient": g for w, g in zip(weights, gradients[1:])}}


def test_attention_core_matches_keras_and_its_gradients():
    """The TensorFlow matmul core computes Keras' attention: outputs and input/weight gradients, float32."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 7, 12)).astype("float32")
    ours, theirs = _attention_pair(rng, x.shape, num_heads=3, key_dim=4)
    projection = rng.standard_normal(x.shape).astype("float32")
    expected = _attention_results(theirs, x, projection)
    for name, value in _attention_results(ours, x, projection).items():
        # The same products in another grouping (matmuls against einsums): measured 0.6 ulps.
        assert_close(value, expected[name.replace(ours.name, theirs.name)], 32, name=name)


# The attention's longest path rounds to bfloat16 about 7 times forward (input, projection, scaled query, logits,
# probabilities, context, output projection) and as often again backward: the budgets of `assert_within_rounding`.
ATTENTION_ROUNDINGS = {"forward": 8, "backward": 16}


def assert_attention_within_bfloat16_rounding(layer, seed=6):
    """`layer` (built here in mixed_bfloat16) against the same layer in float32: the output is bfloat16, every output
    and gradient within the rounding budget, and the softmax computed in float32 (a bfloat16 softmax rounds the
    probabilities before normalising them, which the attention's other roundings would hide from the budget)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 50, 16)).astype("float32")
    projection = rng.standard_normal(x.shape).astype("float32")
    config = {**layer.get_config(), "dtype": "float32"}
    reference = type(layer).from_config(config)
    for each in (layer, reference):
        each.build(x.shape, x.shape)
    for a, b in zip(layer.weights, reference.weights):
        value = rng.standard_normal(a.shape).astype("float32") * 0.5
        a.assign(value), b.assign(value)
    expected = _attention_results(reference, x, projection)
    results = _attention_results(layer, x, projection)
    assert keras.backend.standardize_dtype(results["output"].dtype) == "bfloat16"
    largest = max(np.linalg.norm(keras.ops.convert_to_numpy(g)) for g in expected.values())
    for name, value in results.items():
        # The key bias gets no gradient (softmax ignores a shift shared by all keys): judge what is left of the
        # cancelling terms against the size of the largest gradient.
        scale = largest if name.endswith("key/bias gradient") else None
        roundings = ATTENTION_ROUNDINGS["forward" if name == "output" else "backward"]
        assert_within_rounding(value, expected[name.replace(layer.name, reference.name)], "bfloat16", roundings,
                               scale=scale, name=name)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec(x.shape, "float32")
        graph = tf.function(lambda v: layer(v, v)).get_concrete_function(spec).graph
        softmax_dtypes = {op.inputs[0].dtype.name for op in graph.get_operations() if op.type == "Softmax"}
        assert softmax_dtypes == {"float32"}, f"softmax computed in {softmax_dtypes}"


@pytest.mark.parametrize("make", [ViTMultiHeadAttention, keras.layers.MultiHeadAttention], ids=["ours", "keras"])
def test_attention_in_bfloat16_is_the_float32_attention_rounded(make):
    """Ours and Keras' layer, each judged against its float32 result by the same bfloat16 error budget (comparing
    the two bfloat16 results with each other doubles the error and depends on the CPU's bfloat16 instructions)."""
    assert_attention_within_bfloat16_rounding(make(num_heads=2, key_dim=8, dtype="mixed_bfloat16"))


class _SoftmaxInInputDtype:
    """`keras.ops` with casts to float32 dropped: the attention core's softmax then runs in bfloat16."""

    def __getattr__(self, name):
        return getattr(keras.ops, name)

    @staticmethod
    def cast(x, dtype):
        return x if dtype == "float32" else keras.ops.cast(x, dtype)


@pytest.mark.parametrize("breakage", ["scale", "softmax_in_bfloat16", "float32_output"])
def test_bfloat16_attention_check_fails_for_a_broken_core(breakage, monkeypatch):
    """The check above fails when the layer is broken on purpose: a wrong scale (1/d instead of 1/sqrt(d)), a
    dropped cast (softmax in bfloat16), or a float32 output where the policy asks for bfloat16."""
    from keras_vitres.layers import attention

    layer = ViTMultiHeadAttention(num_heads=2, key_dim=8, dtype="mixed_bfloat16")
    if breakage == "scale":
        def wrong_scale(core):  # 1/d instead of 1/sqrt(d) in the bfloat16 layer, not in its float32 reference
            def broken(query, key, value, scale, **kwargs):
                if keras.backend.standardize_dtype(query.dtype) == "bfloat16":
                    scale = scale / math.sqrt(8)
                return core(query, key, value, scale, **kwargs)

            return broken

        for name in ("matmul_attention", "jax_attention"):
            monkeypatch.setattr(attention, name, wrong_scale(getattr(attention, name)))
    elif breakage == "softmax_in_bfloat16":
        if keras.backend.backend() != "tensorflow":
            pytest.skip("the matmul core, whose softmax this breaks, is TensorFlow's path")
        monkeypatch.setattr(attention, "ops", _SoftmaxInInputDtype())
    else:
        original_call = ViTMultiHeadAttention.call
        monkeypatch.setattr(ViTMultiHeadAttention, "call",
                            lambda self, *a, **k: keras.ops.cast(original_call(self, *a, **k), "float32"))
    with pytest.raises(AssertionError):
        assert_attention_within_bfloat16_rounding(layer)


def test_attention_keeps_keras_path_for_masks_dropout_and_scores():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    mask = np.tril(np.ones((2, 5, 5), bool))
    ours, theirs = _attention_pair(rng, x.shape, num_heads=2, key_dim=4)
    for kwargs in (dict(attention_mask=mask), dict(use_causal_mask=True)):
        # Keras' own path runs (the same kernels): measured 0.
        assert_close(ours(x, x, **kwargs), theirs(x, x, **kwargs), 32, name=str(list(kwargs)))
    y, scores = ours(x, x, return_attention_scores=True)
    assert tuple(scores.shape) == (2, 2, 5, 5)
    assert_close(y, theirs(x, x), 32, name="with scores")
    # With attention dropout, Keras' path (which drops attention weights in training) runs: our core has no dropout.
    dropped = ViTMultiHeadAttention(num_heads=2, key_dim=4, dropout=0.5, seed=0)
    train, infer = (keras.ops.convert_to_numpy(dropped(x, x, training=t)) for t in (True, False))
    assert not np.allclose(train, infer)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the matmul core is TensorFlow's path")
def test_attention_core_is_batched_matmuls_on_tensorflow():
    import tensorflow as tf

    def op_types(layer):
        layer.build((None, 5, 8), (None, 5, 8))
        spec = tf.TensorSpec((None, 5, 8), "float32")
        return [op.type for op in tf.function(lambda v: layer(v, v)).get_concrete_function(spec).graph.get_operations()]

    theirs, ours = op_types(keras.layers.MultiHeadAttention(2, 4)), op_types(ViTMultiHeadAttention(2, 4))
    assert theirs.count("Einsum") == 2 and "Einsum" not in ours  # Keras' core: two einsums (projections: matmuls)
    assert ours.count("BatchMatMulV2") == theirs.count("BatchMatMulV2") + 2 and "Softmax" in ours


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gelu_is_keras_gelu_in_the_input_dtype(dtype):
    """The float32 erf form equals Keras' exact GELU (and the reference); the tanh form is Keras' own.

    In bfloat16, judged against the reference on the same (rounded) inputs: the exact form is computed in float32
    and rounded once, so every value is within one rounding (u) of the reference; the tanh form is computed in
    bfloat16, a few roundings, and for negative x its 1 + tanh(...) cancels, so its error is bounded by the size of
    the cancelling terms (1) rather than by the tiny result. Computing the exact form in bfloat16 fails this.
    """
    x = keras.ops.cast(np.linspace(-6.0, 6.0, 301).astype("float32"), dtype)
    rounded_x = keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")).astype("float64")
    for approximate, roundings, floor in ((False, 1, 0.0), (True, 4, 1.0)):
        y = gelu(x, approximate=approximate)
        assert keras.backend.standardize_dtype(y.dtype) == dtype
        y = keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))
        expected = reference.gelu(rounded_x, approximate)
        if dtype == "float32":
            # One erf (or tanh) in float32: a few ulps (measured 0.9).
            assert_close(y, expected, 8, name=f"gelu approximate={approximate}")
            continue
        # + float32's own error where 0.5 + 0.5 * erf(x / sqrt(2)) cancels for negative x (about |x| * 2**-24)
        budget = roundings * UNIT_ROUNDOFF[dtype] * np.maximum(np.abs(expected), floor) + np.abs(rounded_x) * 2.0**-23
        over = np.abs(y - expected) > budget
        assert not over.any(), f"approximate={approximate}: x={rounded_x[over]} beyond {roundings} rounding(s)"


def test_patch_embedding_projects_each_patch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 8, 12, 3)).astype("float32")
    layer = PatchEmbedding(4, 5)
    tokens = keras.ops.convert_to_numpy(layer(x))
    kernel = keras.ops.convert_to_numpy(layer.projection.kernel)
    bias = keras.ops.convert_to_numpy(layer.projection.bias)
    patch = x[0, 4:8, 8:12, :]  # row 1, column 2 of a 2x3 grid -> token 1 * 3 + 2
    # 48 products summed in float32 against float32 NumPy (measured 1.0 ulp).
    assert_close(tokens[0, 5], np.einsum("ijc,ijcd->d", patch, kernel) + bias, 16, name="patch token")


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    x = np.ones((4000, 3), "float32")
    y = keras.ops.convert_to_numpy(DropPath(0.25, seed=0)(x, training=True))
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert np.all((y == 0).all(axis=1) | (y != 0).all(axis=1))
    assert abs(y.mean() - 1.0) < 0.05  # the seeded mean of 4000 draws: its standard deviation is 0.009
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(DropPath(0.25)(x, training=False)), x)


def test_resample_position_embedding_keeps_prefix_and_interpolates():
    grid = np.arange(4, dtype="float32").reshape(1, 4, 1)  # a linear ramp over a 1x4 grid
    embedding = np.concatenate([np.full((1, 1, 1), 7.0, "float32"), grid], axis=1)
    resized = keras.ops.convert_to_numpy(resample_position_embedding(embedding, (1, 4), (2, 8)))
    assert resized.shape == (1, 1 + 16, 1)
    assert resized[0, 0, 0] == 7.0
    rows = resized[0, 1:, 0].reshape(2, 8)
    np.testing.assert_allclose(rows[0], rows[1])
    assert np.all(np.diff(rows[0]) >= 0) and rows[0, 0] == 0.0 and rows[0, -1] == 3.0
    same = resample_position_embedding(embedding, (1, 4), (1, 4))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(same), embedding)


@pytest.mark.parametrize("make, message", [
    (lambda: TransformerBlock(5, 8, 16), "hidden_dim=8, num_heads=5"),
    (lambda: BasicBlock(8, shortcut="D"), "shortcut='D'"),
    (lambda: BottleneckBlock(8, version="v2"), "version='v2'"),
    (lambda: StandardizedConv2D(4, 3, epsilon_on="var"), "epsilon_on='var'"),
    (lambda: StandardizedConv2D(4, 3, epsilon=-1.0), "epsilon=-1.0"),
    (lambda: GroupNormBottleneck(8, padding="valid"), "padding='valid'"),
    (lambda: GroupNormBottleneck(8, groups=32)(np.zeros((1, 4, 4, 16), "float32")), "groups=32 for 16 channels"),
    (lambda: DropPath(1.5), "rate=1.5"),
    (lambda: AddPositionEmbedding(0), "grid_size=0"),
    (lambda: TokenPooling("cls"), "mode='cls'"),
    (lambda: PatchEmbedding(4, 8)(np.zeros((1, 10, 8, 3), "float32")), "patch_size=4"),
    (lambda: AddPositionEmbedding(2)(np.zeros((1, 6, 8), "float32")), "expects 5 tokens"),
])  # fmt: skip
def test_bad_arguments_name_the_value(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_transformer_block_kernel_initializer_reaches_every_dense_kernel():
    block = TransformerBlock(2, 8, 16, kernel_initializer="zeros")
    block.build((None, 5, 8))
    kernels = [w for w in block.weights if w.path.endswith("kernel")]
    assert len(kernels) == 6  # query, key, value, attention output, two MLP layers
    assert all(not np.any(keras.ops.convert_to_numpy(w)) for w in kernels)
    assert block.get_config()["kernel_initializer"]["class_name"] == "Zeros"
    default = TransformerBlock(2, 8, 16)
    config = default.get_config()
    del config["kernel_initializer"]  # a config saved before the argument existed
    assert TransformerBlock.from_config(config).get_config() == default.get_config()
