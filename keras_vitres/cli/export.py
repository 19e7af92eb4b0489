"""`keras-vitres export`: a `.keras` model file or a training run folder -> a version folder in a deployment format
(SavedModel for TF Serving, ONNX, OpenVINO, LiteRT), with the sidecar metadata (`keras_vitres.export.formats`)."""

import glob
import json
import os

from keras_vitres.cli.arguments import parse_image_size
from keras_vitres.export.catalog import FORMATS, PRECISIONS


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="export a model for TF Serving, ONNX Runtime, OpenVINO or LiteRT",
        description=(
            "Writes EXPORT_DIR/<version>/ (TF Serving's layout, also OpenVINO Model Server's and Triton's) in the "
            "format chosen, with keras_vitres.json (what it takes and returns, where it came from) and labels.txt. "
            "Every format takes float images named 'images' (raw [0, 255] RGB pixels of the model's size) and "
            "returns probabilities, top-k classes and scores (and class_names where the format carries strings); "
            "the SavedModel also takes JPEG/PNG files in its serving_bytes signature."
        ),
    )
    parser.add_argument("source", help="a .keras model file, or a training run folder that holds one")
    parser.add_argument("export_dir", help="folder of versions, TF Serving's model_base_path")
    parser.add_argument("--format", default="saved_model", choices=tuple(FORMATS),
                        help="the deployment format (default saved_model); onnx, openvino and litert need the extra "
                        'of the same name: pip install "keras-vitres[onnx]"')
    parser.add_argument("--precision", default="f32", choices=PRECISIONS,
                        help="f32 (default, every format), bf16 (openvino), f16 (openvino, litert: float16 weights) or "
                        "int8 (onnx, openvino, litert: post-training quantization)")
    parser.add_argument("--calibration", default=None, nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="int8 only: images to calibrate on (files, or a folder: 16 of its JPEG/PNG files); "
                        "default: a run folder's image-folder data, else crops of scikit-learn's sample photos")
    parser.add_argument("--version", type=int, default=None, help="version number (default: the next free integer)")
    parser.add_argument(
        "--class-names",
        default=None,
        help="a text file with one class name per line, or a comma-separated list "
        "(default: 'class_names' from the run folder's config.json / summary.json, if any)",
    )
    parser.add_argument("--top-k", type=int, default=5, help="classes returned per image (default 5)")
    parser.add_argument(
        "--preprocessing",
        default=None,
        help="for models without a preprocessing layer: raw, unit, inception, imagenet, caffe, or a JSON dict "
        'such as \'{"mean": [125.3, 123.0, 113.9], "std": [63.0, 62.1, 66.7]}\'',
    )
    parser.add_argument("--image-size", type=parse_image_size, default=None, metavar="H[,W]",
                        help="H or H,W for models that accept any size")
    parser.add_argument(
        "--output", default="auto", choices=("auto", "probabilities", "logits"), help="what the model returns"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="serving_bytes refuses, before decoding, images whose header declares more than this many pixels "
        "(height x width; default 16000000)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --version if it exists")
    parser.set_defaults(func=run)


def find_run_model(run_dir):
    """Returns the model file of a training run folder (the final model, else the best checkpoint, as
    `keras-vitres train` writes them; else its only .keras file), or raises naming what was found."""
    from keras_vitres.training import BEST_FILE, MODEL_FILE

    run_model_files = (MODEL_FILE, BEST_FILE)
    for name in run_model_files:
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            return path
    found = sorted(glob.glob(os.path.join(run_dir, "*.keras")))
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        f"Run folder {run_dir!r} has {'no' if not found else 'several'} .keras model files "
        f"({', '.join(os.path.basename(f) for f in found) or 'none'}); expected one of {run_model_files}. "
        "Pass the model file itself."
    )


def run_class_names(run_dir):
    """Class names recorded in a run folder's JSON files: a "class_names" list at the top level, or under "data"
    or "resolved" (where the training runner's config.json has it)."""
    for path in sorted(glob.glob(os.path.join(run_dir, "*.json"))):
        try:
            with open(path) as f:
                config = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(config, dict):
            continue
        for holder in (config, config.get("data"), config.get("resolved")):
            names = holder.get("class_names") if isinstance(holder, dict) else None
            if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
                return names
    return None


def parse_class_names(value):
    if value is None:
        return None
    if os.path.isfile(value):
        with open(value) as f:
            return [line.strip() for line in f if line.strip()]
    return [n.strip() for n in value.split(",")]


def parse_preprocessing(value):
    if value is None or not value.lstrip().startswith("{"):
        return value
    try:
        return json.loads(value)
    except ValueError as error:
        raise ValueError(f"--preprocessing is not valid JSON ({error}); received --preprocessing={value!r}.") from None


def run_provenance(run_dir):
    """(preset, weights, image-folder data path) recorded in a run folder's config.json, each None when unknown."""
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None, None, None
    recipe, resolved = config.get("recipe") or {}, config.get("resolved") or {}
    weights = resolved.get("weights") or config.get("weights")
    data_path = config.get("data_path")
    return (recipe.get("preset"), None if weights is None else str(weights),
            data_path if data_path and os.path.isdir(data_path) else None)


def check_arguments(args):
    """Checks what can be checked before the model is loaded; returns max_pixels."""
    from keras_vitres.export.decoding import DEFAULT_MAX_PIXELS, check_max_pixels

    if args.precision not in FORMATS[args.format].precisions:
        raise ValueError(f"--precision {args.precision} is not offered by --format {args.format}; it offers "
                         f"{', '.join(FORMATS[args.format].precisions)}.")
    if args.calibration and args.precision != "int8":
        raise ValueError(f"--calibration is for --precision int8; received --precision {args.precision}.")
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    try:
        check_max_pixels(max_pixels)
    except ValueError:
        raise ValueError(f"--max-pixels must be a positive int, the largest height x width an image may declare "
                         f"(default {DEFAULT_MAX_PIXELS}); received --max-pixels={args.max_pixels}.") from None
    return max_pixels


def load_source(args):
    """(model, model file, class names, preset, weights, data folder) of SOURCE: a .keras file or a run folder."""
    from keras_vitres.weights.loaders import load_keras_model

    source, class_names = args.source, parse_class_names(args.class_names)
    preset = weights = data_path = None
    if os.path.isdir(source):
        if class_names is None:
            class_names = run_class_names(source)
        preset, weights, data_path = run_provenance(source)
        source = find_run_model(source)
    elif not os.path.isfile(source):
        raise FileNotFoundError(f"SOURCE not found: {args.source!r} is neither a .keras file nor a run folder.")
    if not source.endswith(".keras"):
        raise ValueError(f"SOURCE must be a .keras model file or a run folder; received {args.source!r}.")
    model = load_keras_model(source, argument="SOURCE")
    return model, source, class_names, preset, weights or os.path.abspath(source), data_path


def calibration_source(args, data_path):
    """What int8 calibrates on: --calibration (one folder, or files), else the run's image folder, else None."""
    if args.precision != "int8":
        return None
    if args.calibration:
        return args.calibration[0] if len(args.calibration) == 1 and os.path.isdir(args.calibration[0]) \
            else list(args.calibration)
    return data_path


def report(model, source, path):
    """Prints what was written and what it takes and returns."""
    from keras_vitres.export import BYTES_SIGNATURE, FLOAT_SIGNATURE, read_export_metadata

    meta = read_export_metadata(path)
    height, width = meta["image_size"]
    print(f"exported {model.name} from {source} to {path} ({meta['format']}, {meta['precision']})")
    if meta["format"] == "saved_model":
        print(f"  {FLOAT_SIGNATURE}: images float32 (batch, {height}, {width}, {meta['channels']}), raw [0, 255] pixels")
        print(f"  {BYTES_SIGNATURE}: image_bytes string (batch,), JPEG or PNG files of at most {meta['max_pixels']} "
              "pixels")
    else:
        print(f"  files: {', '.join(meta['files'].values())}; input images float32 (batch, {height}, {width}, "
              f"{meta['channels']}), raw [0, 255] pixels")
    print(f"  outputs: {', '.join(meta['outputs'])} (top {meta['top_k']}); model output: {meta['model_output']}")
    for key, value in meta["runtime"].items():
        print(f"  runtime setting: {key}={value} (keras_vitres.export.load_exported applies it; pass it yourself "
              "to another loader)")
    preprocessing = meta["preprocessing"]
    if preprocessing["source"] == "model layer":
        print(f"  preprocessing: the model's own {preprocessing['layer']} layer: {preprocessing['formula']}")
    else:
        print(f"  preprocessing ({preprocessing['source']}): {preprocessing['formula']}")


def run(args):
    import keras

    from keras_vitres.export import export_model

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"keras-vitres export converts through TensorFlow and needs KERAS_BACKEND=tensorflow; the backend is "
            f"{keras.backend.backend()!r}. Run it again with KERAS_BACKEND=tensorflow."
        )
    max_pixels = check_arguments(args)  # before the model is loaded
    model, source, class_names, preset, weights, data_path = load_source(args)
    try:
        path = export_model(
            model, args.export_dir, args.format, args.precision, version=args.version, class_names=class_names,
            top_k=args.top_k, preprocessing=parse_preprocessing(args.preprocessing),
            image_size=args.image_size, output=args.output, max_pixels=max_pixels,
            calibration=calibration_source(args, data_path), overwrite=args.overwrite, preset=preset,
            weights=weights,
        )
    except FileExistsError as error:  # the command reports it like any other bad argument (exit 2)
        raise ValueError(f"{error} (use --overwrite)") from None
    except ImportError as error:  # a format's extra is not installed: the message says which to install
        raise ValueError(str(error)) from None
    report(model, source, path)
    return 0
