"""Benchmark keras-vitres against keras.applications, keras-hub (and timm/torchvision on a GPU).

    python benchmarks/run.py --quick                      # tiny models, seconds
    python benchmarks/run.py --precision float32,mixed_bfloat16 --write-docs

Same flags as `keras-vitres benchmark --help`; this script only adds the repository to the import path, so it
runs from a checkout without installing the package.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_vitres.cli import benchmark  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python benchmarks/run.py", description=__doc__.splitlines()[0])
    benchmark.add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_prefix = "python benchmarks/run.py"
    try:
        return benchmark.run(args, argv)
    except ValueError as error:
        print(f"benchmarks/run.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
