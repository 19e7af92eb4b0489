"""A Vision Transformer trained from scratch on small data, with the `vit_small_data` recipe.

ViT-Ti (D=192, 12 layers, 3 heads; arXiv:2010.11929 Table 1, Ti size from DeiT) with 4x4 patches on 32x32 images:
AdamW (weight decay 0.05, not on biases, norms, tokens, position embeddings), linear warmup then cosine decay,
gradient clipping at 1, label smoothing 0.1, RandAugment, MixUp and CutMix, stochastic depth 0.1. Pixels go to
[-1, 1] in the model's "preprocessing" layer.

    python examples/vit_from_scratch.py --dataset cifar10 --data-path cifar-10-python.tar.gz
    python examples/vit_from_scratch.py --dataset digits --epochs 30      # offline, small

--smoke trains a one-block ViT on the embedded digits for a few steps.
"""

import argparse

SIZES = {"tiny": "vit_tiny_patch16_224", "small": "vit_small_patch16_224"}
SMOKE = dict(steps=4, steps_per_epoch=2, batch_size=16, warmup_epochs=None, warmup_steps=1, validation_size=100,
             model_overrides=dict(patch_size=8, hidden_dim=32, num_layers=1, num_heads=2, mlp_dim=64))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar10", help="cifar10, cifar100, digits, folder")
    parser.add_argument("--data-path", help="dataset archive or folder (CIFAR: default download)")
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES), help="ViT size (default tiny)")
    parser.add_argument("--patch-size", type=int, default=4, help="patch size in pixels (default 4 for 32x32)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the recipe's 200)")
    parser.add_argument("--batch-size", type=int, help="global batch size (default 128)")
    parser.add_argument("--run-dir", help="run directory")
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--mixed-precision", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few steps of a one-block ViT on the digits")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from keras_vitres.training import get_recipe, resolve_config, train

    recipe = get_recipe("vit_small_data")
    overrides = dict(model_overrides={**recipe.model_overrides, "patch_size": args.patch_size})
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    if args.smoke:
        overrides.update(SMOKE)
    config = resolve_config("vit_small_data", preset=SIZES[args.size], dataset="digits" if args.smoke else args.dataset,
                            data_path=None if args.smoke else args.data_path, run_dir=args.run_dir, seed=args.seed,
                            strategy=args.strategy, mixed_precision=args.mixed_precision, **overrides)
    return train(config, verbose=2 if args.smoke else 1)


if __name__ == "__main__":
    main()
