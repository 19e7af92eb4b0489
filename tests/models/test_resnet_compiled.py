"""What ResNet-50 v1.5's inference compiles to on JAX, against keras-hub's ResNetBackbone (the peer on that backend).

The benchmark on one H200 (docs/benchmarks.md) had our ResNet-50 v1.5 infer at 0.81x keras-hub's on the same
backend. Both are built from Keras' own Conv2D, BatchNormalization and ReLU in the same layout; the programs XLA gets
differed in one place: our strided 1x1 projections subsampled with a strided slice first (a TensorFlow workaround,
see `keras_vitres/layers/residual.py`), three extra `slice` operations and their fusions.
"""

import collections
import re

import keras
import pytest

from keras_vitres.layers import BottleneckBlock, Shortcut

pytestmark = pytest.mark.backend_agnostic  # CI's JAX step installs keras-hub, the comparison's peer
ON_JAX = keras.backend.backend() == "jax"
# Operations that move or convert data rather than compute: a program with more of them than the peer's does extra
# memory traffic for the same arithmetic.
DATA_MOVEMENT = ("transpose", "convert", "pad", "slice", "dynamic_slice", "gather", "concatenate", "reverse", "copy",
                 "reshape", "broadcast_in_dim")  # fmt: skip


def _inference_ops(model, image_shape, batch=2):
    """Counts of each StableHLO operation in the jitted inference function of `model` (lowered, not run)."""
    import jax

    def infer(trainable, non_trainable, images):
        return model.stateless_call(trainable, non_trainable, images, training=False)[0]

    text = jax.jit(infer).lower(
        [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
        jax.ShapeDtypeStruct((batch, *image_shape), "float32"),
    ).as_text()  # fmt: skip
    return collections.Counter(re.findall(r"\bstablehlo\.([a-z_]+)\b", text))


@pytest.mark.skipif(not ON_JAX, reason="compares JAX programs; CI runs it in its JAX step")
@pytest.mark.parametrize("policy", ["mixed_bfloat16"])
def test_resnet50_inference_moves_no_more_data_than_keras_hubs(policy):
    pytest.importorskip("keras_hub", reason="keras-hub is the benchmark's optional peer (pip install keras-hub)")
    from keras_vitres.benchmark.builders import keras_hub_resnet, preset

    keras.config.set_dtype_policy(policy)
    image_shape = (64, 64, 3)  # the operations are the same at 224x224, only their shapes differ
    ours = _inference_ops(preset(image_shape, 10, preset="resnet50", overrides=dict(version="v1.5")), image_shape)
    hub = _inference_ops(keras_hub_resnet(image_shape, 10), image_shape)
    assert ours["convolution"] == hub["convolution"] == 53
    assert {op: ours[op] for op in DATA_MOVEMENT} == {op: min(ours[op], hub[op]) for op in DATA_MOVEMENT}


@pytest.mark.parametrize("make", [lambda: Shortcut(8, strides=2, option="B"), lambda: BottleneckBlock(2, 2)])
def test_strided_1x1_convolutions_subsample_first_only_on_tensorflow(make):
    layer = make()
    layer.build((None, 16, 16, 4))
    conv_pad, conv = (layer.conv_pad, layer.conv) if isinstance(layer, Shortcut) else (layer.conv1_pad, layer.conv1)
    if keras.backend.backend() == "tensorflow":  # the oneDNN workaround: subsample, then a stride-1 convolution
        assert conv_pad == 2 and tuple(conv.strides) == (1, 1)
    else:  # one strided convolution, as keras-hub and torchvision
        assert conv_pad is None and tuple(conv.strides) == (2, 2) and conv.padding == "valid"
    assert tuple(layer.compute_output_shape((None, 16, 16, 4))) == (None, 8, 8, layer.compute_output_shape(
        (None, 16, 16, 4))[-1])  # fmt: skip
    if ON_JAX:
        ops = _inference_ops(keras.Sequential([keras.Input((16, 16, 4)), layer]), (16, 16, 4))
        assert ops["slice"] == 0 and ops["convolution"] == (1 if isinstance(layer, Shortcut) else 4)
