"""How far each export format and precision is from the Keras model: tiny models of the five families, real photo
crops, every runtime (float32 parity, and what bfloat16, float16 weights and int8 change on random weights).

    python benchmarks/export_parity.py --output benchmarks/results/export_parity_cpu.json

For each family, format and precision: the largest difference of the log-probabilities from Keras', relative to
the logits' scale (their largest distance from their row's mean), and the top-1 agreement with Keras over the
images. Random weights make the int8 figures an upper bound of nothing in particular: what int8 costs a trained
model is measured by the benchmark runner. docs/deployment.md quotes the record.
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = [("onnx", "f32"), ("openvino", "f32"), ("litert", "f32"), ("openvino", "bf16"), ("openvino", "f16"),
            ("litert", "f16"), ("onnx", "int8"), ("openvino", "int8"), ("litert", "int8")]  # the docs' columns
SMALL = dict(input_shape=(32, 32, 3), classes=10, classifier_activation=None)


def families():
    """name -> (builder, preprocessing): one small net of each family, as the public builders make them."""
    import keras_vitres

    return {
        "resnet_cifar": (lambda: keras_vitres.ResNet(8, stem="cifar", **SMALL), "unit"),
        "resnet_imagenet": (lambda: keras_vitres.ResNet(stem="imagenet", block="bottleneck", stage_blocks=(1, 1),
                                                        stage_filters=(16, 32), version="v1.5", **SMALL), "imagenet"),
        "bit": (lambda: keras_vitres.BiTResNet(stage_blocks=(1, 1), **SMALL), "unit"),
        "vit": (lambda: keras_vitres.VisionTransformer(patch_size=4, hidden_dim=64, num_layers=2, num_heads=2,
                                                       mlp_dim=128, **SMALL), "inception"),
        "hybrid": (lambda: keras_vitres.HybridViT(trunk="batchnorm", resnet_stage_blocks=(1, 1),
                                                  resnet_stage_filters=(16, 32), hidden_dim=64, num_layers=2,
                                                  num_heads=2, mlp_dim=128, **SMALL), "inception"),
    }


def with_random_statistics(model, images, preprocessing, seed):
    """Random BatchNorm statistics and head (the builders start both at fixed values), the head scaled to logits
    of standard deviation 2 on `images`."""
    import keras
    import numpy as np

    from keras_vitres.layers import Preprocessing

    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            layer.set_weights([rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, 0.1, shapes[1]),
                               rng.normal(0, 0.1, shapes[2]), rng.uniform(0.5, 1.5, shapes[3])])
    head = model.get_layer("predictions")
    kernel = rng.normal(0, 1.0, head.get_weights()[0].shape).astype("float32")
    head.set_weights([kernel, np.zeros(kernel.shape[-1], "float32")])
    logits = keras.ops.convert_to_numpy(model(Preprocessing.resolve(preprocessing).apply_numpy(images)))
    head.set_weights([kernel * (2.0 / logits.std()), np.zeros(kernel.shape[-1], "float32")])
    return keras.ops.convert_to_numpy(model(Preprocessing.resolve(preprocessing).apply_numpy(images)))


def compare(probabilities, logits):
    import numpy as np

    z = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(-1, keepdims=True))
    scale = np.abs(logits - logits.mean(-1, keepdims=True)).max()
    error = np.abs(np.log(probabilities.astype(np.float64)) - log_softmax).max()
    return dict(relative_error=float(f"{error / scale:.3g}"),
                top1_agreement=float(np.mean(probabilities.argmax(-1) == logits.argmax(-1))))


def measure(root):
    from keras_vitres.export import export_model, load_exported
    from keras_vitres.export.calibration import sample_calibration

    images = sample_calibration((32, 32), count=32, seed=1)  # real photo crops; int8 calibrates on seed 0's
    rows = []
    for i, (name, (build, preprocessing)) in enumerate(families().items()):
        model = build()
        logits = with_random_statistics(model, images, preprocessing, seed=i)
        for fmt, precision in VARIANTS:
            path = export_model(model, os.path.join(root, name, f"{fmt}_{precision}"), fmt, precision,
                                preprocessing=preprocessing)
            probabilities = load_exported(path).predict(images)["probabilities"]
            rows.append(dict(family=name, format=fmt, precision=precision, **compare(probabilities, logits)))
            print(rows[-1])
    return rows


def markdown_rows(record):
    """The rows of docs/deployment.md's parity table: one per family, one column per format and precision."""
    cell = {(r["family"], r["format"], r["precision"]): r["relative_error"] for r in record["results"]}
    families = list(dict.fromkeys(r["family"] for r in record["results"]))
    return [f"| {family} | " + " | ".join(f"{cell[family, fmt, precision]:.2g}" for fmt, precision in VARIANTS) + " |"
            for family in families]


def write_docs(record, page):
    """Puts the table's rows between the page's `<!-- parity-table -->` markers, under its two header lines."""
    with open(page) as f:
        text = f.read()
    start, end = text.index("<!-- parity-table -->\n"), text.index("<!-- /parity-table -->")
    header = text[start:end].splitlines(keepends=True)[:3]
    with open(page, "w") as f:
        f.write(text[:start] + "".join(header) + "\n".join(markdown_rows(record)) + "\n" + text[end:])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/export_parity.py", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=None, help="a JSON file for the record")
    parser.add_argument("--docs", default=None, help="write the table of an existing --output record into this page")
    args = parser.parse_args(argv)
    if args.docs:
        with open(args.output) as f:
            write_docs(json.load(f), args.docs)
        return 0
    import keras
    import onnxruntime
    import openvino
    import tensorflow as tf

    from keras_vitres.benchmark.report import machine_info

    with tempfile.TemporaryDirectory() as root:
        rows = measure(root)
    record = dict(date=time.strftime("%Y-%m-%d"), machine=machine_info(),
                  tensorflow=tf.__version__, keras=keras.__version__, onnxruntime=onnxruntime.__version__,
                  openvino=openvino.__version__, images="32 crops of scikit-learn's sample photos, 32x32",
                  weights="random (BatchNorm statistics and heads too)", results=rows)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(record, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
