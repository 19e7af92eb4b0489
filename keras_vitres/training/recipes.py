"""Training recipes: the papers' settings as rows of data (`RECIPES`, described in docs/training.md), selectable by
name, every field overridable.

`get_recipe(name, preset=None, **overrides)` returns the `Recipe` with the row's per-preset adjustments (e.g. the
warmup the paper gives ResNet-110 and -1202), then `overrides`; `bit_hyperrule(dataset_size, image_size)` gives the
BiT-HyperRule's per-data-set fields to pass as overrides.
"""

import dataclasses
import difflib
import math

from keras_vitres.data.augment import AUGMENTS
from keras_vitres.data.checks import check_positive_int, is_positive_int
from keras_vitres.data.datasets import DATASETS, TFDS_PREFIX
from keras_vitres.data.folder import check_image_size
from keras_vitres.data.geometry import DEFAULT_AREA_RANGE, check_area_range, check_crop_fraction
from keras_vitres.presets import list_presets
from keras_vitres.training.schedules import WARMUP_MODES

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "linear", "constant")
WEIGHT_DECAY_MODES = ("l2", "decoupled")
NORMALIZATIONS = ("pixel_mean", "rescale", "none", "weights")
FORMER_FIELDS = {"preprocessing": "normalization"}  # as config.json files written before the rename name them
RATES = ("learning_rate", "momentum", "weight_decay", "final_learning_rate", "warmup_learning_rate", "mixup_alpha",
         "cutmix_alpha", "label_smoothing", "decay_factor")  # fmt: skip


def _check_name(field, value, names, extra=""):
    """Raises a ValueError naming `field` unless `value` is one of `names`, suggesting the closest names."""
    if isinstance(value, str) and value in names:
        return
    close = difflib.get_close_matches(value, names, n=3, cutoff=0.5) if isinstance(value, str) else []
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = f"{len(names)} names: see `keras_vitres.list_presets()`" if field == "preset" else f"{list(names)}"
    raise ValueError(f"Unknown {field}: received {field}={value!r}.{hint} Valid: {listing}{extra}.")


def _is_number(value):
    """Whether `value` is a finite int or float (NaN and inf pass `value < 0`; a bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def with_current_names(fields):
    """`fields` with the former names of renamed fields (`FORMER_FIELDS`) replaced by the current ones."""
    return {FORMER_FIELDS.get(key, key): value for key, value in fields.items()}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Every setting of a training run that is not about where it runs (the fields: docs/training.md, "Recipes").

    Attributes:
        name, description: the recipe's name and one line.
        preset, dataset: the defaults of the run (`keras_vitres.list_presets()`, `keras_vitres.data.load_dataset`).
        model_overrides: builder arguments on top of the preset; `input_shape` and `classes` come from the data.
        batch_size: global batch size (split across replicas and processes).
        optimizer: "sgd" (with `momentum`, `nesterov`) or "adamw"; learning_rate: the base (peak) rate.
        weight_decay, weight_decay_mode: "l2" is a penalty `weight_decay / 2 * ||w||^2` on every kernel through the
            builder's `kernel_regularizer` (the paper's SGD weight decay; ResNet builders), "decoupled" the
            optimizer's own, which skips biases, normalisation scales, tokens and position embeddings.
        schedule: "step" (times `decay_factor` at each of `decay_boundaries`), "cosine" or "linear" (to
            `final_learning_rate` at the last step), or "constant".
        warmup_steps, warmup_epochs, warmup_mode, warmup_learning_rate: the warmup's length (`warmup_epochs`
            replaces the steps when set), "linear" from `warmup_learning_rate` to the schedule's rate or "constant"
            at it.
        warmup_until_accuracy: None, or the running training accuracy that ends the warmup early (the paper's
            ResNet-110 rule: 0.2); `warmup_steps` is then its cap.
        steps, epochs: the run's length (`steps` when set); steps_per_epoch: steps between validations and backups
            (None: one pass over the training set).
        validation_size: held out of the training set for validation: a count, a fraction in (0, 1), or None.
        augment: a `keras_vitres.data.AUGMENTS` name; random_translation: random shifts of up to this fraction of
            the height and width (0 = off); mixup_alpha, cutmix_alpha: MixUp / CutMix strengths (0 = off);
            label_smoothing. MixUp, CutMix and label smoothing make the labels one-hot.
        normalization: what the model's first layer ("preprocessing") does to raw pixels: "pixel_mean" (subtract
            the training set's per-pixel mean, arXiv:1512.03385 §4.2), "rescale" (to [-1, 1], ViT), "none", or
            "weights": the preprocessing of the named weights the run starts from (`resolve_config` sets it).
        image_size: the model's input (height, width) (an int: square), to which the pipeline resizes; None: the
            images' own size (for an image folder `resolve_config` sets the preset's).
        crop_fraction: evaluation resizes to cover `image_size / crop_fraction` and takes the centre; it is the
            model's `Preprocessing.crop_fraction`, so the export crops the same. crop_area_range: the area
            fractions of augment="random_resized_crop".
        gradient_clip_norm: clip the global gradient norm (ViT: 1), or None.
        preset_overrides: {preset name: {field: value}} applied when the run uses that preset.
    """

    name: str
    description: str = ""
    preset: str = "resnet20"
    dataset: str = "digits"
    model_overrides: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    weight_decay_mode: str = "l2"
    schedule: str = "constant"
    decay_boundaries: tuple = ()
    decay_factor: float = 0.1
    final_learning_rate: float = 0.0
    warmup_steps: int = 0
    warmup_epochs: float | None = None
    warmup_mode: str = "linear"
    warmup_learning_rate: float = 0.0
    warmup_until_accuracy: float | None = None
    steps: int | None = None
    epochs: int | None = 10
    steps_per_epoch: int | None = None
    validation_size: int | None = None
    augment: str = "none"
    random_translation: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    label_smoothing: float = 0.0
    normalization: str = "pixel_mean"
    image_size: int | tuple | None = None
    crop_fraction: float = 1.0
    crop_area_range: tuple = DEFAULT_AREA_RANGE
    gradient_clip_norm: float | None = None
    preset_overrides: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self._check_names()
        self._check_length()
        self._check_schedule()
        self._check_data()
        object.__setattr__(self, "decay_boundaries", tuple(self.decay_boundaries))
        object.__setattr__(self, "image_size", check_image_size(self.image_size))
        object.__setattr__(self, "crop_fraction", check_crop_fraction(self.crop_fraction))
        object.__setattr__(self, "crop_area_range", check_area_range(self.crop_area_range))

    def _check_names(self):
        choices = dict(optimizer=OPTIMIZERS, schedule=SCHEDULES, weight_decay_mode=WEIGHT_DECAY_MODES,
                       normalization=NORMALIZATIONS, augment=AUGMENTS, warmup_mode=WARMUP_MODES)  # fmt: skip
        for field, valid in choices.items():
            if getattr(self, field) not in valid:
                raise ValueError(f"`{field}` must be one of {valid}; received {field}={getattr(self, field)!r}.")
        _check_name("preset", self.preset, list_presets())
        if not (isinstance(self.dataset, str) and self.dataset.startswith(TFDS_PREFIX) and len(self.dataset) > 5):
            _check_name("dataset", self.dataset, DATASETS, extra=f" or '{TFDS_PREFIX}NAME'")
        for field in ("model_overrides", "preset_overrides"):
            if not isinstance(getattr(self, field), dict):
                raise ValueError(f"`{field}` must be a dict; received {field}={getattr(self, field)!r}.")
        if {"input_shape", "classes"} & set(self.model_overrides):
            raise ValueError("`model_overrides` must be a dict of builder arguments without `input_shape` and "
                             f"`classes` (they come from the data); received model_overrides={self.model_overrides!r}.")

    def _check_length(self):
        for field in ("batch_size", "steps", "epochs", "steps_per_epoch"):
            value = getattr(self, field)
            if not (is_positive_int(value) or (value is None and field != "batch_size")):
                raise ValueError(f"`{field}` must be a positive int{'' if field == 'batch_size' else ' or None'}; "
                                 f"received {field}={value!r}.")
        if self.steps is None and self.epochs is None:
            raise ValueError("Give the run a length: `steps` or `epochs`; received steps=None and epochs=None.")
        size = self.validation_size
        if not (size is None or is_positive_int(size) or (isinstance(size, float) and 0 < size < 1)):
            raise ValueError("`validation_size` must be a count >= 1, a fraction in (0, 1) or None; received "
                             f"validation_size={size!r}.")

    def _check_schedule(self):
        for field in RATES:
            if not (_is_number(getattr(self, field)) and getattr(self, field) >= 0):
                raise ValueError(f"`{field}` must be a finite number >= 0; received {field}={getattr(self, field)!r}.")
        steps = self.warmup_steps
        if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
            raise ValueError(f"`warmup_steps` must be an int >= 0; received warmup_steps={self.warmup_steps!r}.")
        bounds = list(self.decay_boundaries)
        if not all(map(is_positive_int, bounds)) or bounds != sorted(set(bounds)):
            raise ValueError("`decay_boundaries` must be increasing positive ints; received "
                             f"decay_boundaries={self.decay_boundaries!r}.")
        if self.schedule == "step" and not bounds:
            raise ValueError("schedule='step' needs `decay_boundaries`; received decay_boundaries=().")
        if self.warmup_until_accuracy is not None and not 0 < self.warmup_until_accuracy <= 1:
            raise ValueError("`warmup_until_accuracy` must be None or in (0, 1]; received "
                             f"warmup_until_accuracy={self.warmup_until_accuracy!r}.")
        if not (self.warmup_epochs is None or (_is_number(self.warmup_epochs) and self.warmup_epochs >= 0)):
            raise ValueError("`warmup_epochs` must be None or a number >= 0; received "
                             f"warmup_epochs={self.warmup_epochs!r}.")

    def _check_data(self):
        if not (_is_number(self.random_translation) and 0 <= self.random_translation < 0.5):
            raise ValueError(
                f"`random_translation` must be in [0, 0.5); received random_translation={self.random_translation!r}."
            )
        if not self.label_smoothing < 1:
            raise ValueError(f"`label_smoothing` must be in [0, 1); received label_smoothing={self.label_smoothing!r}.")

    def to_dict(self):
        """The recipe as a JSON-ready dict (tuples become lists)."""
        row = dataclasses.asdict(self)
        for field in ("decay_boundaries", "image_size", "crop_area_range"):
            row[field] = None if row[field] is None else list(row[field])
        return row

    @classmethod
    def from_dict(cls, row):
        """The recipe of a dict from `to_dict` (a run's config.json; earlier versions' field names included)."""
        return cls(**with_current_names(row))


# From scratch on small images: Keras' glorot_uniform for the patch embedding (the paper's lecun_normal draws a 4x4x3
# patch's kernel about 3x larger) and a non-zero head (the paper zero-initialises it to fine-tune); see docs/models.md.
SCRATCH_VIT_INITIALIZERS = dict(patch_kernel_initializer="glorot_uniform", head_kernel_initializer="glorot_uniform",
                                encoder_kernel_initializer="glorot_uniform")

PAPER_CIFAR_WARMUP = dict(  # arXiv:1512.03385 §4.2: ResNet-110 (and -1202) warm up at 0.01 until error < 80%
    warmup_mode="constant", warmup_learning_rate=0.01, warmup_until_accuracy=0.2, warmup_steps=4000
)

RECIPES = {
    "cifar_resnet": Recipe(
        name="cifar_resnet",
        description="ResNet paper §4.2 on CIFAR-10: SGD 0.9, lr 0.1 /10 at 32k and 48k, 64k steps, wd 1e-4",
        preset="resnet20",
        dataset="cifar10",
        batch_size=128,
        optimizer="sgd",
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        weight_decay_mode="l2",
        schedule="step",
        decay_boundaries=(32000, 48000),
        decay_factor=0.1,
        steps=64000,
        epochs=None,
        validation_size=5000,
        augment="cifar",
        normalization="pixel_mean",
        preset_overrides={"resnet110": PAPER_CIFAR_WARMUP, "resnet1202": PAPER_CIFAR_WARMUP},
    ),
    "vit_small_data": Recipe(
        name="vit_small_data",
        description="ViT-Ti/4 from scratch on 32x32 data: AdamW, warmup + cosine, RandAugment, MixUp/CutMix",
        preset="vit_tiny_patch16_224",
        dataset="cifar10",
        model_overrides=dict(patch_size=4, drop_path_rate=0.1, **SCRATCH_VIT_INITIALIZERS),
        batch_size=128,
        optimizer="adamw",
        learning_rate=1e-3,
        weight_decay=0.05,
        weight_decay_mode="decoupled",
        schedule="cosine",
        final_learning_rate=1e-5,
        warmup_epochs=5,
        warmup_mode="linear",
        epochs=200,
        validation_size=5000,
        augment="randaugment",
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        label_smoothing=0.1,
        normalization="rescale",
        gradient_clip_norm=1.0,
    ),
    "digits_resnet": Recipe(
        name="digits_resnet",
        description="ResNet-20 on the embedded digits (the offline default): SGD 0.9, warmup + cosine, random shifts",
        preset="resnet20",
        dataset="digits",
        batch_size=64,
        optimizer="sgd",
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        weight_decay_mode="l2",
        schedule="cosine",
        warmup_steps=50,
        warmup_mode="linear",
        epochs=12,
        augment="none",
        random_translation=0.1,  # shifts of up to 3 pixels: digits must not be flipped, so no "cifar" crop-and-flip
        normalization="pixel_mean",
    ),
    "digits_vit": Recipe(
        name="digits_vit",
        description="A small ViT/4 on the embedded digits: AdamW, warmup + cosine, random shifts",
        preset="vit_digits_patch4_32",
        dataset="digits",
        model_overrides=dict(SCRATCH_VIT_INITIALIZERS),
        batch_size=64,
        optimizer="adamw",
        learning_rate=1e-3,
        weight_decay=0.05,
        weight_decay_mode="decoupled",
        schedule="cosine",
        warmup_epochs=2,
        warmup_mode="linear",
        epochs=20,
        augment="none",
        random_translation=0.1,
        normalization="rescale",
    ),
    "finetune_vit": Recipe(
        name="finetune_vit",
        description="ViT fine-tuning (paper App. B.1.1): SGD 0.9, no weight decay, clip 1, warmup + cosine, new head",
        preset="vit_base_patch16_224",
        dataset="folder",
        # arXiv:2010.11929 App. B.1.1: batch 512 and a rate from {0.001, 0.003, 0.01, 0.03}; here smaller batches for
        # a small folder, at the sweep's rate that suits them. The builders replace the head by a zero one, the
        # loaders resample the position embedding (§3.2).
        batch_size=64,
        optimizer="sgd",
        learning_rate=0.01,
        momentum=0.9,
        weight_decay=0.0,
        weight_decay_mode="decoupled",
        schedule="cosine",
        warmup_epochs=1,
        warmup_mode="linear",
        epochs=10,
        augment="random_resized_crop",  # big_vision's fine-tuning input: inception_crop, flip_lr
        normalization="rescale",  # [-1, 1], the official checkpoints' convention
        crop_fraction=0.875,
        gradient_clip_norm=1.0,
    ),
    "finetune_resnet": Recipe(
        name="finetune_resnet",
        description="ResNet fine-tuning: the paper's SGD 0.9 and wd 1e-4 at lr 0.01, cosine, Inception crop + flip",
        preset="resnet50",
        dataset="folder",
        # arXiv:1512.03385 §3.4's optimiser at a tenth of its 0.1, as fine-tuning does; a cosine decay, since a
        # fine-tuning run's length is not known ahead; evaluation takes §3.4's 224/256 centre crop.
        batch_size=64,
        optimizer="sgd",
        learning_rate=0.01,
        momentum=0.9,
        weight_decay=1e-4,
        weight_decay_mode="l2",
        schedule="cosine",
        epochs=10,
        augment="random_resized_crop",
        normalization="rescale",
        crop_fraction=0.875,
    ),
}


def bit_hyperrule(dataset_size, image_size):
    """The BiT-HyperRule's fields for a data set (Kolesnikov et al., arXiv:1912.11370, §3.3), with the numbers of
    the official `bit_hyperrule.py` (google-research/big_transfer): the schedule by the number of training examples,
    MixUp from 20k examples, the resolution by the images' area (the code's 480 where the paper's text says 384).
    The package's pipeline resizes to the crop size and crops after a 4-pixel padding (`augment="cifar"`), its
    closest to resize-then-random-crop.

    Args:
        dataset_size: int. Number of training examples.
        image_size: (height, width) of the data set's images.

    Returns:
        dict of `Recipe` fields: steps, warmup_steps, decay_boundaries, mixup_alpha, image_size.

    Examples:
        >>> bit_hyperrule(50_000, (32, 32))["decay_boundaries"]
        (3000, 6000, 9000)
    """
    check_positive_int("dataset_size", dataset_size)
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError(f"`image_size` must be (height, width); received image_size={image_size!r}.") from None
    if dataset_size < 20_000:
        supports = (100, 200, 300, 400, 500)
    elif dataset_size < 500_000:
        supports = (500, 3000, 6000, 9000, 10_000)
    else:
        supports = (500, 6000, 12_000, 18_000, 20_000)
    return dict(
        steps=supports[-1],
        warmup_steps=supports[0],
        decay_boundaries=supports[1:-1],
        mixup_alpha=0.0 if dataset_size < 20_000 else 0.1,
        image_size=128 if height * width < 96 * 96 else 480,
    )


RECIPES["bit_hyperrule"] = Recipe(
    name="bit_hyperrule",
    description="BiT-HyperRule fine-tuning (arXiv:1912.11370 §3.3): SGD 0.9, lr 0.003, batch 512, warmup, /10 at "
    "30/60/90%, MixUp 0.1 on large data; per data set: `bit_hyperrule(dataset_size, image_size)`",
    preset="bit_r50x1",
    dataset="cifar10",
    batch_size=512,
    optimizer="sgd",
    learning_rate=0.003,
    momentum=0.9,
    weight_decay=0.0,
    schedule="step",
    decay_factor=0.1,
    warmup_mode="linear",
    warmup_learning_rate=0.0,
    epochs=None,
    augment="cifar",
    normalization="rescale",  # pixels to [-1, 1], as the BiT models were trained
    **bit_hyperrule(50_000, (32, 32)),  # CIFAR-10: 10k steps, MixUp 0.1, 128x128
)


def list_recipes():
    """Returns the names of the registered recipes, sorted."""
    return sorted(RECIPES)


def get_recipe(name, preset=None, **overrides):
    """Returns the recipe `name` for `preset` (default: the recipe's), with `overrides` applied.

    Args:
        name: a registered recipe name, or a `Recipe`.
        preset: the preset the run trains; the recipe's `preset_overrides` for it are applied first.
        **overrides: any `Recipe` field.

    Returns:
        A `Recipe`.

    Examples:
        >>> get_recipe("cifar_resnet", preset="resnet110").warmup_learning_rate
        0.01
        >>> get_recipe("cifar_resnet", batch_size=64).batch_size
        64
    """
    if isinstance(name, Recipe):
        recipe = name
    elif name not in RECIPES:
        close = difflib.get_close_matches(str(name), RECIPES, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown recipe: received name={name!r}.{hint} Recipes: {list_recipes()}.")
    else:
        recipe = RECIPES[name]
    overrides = with_current_names(overrides)
    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        hints = {u: difflib.get_close_matches(u, fields, n=1) for u in unknown}
        hint = "; ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in hints.items())
        raise ValueError(f"Unknown recipe field(s): {hint}. Fields: {sorted(fields)}.")
    preset = preset or overrides.get("preset") or recipe.preset
    adjusted = {**recipe.preset_overrides.get(preset, {}), **overrides, "preset": preset}
    return dataclasses.replace(recipe, **adjusted)
