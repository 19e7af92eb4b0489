"""Regenerates the figures of docs/analyses.md (docs/figures/*.png) and the numbers behind them.

Every analysis runs on the embedded digits (offline), with settings small enough for a laptop: about
ten minutes of CPU time in all (two cores). The numbers are printed and written to docs/figures/numbers.json, which
docs/analyses.md quotes.

Usage:

    python docs/scripts/make_figures.py                 # all figures
    python docs/scripts/make_figures.py degradation vit # some of them
    python docs/scripts/make_figures.py --quick         # tiny settings, to check the script itself
    python docs/scripts/make_figures.py --docs-only     # rewrite the tables of docs/analyses.md from numbers.json
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The figures are of this checkout's code, installed or not.
sys.path.insert(0, ROOT)
FIGURES = os.path.join(ROOT, "docs", "figures")
ANALYSES_PAGE = os.path.join(ROOT, "docs", "analyses.md")
ORDER = ("degradation", "responses", "shortcuts", "ensemble", "vit")


def settings_for(quick):
    """The settings of every figure; `quick` shrinks them to seconds."""
    from keras_vitres.analysis import TrainingSettings

    if quick:
        return dict(
            data=dict(image_size=16, train_size=128, val_size=64),
            resnet=TrainingSettings(epochs=1, batch_size=32, learning_rate=0.1),
            depths=(8, 14),
            filters=dict(stage_filters=(4, 8, 16)),
            vit_data=dict(image_size=16, train_size=128, val_size=64),
            vit=TrainingSettings(epochs=1, learning_rate=1e-3, optimizer="adam"),
            vit_model=dict(patch_size=4, hidden_dim=16, num_layers=2, num_heads=2, mlp_dim=32),
        )
    return dict(
        # 16x16 digits and half-width stages (8/16/32 filters) keep ResNet-56 affordable on a CPU: the
        # degradation is about depth, which stays the paper's.
        data=dict(image_size=16),
        # The paper's learning rate per example (0.1 for 128).
        resnet=TrainingSettings(epochs=10, batch_size=64, learning_rate=0.05),
        depths=(20, 56),
        filters=dict(stage_filters=(8, 16, 32)),
        vit_data=dict(),  # 32x32 digits, 4x4 patches: an 8x8 grid of tokens
        vit=TrainingSettings(epochs=15, batch_size=64, learning_rate=1e-3, optimizer="adam"),
        vit_model=dict(patch_size=4, hidden_dim=64, num_layers=6, num_heads=4, mlp_dim=128),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", nargs="*", metavar="FIGURE",
                        help=f"which figures, among {', '.join(ORDER)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check the script")
    parser.add_argument("--output-dir", default=FIGURES, help="where to write the PNGs and numbers.json")
    parser.add_argument("--no-docs", action="store_true",
                        help="do not rewrite the tables of docs/analyses.md (always off with --quick)")
    parser.add_argument("--docs-only", action="store_true",
                        help="only rewrite the tables of docs/analyses.md from the existing numbers.json")
    args = parser.parse_args(argv)
    unknown = [name for name in args.figures if name not in ORDER]
    if unknown:
        parser.error(f"unknown figures {unknown}; choose among {', '.join(ORDER)}")
    if args.docs_only:
        with open(os.path.join(args.output_dir, "numbers.json")) as f:
            numbers = json.load(f)
        for name in args.figures or ORDER:
            if name in numbers:
                update_page(ANALYSES_PAGE, name, markdown_table(name, numbers[name]))
        return 0

    from keras_vitres import analysis

    chosen = args.figures or list(ORDER)
    config = settings_for(args.quick)
    os.makedirs(args.output_dir, exist_ok=True)
    numbers_path = os.path.join(args.output_dir, "numbers.json")
    numbers = {}
    if os.path.exists(numbers_path):
        with open(numbers_path) as f:
            numbers = json.load(f)

    def path(name):
        return os.path.join(args.output_dir, f"{name}.png")

    data = analysis.load_analysis_data("digits", **config["data"])
    degradation = None
    for name in ORDER:
        if name not in chosen:
            continue
        start = time.perf_counter()
        if name == "degradation" or (name == "responses" and degradation is None):
            # The responses are measured on the very nets of the degradation figure.
            degradation = analysis.degradation_analysis(config["depths"], data, config["resnet"],
                                                        figure_path=path("degradation") if name == "degradation"
                                                        else None, **config["filters"])
            if name == "degradation":
                result = degradation
        if name == "responses":
            result = analysis.degradation_responses(degradation, data.x_val)
            result.figure = analysis.plot_responses(result, path("responses"))
        elif name == "shortcuts":
            result = analysis.shortcut_analysis(config["depths"][0], ("A", "B", "C", None), data, config["resnet"],
                                                figure_path=path("shortcuts"), **config["filters"])
            print(result.table())
        elif name == "ensemble":
            depths = (8, 14, 20) if not args.quick else (8, 14)
            result = analysis.ensemble_analysis(depths, data, config["resnet"], figure_path=path("ensemble"),
                                                **config["filters"])
        elif name == "vit":
            vit_data = analysis.load_analysis_data("digits", **config["vit_data"])
            result = analysis.vit_analysis(data=vit_data, settings=config["vit"], figure_path=path("vit"),
                                           num_images=4, **config["vit_model"])
        numbers[name] = summary(name, result)
        numbers[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"{name}: {result.figure} ({numbers[name]['seconds']} s)")
        print(json.dumps(numbers[name], indent=1))
        with open(numbers_path, "w") as f:
            json.dump(numbers, f, indent=1)
        if not (args.quick or args.no_docs):
            update_page(ANALYSES_PAGE, name, markdown_table(name, numbers[name]))
    return 0


def update_page(page, name, table):
    """Replaces the text between `<!-- numbers:NAME -->` and `<!-- /numbers:NAME -->` in `page` with `table`."""
    begin, end = f"<!-- numbers:{name} -->", f"<!-- /numbers:{name} -->"
    with open(page) as f:
        text = f.read()
    if begin not in text or end not in text:
        print(f"{page} has no {begin} ... {end} markers; its table is not updated")
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(page, "w") as f:
        f.write(f"{head}{begin}\n{table}\n{end}{tail}")


def markdown_table(name, numbers):
    """The Markdown table of one analysis' numbers, as docs/analyses.md shows them."""
    rows = {k: v for k, v in numbers.items() if k != "seconds"}
    if name in ("degradation", "shortcuts"):
        lines = ["| net | parameters | training error (%) | validation error (%) |", "|---|---:|---:|---:|"]
        lines += [f"| {net} | {v['params']:,} | {v['train_error']:.2f} | {v['val_error']:.2f} |" for net, v in rows.items()]
    elif name == "responses":
        lines = ["| net | 3x3 layers | mean response std |", "|---|---:|---:|"]
        lines += [f"| {net} | {v['layers']} | {v['mean_std']:.3f} |" for net, v in rows.items()]
    elif name == "ensemble":
        rows = dict(sorted(rows.items(), key=lambda item: (item[0] == "ensemble", item[1]["params"])))
        lines = ["| model | parameters | validation error (%) |", "|---|---:|---:|"]
        lines += [f"| {net} | {v['params']:,} | {v['val_error']:.2f} |" for net, v in rows.items()]
    else:
        lines = ["| layer | min head distance (px) | max head distance (px) |", "|---:|---:|---:|"]
        lines += [f"| {i} | {lo} | {hi} |" for i, (lo, hi) in
                  enumerate(zip(rows["distance_min_per_layer"], rows["distance_max_per_layer"]))]
        lines.append("")
        lines.append(f"Validation error {rows['val_error']:.2f}%; {rows['grid'][0]}x{rows['grid'][1]} patches; "
                     f"uniform attention {rows.get('uniform_distance', '?')} px; largest possible distance "
                     f"{rows['max_distance']} px.")
    # The responses are measured on the nets of the degradation figure: its time is the measurement's alone.
    measured = " (measuring the trained nets of the degradation figure)" if name == "responses" else ""
    lines.append("")
    lines.append(f"*Made by `docs/scripts/make_figures.py` in {numbers.get('seconds', '?')} s{measured}.*")
    return "\n".join(lines)


def summary(name, result):
    """The numbers docs/analyses.md quotes, rounded; the full curves stay in the result objects."""
    def pct(x):
        return round(100 * x, 2)

    if name == "degradation":
        return {net: {"params": result.params[net], "train_error": pct(train), "val_error": pct(val),
                      "train_error_curve": [pct(e) for e in result.curves[net]["train_error"]]}
                for net, (train, val) in result.final_errors().items()}
    if name == "responses":
        return {net: {"mean_std": round(p.mean(), 3), "layers": len(p.std)} for net, p in result.profiles.items()}
    if name == "shortcuts":
        return {row["name"]: {"params": row["params"], "train_error": pct(row["train_error"]),
                              "val_error": pct(row["val_error"])} for row in result.rows}
    if name == "ensemble":
        out = {row["name"]: {"params": row["params"], "val_error": pct(row["val_error"])} for row in result.members}
        out["ensemble"] = {"params": result.ensemble_params, "val_error": pct(result.ensemble_error)}
        return out
    import numpy as np

    distance = np.asarray(result.attention_distance)
    return {"val_error": pct(result.val_error), "grid": list(result.grid_size),
            "max_distance": round(result.max_distance, 1), "uniform_distance": round(result.uniform_distance, 1),
            "distance_min_per_layer": [round(float(d), 1) for d in distance.min(axis=1)],
            "distance_max_per_layer": [round(float(d), 1) for d in distance.max(axis=1)]}


if __name__ == "__main__":
    sys.exit(main())
