"""What the exact GELU's arithmetic forms would cost on TensorFlow's CPU kernels: ViT-S/16 training and inference
steps with each form, in one process, steps alternating between the forms.

    python benchmarks/gelu_forms.py --rounds 12 --batch-size 8 --output benchmarks/results/gelu_forms_cpu.json

Forms (`keras_vitres.layers.transformer`):
    erf: 0.5 * x * (1 + erf(x / sqrt 2)) with TensorFlow's Erf kernel: what `gelu` computes on TensorFlow
        (bit-identical to the earlier arrangement, "erf_before": x * (0.5 + 0.5 * erf(x / sqrt 2)), which the
        LiteRT converter turned into a Flex op).
    erfc_arithmetic: 0.5 * x * erfc(-x / sqrt 2), erfc from arithmetic and exp: what `gelu` computes on the other
        backends, where XLA fuses it.
    rational_erf: erf from XLA's and Eigen's float32 rational approximation (clamp, 7 + 5 polynomial terms, a
        division), the other builtin-only candidate.
Without XLA TensorFlow runs each elementwise op of the arithmetic forms as its own kernel, over the whole
(batch, 197, 1536) activation, forward and backward. The table reports medians, and the median and interquartile
range of the per-round ratios to "erf" (a load change on a shared machine hits every form of a round alike).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# XLA's ErfImpl32 / Eigen's generic_fast_erf_float coefficients, highest power first (numerator odd, denominator even).
ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
         -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
        -1.42647390514189e-02)


def forms():
    from keras import ops

    from keras_vitres.layers.transformer import SQRT_HALF, _erfc

    def horner(x, coefficients):
        y = coefficients[0]
        for c in coefficients[1:]:
            y = y * x + c
        return y

    def rational_erf(z):
        z = ops.clip(z, -4.0, 4.0)
        return z * horner(z * z, ALPHA) / horner(z * z, BETA)

    return {
        "erf": lambda y: 0.5 * y * (1.0 + ops.erf(y * SQRT_HALF)),
        "erf_before": lambda y: y * (0.5 + 0.5 * ops.erf(y * SQRT_HALF)),
        "erfc_arithmetic": lambda y: 0.5 * y * _erfc(-y * SQRT_HALF),
        "rational_erf": lambda y: 0.5 * y * (1.0 + rational_erf(y * SQRT_HALF)),
    }


def build(form, batch_size):
    """ViT-S/16 whose blocks call `form`, compiled, with its train and predict steps traced."""
    import keras
    import numpy as np

    import keras_vitres
    from keras_vitres.layers import transformer

    transformer.gelu = lambda x, approximate=False: keras.ops.cast(form(keras.ops.cast(x, "float32")), x.dtype)
    model = keras_vitres.build_model("vit_small_patch16_224")
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 1, (batch_size, 224, 224, 3)).astype("float32")
    y = np.arange(batch_size) % 1000
    model.train_on_batch(x, y)
    model.predict_on_batch(x)
    return model, x, y


def measure(models, rounds):
    times = {name: {"train": [], "infer": []} for name in models}
    for _ in range(rounds):
        for name, (model, x, y) in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            middle = time.perf_counter()
            model.predict_on_batch(x)
            times[name]["train"].append((middle - start) * 1e3)
            times[name]["infer"].append((time.perf_counter() - middle) * 1e3)
    return times


def summary(times):
    import numpy as np

    rows = {}
    for name, steps in times.items():
        rows[name] = {}
        for step, values in steps.items():
            ratios = np.array(values) / np.array(times["erf"][step])
            rows[name][step] = dict(median_ms=round(float(np.median(values)), 1),
                                    ratio_to_erf=round(float(np.median(ratios)), 3),
                                    ratio_iqr=[round(float(q), 3) for q in np.percentile(ratios, [25, 75])])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/gelu_forms.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output", default=None, help="a JSON file for the record")
    args = parser.parse_args(argv)
    import keras
    import tensorflow as tf

    from keras_vitres.benchmark.report import machine_info

    models = {name: build(form, args.batch_size) for name, form in forms().items()}
    rows = summary(measure(models, args.rounds))
    record = dict(date=time.strftime("%Y-%m-%d"), machine=machine_info(),
                  tensorflow=tf.__version__, keras=keras.__version__, model="vit_small_patch16_224",
                  batch_size=args.batch_size, rounds=args.rounds, precision="float32", results=rows)
    for name, steps in rows.items():
        print(name, {step: (v["median_ms"], v["ratio_to_erf"], v["ratio_iqr"]) for step, v in steps.items()})
    if args.output:
        with open(args.output, "w") as f:
            json.dump(record, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
