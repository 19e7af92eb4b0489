"""A run's configuration: a recipe, a preset, a dataset and overrides resolved into one JSON-ready dict.

Everything that can be checked without loading data is checked here, before a run directory exists: the recipe's
fields, the data and validation folders, the weights file. A run's name (`trained_name`) says what it trains: the
preset as the overrides change it (a depth-8 ResNet is "resnet8", a ViT-Ti/16 given 4x4 patches at 32x32 pixels is
"vit_tiny_patch4_32").
"""

import dataclasses
import inspect
import os
import re

from keras_vitres.layers.remat import check_remat
from keras_vitres.training.distribute import PRECISIONS, STRATEGIES
from keras_vitres.training.recipes import Recipe, get_recipe
from keras_vitres.training.run_dir import default_run_dir


def preset_image_size(preset):
    """The (height, width) a preset takes by default: its row's `input_shape`, else its builder's default."""
    from keras_vitres.presets import get_builder, get_preset

    row = get_preset(preset)
    shape = row["config"].get("input_shape")
    if shape is None and row["builder"] == "ResNet":
        from keras_vitres.models.resnet import DEFAULTS

        shape = DEFAULTS[row["config"].get("stem", "imagenet")]["input_shape"]
    if shape is None:
        shape = inspect.signature(get_builder(row["builder"])).parameters["input_shape"].default
    return tuple(int(s) for s in shape[:2])


def follow_named_weights(recipe, weights, overrides):
    """The recipe with the preprocessing, evaluation crop and input size of the named weights the run starts from
    (`weights` a weight name of its preset; else the recipe as it is): the model built with them applies that
    preprocessing as its first layer, so the run trains, evaluates and exports with it. An explicit
    `image_size` or `crop_fraction` stays; another `preprocessing` is refused (the weights would see other pixels).
    """
    from keras_vitres.presets import get_preset

    entries = get_preset(recipe.preset).get("weights", {})
    if not isinstance(weights, str) or weights not in entries:
        if recipe.preprocessing == "weights":
            raise ValueError(f"preprocessing='weights' needs `weights` to name weights of preset {recipe.preset!r} "
                             f"({sorted(entries) or 'it declares none'}); received weights={weights!r}.")
        return recipe
    expected = entries[weights]["preprocessing"]
    if overrides.get("preprocessing", "weights") != "weights":
        raise ValueError(
            f"weights={weights!r} bring their own preprocessing ({expected}), which the model applies; received "
            f"preprocessing={overrides['preprocessing']!r}: leave it out."
        )
    changes = dict(preprocessing="weights")
    if "crop_fraction" not in overrides:
        changes["crop_fraction"] = expected.get("crop_fraction", 1.0)
    if "image_size" not in overrides and expected.get("image_size"):
        changes["image_size"] = tuple(expected["image_size"])
    return dataclasses.replace(recipe, **changes)


def trained_name(recipe):
    """The name of what a recipe trains: its preset's name with the depth, patch size and resolution that the
    recipe's `model_overrides` and `image_size` give it ("resnet20" with depth=8 is "resnet8"; "vit_tiny_patch16_224"
    with patch_size=4 at 32x32 is "vit_tiny_patch4_32", at 32x48 "vit_tiny_patch4_32x48")."""
    name, overrides = recipe.preset, recipe.model_overrides
    if "depth" in overrides:
        name = re.sub(r"^(resnet|plain)\d+", lambda m: f"{m.group(1)}{overrides['depth']}", name)
    if "patch_size" in overrides:
        name = re.sub(r"patch\d+", f"patch{overrides['patch_size']}", name)
    if recipe.image_size is not None and re.search(r"patch\d+_\d+", name):
        height, width = recipe.image_size
        name = re.sub(r"(patch\d+)_\d+", lambda m: f"{m.group(1)}_{height if height == width else f'{height}x{width}'}",
                      name)
    return name


def _check_paths(resolved, data_path, validation_path, weights):
    """Raises for a data path, validation folder or weights file that cannot be used (before any run directory)."""
    dataset = resolved.dataset
    if dataset == "folder":
        if data_path is None:
            raise ValueError("`data_path` is required for dataset 'folder': the directory with one sub-folder per "
                             "class (--data-path DIR).")
        if not os.path.isdir(os.path.expanduser(os.fspath(data_path))):
            raise FileNotFoundError(f"`data_path` is not a folder: data_path={os.fspath(data_path)!r}.")
        root = os.path.expanduser(os.fspath(data_path))
        if not any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(root)):
            raise ValueError(f"`data_path` {root!r} has no sub-folders; expected one sub-folder per class.")
    elif dataset == "digits" and data_path is not None:
        raise ValueError(f"`data_path` does not apply to the embedded 'digits' dataset; received data_path={data_path!r}.")
    elif data_path is not None and not os.path.exists(os.path.expanduser(os.fspath(data_path))):
        raise FileNotFoundError(f"`data_path` does not exist: data_path={os.fspath(data_path)!r}.")
    if validation_path is not None:
        if dataset != "folder":
            raise ValueError(f"`validation_path` applies to dataset 'folder' only; received dataset={dataset!r}.")
        if resolved.validation_size is not None:
            raise ValueError("Give `validation_path` or `validation_size` (--validation-split), not both; received "
                             f"validation_size={resolved.validation_size!r}.")
        if not os.path.isdir(os.path.expanduser(os.fspath(validation_path))):
            raise FileNotFoundError(f"`validation_path` is not a folder: validation_path={os.fspath(validation_path)!r}.")
    if weights is not None:
        from keras_vitres.presets import get_preset

        named = weights in get_preset(resolved.preset).get("weights", {}) if isinstance(weights, str) else False
        if not named and not os.path.isfile(os.path.expanduser(os.fspath(weights))):
            raise FileNotFoundError(f"`weights` file not found: weights={os.fspath(weights)!r} (a local weights file "
                                    f"or a weight name of preset {resolved.preset!r}).")


def resolve_config(recipe="digits_resnet", *, preset=None, dataset=None, data_path=None, run_dir=None, seed=0,
                   strategy="auto", mixed_precision="auto", jit_compile="auto", remat=False, deterministic=False,
                   coordinator=None, num_processes=None, process_id=None, weights=None, validation_path=None,
                   **overrides):
    """Resolves a run's configuration into a JSON-ready dict.

    Args:
        recipe: a recipe name (`keras_vitres.training.list_recipes()`).
        preset: the preset to train (default: the recipe's); the recipe's per-preset adjustments follow it.
        dataset: dataset name for `keras_vitres.data.load_dataset` (default: the recipe's).
        data_path: where the dataset is (see `load_dataset`). An image folder ("folder") is streamed from disk.
        run_dir: the run directory; default `default_run_dir(trained_name(recipe), dataset)`.
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
        weights: a local weights file to start from (any format the builders' `weights=` reads; a run's
            model.keras included): the head is replaced when its classes differ, and a ViT's position embedding
            resampled when the resolution does.
        validation_path: "folder" only: a folder of the same classes, the validation split.
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
    resolved = follow_named_weights(resolved, weights, overrides)
    if resolved.dataset == "folder" and resolved.image_size is None:  # its images may differ in size
        resolved = dataclasses.replace(resolved, image_size=preset_image_size(resolved.preset))
    _check_paths(resolved, data_path, validation_path, weights)
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
        name=trained_name(resolved),
        run_dir=os.fspath(run_dir) if run_dir is not None else default_run_dir(trained_name(resolved), resolved.dataset),
        data_path=os.fspath(data_path) if data_path is not None else None,
        validation_path=os.fspath(validation_path) if validation_path is not None else None,
        weights=os.fspath(weights) if weights is not None else None,
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
