"""The named builders (`keras_vitres.ResNet50`, `keras_vitres.ViTB16`, ...): one function per preset row with a
`builder_name`, made from the table without importing Keras."""

from keras_vitres.presets.table import PRESETS


def _weights_doc(row):
    if not row["weights"]:
        return ""
    lines = ["Named weights (`weights=NAME`; `keras_vitres.preset_weights` gives the full entries):"]
    for weight_name, entry in row["weights"].items():
        options = ", ".join(f"{k}={v!r}" for k, v in entry.get("config", {}).items())
        lines.append(f"    `{weight_name!r}`: {entry['description']}. Builds with {options or 'the preset options'}, and "
                     f"their preprocessing as the first layer ({entry['source']}).")  # fmt: skip
    return "\n".join(lines) + "\n\n"


def _named_builder(preset):
    row = PRESETS[preset]

    def builder(**kwargs):
        # Imported on the first build: the build module imports Keras (6-8 s), and the root lists these names.
        from keras_vitres.presets.build import build_model

        return build_model(preset, **kwargs)

    builder.__name__ = builder.__qualname__ = row["builder_name"]
    builder.__doc__ = (
        f"{row['description']} ({row['paper']}).\n\n"
        f"Preset `{preset}`: {row['params']:,} parameters ({row['trainable_params']:,} trainable). Keyword arguments "
        f"override the preset's configuration and are those of `{row['builder']}` (`include_top`, `weights`, "
        f"`input_shape`, `pooling`, `classes`, `classifier_activation`, ...).\n\n{_weights_doc(row)}"
        "Returns:\n    A `keras.Model`.\n"
    )
    return builder


NAMED_BUILDERS = {row["builder_name"]: _named_builder(name) for name, row in PRESETS.items() if row["builder_name"]}
