"""A run's configuration: a recipe, a preset, a dataset and overrides resolved into one JSON-ready dict."""

import dataclasses
import os

from keras_vitres.layers.remat import check_remat
from keras_vitres.training.distribute import PRECISIONS, STRATEGIES
from keras_vitres.training.recipes import Recipe, get_recipe
from keras_vitres.training.run_dir import default_run_dir


def resolve_config(recipe="digits_resnet", *, preset=None, dataset=None, data_path=None, run_dir=None, seed=0,
                   strategy="auto", mixed_precision="auto", jit_compile="auto", remat=False, deterministic=False,
                   coordinator=None, num_processes=None, process_id=None, **overrides):
    """Resolves a run's configuration into a JSON-ready dict.

    Args:
        recipe: a recipe name (`keras_vitres.training.list_recipes()`).
        preset: the preset to train (default: the recipe's); the recipe's per-preset adjustments follow it.
        dataset: dataset name for `keras_vitres.data.load_dataset` (default: the recipe's).
        data_path: where the dataset is (see `load_dataset`).
        run_dir: the run directory; default `default_run_dir(preset, dataset)`.
        seed: int. Seeds the weights, the validation split, the shuffle and the augmentations.
        strategy: "auto", "one", "mirrored" or "multiworker" (see `keras_vitres.training.distribute`).
        mixed_precision: "auto", "float32", "mixed_float16" or "mixed_bfloat16".
        jit_compile: "auto", True or False.
        remat: bool. Recompute every block's activations in the backward pass (the builders' `remat`): less
            training memory (73% less for ViT-B/16, 56% for ResNet-110, with TensorFlow on CPU; on a GPU with JAX the
            compiled step's temporaries fell 84% for ViT-B/16 and 75% for ResNet-110 on one H200; none with JAX on
            CPU; docs/benchmarks.md) at 1.25x to 1.5x the step time on CPU. Like the precision, it changes how a run
            computes, not what: a run may be resumed with another setting.
        deterministic: bool. TensorFlow's op determinism (bit-identical reruns, a little slower).
        coordinator, num_processes, process_id: for strategy="multiworker".
        **overrides: any `Recipe` field (e.g. `epochs=3`, `learning_rate=0.05`). Giving `epochs` without
            `steps` makes the run's length epochs-based.

    Returns:
        dict with "recipe" (every recipe field) and the run settings.
    """
    if dataset is not None:
        overrides["dataset"] = dataset
    if "epochs" in overrides and "steps" not in overrides:
        overrides["steps"] = None
    resolved = get_recipe(recipe, preset=preset, **overrides)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"`seed` must be an int; received seed={seed!r}.")
    if not isinstance(deterministic, bool):
        raise ValueError(f"`deterministic` must be a bool; received deterministic={deterministic!r}.")
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}; received strategy={strategy!r}.")
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"`mixed_precision` must be one of {PRECISIONS}; received mixed_precision={mixed_precision!r}.")
    if jit_compile not in ("auto", True, False):
        raise ValueError(f"`jit_compile` must be 'auto', True or False; received jit_compile={jit_compile!r}.")
    check_remat(remat)
    return dict(
        recipe=resolved.to_dict(),
        run_dir=os.fspath(run_dir) if run_dir is not None else default_run_dir(resolved.preset, resolved.dataset),
        data_path=os.fspath(data_path) if data_path is not None else None,
        seed=seed,
        strategy=strategy,
        mixed_precision=mixed_precision,
        jit_compile=jit_compile,
        remat=remat,
        deterministic=deterministic,
        coordinator=coordinator,
        num_processes=num_processes,
        process_id=process_id,
    )


def recipe_fields():
    """Names of every `Recipe` field (what `--set FIELD=VALUE` accepts)."""
    return [f.name for f in dataclasses.fields(Recipe)]
