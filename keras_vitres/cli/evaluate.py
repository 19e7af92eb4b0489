"""`keras-vitres evaluate`: the accuracy of a trained model (a run directory or a .keras file) on a dataset."""

import json


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a run directory or a .keras model on a dataset split",
        description="Evaluate a trained model (a run directory from `keras-vitres train`, or a .keras file that "
        "takes raw [0, 255] pixels) on a dataset split and print its accuracy.",
    )
    parser.add_argument("model", help="run directory or .keras file")
    parser.add_argument("--dataset", help="digits, cifar10, cifar100, folder (default: the run's, else digits)")
    parser.add_argument("--data-path", help="dataset archive or folder (default: the run's)")
    parser.add_argument("--split", default="test", choices=["test", "validation", "train"], help="split to evaluate")
    parser.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    parser.add_argument("--checkpoint", default="final", choices=["final", "best"],
                        help="for a run directory: the final model.keras or checkpoints/best.keras")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras' progress bar (1)")
    parser.set_defaults(func=run)


def run(args):
    # `keras-vitres --help` imports every subcommand's module: training imports Keras (6-8 s) when a command runs.
    from keras_vitres.training import evaluate

    result = evaluate(args.model, args.dataset, data_path=args.data_path, split=args.split,
                      batch_size=args.batch_size, checkpoint=args.checkpoint, verbose=args.verbose)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['model']} on {result['dataset']} ({result['split']}, {result['examples']} images): "
              f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")
    return 0
