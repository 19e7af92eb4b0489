"""SavedModel export for TF Serving: a float-pixel signature and an encoded-image signature.

The export directory follows TF Serving's layout, `export_dir/<version>/saved_model.pb` with integer versions; the
server serves the highest version and picks up new ones as they appear. A version is written under a hidden
temporary name and renamed when complete, so the server never sees a half-written model.

Signatures (inputs -> outputs):
    serving_default: `images` float32 (batch, H, W, C), raw [0, 255] RGB pixels
        -> `probabilities` float32 (batch, classes), `classes` int32 (batch, k), `scores` float32 (batch, k),
           and `class_names` string (batch, k) when class names are given.
    serving_bytes: `image_bytes` string (batch,), JPEG or PNG files -> the same outputs. The graph checks the
        format (magic bytes) and the declared size (header) against `max_pixels` before decoding, decodes to
        RGB, resizes and centre-crops to (H, W) as the evaluation pipeline does (`data.geometry.resize_and_crop`, the
        model's `Preprocessing.crop_fraction`) and then runs exactly the float path.
Preprocessing is inside the graph either way: the model's own (its `ImagePreprocessing` layer, as the package's
runner trains it) or the `preprocessing=` given to the export, one `keras_vitres.layers.Preprocessing` in both cases;
the bytes signature also crops and resizes as that description says. The metadata file
(`assets.extra/keras_vitres.json`) states the description, where it came from and its formula. The export needs
only TensorFlow to load.
"""

import dataclasses
import json
import os
import shutil
import uuid

import keras

from keras_vitres.export.decoding import DEFAULT_MAX_PIXELS, check_max_pixels, check_resize_method, decode_image_batch
from keras_vitres.export.preprocessing import model_preprocessing
from keras_vitres.layers.preprocessing import Preprocessing
from keras_vitres.version import __version__

FLOAT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
FLOAT_INPUT = "images"
BYTES_INPUT = "image_bytes"
OUTPUT_KINDS = ("auto", "probabilities", "logits")
METADATA_FILE = os.path.join("assets.extra", "keras_vitres.json")


def classifier_output_kind(model):
    """Returns "probabilities" when the model ends in a softmax, "logits" when its last layer is linear.

    The last layer is followed into nested models. Raises a ValueError for any other ending (sigmoid, a custom
    layer), where the caller must say which it is.
    """
    layer = model.layers[-1]
    while isinstance(layer, keras.Model) and layer.layers:  # a model nested as the last layer: look inside it
        layer = layer.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return "probabilities"
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    if name == "softmax":
        return "probabilities"
    if name == "linear":
        return "logits"
    raise ValueError(
        f"Cannot tell whether model {model.name!r} outputs probabilities or logits: its last layer "
        f"{layer.name!r} ({type(layer).__name__}, activation {name!r}) is neither a softmax nor linear. "
        "Pass output='probabilities' or output='logits'."
    )


def next_version(export_dir):
    """The next integer version under `export_dir`: one more than the highest existing, or 1."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(n) for n in os.listdir(export_dir) if n.isdigit() and os.path.isdir(os.path.join(export_dir, n))]
    return max(versions, default=0) + 1


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model; received model={model!r}.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"`model` must have one image input and one class-score output; model {model.name!r} has "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs."
        )
    input_shape, output_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(input_shape) != 4 or input_shape[-1] is None:
        raise ValueError(f"`model` must take (batch, H, W, C) images; model {model.name!r} takes {input_shape}.")
    if len(output_shape) != 2 or output_shape[-1] is None:
        raise ValueError(
            f"`model` must output (batch, classes) scores (a classifier built with include_top=True); "
            f"model {model.name!r} outputs {output_shape}."
        )
    return input_shape[1:], output_shape[-1]


def _check_image_size(image_size, model_size):
    if image_size is None:
        if None in model_size:
            raise ValueError(
                f"`image_size` is needed: the model accepts any image size ({model_size}), and the export must fix "
                "one for the bytes signature to resize to; received image_size=None."
            )
        return tuple(model_size)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(
            f"`image_size` must be an int or (height, width) of positive ints; received image_size={image_size!r}."
        )
    if any(m is not None and m != s for m, s in zip(model_size, size)):
        raise ValueError(f"`image_size` must match the model's input {model_size}; received image_size={image_size!r}.")
    return size


def _check_class_names(class_names, num_classes):
    if class_names is None:
        return None
    names = list(class_names) if not isinstance(class_names, str) else None
    if names is None or not all(isinstance(n, str) for n in names) or len(names) != num_classes:
        raise ValueError(
            f"`class_names` must be a list of {num_classes} strings, one per class of the model; received "
            f"{len(names) if names is not None else 'a ' + type(class_names).__name__} "
            f"(class_names={class_names!r:.200})."
        )
    return names


def _resolve_version(export_dir, version, overwrite):
    if version is None:
        return next_version(export_dir)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(
            f"`version` must be a positive int (TF Serving's version folders); received version={version!r}."
        )
    if os.path.exists(os.path.join(export_dir, str(version))) and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists in {export_dir!r}; pass overwrite=True to replace it, or "
            f"version=None for the next free version ({next_version(export_dir)})."
        )
    return version


def build_serving_functions(
    model,
    *,
    image_size,
    preprocessing,
    output,
    top_k,
    class_names=None,
    antialias=True,
    max_pixels=DEFAULT_MAX_PIXELS,
    crop_fraction=1.0,
    resize_method="bilinear",
):
    """Returns the (float, bytes) `tf.function`s of the export, with their input signatures.

    Args:
        model: a single-input classifier `keras.Model`.
        image_size: (H, W) the signatures take.
        preprocessing: None (the model takes the pixels as they are, or applies its own preprocessing) or a
            `Preprocessing` to apply in front of the model.
        output: "probabilities" or "logits": what the model returns.
        top_k: int. Number of classes in `classes` and `scores`.
        class_names: None or a list with one string per class.
        antialias: whether the bytes signature's resize is antialiased.
        max_pixels: int. The largest height x width an encoded image may declare.
        crop_fraction, resize_method: the central fraction the bytes signature keeps, and how it resizes.
    """
    import tensorflow as tf

    height, width = image_size
    channels = model.inputs[0].shape[-1]
    names = None if class_names is None else tf.constant(class_names, tf.string)
    prepare = None if preprocessing is None else preprocessing.layer(name="export_preprocessing", dtype="float32")

    @tf.function(input_signature=[tf.TensorSpec((None, height, width, channels), tf.float32, name=FLOAT_INPUT)])
    def classify(images):
        images = tf.ensure_shape(images, (None, height, width, channels))
        scores = tf.cast(model(images if prepare is None else prepare(images), training=False), tf.float32)
        probabilities = tf.nn.softmax(scores, axis=-1) if output == "logits" else scores
        top_scores, top_classes = tf.math.top_k(probabilities, k=top_k)
        outputs = {"probabilities": probabilities, "classes": top_classes, "scores": top_scores}
        if names is not None:
            outputs["class_names"] = tf.gather(names, top_classes)
        return outputs

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name=BYTES_INPUT)])
    def classify_bytes(image_bytes):
        images = decode_image_batch(image_bytes, (height, width), channels, resize_method, antialias, max_pixels,
                                    crop_fraction=crop_fraction)
        return classify(images)

    return classify, classify_bytes


def export_saved_model(
    model,
    export_dir,
    version=None,
    class_names=None,
    top_k=5,
    preprocessing=None,
    image_size=None,
    output="auto",
    resize_method=None,
    antialias=True,
    overwrite=False,
    max_pixels=DEFAULT_MAX_PIXELS,
):
    """Exports a classifier as a SavedModel in TF Serving's layout, `export_dir/<version>/`.

    The export has two signatures (see the module docstring): `serving_default` takes raw float pixels named
    `images`, `serving_bytes` takes JPEG/PNG files named `image_bytes`; both return `probabilities`, top-k
    `classes` and `scores`, and `class_names` when given. Preprocessing is part of the graph: a model with its own
    `ImagePreprocessing` layer (as trained by the package's runner; also a Keras layer named "preprocessing")
    already takes raw pixels, and its description is what the export states and the bytes signature follows; for
    any other model pass `preprocessing` (None means the model takes raw pixels as they are, like the CIFAR
    presets).

    Args:
        model: a `keras.Model` classifier with one (batch, H, W, C) input (TensorFlow backend).
        export_dir: folder that holds the versions (the `model_base_path` of TF Serving).
        version: positive int, or None for the next free version (1 in a new folder).
        class_names: None or one string per class; adds a `class_names` output.
        top_k: int. Classes returned in `classes` / `scores` (at most the number of classes).
        preprocessing: None, a preset name ("raw", "unit", "inception", "imagenet", "caffe"), a dict of
            `Preprocessing` fields (`channel_order`, `scale`, `offset`, `mean`, `std`, `interpolation`,
            `crop_fraction`) or a `keras_vitres.layers.Preprocessing`. Must be None when the model has its own
            preprocessing layer.
        image_size: (H, W) or int; required when the model accepts any size, else must match it.
        output: "auto" (softmax ending -> probabilities, linear ending -> logits), "probabilities" or "logits".
            Logits go through a softmax in the graph, so `probabilities` always sum to one.
        resize_method: how `serving_bytes` resizes decoded images (a `tf.image.resize` method); default the
            preprocessing description's `interpolation` ("bilinear" unless it says otherwise).
        antialias: whether that resize is antialiased.
        overwrite: bool. Replace an existing `version`.
        max_pixels: int. `serving_bytes` refuses, before decoding, any image whose header declares more than
            this many pixels (height x width); default 16,000,000. Images are decoded one at a time, so this
            bounds the memory a request needs (about 16 bytes per pixel while decoding and resizing: 250 MiB at
            the default limit).

    Returns:
        str: the path of the version folder written.

    Examples:
        >>> import tempfile, keras_vitres
        >>> model = keras_vitres.ResNet(8, stem="cifar")
        >>> path = export_saved_model(model, tempfile.mkdtemp(), class_names=[str(i) for i in range(10)])
        >>> os.path.basename(path)
        '1'
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"export_saved_model needs the TensorFlow backend (KERAS_BACKEND=tensorflow); the Keras backend is "
            f"{keras.backend.backend()!r}. Save the model as .keras and export it from a TensorFlow-backend process "
            "(e.g. `keras-vitres export model.keras DIR`)."
        )
    model_size, num_classes = _check_model(model)
    height_width, channels = model_size[:2], model_size[2]
    image_size = _check_image_size(image_size, height_width)
    if resize_method is not None:
        check_resize_method(resize_method)
    own, own_layer = model_preprocessing(model)
    if own_layer is not None and preprocessing is not None:
        raise ValueError(
            f"Model {model.name!r} has its own preprocessing layer {own_layer.name!r} and takes raw pixels; passing "
            f"preprocessing={preprocessing!r} would normalise twice. Pass preprocessing=None."
        )
    description = own if own_layer is not None else Preprocessing.resolve(preprocessing)
    if description is not None:
        description.check_channels(channels)
        if resize_method is not None and resize_method != description.interpolation:
            description = dataclasses.replace(description, interpolation=resize_method)
        if description.image_size is None:
            description = dataclasses.replace(description, image_size=tuple(image_size))
    resize_method = description.interpolation if description is not None else (resize_method or "bilinear")
    crop_fraction = description.crop_fraction if description is not None else 1.0
    if output not in OUTPUT_KINDS:
        raise ValueError(f"`output` must be one of {OUTPUT_KINDS}; received output={output!r}.")
    kind = classifier_output_kind(model) if output == "auto" else output
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive int; received top_k={top_k!r}.")
    top_k = min(top_k, num_classes)
    names = _check_class_names(class_names, num_classes)
    check_resize_method(resize_method)
    max_pixels = check_max_pixels(max_pixels)
    export_dir = os.fspath(export_dir)
    version = _resolve_version(export_dir, version, overwrite)

    classify, classify_bytes = build_serving_functions(
        model,
        image_size=image_size,
        preprocessing=None if own_layer is not None or description.is_identity else description,
        output=kind,
        top_k=top_k,
        class_names=names,
        antialias=antialias,
        max_pixels=max_pixels,
        crop_fraction=crop_fraction,
        resize_method=resize_method,
    )
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(FLOAT_SIGNATURE, classify)  # the first endpoint is also TF Serving's default
    archive.add_endpoint(BYTES_SIGNATURE, classify_bytes)

    os.makedirs(export_dir, exist_ok=True)
    final = os.path.join(export_dir, str(version))
    staging = os.path.join(export_dir, f".tmp-{version}-{uuid.uuid4().hex[:8]}")  # TF Serving ignores non-integers
    try:
        archive.write_out(staging, verbose=False)
        source = "model layer" if own_layer is not None else ("none" if description.is_identity else "export")
        applies = description.formula() if description is not None else f"the model's own {own_layer.name!r} layer"
        metadata = dict(
            format="keras_vitres.saved_model/1",
            keras_vitres_version=__version__,
            model_name=model.name,
            version=version,
            signatures={
                FLOAT_SIGNATURE: {
                    "inputs": {FLOAT_INPUT: f"float32 (batch, {image_size[0]}, {image_size[1]}, {channels})"},
                    "applies": applies,
                },
                BYTES_SIGNATURE: {
                    "inputs": {BYTES_INPUT: f"string (batch,): JPEG or PNG files of at most {max_pixels} pixels"},
                    "applies": f"decode to RGB, resize ({resize_method}, aspect ratio kept) to cover "
                    f"{tuple(image_size)} / {crop_fraction:g} and keep the central {tuple(image_size)} (the central "
                    f"{crop_fraction:g} of the shorter side, as evaluation does), then {applies}",
                },
            },
            outputs=["probabilities", "classes", "scores"] + (["class_names"] if names else []),
            image_size=list(image_size),
            channels=channels,
            pixel_range="raw RGB pixels in [0, 255]",
            preprocessing=dict(
                description.to_dict() if description is not None else {},
                source=source,
                layer=type(own_layer).__name__ if own_layer is not None else None,
                formula=applies,
            ),
            model_output=kind,
            top_k=top_k,
            class_names=names,
            resize_method=resize_method,
            antialias=antialias,
            max_pixels=max_pixels,
        )
        os.makedirs(os.path.join(staging, os.path.dirname(METADATA_FILE)), exist_ok=True)
        with open(os.path.join(staging, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2)
        if os.path.exists(final):  # overwrite=True: swap the old version out, then remove it
            retired = os.path.join(export_dir, f".old-{version}-{uuid.uuid4().hex[:8]}")
            os.rename(final, retired)
            os.rename(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, final)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return final


def read_export_metadata(version_dir):
    """Returns the metadata dict that `export_saved_model` wrote into a version folder."""
    with open(os.path.join(os.fspath(version_dir), METADATA_FILE)) as f:
        return json.load(f)
