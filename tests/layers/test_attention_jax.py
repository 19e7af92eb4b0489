"""Attention on JAX: cuDNN's fused kernel for any token count, chosen up front (no error logged), exact padding.

No GPU is needed: the tests force the GPU decision (the hardware probes answer as an Ampere-or-newer GPU with cuDNN
would) and stand in for cuDNN with a wrapper of `jax.nn.dot_product_attention` that refuses odd lengths, as JAX's
cuDNN rule does in training, and otherwise computes the same padded problem with XLA.
"""

import logging

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.backend_agnostic
if keras.backend.backend() != "jax":
    pytest.skip("the fused-attention branch is JAX's; CI runs these in its JAX step", allow_module_level=True)
jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

from keras_vitres.benchmark.memory import kept_tensors  # noqa: E402
from keras_vitres.layers import ViTMultiHeadAttention  # noqa: E402
from keras_vitres.layers import attention as attention_module  # noqa: E402
from keras_vitres.models.vit import VisionTransformer  # noqa: E402
from tests.helpers import assert_close, assert_within_rounding  # noqa: E402

REAL_ATTENTION = jax.nn.dot_product_attention


@pytest.fixture
def gpu_decision(monkeypatch):
    """Every check that decides for cuDNN answers yes, ours and Keras' own (so today's code would try cuDNN too);
    `implementation="cudnn"` refuses odd lengths as JAX's cuDNN rule does in training, else runs XLA. Returns the
    list of calls (shapes, lengths, implementation)."""
    calls = []

    def fake_attention(query, key, value, *args, implementation=None, **kwargs):
        calls.append(dict(shapes=(query.shape, key.shape, value.shape), implementation=implementation,
                          query_seq_lengths=kwargs.get("query_seq_lengths"),
                          key_value_seq_lengths=kwargs.get("key_value_seq_lengths")))  # fmt: skip
        if implementation == "cudnn":
            if query.shape[1] % 2 or key.shape[1] % 2:
                raise NotImplementedError(f"Unsupported sequence length Q {query.shape[1]}, KV {key.shape[1]}.")
            implementation = "xla"
        return REAL_ATTENTION(query, key, value, *args, implementation=implementation, **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", fake_attention)
    monkeypatch.setattr(attention_module, "_cudnn_takes", lambda dtype, head_dim: True)
    monkeypatch.setattr("keras.src.backend.jax.nn._can_use_flash_attention", lambda *args, **kwargs: True)
    return calls


def _tiny_vit():
    # 8x8 images in 4x4 patches: 4 patches + the class token = 5 tokens, an odd count like ViT-B/16's 197
    return VisionTransformer(patch_size=4, hidden_dim=16, num_layers=2, num_heads=2, mlp_dim=32,
                             input_shape=(8, 8, 3), classes=3, classifier_activation=None)  # fmt: skip


def test_fitting_a_vit_on_the_gpu_path_logs_no_error(gpu_decision, caplog):
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = _tiny_vit()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((4, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 4)
    with caplog.at_level(logging.WARNING):
        history = model.fit(images, labels, batch_size=2, epochs=1, verbose=0)
        model.predict(images, verbose=0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert np.isfinite(history.history["loss"][0])
    assert {call["implementation"] for call in gpu_decision} == {"cudnn"}  # the fused kernel, every layer


def test_the_fused_call_gets_even_lengths_and_the_true_ones(gpu_decision):
    keras.config.set_dtype_policy("mixed_bfloat16")
    layer = ViTMultiHeadAttention(num_heads=2, key_dim=8)
    x = np.random.default_rng(1).standard_normal((3, 5, 16)).astype("float32")
    y = layer(x, x)
    [call] = gpu_decision
    assert call["implementation"] == "cudnn"
    assert call["shapes"] == ((3, 6, 2, 8),) * 3
    np.testing.assert_array_equal(call["query_seq_lengths"], [5, 5, 5])
    np.testing.assert_array_equal(call["key_value_seq_lengths"], [5, 5, 5])
    assert tuple(y.shape) == (3, 5, 16)


@pytest.mark.parametrize("tokens,sources", [(5, 5), (7, 4), (6, 6)])
def test_the_padded_computation_equals_the_unpadded_one(tokens, sources):
    rng = np.random.default_rng(2)
    query = jnp.asarray(rng.standard_normal((2, tokens, 3, 8)), "float32")
    key, value = (jnp.asarray(rng.standard_normal((2, sources, 3, 8)), "float32") for _ in range(2))
    cotangent = jnp.asarray(rng.standard_normal((2, tokens, 3, 8)), "float32")

    def padded(q, k, v):
        return attention_module.padded_attention(q, k, v, 0.3, implementation="xla")

    def unpadded(q, k, v):
        return REAL_ATTENTION(q, k, v, scale=0.3, implementation="xla")

    for_padded, for_unpadded = (jax.vjp(f, query, key, value) for f in (padded, unpadded))
    # Padding adds masked keys, whose exp is 0: the same sums of 5-7 terms, in another order (measured 0.7 ulps).
    assert_close(for_padded[0], for_unpadded[0], 16, name="output")
    for name, a, b in zip("qkv", for_padded[1](cotangent), for_unpadded[1](cotangent)):
        assert_close(a, b, 16, name=f"{name} gradient")


def test_the_layer_on_the_fused_path_has_the_unpadded_gradients(gpu_decision, monkeypatch):
    """The whole layer in float32 (cuDNN's dtypes forced to include it, cuDNN stood in for by XLA on the padded
    problem) against the same layer on XLA's unpadded attention: outputs and the gradients of every kernel and bias."""
    layer = ViTMultiHeadAttention(num_heads=2, key_dim=8)
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 5, 16)), "float32")
    layer.build(x.shape, x.shape)

    def output_and_grads():
        def loss(trainable):
            y, _ = layer.stateless_call(trainable, [], x, x)
            return jnp.sum(y * jnp.sin(y)), y

        return jax.grad(loss, has_aux=True)([v.value for v in layer.trainable_variables])

    unpadded_grads, unpadded_y = output_and_grads()
    assert gpu_decision == [] or all(c["implementation"] == "xla" for c in gpu_decision)  # float32: not cuDNN
    monkeypatch.setattr(attention_module, "CUDNN_DTYPES", ("float32",))
    padded_grads, padded_y = output_and_grads()
    assert gpu_decision[-1]["implementation"] == "cudnn" and gpu_decision[-1]["shapes"][0] == (2, 6, 2, 8)
    # As above, through the projections as well (measured 0.4 ulps).
    assert_close(padded_y, unpadded_y, 16, name="layer output")
    assert len(padded_grads) == 8  # query, key, value and output projections: kernel and bias each
    for a, b in zip(padded_grads, unpadded_grads):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["mask", "scores", "float32", "head_dim", "no_gpu"])
def test_where_cudnn_cannot_apply_xla_is_chosen_up_front(gpu_decision, monkeypatch, caplog, case):
    keras.config.set_dtype_policy("float32" if case == "float32" else "mixed_bfloat16")
    layer = ViTMultiHeadAttention(num_heads=2, key_dim=12 if case == "head_dim" else 8)
    if case == "no_gpu":
        monkeypatch.setattr(attention_module, "_cudnn_takes", lambda dtype, head_dim: False)
    x = np.random.default_rng(4).standard_normal((2, 5, 16)).astype("float32")
    kwargs = dict(attention_mask=np.tril(np.ones((2, 5, 5), bool))) if case == "mask" else {}
    with caplog.at_level(logging.WARNING):
        layer(x, x, return_attention_scores=case == "scores", **kwargs)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert all(call["implementation"] == "xla" for call in gpu_decision)  # never cuDNN, so nothing raised


def test_the_fused_path_keeps_no_attention_matrix_for_the_backward_pass(monkeypatch):
    """What the training step keeps for its backward pass (`keras_vitres.benchmark.memory.kept_tensors`, traced on
    abstract shapes, nothing executed), on the fused path and on XLA's.

    The fused path here is JAX's real cuDNN attention (its `custom_vjp`, whose forward rule decides what the backward
    pass keeps), not a stand-in: only the hardware probes are patched, ours and JAX's (cuDNN version, compute
    capability), so that JAX traces the cuDNN rule on a CPU. Tracing needs no GPU; running would. What this shows is
    what the rule keeps (query, key, value, the output and the softmax statistics, one value per row), which is what
    the GPU's memory holds across the step; the peak memory on a GPU itself remains to be measured there.
    """
    from jax._src.cudnn import fused_attention_stablehlo as cudnn_rules

    keras.config.set_dtype_policy("mixed_bfloat16")
    batch, heads, tokens = 2, 2, 5

    def attention_matrices():
        keras.utils.set_random_seed(0)
        kept = kept_tensors(_tiny_vit(), batch)
        assert kept  # the count itself works
        # (batch, heads, T, T) in whatever grouping of the leading axes (JAX's XLA path: (1, batch, heads, T, T))
        return [a.shape for a in kept if len(a.shape) >= 4 and int(np.prod(a.shape[:-2])) == batch * heads
                and set(a.shape[-2:]) <= {tokens, tokens + 1}]  # fmt: skip

    assert len(attention_matrices()) >= 2  # XLA's attention keeps each layer's (T x T) probabilities (and logits)
    monkeypatch.setattr(attention_module, "_cudnn_takes", lambda dtype, head_dim: True)
    monkeypatch.setattr(cudnn_rules, "check_cudnn_version", lambda: 91000)
    monkeypatch.setattr(cudnn_rules, "check_compute_capability", lambda capability: True)
    monkeypatch.setattr(cudnn_rules, "is_cuda_compute_capability_equal", lambda capability: False)
    assert attention_matrices() == []


def test_the_cudnn_probe_answers_what_jax_rules_answer(monkeypatch):
    """`_cudnn_takes` asks JAX itself (its cuDNN call traced on abstract tensors): with JAX's hardware probes
    answering as a Hopper GPU with cuDNN 9.10, heads up to 256 wide, a multiple of 8; as an Ampere GPU, up to 128;
    before Ampere, or without cuDNN, none."""
    from jax._src.cudnn import fused_attention_stablehlo as cudnn_rules

    class GPU:
        compute_capability = "9.0"

    def no_cudnn():
        raise RuntimeError("cuDNN is not detected.")

    probe = attention_module._cudnn_takes.__wrapped__  # not the cached answer of this process's CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax, "devices", lambda *args: [GPU()])
    monkeypatch.setattr(cudnn_rules, "check_cudnn_version", lambda: 91000)
    monkeypatch.setattr(cudnn_rules, "is_cuda_compute_capability_equal", lambda capability: False)
    monkeypatch.setattr(cudnn_rules, "check_compute_capability",
                        lambda capability: GPU.compute_capability >= capability)  # fmt: skip
    assert probe("bfloat16", 256) and probe("float16", 64) and not probe("bfloat16", 264)
    GPU.compute_capability = "8.0"
    assert probe("bfloat16", 128) and not probe("bfloat16", 256)
    GPU.compute_capability = "7.5"
    assert not probe("bfloat16", 64)
    GPU.compute_capability = "9.0"
    monkeypatch.setattr(cudnn_rules, "check_cudnn_version", no_cudnn)
    assert not probe("bfloat16", 64)


def test_float16_attention_compiles_on_the_cpu():
    """XLA's CPU backend refuses the float16 attention of `jax.nn.dot_product_attention` (float32 accumulation), and
    Keras' layer with it; the matmul core takes float16 there: a compiled call equals the float32 layer's on the same
    rounded weights within float16 rounding (8 roundings, as the bfloat16 budget of test_layers counts them)."""
    x = np.random.default_rng(5).standard_normal((2, 5, 16)).astype("float32")
    ours, reference = ViTMultiHeadAttention(2, 8, dtype="mixed_float16"), ViTMultiHeadAttention(2, 8)
    for layer in (ours, reference):
        layer.build(x.shape, x.shape)
    reference.set_weights(ours.get_weights())
    inputs = keras.Input((5, 16))
    compiled = keras.Model(inputs, ours(inputs, inputs))
    with pytest.raises(ValueError, match="F16_F16_F32"):
        theirs = keras.layers.MultiHeadAttention(2, 8, dtype="mixed_float16")
        keras.Model(inputs, theirs(inputs, inputs)).predict_on_batch(x)
    actual = compiled.predict_on_batch(x)
    assert actual.dtype == np.float16
    assert_within_rounding(actual, reference(x, x), "float16", roundings=8)
