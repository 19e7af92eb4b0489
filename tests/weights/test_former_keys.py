"""`.weights.h5` files and training backups written before the layer classes were renamed (Keras keys a model's
layers by class name: `layers/batch_normalization`, `layers/position_embedding`) load into models of the renamed
classes. The old files are written by models built from the same config with the former-name classes, which is how
keras-vitres built them before the renames (the keys match a file written at commit 1cf512a)."""

import h5py
import keras
import numpy as np
import pytest

import keras_vitres
from keras_vitres.training.backup import VerifiedBackup
from keras_vitres.weights import load_weights
from keras_vitres.weights.former_keys import layer_keys, renamed_keys
from tests.helpers import tiny_vit

# Registered name now -> registered name before the renames (tests/fixtures/README.md).
FORMER = {"FusedBatchNormalization": "BatchNormalization", "AddPositionEmbedding": "PositionEmbedding",
          "ViTMultiHeadAttention": "MultiHeadAttention"}  # fmt: skip


def with_former_classes(model):
    """`model` built again from its config with every renamed class under its former name, holding its weights."""

    def rename(value):
        if isinstance(value, list):
            return [rename(item) for item in value]
        if not isinstance(value, dict):
            return value
        value = {key: rename(item) for key, item in value.items()}
        former = FORMER.get(str(value.get("registered_name")).removeprefix("keras_vitres>"))
        return {**value, "class_name": former, "registered_name": f"keras_vitres>{former}"} if former else value

    former = keras.saving.deserialize_keras_object(rename(keras.saving.serialize_keras_object(model)))
    former.set_weights(model.get_weights())
    return former


def randomised(model, seed):
    """`model` with random weights everywhere (BN statistics included), so that a weight left out shows."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path else rng.normal(0, 0.3, w.shape)
                       for w in model.weights])  # fmt: skip
    return model


def groups(path):
    with h5py.File(path, "r") as f:
        return set(f["layers"])


def tiny_resnet():
    return keras_vitres.ResNet(8, input_shape=(16, 16, 3), classes=3, preprocessing="caffe")


@pytest.mark.parametrize("build, former_key", [(tiny_resnet, "batch_normalization"),
                                               (tiny_vit, "position_embedding")])  # fmt: skip
def test_a_weights_file_written_under_the_former_class_names_loads_with_identical_outputs(tmp_path, build, former_key):
    keras.utils.set_random_seed(0)
    saved = randomised(build(), seed=1)
    path = tmp_path / "old.weights.h5"
    with_former_classes(saved).save_weights(path)
    assert former_key in groups(path) and not {key for _, key, _ in layer_keys(saved)} <= groups(path)
    model = load_weights(randomised(build(), seed=2), path)
    images = np.random.default_rng(3).uniform(0, 255, (2, *saved.input_shape[1:])).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(images, training=False)),
                                  keras.ops.convert_to_numpy(saved(images, training=False)))  # fmt: skip
    # A file under the current names is read as it is; one of a wider model is refused with both descriptions.
    saved.save_weights(tmp_path / "new.weights.h5")
    load_weights(model, tmp_path / "new.weights.h5")
    other = tiny_vit(hidden_dim=64) if build is tiny_vit else keras_vitres.ResNet(
        8, input_shape=(16, 16, 3), classes=3, stage_filters=(32, 64, 128))
    with pytest.raises(ValueError, match=r"does not fit model .*: the file holds Keras 3 weights of \d+ layers with "
                                         r"variables \(layers/.*; the model expects \d+ weights \("):
        load_weights(other, path)


def test_keys_share_keras_counters_and_a_backup_under_the_former_names_restores_weights_and_optimizer(tmp_path):
    """Keras counts the keys of every class of one snake-case name together, so the renames shift the keys of its
    own BatchNormalization layers too; and a run's model (a layer before a nested network) backed up after a step
    with the former classes resumes in a model of the new ones."""
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.BatchNormalization()(inputs)
    x = keras_vitres.layers.FusedBatchNormalization()(x)
    mixed = keras.Model(inputs, keras.layers.BatchNormalization()(x))
    keys = [(now, before) for layer, now, before in layer_keys(mixed) if not isinstance(layer, keras.layers.InputLayer)]
    assert keys == [("batch_normalization", "batch_normalization"),
                    ("fused_batch_normalization", "batch_normalization_1"),
                    ("batch_normalization_1", "batch_normalization_2")]  # fmt: skip
    assert renamed_keys(mixed) == [("layers/fused_batch_normalization", "layers/batch_normalization_1"),
                                   ("layers/batch_normalization_1", "layers/batch_normalization_2")]  # fmt: skip

    keras.utils.set_random_seed(0)

    def run_model():
        inputs = keras.Input((16, 16, 3))
        network = keras_vitres.ResNet(8, input_shape=(16, 16, 3), classes=3, classifier_activation=None)
        model = keras.Model(inputs, network(keras.layers.BatchNormalization()(inputs)))
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
        return model

    old = with_former_classes(run_model())
    old.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    old.train_on_batch(rng.normal(size=(4, 16, 16, 3)), np.array([0, 1, 2, 0]))
    record = VerifiedBackup(tmp_path).save(old)
    with h5py.File(record["path"], "r") as f:
        assert "layers/functional/layers/batch_normalization" in f and "optimizer/vars" in f

    resumed = run_model()
    backup = VerifiedBackup(tmp_path, verbose=0)
    assert backup.restore(resumed)["step"] == 1 and backup.skipped == []
    assert int(resumed.optimizer.iterations) == 1
    for a, b in zip(resumed.weights + resumed.optimizer.variables, old.weights + old.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), err_msg=a.path)
