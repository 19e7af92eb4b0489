"""The ResNet paper's CIFAR-10 experiment (He et al., arXiv:1512.03385, §4.2), with the `cifar_resnet` recipe.

Batch 128, SGD with momentum 0.9, weight decay 1e-4, learning rate 0.1 divided by 10 at 32k and 48k iterations,
training stopped at 64k; 45k/5k train/validation split; 4-pixel padding, 32x32 random crops and horizontal flips;
per-pixel mean subtraction (the model's "preprocessing" layer). ResNet-110 and -1202 first warm up at 0.01 until
the training error is below 80%, then go back to 0.1.

    python examples/cifar10_resnet_paper.py --data-path cifar-10-python.tar.gz --preset resnet110

Without --data-path the archive is fetched by keras.datasets (needs the network). --smoke trains a ResNet-8 for a
few steps (the test suite runs it on a small archive in the official format).
"""

import argparse

# Test error (%) of the paper's Table 6, for comparison with the run's summary.
PAPER_TEST_ERROR = {"resnet20": 8.75, "resnet32": 7.51, "resnet44": 7.17, "resnet56": 6.97, "resnet110": 6.43,
                    "resnet1202": 7.93, "plain20": 9.0, "plain32": 10.0}  # plain nets: read off Fig. 6, approximate
SMOKE = dict(steps=6, steps_per_epoch=3, decay_boundaries=(2, 4), batch_size=16, validation_size=20,
             model_overrides={"depth": 8})


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", help="cifar-10-python.tar.gz or its extracted folder (default: download)")
    parser.add_argument("--preset", default="resnet20", choices=sorted(PAPER_TEST_ERROR),
                        help="CIFAR ResNet or plain net of the paper (default resnet20)")
    parser.add_argument("--run-dir", help="run directory (default runs/PRESET_cifar10)")
    parser.add_argument("--strategy", default="auto", help="auto, one, mirrored (the paper used two GPUs)")
    parser.add_argument("--mixed-precision", default="auto", help="auto, float32, mixed_float16, mixed_bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few steps of a ResNet-8, to check the set-up")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from keras_vitres.training import resolve_config, train

    config = resolve_config("cifar_resnet", preset=args.preset, dataset="cifar10", data_path=args.data_path,
                            run_dir=args.run_dir, seed=args.seed, strategy=args.strategy,
                            mixed_precision=args.mixed_precision, **(SMOKE if args.smoke else {}))
    result = train(config, verbose=2 if args.smoke else 1)
    error = 100 * (1 - result["test_accuracy"])
    print(f"test error {error:.2f}% (paper, Table 6: {PAPER_TEST_ERROR[args.preset]}%)")
    return result


if __name__ == "__main__":
    main()
