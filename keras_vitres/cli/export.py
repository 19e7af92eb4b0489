"""`keras-vitres export`: a `.keras` model file or a training run folder -> a SavedModel version for TF Serving."""

import glob
import json
import os


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="export a model as a SavedModel for TF Serving (float and image-bytes signatures)",
        description=(
            "Writes EXPORT_DIR/<version>/ (TF Serving's layout) with two signatures: serving_default takes float "
            "images named 'images' (raw [0, 255] RGB pixels), serving_bytes takes JPEG/PNG files named "
            "'image_bytes'. Both return probabilities, top-k classes and scores (and class_names when known)."
        ),
    )
    parser.add_argument("source", help="a .keras model file, or a training run folder that holds one")
    parser.add_argument("export_dir", help="folder of versions, TF Serving's model_base_path")
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
    parser.add_argument("--image-size", default=None, help="HxW (or one number) for models that accept any size")
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


def parse_image_size(value):
    if value is None:
        return None
    parts = value.lower().replace(",", "x").split("x")
    try:
        size = [int(p) for p in parts]
    except ValueError:
        size = []
    if len(size) not in (1, 2):
        raise ValueError(f"--image-size must be HxW or one number; received --image-size={value!r}.")
    return size[0] if len(size) == 1 else tuple(size)


def parse_preprocessing(value):
    if value is None or not value.lstrip().startswith("{"):
        return value
    try:
        return json.loads(value)
    except ValueError as error:
        raise ValueError(f"--preprocessing is not valid JSON ({error}); received --preprocessing={value!r}.") from None


def run(args):
    import keras

    from keras_vitres.export import BYTES_SIGNATURE, FLOAT_SIGNATURE, export_saved_model, read_export_metadata
    from keras_vitres.export.decoding import DEFAULT_MAX_PIXELS, check_max_pixels
    from keras_vitres.weights.loaders import load_keras_model

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"keras-vitres export writes TensorFlow SavedModels and needs KERAS_BACKEND=tensorflow; the backend is "
            f"{keras.backend.backend()!r}. Run it again with KERAS_BACKEND=tensorflow."
        )
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    try:
        check_max_pixels(max_pixels)  # before the model is loaded
    except ValueError:
        raise ValueError(f"--max-pixels must be a positive int, the largest height x width an image may declare "
                         f"(default {DEFAULT_MAX_PIXELS}); received --max-pixels={args.max_pixels}.") from None
    source = args.source
    class_names = parse_class_names(args.class_names)
    if os.path.isdir(source):
        if class_names is None:
            class_names = run_class_names(source)
        source = find_run_model(source)
    elif not os.path.isfile(source):
        raise FileNotFoundError(f"SOURCE not found: {args.source!r} is neither a .keras file nor a run folder.")
    if not source.endswith(".keras"):
        raise ValueError(f"SOURCE must be a .keras model file or a run folder; received {args.source!r}.")
    model = load_keras_model(source, argument="SOURCE")
    try:
        path = export_saved_model(
            model,
            args.export_dir,
            version=args.version,
            class_names=class_names,
            top_k=args.top_k,
            preprocessing=parse_preprocessing(args.preprocessing),
            image_size=parse_image_size(args.image_size),
            output=args.output,
            max_pixels=max_pixels,
            overwrite=args.overwrite,
        )
    except FileExistsError as error:  # the command reports it like any other bad argument (exit 2)
        raise ValueError(f"{error} (use --overwrite)") from None
    meta = read_export_metadata(path)
    height, width = meta["image_size"]
    print(f"exported {model.name} from {source} to {path}")
    print(f"  {FLOAT_SIGNATURE}: images float32 (batch, {height}, {width}, {meta['channels']}), raw [0, 255] pixels")
    print(f"  {BYTES_SIGNATURE}: image_bytes string (batch,), JPEG or PNG files of at most {meta['max_pixels']} pixels")
    print(f"  outputs: {', '.join(meta['outputs'])} (top {meta['top_k']}); model output: {meta['model_output']}")
    preprocessing = meta["preprocessing"]
    if preprocessing["source"] == "model layer":
        print(f"  preprocessing: the model's own {preprocessing['layer']} layer: {preprocessing['formula']}")
    else:
        print(f"  preprocessing ({preprocessing['source']}): {preprocessing['formula']}")
    return 0
