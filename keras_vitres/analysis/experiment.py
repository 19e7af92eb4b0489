"""The small, seeded training runs the analyses share: data preparation, a training loop, error curves, results.

The papers' figures come from long CIFAR/ImageNet runs; here every analysis reproduces its figure's *form* on the
offline digits (`load_dataset("digits")`) or any dataset `keras_vitres.data.load_dataset` reads.
"""

import dataclasses
import functools

import keras
import numpy as np

from keras_vitres.data import load_dataset
from keras_vitres.data.checks import check_positive_int
from keras_vitres.layers.preprocessing import Preprocessing
from keras_vitres.models import ResNet
from keras_vitres.training import fit
from keras_vitres.training.recipes import Recipe


@dataclasses.dataclass(frozen=True, eq=False)
class AnalysisData:
    """Float32 arrays ready for training (`load_analysis_data`).

    Attributes:
        x_train, y_train: training images (N, H, W, C) and int labels (N,).
        x_val, y_val: the held-out images and labels the error curves are measured on (the validation split when
            the dataset has one, else its test split, as the paper's figures plot test error).
        num_classes: int.
        name: the dataset name.
        preprocessing: the normalisation applied to raw [0, 255] pixels as a compact `Preprocessing` dict,
            {"mean": [3 floats], "std": 128.0} (empty when not normalised): pass it to
            `keras_vitres.export.export_saved_model(..., preprocessing=data.preprocessing)` so that a served model
            takes raw pixels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    name: str = ""
    preprocessing: dict = dataclasses.field(default_factory=dict)

    @property
    def image_shape(self):
        return tuple(self.x_train.shape[1:])


def _subset(x, y, size, name, rng):
    if size is None:
        return x, y
    check_positive_int(name, size)
    keep = np.sort(rng.permutation(len(y))[: int(size)])
    return x[keep], y[keep]


def load_analysis_data(dataset="digits", *, image_size=None, train_size=None, val_size=None, seed=0, path=None,
                       normalize=True):
    """Loads a dataset with `load_dataset` and prepares it for the analyses: an `AnalysisData`.

    With `normalize` the training set's mean of each channel is subtracted and the result divided by 128, so pixels
    lie in about [-1, 1] (the ResNet paper subtracts the per-pixel mean, §4.2; a per-channel mean can be baked into a
    TF Serving export).

    Args:
        dataset: a name `load_dataset` accepts ("digits", the offline default; "cifar10"; "folder"; ...).
        image_size: int or (height, width); "digits" and "folder" only (digits are 32x32 by default).
        train_size, val_size: optional ints. Keep seeded random subsets of that many training / held-out examples.
        seed: int. Seed of the subsets.
        path: where the data is (see `load_dataset`).
        normalize: bool. False keeps raw pixel values in [0, 255], as the package's trained models take them.
    """
    options = {} if image_size is None else {"image_size": image_size}
    splits = load_dataset(dataset, path=path, **options)
    x_train, y_train = splits.train
    x_val, y_val = splits.validation if splits.validation is not None else splits.test
    rng = np.random.default_rng(seed)
    x_train, y_train = _subset(x_train, y_train, train_size, "train_size", rng)
    x_val, y_val = _subset(x_val, y_val, val_size, "val_size", rng)
    channels = x_train.shape[-1]
    mean = x_train.reshape(-1, channels).astype(np.float64).mean(axis=0)
    preprocessing = Preprocessing(mean=mean, std=128.0) if normalize else Preprocessing()
    return AnalysisData(
        x_train=preprocessing.apply_numpy(x_train),
        y_train=np.asarray(y_train, np.int64),
        x_val=preprocessing.apply_numpy(x_val),
        y_val=np.asarray(y_val, np.int64),
        num_classes=splits.num_classes,
        name=splits.name,
        preprocessing=preprocessing.to_dict(compact=True),
    )


OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass
class TrainingSettings:
    """How the analyses train each network; the same settings (and seed) for every network compared.

    They become a `keras_vitres.training.Recipe` (`recipe()`): a cosine decay to 0 over the run, no warmup, no
    augmentation, sparse cross-entropy.

    Attributes:
        epochs: int. Passes over the training set.
        batch_size: int. Examples per step (128 in the paper).
        learning_rate: float. Initial learning rate.
        momentum: float. SGD momentum (0.9 in the paper).
        weight_decay: float. L2 weight decay of the convolution kernels (1e-4 in the paper), as the builders'
            `kernel_regularizer`; 0 turns it off.
        optimizer: "sgd" (the ResNet paper) or "adam" (the ViT paper's from scratch, §3 and Appendix B.1).
        seed: int. Seeds the weights and the batch order, so networks differ only by their architecture.
    """

    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    seed: int = 0

    def __post_init__(self):
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0; received learning_rate={self.learning_rate!r}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1); received momentum={self.momentum!r}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"`weight_decay` must be >= 0; received weight_decay={self.weight_decay!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}; received optimizer={self.optimizer!r}.")

    def recipe(self):
        """These settings as the `Recipe` that `train_classifier` trains with."""
        return Recipe(
            name="analysis",
            description="the analyses' settings; the network and the data are the analysis's own",
            batch_size=self.batch_size,
            optimizer="sgd" if self.optimizer == "sgd" else "adamw",  # without decoupled weight decay: Adam
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            weight_decay_mode="l2",  # through `regularizer()`, in the network the analysis builds
            schedule="cosine",
            final_learning_rate=0.0,
            epochs=self.epochs,
            steps=None,
            normalization="none",
        )

    def regularizer(self):
        """The builders' `kernel_regularizer` (None without weight decay)."""
        # The paper's weight decay w <- w - lr * wd * w is the gradient of (wd / 2) * |w|^2.
        return keras.regularizers.L2(self.weight_decay / 2) if self.weight_decay else None


def set_seed(seed):
    """Seeds Python, NumPy and the backend, so a network built next gets the same initial weights."""
    keras.utils.set_random_seed(int(seed))


def train_classifier(model, data, settings):
    """Trains `model` (uncompiled, softmax outputs) on an `AnalysisData` with `TrainingSettings` through
    `keras_vitres.training`; returns {"train_error": [...], "val_error": [...]}, a fraction per epoch.

    The training error of an epoch is measured while training (running average, BN in training mode), as the thin
    curves of the paper's Fig. 1 and 6; the validation error at the end of each epoch.
    """
    recipe = settings.recipe()
    plan = fit.plan_steps(recipe, len(data.y_train))
    fit.compile_for_recipe(model, recipe, plan)
    set_seed(settings.seed)  # the same random state for every network of a comparison
    logs = fit.fit_model(model, recipe, (data.x_train, data.y_train), (data.x_val, data.y_val), plan=plan,
                     seed=settings.seed)
    return {
        "train_error": [1.0 - float(a) for a in logs["accuracy"]],
        "val_error": [1.0 - float(a) for a in logs["val_accuracy"]],
    }


def train_new_model(build, data, settings):
    """Seeds, calls `build()` for an uncompiled network and trains it: the one training loop of every analysis;
    returns (model, its `train_classifier` curves).

    Seeding right before each build gives every network of a comparison the same random state (initial weights of
    the layers they share, batch order), so that they differ only by their architecture.
    """
    set_seed(settings.seed)
    model = build()
    return model, train_classifier(model, data, settings)


def train_cifar_resnet(depth, data, settings, **model_args):
    """Trains a CIFAR ResNet of `depth` (6n + 2), or plain net, sized for `data` with `train_new_model`;
    `model_args` are more `ResNet` arguments (`shortcut`, `name`, `stage_filters`, ...)."""
    build = functools.partial(
        ResNet,
        depth,
        stem="cifar",
        input_shape=data.image_shape,
        classes=data.num_classes,
        kernel_regularizer=settings.regularizer(),
        **model_args,
    )
    return train_new_model(build, data, settings)


def predict_probabilities(model, x, batch_size=256):
    """`model`'s outputs on `x` as a float64 NumPy array, in inference mode."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)


def error_rate(probabilities, labels):
    """The fraction of examples whose most probable class is not the label."""
    return float(np.mean(np.argmax(probabilities, axis=-1) != np.asarray(labels)))


def plain_data(value, exclude=()):
    """A result (dataclasses, dicts, lists, NumPy values) as plain Python types for JSON, leaving out the
    `exclude` fields of a top-level dataclass (models, images)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in exclude}
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class AnalysisResult:
    """What every analysis returns: a dataclass of its numbers, with `figure` the path of its PNG or None."""

    EXCLUDE = ()  # fields left out of `to_dict` (models, images)

    def to_dict(self):
        """The numbers, as plain Python types (JSON-ready)."""
        return plain_data(self, exclude=self.EXCLUDE)

    def plotted(self, plot, path):
        """Sets `figure` to `plot(self, path)` when a `path` is given; returns the result."""
        if path is not None:
            self.figure = plot(self, path)
        return self
