"""`keras-vitres train`: trains a preset with a recipe and writes a run directory (see keras_vitres.training.runner).

With no flags it trains ResNet-20 on the embedded digits (offline) and prints the test accuracy. Ctrl-C saves
the training state after the step in progress, prints the command that resumes the run, and exits with status 130.
"""

import argparse
import json
import shlex
import sys

from keras_vitres.cli.arguments import parse_image_size

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
_PARSER = {}  # the `train` parser, for rebuilding a command line from parsed arguments


def _parse_set(items):
    """`FIELD=VALUE` pairs; VALUE is read as JSON when it parses (numbers, true/false/null, lists), else a string."""
    overrides = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"`--set` takes FIELD=VALUE; received {item!r}.")
        field, value = item.split("=", 1)
        try:
            overrides[field.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[field.strip()] = value
    return overrides


def parse_fraction(value):
    """`--validation-split F`: a fraction in (0, 1)."""
    try:
        fraction = float(value)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), e.g. 0.2; received {value!r}")
    return fraction


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train a preset with a recipe (default: ResNet-20 on the embedded digits)",
        description="Train a preset with a recipe and write a run directory: config.json, logs (CSV, TensorBoard), "
        "checkpoints, the final model.keras, curves.png and a one-line summary with the test accuracy. Running the "
        "same command again resumes an unfinished run. Ctrl-C saves the step reached, prints the command that "
        "resumes the run, and exits with status 130.",
    )
    parser.add_argument("--recipe", default="digits_resnet",
                        help="recipe name: digits_resnet (default), digits_vit, cifar_resnet, vit_small_data, "
                        "finetune_vit, finetune_resnet")
    parser.add_argument("--preset", help="preset to train (default: the recipe's; see `keras-vitres presets`)")
    parser.add_argument("--dataset", help="digits, cifar10, cifar100, folder (default: the recipe's)")
    parser.add_argument("--data-path", help="dataset archive or folder (CIFAR archive, image folder: one sub-folder "
                        "per class, images of any size, JPEG/PNG, streamed from disk)")
    parser.add_argument("--weights", help="weights to start from: a weight name of the preset (`keras-vitres presets`; "
                        "the run then takes their preprocessing, crop and size) or a file (.keras, .weights.h5, .npz, "
                        ".safetensors; a run's model.keras): the head is replaced when the classes differ")
    parser.add_argument("--image-size", type=parse_image_size, metavar="H[,W]",
                        help="the model's input size (default: the named weights', else the images' size; for a folder, the "
                        "preset's)")
    parser.add_argument("--validation-split", type=parse_fraction, metavar="F",
                        help="hold out this fraction of the training data (stratified, seeded) for validation; the "
                        "best checkpoint is chosen on its accuracy")
    parser.add_argument("--validation-path", help="image folder of the same classes used as the validation split")
    parser.add_argument("--epochs", type=int, help="passes over the training set (replaces the recipe's length)")
    parser.add_argument("--steps", type=int, help="total optimizer steps (replaces the recipe's length)")
    parser.add_argument("--steps-per-epoch", type=int, help="steps between validations and backups")
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--lr", type=float, help="base learning rate")
    parser.add_argument("--set", action="append", metavar="FIELD=VALUE",
                        help="override any recipe field, e.g. --set warmup_steps=400 (repeatable)")
    parser.add_argument("--strategy", default="auto", choices=["auto", "one", "mirrored", "multiworker"],
                        help="distribution (multiworker: JAX backend only)")
    parser.add_argument("--coordinator", help="multiworker: host:port of process 0")
    parser.add_argument("--num-processes", type=int, help="multiworker: number of processes")
    parser.add_argument("--process-id", type=int, help="multiworker: index of this process")
    parser.add_argument("--mixed-precision", default="auto",
                        choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"],
                        help="dtype policy (auto: bfloat16/float16 mixed precision on GPU; on CPU mixed_bfloat16 with TensorFlow "
                        "where the CPU has bfloat16 instructions (avx512_bf16, amx_bf16), else float32)")
    parser.add_argument("--jit", default="auto", choices=["auto", "on", "off"],
                        help="XLA compilation (auto: on for GPU, off on CPU)")
    parser.add_argument("--remat", action="store_true",
                        help="recompute each block's activations in the backward pass: less memory, 1.25-1.5x the step")
    parser.add_argument("--run-dir", help="run directory (default: runs/NAME_DATASET, NAME the preset as trained, e.g. resnet8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, splits, shuffling, augmentation")
    parser.add_argument("--deterministic", action="store_true", help="TensorFlow op determinism")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --run-dir")
    parser.add_argument("--verbose", default="auto", choices=["auto", "bar", "epoch", "silent", "0", "1", "2"],
                        help="progress while training: auto (default: the bar on a terminal, else one line per epoch "
                        "with loss, metrics, time and learning rate), bar, epoch, silent (the summary line only); "
                        "Keras' 0, 1, 2 mean silent, bar, epoch")
    parser.add_argument("--list-recipes", action="store_true", help="print the recipes and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    parser.set_defaults(func=run)
    _PARSER["train"] = parser


# Flags that must not be repeated by the command that resumes a run (or that --run-dir replaces).
NOT_RESUMED = {"help", "overwrite", "print_config", "list_recipes", "run_dir"}


def resume_command(args, run_dir):
    """The `keras-vitres train` command line that resumes the run `args` started in `run_dir`."""
    words = ["keras-vitres", "train"]
    for action in _PARSER["train"]._actions:
        if not action.option_strings or action.dest in NOT_RESUMED:
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(action, argparse._StoreTrueAction):
            words.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, ",".join(str(v) for v in value) if isinstance(value, list) else str(value)]
    return shlex.join(words + ["--run-dir", run_dir])


def run(args):
    # `keras-vitres --help` imports every subcommand's module: training imports Keras (6-8 s) when a command runs.
    from keras_vitres.training import RECIPES, TrainingInterrupted, resolve_config, train

    if args.list_recipes:
        for name in sorted(RECIPES):
            recipe = RECIPES[name]
            print(f"{name:<16} preset {recipe.preset:<22} dataset {recipe.dataset:<8} {recipe.description}")
        return 0
    overrides = _parse_set(args.set)
    flags = dict(epochs=args.epochs, steps=args.steps, steps_per_epoch=args.steps_per_epoch,
                 batch_size=args.batch_size, learning_rate=args.lr, image_size=args.image_size,
                 validation_size=args.validation_split)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    config = resolve_config(
        args.recipe, preset=args.preset, dataset=args.dataset, data_path=args.data_path, run_dir=args.run_dir,
        seed=args.seed, strategy=args.strategy, mixed_precision=args.mixed_precision,
        jit_compile={"auto": "auto", "on": True, "off": False}[args.jit], remat=args.remat,
        deterministic=args.deterministic, weights=args.weights, validation_path=args.validation_path,
        coordinator=args.coordinator, num_processes=args.num_processes, process_id=args.process_id, **overrides,
    )
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    try:
        result = train(config, verbose=args.verbose, overwrite=args.overwrite)
    except TrainingInterrupted as stop:
        print(f"keras-vitres train: {stop}", file=sys.stderr)
        print(f"Resume with:\n  {resume_command(args, config.run_dir)}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # before or after the training steps: any backup written so far is kept
        print("keras-vitres train: interrupted outside the training steps; resume (from the last backup, if any) "
              f"with:\n  {resume_command(args, config.run_dir)}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise
        print(f"keras-vitres train: error: {error}", file=sys.stderr)
        return 2
    return 1 if result["stopped_on_nan"] else 0
