"""Rematerialised blocks compute and train exactly as plain ones (BatchNorm statistics and dropout included)."""

import keras
import numpy as np
import pytest

import keras_vitres
from keras_vitres.layers import BasicBlock, BottleneckBlock, TransformerBlock
from keras_vitres.models.resnet import ResNet
from keras_vitres.models.vit import VisionTransformer
from tests.helpers import assert_close, assert_keras_round_trip

BLOCKS = (BasicBlock, BottleneckBlock, TransformerBlock)


def _tiny(kind, **kwargs):
    if kind == "resnet":
        return ResNet(8, stem="cifar", classifier_activation=None, **kwargs)
    if kind == "bottleneck":
        return ResNet(stem="cifar", block="bottleneck", stage_blocks=(1, 1), stage_filters=(4, 8), classes=10,
                      classifier_activation=None, **kwargs)  # fmt: skip
    return VisionTransformer(patch_size=8, hidden_dim=32, num_layers=2, num_heads=2, mlp_dim=64, dropout_rate=0.1,
                             input_shape=(32, 32, 3), classes=10, classifier_activation=None, **kwargs)  # fmt: skip


def _train_step(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    return model.train_on_batch(x, y)


@pytest.mark.backend_agnostic  # CI also runs it on JAX, where the state updates take another path
@pytest.mark.parametrize("kind", ["resnet", "bottleneck", "vit"])
def test_remat_model_trains_exactly_like_the_plain_one(kind):
    plain, remat = _tiny(kind), _tiny(kind, remat=True)
    blocks = [layer for layer in remat.layers if isinstance(layer, BLOCKS)]
    assert blocks and all(layer.remat for layer in blocks)
    assert [w.path for w in remat.weights] == [w.path for w in plain.weights]  # same names: checkpoints fit both
    for a, b in zip(plain.variables, remat.variables):  # weights and the dropout seed states
        b.assign(keras.ops.convert_to_numpy(a))  # a copy: JAX donates the buffers of a training step
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32, 3), dtype="float32")
    y = rng.integers(0, 10, 4)
    # The same forward pass (measured 0).
    assert_close(remat.predict_on_batch(x), plain.predict_on_batch(x), 16, name="prediction")

    loss_plain, loss_remat = _train_step(plain, x, y), _train_step(remat, x, y)
    assert_close(loss_remat, loss_plain, 32, name="loss")  # a mean of cross-entropies of the same logits
    for a, b in zip(plain.weights, remat.weights):
        # BatchNorm moving statistics and dropout seeds too: the recomputation must not update them a second time.
        # The recomputed backward pass sums in another order, over a few hundred values per BN channel (measured 8
        # ulps).
        assert_close(b, a, 64, name=a.path)


def test_remat_is_a_builder_option_that_saves_and_validates(tmp_path):
    model = keras_vitres.build_model("resnet20", remat=True)
    assert model.count_params() == 271_098
    assert all(layer.remat for layer in model.layers if isinstance(layer, BasicBlock))
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype="float32")
    restored = assert_keras_round_trip(model, x, tmp_path)
    assert restored.get_layer("stage1_block1").remat is True
    with pytest.raises(ValueError, match="received remat='yes'"):
        BasicBlock(16, remat="yes")
    with pytest.raises(ValueError, match="received remat=1"):
        TransformerBlock(2, 8, 16, remat=1)
