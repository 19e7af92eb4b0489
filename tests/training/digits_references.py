"""Ours against plain Keras on the same small data: a ViT and ResNet-20, each next to a reference written here from
core Keras layers with Keras' default initialisers, trained identically on the embedded digits.

Both nets of a pair see the same split (`read_digits`, the `digits` default), the same preprocessing, seed,
optimiser (AdamW), schedule (the package's `warmup_cosine_decay`), batches and number of steps, through plain
`model.fit`. Ours must reach the stated accuracy and at least the reference's minus 0.02: before the ViT builders'
from-scratch initialisers (issue 19), ours reached about 0.85 here against the reference's 0.96.

The tests are `test_vit_digits_reference.py` and `test_resnet_digits_reference.py` (two files, so CI's two
workers run them side by side). Run as a script (`python -m tests.training.digits_references`) it prints the
accuracies and times.
"""

import time

import keras
from keras import ops

import keras_vitres
from keras_vitres.data.digits import read_digits
from keras_vitres.training import warmup_cosine_decay

SEED = 0
BATCH_SIZE = 64
VIT = dict(patch_size=4, hidden_dim=64, num_layers=4, num_heads=4, mlp_dim=128)
VIT_TRAINING = dict(epochs=8, learning_rate=1e-3, weight_decay=0.05)  # ours 0.956, reference 0.944 (docs/models.md)
RESNET_TRAINING = dict(epochs=8, learning_rate=2e-3, weight_decay=0.05)  # ours 0.983, reference 0.981
# ResNet-20 sees the digits at 16x16 (each 2x2 block of the 32x32 split averaged: the digits are 8x8 to begin
# with, so nothing is lost), a quarter of the work of 32x32 (where 12 epochs also passed the test).
RESNET_IMAGE_SIZE = 16
# Both ResNets use BatchNormalization with ours' momentum 0.9 and epsilon 1e-5. With Keras' default momentum 0.99
# the reference's moving statistics lag a run this short: on the held-out split it scored 0.36 after 8 epochs at
# 32x32 and 0.78 after 12 at 16x16 (with momentum 0.9: 0.98 after 8 and 12).
BN = dict(momentum=0.9, epsilon=1e-5)
WARMUP_FRACTION = 0.1


class TokensAndPositions(keras.layers.Layer):
    """Prepends a learned class token and adds a learned position embedding (`add_weight`'s default initialiser)."""

    def build(self, input_shape):
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), name="token")
        self.positions = self.add_weight(shape=(1, input_shape[1] + 1, input_shape[-1]), name="positions")

    def call(self, tokens):
        token = ops.broadcast_to(self.token, (ops.shape(tokens)[0], 1, tokens.shape[-1]))
        return ops.concatenate([token, tokens], axis=1) + self.positions


def reference_vit(image_shape, classes, patch_size, hidden_dim, num_layers, num_heads, mlp_dim):
    """A ViT from core Keras layers (arXiv:2010.11929, eq. 1-4): patch convolution, class token, learned position
    embedding, pre-norm blocks with keras.layers.MultiHeadAttention and a GELU MLP, a final LayerNorm and the class
    token's logits; every initialiser is Keras' default."""
    inputs = keras.Input(image_shape)
    x = keras.layers.Conv2D(hidden_dim, patch_size, strides=patch_size)(inputs)
    x = keras.layers.Reshape((-1, hidden_dim))(x)
    x = TokensAndPositions()(x)
    for _ in range(num_layers):
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = keras.layers.MultiHeadAttention(num_heads, hidden_dim // num_heads)(y, y)
        x = x + y
        y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = keras.layers.Dense(mlp_dim, activation="gelu")(y)
        x = x + keras.layers.Dense(hidden_dim)(y)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x[:, 0]), name="reference_vit")


def reference_resnet20(image_shape, classes):
    """ResNet-20 from core Keras layers (arXiv:1512.03385 §4.2): 3x3 stem of 16, three stages of three basic blocks
    (16/32/64 filters), option A shortcuts (subsample, zero-pad the new channels), no conv biases; Keras' default
    initialisers; BatchNormalization with `BN`."""

    def conv_bn(x, filters, strides):
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        return keras.layers.BatchNormalization(**BN)(x)

    inputs = keras.Input(image_shape)
    x = keras.layers.ReLU()(conv_bn(inputs, 16, 1))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            strides = 2 if stage and not block else 1
            y = keras.layers.ReLU()(conv_bn(x, filters, strides))
            y = conv_bn(y, filters, 1)
            if strides == 2:
                x = x[:, ::2, ::2, :]
                x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, filters - x.shape[-1]]])
            x = keras.layers.ReLU()(x + y)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x), name="reference_resnet20")


def digits():
    """The `digits` default's split, pixels to [-1, 1] (what the recipes' "rescale" preprocessing does)."""
    (x_train, y_train), (x_test, y_test), _ = read_digits()
    scale = lambda x: x.astype("float32") / 127.5 - 1.0  # noqa: E731
    return (scale(x_train), y_train), (scale(x_test), y_test)


def downsample(data, size):
    """The split at `size` x `size`: each block of the 32x32 images averaged."""
    factor = 32 // size
    pool = lambda x: x.reshape(len(x), size, factor, size, factor, x.shape[-1]).mean(axis=(2, 4))  # noqa: E731
    return tuple((pool(x), y) for x, y in data)


def train_and_score(build, data, *, epochs, learning_rate, weight_decay):
    """Builds with the seed set, trains with AdamW on a warmup + cosine schedule, returns (test accuracy, seconds,
    parameter count)."""
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(SEED)
    model = build()
    steps = epochs * -(-len(x_train) // BATCH_SIZE)
    schedule = warmup_cosine_decay(learning_rate, steps, round(WARMUP_FRACTION * steps))
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - started
    accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)[1]
    return accuracy, seconds, model.count_params()


def ours_vit(**initializers):
    return keras_vitres.VisionTransformer(**VIT, input_shape=(32, 32, 3), classes=10, classifier_activation=None,
                                          **initializers)


def ours_resnet20():
    return keras_vitres.ResNet20(input_shape=(RESNET_IMAGE_SIZE,) * 2 + (3,), classes=10, classifier_activation=None)


def plain_keras_resnet20():
    return reference_resnet20((RESNET_IMAGE_SIZE,) * 2 + (3,), 10)


if __name__ == "__main__":
    import sys

    which = sys.argv[1:] or ["vit", "vit_paper_init", "reference_vit", "resnet20", "reference_resnet20"]
    builds = {
        "vit": (ours_vit, VIT_TRAINING),
        "vit_paper_init": (lambda: ours_vit(patch_kernel_initializer="lecun_normal", head_kernel_initializer="zeros"),
                           VIT_TRAINING),
        "reference_vit": (lambda: reference_vit((32, 32, 3), 10, **VIT), VIT_TRAINING),
        "resnet20": (ours_resnet20, RESNET_TRAINING),
        "reference_resnet20": (plain_keras_resnet20, RESNET_TRAINING),
    }
    splits = digits()
    for name in which:
        build, training = builds[name]
        data = downsample(splits, RESNET_IMAGE_SIZE) if "resnet" in name else splits
        accuracy, seconds, params = train_and_score(build, data, **training)
        print(f"{name}: test accuracy {accuracy:.4f} in {seconds:.0f}s ({params:,} parameters, {training})", flush=True)
