"""Former class names, so that `.keras` files saved before a class was renamed still load.

A `.keras` file names each class by its registered name (`keras_vitres>BatchNormalization`) and keeps the weights of
a model's layers under their class names in snake case (`layers/batch_normalization/vars/0`), so an alias of the
name alone would find the class but not its weights. `register_former_name` registers a subclass that has the former
name: a file saved before the rename loads into it, weights included, and saves and loads again as it was. New models
use the renamed class; their files never name the former one.
"""

import keras


def register_former_name(cls, name):
    """Registers with Keras (package "keras_vitres") a subclass of `cls` called `name`, the name `cls` had before it
    was renamed; returns the subclass, whose `renamed_to` is `cls`."""
    doc = f"`{cls.__name__}` under its former name, for `.keras` files saved before the rename."
    attributes = {"__module__": cls.__module__, "__qualname__": name, "__doc__": doc, "renamed_to": cls}
    former = type(name, (cls,), attributes)
    return keras.saving.register_keras_serializable(package="keras_vitres", name=name)(former)
