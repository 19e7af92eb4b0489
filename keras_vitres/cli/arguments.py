"""Argument types the subcommands share."""

import argparse


def parse_image_size(value):
    """`--image-size H[,W]`: one positive int (square) or two, comma-separated; returns [H, W]."""
    parts = [p.strip() for p in str(value).replace("x", ",").split(",")]
    try:
        size = [int(p) for p in parts]
    except ValueError:
        size = []
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected H or H,W (positive ints, e.g. 64 or 64,96); received {value!r}")
    return size
