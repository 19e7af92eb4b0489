"""What every export of a classifier takes and returns, resolved once from the model and the export's arguments.

All formats share it: raw [0, 255] RGB pixels of the model's size in, with the preprocessing inside; probabilities,
top-k classes and scores out, and class names where the format carries strings. `resolve_contract` checks every
argument (naming it and the value received) before anything is written.
"""

import dataclasses

import keras

from keras_vitres.export.decoding import DEFAULT_MAX_PIXELS, check_max_pixels, check_resize_method
from keras_vitres.export.preprocessing import model_preprocessing
from keras_vitres.layers.preprocessing import Preprocessing

OUTPUT_KINDS = ("auto", "probabilities", "logits")


@dataclasses.dataclass(frozen=True)
class ServingContract:
    """The resolved inputs and outputs of an export.

    Attributes:
        image_size: (H, W) of the pixels the artifact takes.
        channels: int. Channels of those pixels (3).
        num_classes: int. Width of `probabilities`.
        description: the `Preprocessing` applied (the model's own or the export's), or None when the model's own
            layer cannot be described.
        own_layer: the model's own preprocessing layer, or None.
        output: "probabilities" or "logits": what the model returns (logits get a softmax in the graph).
        top_k, class_names: the top classes returned, and their names (None: not named).
        resize_method, antialias, crop_fraction, max_pixels: how an encoded image becomes the pixels.
    """

    image_size: tuple
    channels: int
    num_classes: int
    description: Preprocessing | None
    own_layer: object
    output: str
    top_k: int
    class_names: list | None
    resize_method: str
    antialias: bool
    crop_fraction: float
    max_pixels: int

    @property
    def in_graph_preprocessing(self):
        """The `Preprocessing` the export puts in front of the model, or None (its own layer does it, or none)."""
        if self.own_layer is not None or self.description is None or self.description.is_identity:
            return None
        return self.description

    @property
    def applies(self):
        """The computation applied to the pixels, in words (the metadata's "formula")."""
        if self.description is not None:
            return self.description.formula()
        return f"the model's own {self.own_layer.name!r} layer"


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


def check_model(model):
    """Returns ((H, W, C), classes) of a one-input classifier, or raises naming what the model has instead."""
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


def check_image_size(image_size, model_size):
    """The (H, W) to export: the model's, or `image_size` where the model takes any size."""
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


def check_class_names(class_names, num_classes):
    """The class names as a list of `num_classes` strings, or None."""
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


def resolve_description(model, preprocessing, channels, image_size, resize_method):
    """(the `Preprocessing` applied, the model's own layer or None): the model's own, else the one given."""
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
    return description, own_layer


def resolve_contract(model, *, class_names=None, top_k=5, preprocessing=None, image_size=None, output="auto",
                     resize_method=None, antialias=True, max_pixels=DEFAULT_MAX_PIXELS):
    """Checks the export's arguments against the model and returns its `ServingContract` (arguments as
    `keras_vitres.export.export_model` documents them)."""
    model_size, num_classes = check_model(model)
    channels = model_size[2]
    image_size = check_image_size(image_size, model_size[:2])
    description, own_layer = resolve_description(model, preprocessing, channels, image_size, resize_method)
    if output not in OUTPUT_KINDS:
        raise ValueError(f"`output` must be one of {OUTPUT_KINDS}; received output={output!r}.")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive int; received top_k={top_k!r}.")
    resize_method = description.interpolation if description is not None else (resize_method or "bilinear")
    check_resize_method(resize_method)
    return ServingContract(
        image_size=tuple(image_size), channels=channels, num_classes=num_classes, description=description,
        own_layer=own_layer, output=classifier_output_kind(model) if output == "auto" else output,
        top_k=min(top_k, num_classes), class_names=check_class_names(class_names, num_classes),
        resize_method=resize_method, antialias=bool(antialias),
        crop_fraction=description.crop_fraction if description is not None else 1.0,
        max_pixels=check_max_pixels(max_pixels),
    )
