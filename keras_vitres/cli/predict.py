"""`keras-vitres predict`: classify image files with an export of any format, in its own runtime.

Each image is checked, decoded, resized and cropped as the SavedModel's `serving_bytes` signature does
(`keras_vitres.export.images`), then run through the export (`keras_vitres.export.load_exported`); the top classes
are printed with their names, or written as JSON. A file that is not a JPEG or PNG, that declares more pixels than
the export's limit, or that is truncated or corrupt is refused with the reason, and the others are still classified
(exit status 1 when any was refused).
"""

import json
import os
import sys

DEFAULT_BATCH_SIZE = 16


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="classify JPEG/PNG images with an exported model (SavedModel, ONNX, OpenVINO, LiteRT)",
        description=(
            "Runs an export written by `keras-vitres export` on image files, in its own runtime (the format is "
            "found from the path), and prints the top classes of each image. Images are decoded, resized and "
            "cropped as the SavedModel's serving_bytes signature does."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG or PNG files, or folders of them")
    parser.add_argument("--model", required=True,
                        help="an export: its version folder, its model file, or the folder of versions (the highest)")
    parser.add_argument("--top-k", type=int, default=None, help="classes shown per image (default: the export's)")
    parser.add_argument("--json", action="store_true", help="write the predictions as JSON to stdout")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"images run at a time (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--threads", type=int, default=None, help="the runtime's threads (default: every core)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="refuse images declaring more pixels than this (default: the export's limit)")
    parser.add_argument("--jpeg-decoder", default="auto", choices=("auto", "tensorflow", "pil"),
                        help="auto: TensorFlow's (the serving signature's pixels exactly) when installed, else PIL's")
    parser.set_defaults(func=run)


def image_paths(items):
    """The files named, and the JPEG/PNG files of the folders named (sorted), in order."""
    from keras_vitres.export.calibration import image_files

    paths = []
    for item in items:
        if os.path.isdir(item):
            found = image_files(item)
            if not found:
                raise FileNotFoundError(f"IMAGE folder {item!r} holds no JPEG or PNG files.")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"IMAGE not found: {item!r} is neither a file nor a folder.")
    return paths


def check_arguments(args):
    for flag, value in (("--top-k", args.top_k), ("--batch-size", args.batch_size), ("--threads", args.threads),
                        ("--max-pixels", args.max_pixels)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive int; received {flag}={value}.")


def prepare(paths, metadata, jpeg_decoder):
    """{path: pixels} of the images that pass the checks, and {path: reason} of those refused."""
    from keras_vitres.export.images import prepare_image

    pixels, refused = {}, {}
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        try:
            pixels[path] = prepare_image(data, metadata, jpeg_decoder)
        except ValueError as error:
            refused[path] = str(error)
    return pixels, refused


def top_classes(probabilities, class_names, k):
    """[(class, name or None, probability)] of the k most probable classes, most probable first."""
    import numpy as np

    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(c), class_names[c] if class_names else None, float(probabilities[c])) for c in order]


def classify(exported, pixels, k, batch_size):
    """{path: top classes} for {path: pixels}, run `batch_size` images at a time."""
    import numpy as np

    paths, results = list(pixels), {}
    for start in range(0, len(paths), batch_size):
        batch = paths[start : start + batch_size]
        probabilities = exported.predict(np.stack([pixels[p] for p in batch]))["probabilities"]
        results.update({p: top_classes(row, exported.class_names, k) for p, row in zip(batch, probabilities)})
    return results


def write_report(args, exported, paths, results, refused):
    if args.json:
        images = [dict(image=p, error=refused[p]) if p in refused else
                  dict(image=p, predictions=[dict(index=c, name=n, probability=s) for c, n, s in results[p]])
                  for p in paths]
        json.dump(dict(model=exported.folder, format=exported.format, precision=exported.precision, images=images),
                  sys.stdout, indent=2)
        print()
        return
    print(f"{exported.folder} ({exported.format}, {exported.precision})")
    for path in paths:
        print(path)
        if path in refused:
            print(f"  refused: {refused[path]}")
            continue
        for rank, (index, name, probability) in enumerate(results[path], 1):
            print(f"  {rank}. {name if name is not None else index}  {probability:.4f}")


def run(args):
    from keras_vitres.export import load_exported

    check_arguments(args)
    paths = image_paths(args.images)
    try:
        exported = load_exported(args.model, threads=args.threads)
    except ImportError as error:  # the runtime of that format is not installed: the message names the extra
        raise ValueError(str(error)) from None
    metadata = dict(exported.metadata)
    if args.max_pixels is not None:
        metadata["max_pixels"] = args.max_pixels
    pixels, refused = prepare(paths, metadata, args.jpeg_decoder)
    k = args.top_k or metadata.get("top_k", 5)  # at most the number of classes: top_classes slices
    results = classify(exported, pixels, k, args.batch_size) if pixels else {}
    write_report(args, exported, paths, results, refused)
    return 1 if refused else 0
