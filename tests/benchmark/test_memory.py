"""What a training step keeps for its backward pass, with and without rematerialisation (JAX's autodiff, traced)."""

import math
import os
import subprocess
import sys

import keras
import pytest

from keras_vitres.benchmark.memory import compiled_step_memory, saved_activations
from keras_vitres.layers.remat import remat_saves_memory
from keras_vitres.models.resnet import ResNet
from tests.helpers import tiny_vit

ON_JAX = keras.backend.backend() == "jax"
needs_jax = pytest.mark.skipif(not ON_JAX, reason="traces the step with JAX; CI runs it in its JAX step")
FLOAT32 = 4
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cifar_resnet(depth, remat):
    return ResNet(depth, stem="cifar", remat=remat, classifier_activation=None)


def _vit(num_layers, remat):
    return tiny_vit(num_layers=num_layers, dropout_rate=0.1, remat=remat)  # 32x32, patch 8: 16 tokens of 32


@pytest.mark.backend_agnostic
@needs_jax
def test_a_rematerialised_residual_block_keeps_only_its_input():
    # ResNet-14 has one more basic block per stage than ResNet-8; with remat each keeps its input and nothing else.
    batch = 4
    block_inputs = batch * FLOAT32 * (32 * 32 * 16 + 16 * 16 * 32 + 8 * 8 * 64)
    remat_8, remat_14 = (saved_activations(_cifar_resnet(depth, True), batch) for depth in (8, 14))
    assert remat_14.bytes - remat_8.bytes == block_inputs
    assert remat_14.tensors - remat_8.tensors == 3
    plain_8, plain_14 = (saved_activations(_cifar_resnet(depth, False), batch) for depth in (8, 14))
    assert plain_14.bytes - plain_8.bytes > 5 * block_inputs  # convolution inputs, BatchNorm and ReLU intermediates
    assert remat_8.bytes < plain_8.bytes / 3


@pytest.mark.backend_agnostic
@needs_jax
def test_a_rematerialised_encoder_block_keeps_its_input_and_dropout_seed():
    batch, tokens, width = 4, 16 + 1, 32
    one, two = saved_activations(_vit(1, True), batch), saved_activations(_vit(2, True), batch)
    seed = 2 * 4  # the block's dropout seed state, two uint32: the recomputation draws the same masks from it
    assert two.bytes - one.bytes == batch * tokens * width * FLOAT32 + seed
    assert two.tensors - one.tensors == 2
    plain_one, plain_two = saved_activations(_vit(1, False), batch), saved_activations(_vit(2, False), batch)
    assert plain_two.bytes - plain_one.bytes > 20 * (two.bytes - one.bytes)  # attention maps, MLP activations, ...


@pytest.mark.backend_agnostic
@needs_jax
def test_compiled_step_memory_counts_the_weights_as_arguments():
    model = _cifar_resnet(8, False)
    memory = compiled_step_memory(model, 4)
    trainable = sum(math.prod(v.shape) for v in model.trainable_variables) * FLOAT32
    assert memory.argument_size_in_bytes >= trainable + 4 * 32 * 32 * 3 * FLOAT32  # weights and the batch
    assert memory.output_size_in_bytes >= trainable  # the gradients
    assert memory.temp_size_in_bytes > 0


@pytest.mark.backend_agnostic
@needs_jax
def test_xla_for_the_cpu_undoes_remat_as_remat_saves_memory_says():
    # If XLA's CPU compiler ever keeps the recomputation, this fails: drop the caveat in `remat_saves_memory`.
    import jax

    plain = compiled_step_memory(_vit(2, False), 8).temp_size_in_bytes
    remat = compiled_step_memory(_vit(2, True), 8).temp_size_in_bytes
    if jax.default_backend() == "cpu":
        assert not remat_saves_memory() and remat >= 0.95 * plain
    else:
        assert remat_saves_memory() and remat < plain


@pytest.mark.skipif(ON_JAX, reason="the error is for the other backends")
def test_other_backends_are_refused_by_name():
    model = _cifar_resnet(8, False)
    backend = keras.backend.backend()
    for measure in (saved_activations, compiled_step_memory):
        with pytest.raises(ValueError, match=f"needs the JAX backend; received KERAS_BACKEND='{backend}'"):
            measure(model, 2)


@pytest.mark.backend_agnostic
@needs_jax
def test_the_script_prints_plain_and_remat_rows_with_the_saving():
    script = os.path.join(ROOT, "benchmarks", "remat_saved_activations.py")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, script, "--models", "tiny_resnet:64,tiny_vit:64", "--compile"],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    cells = {(row[0].strip(), row[2].strip()): [cell.strip() for cell in row] for row in rows[1:]}
    assert set(cells) == {(title, variant) for title in ("ResNet-8 (CIFAR, tiny)", "ViT 2x32, patch 8 (tiny)")
                          for variant in ("plain", "remat")}  # fmt: skip
    for title in ("ResNet-8 (CIFAR, tiny)", "ViT 2x32, patch 8 (tiny)"):
        plain, remat = cells[title, "plain"], cells[title, "remat"]
        assert float(remat[3].replace(",", "")) < float(plain[3].replace(",", ""))
        assert remat[5].endswith("%") and int(remat[5][:-1]) > 0 and float(remat[6].replace(",", "")) > 0
    with_bad_name = subprocess.run([sys.executable, script, "--models", "resnet57:8"], capture_output=True, text=True,
                                   timeout=300, env=env)  # fmt: skip
    assert with_bad_name.returncode == 2 and "received models='resnet57:8'" in with_bad_name.stderr
