"""The one import a process needs before `keras.saving.load_model` reads a keras-vitres `.keras` file:
`import keras_vitres.serialization`.

Keras finds a saved class by the name it was registered under (`keras_vitres>TransformerBlock`), and a class is
registered when its module is imported; the package root imports no framework, so a new process must import the
classes first. Importing this module does: every layer (`keras_vitres.layers`), `ExactAreaCutMix` (an augmentation
layer of the data pipelines) and the learning-rate schedules that a trained model's optimizer names
(`keras_vitres.training.schedules`, read when the model is loaded compiled).

The package's own loading function, `keras_vitres.weights.loaders.load_keras_model` (which `keras-vitres evaluate`,
`export` and `analyze vit` call), needs no import from the user: it imports the layers itself and reads no compile
state.
"""

import keras_vitres.data.augment  # noqa: F401  (ExactAreaCutMix)
import keras_vitres.layers  # noqa: F401  (every layer)
import keras_vitres.training.schedules  # noqa: F401  (Warmup, StepDecay)
