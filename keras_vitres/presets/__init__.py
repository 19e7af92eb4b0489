"""The presets: the table of named models (`table`, plain data), the named builders made from it (`named`), and
`build.build_model`, which builds a row. Importing this package imports neither Keras nor a backend; `build` does."""

from keras_vitres.presets.named import NAMED_BUILDERS
from keras_vitres.presets.table import (
    PRESETS,
    get_preset,
    list_presets,
    preset_weights,
    resolve_weights,
)

__all__ = ["NAMED_BUILDERS", "PRESETS", "get_preset", "list_presets", "preset_weights", "resolve_weights"]
