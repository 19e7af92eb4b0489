"""`keras-vitres presets`: the registry as a table with each preset's weight names, optionally built to check the
pinned counts."""

import difflib
import json
import re

from keras_vitres.presets import PRESETS


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "presets", help="list the registered presets with parameter counts, weight names and papers"
    )
    parser.add_argument("--filter", default="", help="only presets whose name contains this text")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--markdown", action="store_true", help="print the Markdown table used in the README")
    parser.add_argument("--build", action="store_true", help="build each listed preset and print its summary")
    parser.set_defaults(func=run)


FAMILY_ORDER = {"ResNet": 0, "BiTResNet": 1, "VisionTransformer": 2, "HybridViT": 3}


def natural_key(name):
    """Sorts names by family, then by the numbers in them as numbers: plain18 before plain110."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def select(names, text):
    """The names that contain `text`, in natural order; a ValueError suggesting close names when none does."""
    selected = sorted((n for n in names if text in n), key=natural_key)
    if not selected:
        close = difflib.get_close_matches(text, names, n=3, cutoff=0.4)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise ValueError(f"--filter matches no preset: received --filter={text!r}.{hint} `keras-vitres presets` "
                         f"lists all {len(names)}.")  # fmt: skip
    return selected


def markdown_table(names):
    """The README's preset table: families in paper order, then by size."""

    def key(name):
        row = PRESETS[name]
        config = row["config"]
        return (FAMILY_ORDER[row["builder"]], config.get("stem", ""), config.get("shortcut") is None,
                "use_bias" in config, row["params"], name)  # fmt: skip

    lines = ["| preset | named builder | parameters | trainable | paper |", "|---|---|---:|---:|---|"]
    for name in sorted(names, key=key):
        row = PRESETS[name]
        builder = f"`{row['builder_name']}()`" if row["builder_name"] else "-"
        lines.append(f"| `{name}` | {builder} | {row['params']:,} | {row['trainable_params']:,} | {row['paper']} |")
    return "\n".join(lines)


def run(args):
    names = select(list(PRESETS), args.filter)
    if args.markdown:
        print(markdown_table(names))
        return 0
    if args.json:
        print(json.dumps({n: PRESETS[n] for n in names}, indent=2, default=str))
        return 0
    width = max(len(n) for n in names)
    weights = {n: ", ".join(PRESETS[n]["weights"]) or "-" for n in names}
    weights_width = max(len(w) for w in weights.values())
    print(f"{'preset':<{width}}  {'builder':<12} {'parameters':>12}  {'weights':<{weights_width}}  paper")
    for n in names:
        row = PRESETS[n]
        print(f"{n:<{width}}  {row['builder_name'] or '-':<12} {row['params']:>12,}  {weights[n]:<{weights_width}}  "
              f"{row['paper']}")
        if args.build:
            from keras_vitres.presets.build import build_model  # imports Keras (6-8 s): only for --build

            model = build_model(n)
            print(f"{'':<{width}}  built: {model.count_params():,} parameters, output {model.output_shape}")
    return 0
