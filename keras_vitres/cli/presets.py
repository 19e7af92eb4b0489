"""`keras-vitres presets`: the registry as a table, optionally built to check the pinned counts."""

import json


def add_parser(subparsers):
    parser = subparsers.add_parser("presets", help="list the registered presets with parameter counts and papers")
    parser.add_argument("--filter", default="", help="only presets whose name contains this text")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--markdown", action="store_true", help="print the Markdown table used in the README")
    parser.add_argument("--build", action="store_true", help="build each listed preset and print its summary")
    parser.set_defaults(func=run)


FAMILY_ORDER = {"ResNet": 0, "BiTResNet": 1, "VisionTransformer": 2, "HybridViT": 3}


def markdown_table(names):
    """The README's preset table: families in paper order, then by size."""
    from keras_vitres.presets import PRESETS

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
    from keras_vitres.presets import PRESETS, build_model

    names = [n for n in sorted(PRESETS) if args.filter in n]
    if args.markdown:
        print(markdown_table(names))
        return 0
    if args.json:
        print(json.dumps({n: {k: v for k, v in PRESETS[n].items()} for n in names}, indent=2, default=str))
        return 0
    width = max(len(n) for n in names) if names else 10
    print(f"{'preset':<{width}}  {'builder':<12} {'parameters':>12}  paper")
    for n in names:
        row = PRESETS[n]
        print(f"{n:<{width}}  {row['builder_name'] or '-':<12} {row['params']:>12,}  {row['paper']}")
        if args.build:
            model = build_model(n)
            print(f"{'':<{width}}  built: {model.count_params():,} parameters, output {model.output_shape}")
    return 0
