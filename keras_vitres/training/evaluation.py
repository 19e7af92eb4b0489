"""Evaluation of a trained model (a run directory, a .keras file or a `keras.Model`) on a dataset split."""

import json
import os

import keras

from keras_vitres.data import load_dataset, make_pipeline
from keras_vitres.layers.preprocessing import find_preprocessing
from keras_vitres.training import run_dir
from keras_vitres.training.config import RunConfig
from keras_vitres.weights.loaders import load_keras_model

SPLITS = ("test", "validation", "train")


def _open(model, checkpoint):
    """(the model, the file it came from or None, the run's `RunConfig` or None)."""
    if isinstance(model, keras.Model):
        return model, None, None
    path, run = os.fspath(model), None
    if os.path.isdir(path):
        config_path = os.path.join(path, run_dir.CONFIG_FILE)
        if os.path.exists(config_path):
            with open(config_path) as f:
                run = RunConfig.from_dict(json.load(f))
        path = os.path.join(path, run_dir.MODEL_FILE if checkpoint == "final" else run_dir.BEST_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`model` must be a run directory with a {run_dir.MODEL_FILE} or a .keras file; "
                                f"{path!r} does not exist.")
    return load_keras_model(path, argument="model"), path, run


def _load_split(dataset, data_path, split, run):
    """The split's (x, y) and the `DataSplits`, with the run's data path, validation split and seed for its data."""
    same_data = run is not None and dataset == run.recipe.dataset
    if data_path is None and same_data:
        data_path = run.data_path
    options = dict(validation_size=run.recipe.validation_size if same_data else None, seed=run.seed if run else 0)
    if dataset == "folder":  # streamed, as the run trained on it: its images may differ in size
        options.update(stream=True, validation_path=run.validation_path if same_data else None)
    data = load_dataset(dataset, data_path, **options)
    arrays = getattr(data, split)
    if arrays is None:
        raise ValueError(f"dataset {dataset!r} has no {split!r} split here (the run used no validation split).")
    return arrays, data


def _pipeline(net, arrays, data, batch_size):
    """The evaluation pipeline at the size, crop and interpolation the model's preprocessing states (as in training)."""
    size = tuple(net.input_shape[1:3])
    described = find_preprocessing(net)
    geometry = described.preprocessing if described is not None else None
    if None in size and geometry is not None and geometry.image_size is not None:
        size = geometry.image_size
    image_size = size if None not in size and size != tuple(data.image_shape[:2]) else None
    return make_pipeline(*arrays, batch_size=batch_size, training=False, num_classes=data.num_classes,
                         image_size=image_size, cache=False,
                         crop_fraction=geometry.crop_fraction if geometry is not None and image_size else None,
                         interpolation=geometry.interpolation if geometry is not None else "bilinear")  # fmt: skip


def evaluate(model, dataset=None, *, data_path=None, split="test", batch_size=256, checkpoint="final", verbose=0):
    """Evaluates a trained model on a dataset split.

    Args:
        model: a run directory, a `.keras` file, or a `keras.Model` (taking raw [0, 255] pixels).
        dataset: dataset name; default: the run's (from its config.json), else "digits".
        data_path: where the dataset is; default: the run's.
        split: "test", "validation" or "train".
        batch_size: int.
        checkpoint: for a run directory: "final" (model.keras) or "best" (checkpoints/best.keras).
        verbose: Keras' evaluate verbosity.

    Returns:
        dict: accuracy, loss, examples, split, dataset, model (the file evaluated), preprocessing (the formula
        of the model's `ImagePreprocessing` layer, or None when it has none).
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}; received split={split!r}.")
    if checkpoint not in ("final", "best"):
        raise ValueError(f"`checkpoint` must be 'final' or 'best'; received checkpoint={checkpoint!r}.")
    net, path, run = _open(model, checkpoint)
    dataset = dataset or (run.recipe.dataset if run else "digits")
    arrays, data = _load_split(dataset, data_path, split, run)
    pipeline = _pipeline(net, arrays, data, batch_size)
    if net.output_shape[-1] != data.num_classes:
        raise ValueError(f"model has {net.output_shape[-1]} outputs but dataset {dataset!r} has {data.num_classes} "
                         "classes.")
    net.compile(loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    scores = net.evaluate(pipeline, return_dict=True, verbose=verbose)
    described = find_preprocessing(net)
    return dict(accuracy=float(scores["accuracy"]), loss=float(scores["loss"]), examples=int(len(arrays[1])),
                split=split, dataset=dataset, model=path or net.name,
                preprocessing=described.preprocessing.formula() if described is not None else None)
