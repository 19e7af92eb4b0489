"""Feature extraction: a model that returns the outputs of named stages or encoder blocks."""

import keras


def default_feature_layers(model):
    """A model's natural feature layers by short name: a ResNet's last block of each stage, "stage1" ... "stageN";
    a ViT's (and a hybrid's) every encoder block, "encoder_block_{i}"."""
    names = [layer.name for layer in model.layers]
    blocks = [n for n in names if n.startswith("encoder_block_")]
    if blocks:
        return {n: n for n in blocks}
    stages = {}
    for n in names:
        if n.startswith("stage") and "_block" in n:
            stages[n.split("_block")[0]] = n  # the last block of each stage wins
    if not stages:
        raise ValueError(f"Model {model.name!r} has no ResNet stages or encoder blocks to extract features from.")
    return stages


def feature_extractor(model, layer_names=None):
    """Returns a `keras.Model` with the same input whose output is a dict of intermediate features.

    Args:
        model: a model built by this package (or any functional model).
        layer_names: None for `default_feature_layers(model)`, a list of layer names, or a dict
            {output key: layer name}.

    Examples:
        >>> from keras_vitres import ResNet20
        >>> features = feature_extractor(ResNet20())
        >>> {k: v.shape for k, v in features.output.items()}
        {'stage1': (None, 32, 32, 16), 'stage2': (None, 16, 16, 32), 'stage3': (None, 8, 8, 64)}
    """
    if layer_names is None:
        layer_names = default_feature_layers(model)
    elif not isinstance(layer_names, dict):
        layer_names = {n: n for n in layer_names}
    known = {layer.name for layer in model.layers}
    outputs = {}
    for key, name in layer_names.items():
        if name not in known:
            raise ValueError(f"`layer_names` names {name!r}, which is not a layer of model {model.name!r}.")
        outputs[key] = model.get_layer(name).output
    return keras.Model(model.input, outputs, name=f"{model.name}_features")
