"""Evaluation of a trained model (a run directory, a .keras file or a `keras.Model`) on a dataset split."""

import json
import os

import keras

from keras_vitres.layers.preprocessing import find_preprocessing
from keras_vitres.training import run_dir


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
    from keras_vitres.data import load_dataset, make_pipeline

    splits_ = ("test", "validation", "train")
    if split not in splits_:
        raise ValueError(f"`split` must be one of {splits_}; received split={split!r}.")
    if checkpoint not in ("final", "best"):
        raise ValueError(f"`checkpoint` must be 'final' or 'best'; received checkpoint={checkpoint!r}.")
    run_config, path = {}, None
    if isinstance(model, keras.Model):
        net = model
    else:
        path = os.fspath(model)
        if os.path.isdir(path):
            config_path = os.path.join(path, run_dir.CONFIG_FILE)
            if os.path.exists(config_path):
                with open(config_path) as f:
                    run_config = json.load(f)
            path = os.path.join(path, run_dir.MODEL_FILE if checkpoint == "final" else run_dir.BEST_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"`model` must be a run directory with a {run_dir.MODEL_FILE} or a .keras file; "
                                    f"{path!r} does not exist.")
        from keras_vitres.weights.loaders import load_keras_model

        net = load_keras_model(path, argument="model")
    recipe = run_config.get("recipe", {})
    dataset = dataset or recipe.get("dataset") or "digits"
    if data_path is None and dataset == recipe.get("dataset"):
        data_path = run_config.get("data_path")
    same_data = dataset == recipe.get("dataset")
    validation_size = recipe.get("validation_size") if same_data else None
    # An image folder is streamed, as the run trained on it: its images may differ in size.
    options = dict(stream=True, validation_path=run_config.get("validation_path") if same_data else None) \
        if dataset == "folder" else {}
    data = load_dataset(dataset, data_path, validation_size=validation_size, seed=run_config.get("seed", 0), **options)
    arrays = getattr(data, split)
    if arrays is None:
        raise ValueError(f"dataset {dataset!r} has no {split!r} split here (the run used no validation split).")
    # The size the model takes: its input's, else the one its preprocessing description states.
    size = tuple(net.input_shape[1:3])
    described = find_preprocessing(net)
    if None in size and described is not None and described.preprocessing.image_size is not None:
        size = described.preprocessing.image_size
    image_size = size if None not in size and size != tuple(data.image_shape[:2]) else None
    # The evaluation crop and interpolation that the model's preprocessing description states (as in training).
    geometry = described.preprocessing if described is not None else None
    pipeline = make_pipeline(*arrays, batch_size=batch_size, training=False, num_classes=data.num_classes,
                             image_size=image_size, cache=False,
                             crop_fraction=geometry.crop_fraction if geometry is not None and image_size else None,
                             interpolation=geometry.interpolation if geometry is not None else "bilinear")
    if net.output_shape[-1] != data.num_classes:
        raise ValueError(f"model has {net.output_shape[-1]} outputs but dataset {dataset!r} has {data.num_classes} "
                         "classes.")
    net.compile(loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    scores = net.evaluate(pipeline, return_dict=True, verbose=verbose)
    return dict(accuracy=float(scores["accuracy"]), loss=float(scores["loss"]), examples=int(len(arrays[1])),
                split=split, dataset=dataset, model=path or net.name,
                preprocessing=described.preprocessing.formula() if described is not None else None)
