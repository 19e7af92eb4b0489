"""A run's configuration: a recipe, a preset, a dataset and overrides resolved into one `RunConfig`.

Everything that can be checked without loading data is checked here, before a run directory exists: the recipe's
fields, the data and validation folders, the weights file. A run's name (`trained_name`) says what it trains: the
preset as the overrides change it (a depth-8 ResNet is "resnet8", a ViT-Ti/16 given 4x4 patches at 32x32 pixels is
"vit_tiny_patch4_32").
"""

import dataclasses
import os
import re

from keras_vitres.layers.remat import check_remat
from keras_vitres.presets import get_preset
from keras_vitres.presets.build import default_image_size
from keras_vitres.training.distribute import check_settings
from keras_vitres.training.recipes import Recipe, get_recipe, with_current_names
from keras_vitres.training.run_dir import default_run_dir


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs: its `Recipe`, where its data and weights are, and how it computes (the arguments of
    `resolve_config`). `to_dict()` is what the run directory's config.json holds; `from_dict` reads it back."""

    recipe: Recipe
    run_dir: str
    name: str | None = None
    data_path: str | None = None
    validation_path: str | None = None
    weights: str | None = None
    seed: int = 0
    strategy: str = "auto"
    mixed_precision: str = "auto"
    jit_compile: object = "auto"
    remat: bool = False
    deterministic: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    def to_dict(self):
        """A JSON-ready dict of every field, the recipe as `Recipe.to_dict()`."""
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "recipe": self.recipe.to_dict()}

    @classmethod
    def from_dict(cls, config):
        """The configuration of a dict from `to_dict` (a run's config.json: its other keys, "resolved", are left)."""
        fields = {f.name for f in dataclasses.fields(cls)} - {"recipe"}
        return cls(recipe=Recipe.from_dict(config["recipe"]), **{k: v for k, v in config.items() if k in fields})


def follow_named_weights(recipe, weights, overrides):
    """The recipe with the normalisation, evaluation crop and input size of the named weights the run starts from
    (`weights` a weight name of its preset; else the recipe as it is): the model built with them applies their
    preprocessing as its first layer, so the run trains, evaluates and exports with it. An explicit `image_size` or
    `crop_fraction` stays; another `normalization` is refused (the weights would see other pixels).
    """
    entries = get_preset(recipe.preset).get("weights", {})
    if not isinstance(weights, str) or weights not in entries:
        if recipe.normalization == "weights":
            raise ValueError(f"normalization='weights' needs `weights` to name weights of preset {recipe.preset!r} "
                             f"({sorted(entries) or 'it declares none'}); received weights={weights!r}.")
        return recipe
    expected = entries[weights]["preprocessing"]
    if overrides.get("normalization", "weights") != "weights":
        raise ValueError(
            f"weights={weights!r} bring their own preprocessing ({expected}), which the model applies; received "
            f"normalization={overrides['normalization']!r}: leave it out."
        )
    changes = dict(normalization="weights")
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


def _check_data_path(dataset, data_path):
    """Raises for a data path that dataset `dataset` cannot read (before any run directory)."""
    if dataset == "folder":
        if data_path is None:
            raise ValueError("`data_path` is required for dataset 'folder': the directory with one sub-folder per "
                             "class (--data-path DIR).")
        root = os.path.expanduser(os.fspath(data_path))
        if not os.path.isdir(root):
            raise FileNotFoundError(f"`data_path` is not a folder: data_path={os.fspath(data_path)!r}.")
        if not any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(root)):
            raise ValueError(f"`data_path` {root!r} has no sub-folders; expected one sub-folder per class.")
    elif dataset == "digits" and data_path is not None:
        raise ValueError(f"`data_path` does not apply to the embedded 'digits' dataset; received data_path={data_path!r}.")
    elif data_path is not None and not os.path.exists(os.path.expanduser(os.fspath(data_path))):
        raise FileNotFoundError(f"`data_path` does not exist: data_path={os.fspath(data_path)!r}.")


def _check_paths(recipe, data_path, validation_path, weights):
    """Raises for a data path, validation folder or weights file that cannot be used (before any run directory)."""
    _check_data_path(recipe.dataset, data_path)
    if validation_path is not None:
        if recipe.dataset != "folder":
            raise ValueError(f"`validation_path` applies to dataset 'folder' only; received dataset={recipe.dataset!r}.")
        if recipe.validation_size is not None:
            raise ValueError("Give `validation_path` or `validation_size` (--validation-split), not both; received "
                             f"validation_size={recipe.validation_size!r}.")
        if not os.path.isdir(os.path.expanduser(os.fspath(validation_path))):
            raise FileNotFoundError(f"`validation_path` is not a folder: validation_path={os.fspath(validation_path)!r}.")
    if weights is not None:
        named = isinstance(weights, str) and weights in get_preset(recipe.preset).get("weights", {})
        if not named and not os.path.isfile(os.path.expanduser(os.fspath(weights))):
            raise FileNotFoundError(f"`weights` file not found: weights={os.fspath(weights)!r} (a local weights file "
                                    f"or a weight name of preset {recipe.preset!r}).")


def _check_run_settings(seed, strategy, mixed_precision, jit_compile, remat, deterministic):
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"`seed` must be an int; received seed={seed!r}.")
    if not isinstance(deterministic, bool):
        raise ValueError(f"`deterministic` must be a bool; received deterministic={deterministic!r}.")
    check_settings(strategy, mixed_precision, jit_compile)
    check_remat(remat)


def _path(value):
    return os.fspath(value) if value is not None else None


def resolve_config(recipe="digits_resnet", *, preset=None, dataset=None, data_path=None, run_dir=None, seed=0,
                   strategy="auto", mixed_precision="auto", jit_compile="auto", remat=False, deterministic=False,
                   coordinator=None, num_processes=None, process_id=None, weights=None, validation_path=None,
                   **overrides):
    """Resolves a run's configuration.

    Args:
        recipe: a recipe name (`keras_vitres.training.list_recipes()`).
        preset: the preset to train (default: the recipe's); the recipe's per-preset adjustments follow it.
        dataset: dataset name for `keras_vitres.data.load_dataset` (default: the recipe's).
        data_path: where the dataset is (see `load_dataset`). An image folder ("folder") is streamed from disk.
        run_dir: the run directory; default `default_run_dir(trained_name(recipe), dataset)`.
        seed: int. Seeds the weights, the validation split, the shuffle and the augmentations.
        strategy, coordinator, num_processes, process_id: see `keras_vitres.training.distribute`.
        mixed_precision: "auto", "float32", "mixed_float16" or "mixed_bfloat16"; jit_compile: "auto", True or False.
        remat: bool. Recompute every block's activations in the backward pass (the builders' `remat`): less
            memory for more compute. Like the precision, it changes how a run computes, not what: a run may be
            resumed with another setting.
        deterministic: bool. TensorFlow's op determinism (bit-identical reruns, a little slower).
        weights: a weight name of the preset, or a local weights file to start from (any format the builders'
            `weights=` reads; a run's model.keras included): the head is replaced when its classes differ, and a
            ViT's position embedding resampled when the resolution does.
        validation_path: "folder" only: a folder of the same classes, the validation split.
        **overrides: any `Recipe` field (e.g. `epochs=3`, `learning_rate=0.05`). Giving `epochs` without
            `steps` makes the run's length epochs-based.

    Returns:
        A `RunConfig`.
    """
    overrides = with_current_names(overrides)
    if dataset is not None:
        overrides["dataset"] = dataset
    if "epochs" in overrides and "steps" not in overrides:
        overrides["steps"] = None
    resolved = get_recipe(recipe, preset=preset, **overrides)
    resolved = follow_named_weights(resolved, weights, overrides)
    if resolved.dataset == "folder" and resolved.image_size is None:  # its images may differ in size
        resolved = dataclasses.replace(resolved, image_size=default_image_size(resolved.preset))
    _check_paths(resolved, data_path, validation_path, weights)
    _check_run_settings(seed, strategy, mixed_precision, jit_compile, remat, deterministic)
    name = trained_name(resolved)
    return RunConfig(
        recipe=resolved, name=name, run_dir=_path(run_dir) or default_run_dir(name, resolved.dataset),
        data_path=_path(data_path), validation_path=_path(validation_path), weights=_path(weights), seed=seed,
        strategy=strategy, mixed_precision=mixed_precision, jit_compile=jit_compile, remat=remat,
        deterministic=deterministic, coordinator=coordinator, num_processes=num_processes, process_id=process_id,
    )
