"""Entry point of the `keras-vitres` command: parses the subcommand and hands over to its module.

Each subcommand lives in its own module of this package and exposes `add_parser(subparsers)` (which
registers its flags and sets `func`) and the function it sets; `SUBCOMMANDS` lists the modules in help order.
"""

import argparse
import importlib
import os
import sys

from keras_vitres.version import __version__

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the terminal

SUBCOMMANDS = ["train", "evaluate", "presets", "export", "predict", "benchmark", "analyze"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-vitres",
        description="ResNet and Vision Transformer for Keras 3: train, evaluate, export, benchmark, analyse.",
    )
    parser.add_argument("--version", action="version", version=f"keras-vitres {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"keras_vitres.cli.{name}").add_parser(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"keras-vitres {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
