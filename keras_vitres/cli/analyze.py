"""`keras-vitres analyze NAME`: runs one of the papers' analyses, prints its numbers and writes its figure.

NAME is one of degradation, shortcuts, responses, ensemble (ResNet paper) or vit (ViT paper). Networks are
trained on `--dataset` (the offline "digits" by default) with the same seed and settings, so the figures compare
architectures only.
"""

import json


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError(f"expected a positive int, got {text!r}")
    return value


def _add_data_and_training_flags(parser, epochs, learning_rate=0.05, optimizer="sgd"):
    group = parser.add_argument_group("data and training")
    group.add_argument("--dataset", default="digits", help="dataset name for load_dataset (default: digits, offline)")
    group.add_argument("--data-path", default=None, help="where the dataset is (CIFAR archive, image folder)")
    group.add_argument("--image-size", type=_positive_int, default=None, help="resize digits/folder images to this")
    group.add_argument("--train-size", type=_positive_int, default=None, help="train on a seeded subset of this size")
    group.add_argument("--val-size", type=_positive_int, default=None, help="evaluate on a seeded subset of this size")
    group.add_argument("--epochs", type=_positive_int, default=epochs, help=f"epochs per network (default {epochs})")
    group.add_argument("--batch-size", type=_positive_int, default=64, help="batch size (default 64)")
    group.add_argument("--learning-rate", type=float, default=learning_rate,
                       help=f"initial learning rate, cosine decay (default {learning_rate})")
    group.add_argument("--optimizer", choices=("sgd", "adam"), default=optimizer, help=f"default {optimizer}")
    group.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay of the kernels (default 0)")
    group.add_argument("--seed", type=int, default=0, help="seed of weights, batches and subsets (default 0)")


def _add_output_flags(parser, name):
    parser.add_argument("--output", default=f"{name}.png", help=f"PNG to write (default {name}.png)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")


def _add_resnet_flags(parser):
    parser.add_argument("--stage-filters", type=_positive_int, nargs=3, default=None, metavar="F",
                        help="filters of the three stages (default 16 32 64, the paper's)")


def add_parser(subparsers):
    parser = subparsers.add_parser("analyze", help="reproduce the papers' analyses: numbers and a figure")
    analyses = parser.add_subparsers(dest="analysis", metavar="ANALYSIS")

    sub = analyses.add_parser("degradation", help="plain vs residual nets of several depths (ResNet Fig. 1, 6)")
    sub.add_argument("--depths", type=_positive_int, nargs="+", default=[20, 56], help="depths 6n+2 (default 20 56)")
    _add_resnet_flags(sub)
    _add_data_and_training_flags(sub, epochs=5)
    _add_output_flags(sub, "degradation")
    sub.set_defaults(func=run)

    sub = analyses.add_parser("shortcuts", help="shortcut options A, B, C: parameters and error (ResNet Table 3)")
    sub.add_argument("--depth", type=_positive_int, default=20, help="depth 6n+2 of every net (default 20)")
    sub.add_argument("--options", nargs="+", default=["A", "B", "C"], choices=["A", "B", "C", "plain"],
                     help="options to compare; 'plain' adds the net without shortcuts (default A B C)")
    _add_resnet_flags(sub)
    _add_data_and_training_flags(sub, epochs=5)
    _add_output_flags(sub, "shortcuts")
    sub.set_defaults(func=run)

    sub = analyses.add_parser("responses", help="std of 3x3 layer responses, plain vs ResNet (ResNet Fig. 7)")
    sub.add_argument("--depths", type=_positive_int, nargs="+", default=[20, 56], help="depths 6n+2 (default 20 56)")
    sub.add_argument("--num-images", type=_positive_int, default=None, help="measure on this many validation images")
    _add_resnet_flags(sub)
    _add_data_and_training_flags(sub, epochs=5)
    _add_output_flags(sub, "responses")
    sub.set_defaults(func=run)

    sub = analyses.add_parser("ensemble", help="average nets of different depths into one model (ResNet §4.1)")
    sub.add_argument("--depths", type=_positive_int, nargs="+", default=[20, 32, 44],
                     help="member depths 6n+2 (default 20 32 44)")
    sub.add_argument("--save", default=None, help="save the ensemble model to this .keras file")
    _add_resnet_flags(sub)
    _add_data_and_training_flags(sub, epochs=5)
    _add_output_flags(sub, "ensemble")
    sub.set_defaults(func=run)

    sub = analyses.add_parser("vit", help="attention rollout, attention distance, position embeddings (ViT Fig. 7)")
    sub.add_argument("--model", default=None,
                     help="a trained ViT .keras file (takes raw pixels); default: train a tiny ViT on the dataset")
    sub.add_argument("--num-images", type=_positive_int, default=4, help="images for the rollout (default 4)")
    sub.add_argument("--patch-size", type=_positive_int, default=4, help="tiny ViT patch size (default 4)")
    sub.add_argument("--hidden-dim", type=_positive_int, default=64, help="tiny ViT width (default 64)")
    sub.add_argument("--num-layers", type=_positive_int, default=4, help="tiny ViT depth (default 4)")
    sub.add_argument("--num-heads", type=_positive_int, default=4, help="tiny ViT heads (default 4)")
    _add_data_and_training_flags(sub, epochs=10, learning_rate=1e-3, optimizer="adam")
    _add_output_flags(sub, "vit")
    sub.set_defaults(func=run)

    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run(args):
    # Imported on use: the analyses and the model loader import Keras and a backend (seconds of CPU), which
    # `keras-vitres --help` must not.
    from keras_vitres import analysis
    from keras_vitres.weights.loaders import load_keras_model

    settings = analysis.TrainingSettings(epochs=args.epochs, batch_size=args.batch_size,
                                         learning_rate=args.learning_rate, optimizer=args.optimizer,
                                         weight_decay=args.weight_decay, seed=args.seed)  # fmt: skip
    model = load_keras_model(args.model, argument="--model") if getattr(args, "model", None) else None
    data = analysis.load_analysis_data(args.dataset, path=args.data_path, image_size=args.image_size,
                                       train_size=args.train_size, val_size=args.val_size, seed=args.seed,
                                       normalize=model is None)  # fmt: skip
    common = dict(data=data, settings=settings, figure_path=args.output)
    resnet = {"stage_filters": tuple(args.stage_filters)} if getattr(args, "stage_filters", None) else {}
    if args.analysis == "vit":
        vit_args = {} if model is not None else dict(patch_size=args.patch_size, hidden_dim=args.hidden_dim,
                                                      num_layers=args.num_layers, num_heads=args.num_heads)
        result = analysis.vit_analysis(model, num_images=args.num_images, **common, **vit_args)
    elif args.analysis == "degradation":
        result = analysis.degradation_analysis(args.depths, **common, **resnet)
    elif args.analysis == "shortcuts":
        options = [None if option == "plain" else option for option in args.options]
        result = analysis.shortcut_analysis(args.depth, options, **common, **resnet)
    elif args.analysis == "responses":
        result = analysis.response_analysis(args.depths, num_images=args.num_images, **common, **resnet)
    else:  # argparse lets only the five names through
        result = analysis.ensemble_analysis(args.depths, save_path=args.save, **common, **resnet)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print("\n".join(SUMMARIES[args.analysis](result)))
        print(f"figure: {result.figure}")
    return 0


def _percent(value):
    return "-" if value is None else f"{100 * value:.2f}"


def _vit_lines(result):
    lines = [f"grid {result.grid_size[0]}x{result.grid_size[1]} of {result.patch_size[0]}x{result.patch_size[1]}"
             f"-pixel patches; validation error {_percent(result.val_error)}%",
             f"mean attention distance (pixels, max {result.max_distance:.1f}) per layer and head:"]  # fmt: skip
    return lines + [f"  layer {i}: " + " ".join(f"{d:.1f}" for d in heads)
                    for i, heads in enumerate(result.attention_distance)]  # fmt: skip


def _degradation_lines(result):
    lines = [f"{'net':<12} {'parameters':>10}  {'train err %':>11}  {'val err %':>9}"]
    for net, (train, val) in result.final_errors().items():
        lines.append(f"{net:<12} {result.params[net]:>10,}  {_percent(train):>11}  {_percent(val):>9}")
    return lines


def _response_lines(result):
    lines = [f"{'net':<12} {'layers':>6}  {'mean std':>8}  {'val err %':>9}"]
    for net, profile in result.profiles.items():
        lines.append(f"{net:<12} {len(profile.std):>6}  {profile.mean():>8.3f}  {_percent(result.val_error[net]):>9}")
    return lines


def _ensemble_lines(result):
    lines = [f"{'model':<12} {'parameters':>10}  {'val err %':>9}"]
    for row in result.members:
        lines.append(f"{row['name']:<12} {row['params']:>10,}  {_percent(row['val_error']):>9}")
    lines.append(f"{'ensemble':<12} {result.ensemble_params:>10,}  {_percent(result.ensemble_error):>9}")
    return lines + ([f"saved: {result.saved_path}"] if result.saved_path else [])


# The terminal summary of each analysis (--json prints its `to_dict()` instead).
SUMMARIES = {
    "degradation": _degradation_lines,
    "shortcuts": lambda result: [result.table()],
    "responses": _response_lines,
    "ensemble": _ensemble_lines,
    "vit": _vit_lines,
}
