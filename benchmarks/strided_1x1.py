"""What the strided 1x1 workaround costs: a ResNet v1 transition block with strided 1x1 convolutions against the
same block that subsamples first (`keras_vitres.layers.residual`, which TensorFlow 2.21 needs: its oneDNN
gradient of a strided 1x1 convolution aborts the process on odd batches, with padding "valid" or "same").

    python benchmarks/strided_1x1.py --steps 25

Forward and backward pass of one block (56x56x256 -> 28x28x512, ResNet-50's first strided block), batch 16
(even, so the strided convolution does not crash), steps alternating between the variants; medians and
interquartile ranges in ms. "subsample once" shares one subsampled tensor between conv1 and the shortcut, to
see whether TensorFlow already does that.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def block(variant, shape=(56, 56, 256), filters=128):
    import keras

    layers = keras.layers
    inputs = keras.Input(shape)
    if variant == "strided conv":
        a = layers.Conv2D(filters, 1, strides=2, use_bias=False)(inputs)
        s = layers.Conv2D(filters * 4, 1, strides=2, use_bias=False)(inputs)
    elif variant == "subsample once":
        sub = inputs[:, ::2, ::2, :]
        a = layers.Conv2D(filters, 1, use_bias=False)(sub)
        s = layers.Conv2D(filters * 4, 1, use_bias=False)(sub)
    else:  # "subsample" (what the layers do): each strided 1x1 convolution subsamples its own input
        a = layers.Conv2D(filters, 1, use_bias=False)(inputs[:, ::2, ::2, :])
        s = layers.Conv2D(filters * 4, 1, use_bias=False)(inputs[:, ::2, ::2, :])
    h = layers.ReLU()(layers.BatchNormalization()(a))
    h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(h)))
    h = layers.BatchNormalization()(layers.Conv2D(filters * 4, 1, use_bias=False)(h))
    return keras.Model(inputs, layers.ReLU()(h + layers.BatchNormalization()(s)))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/strided_1x1.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    import numpy as np
    import tensorflow as tf

    x = tf.random.normal((args.batch_size, 56, 56, 256))
    steps = {}
    for variant in ("strided conv", "subsample", "subsample once"):
        model = block(variant)

        @tf.function
        def step(x, model=model):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True)))
            return tape.gradient(loss, model.trainable_variables)

        step(x), step(x)  # trace, warm up
        steps[variant] = step
    times = {variant: [] for variant in steps}
    for _ in range(args.steps):
        for variant, step in steps.items():
            start = time.perf_counter()
            step(x)[0].numpy()
            times[variant].append(time.perf_counter() - start)
    print(f"Batch {args.batch_size}, {args.steps} alternating steps, load average {os.getloadavg()[0]:.1f} at the end.\n")
    print("| variant | median ms | IQR ms | vs strided conv |")
    print("|---|---:|---:|---:|")
    base = np.median(times["strided conv"])
    for variant, values in times.items():
        q1, q3 = np.percentile(values, [25, 75]) * 1e3
        print(f"| {variant} | {np.median(values) * 1e3:.0f} | {q1:.0f}-{q3:.0f} | x{np.median(values) / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
