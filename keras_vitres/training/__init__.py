"""Training: warmup and decay schedules, the papers' recipes, callbacks, distribution, and the run driver."""

from keras_vitres.training.callbacks import (
    AdaptiveWarmup,
    LearningRateLogger,
    StopAtStep,
    TerminateOnNaN,
    VerifiedBackup,
)
from keras_vitres.training.distribute import (
    STRATEGIES,
    Distribution,
    get_distribution,
    resolve_strategy,
)
from keras_vitres.training.recipes import RECIPES, Recipe, get_recipe, list_recipes
from keras_vitres.training.runner import (
    TrainingInterrupted,
    evaluate,
    resolve_config,
    train,
)
from keras_vitres.training.schedules import (
    StepDecay,
    Warmup,
    warmup_cosine_decay,
    warmup_linear_decay,
)

__all__ = [
    "RECIPES",
    "STRATEGIES",
    "AdaptiveWarmup",
    "Distribution",
    "LearningRateLogger",
    "Recipe",
    "StepDecay",
    "StopAtStep",
    "TerminateOnNaN",
    "TrainingInterrupted",
    "VerifiedBackup",
    "Warmup",
    "evaluate",
    "get_distribution",
    "get_recipe",
    "list_recipes",
    "resolve_config",
    "resolve_strategy",
    "train",
    "warmup_cosine_decay",
    "warmup_linear_decay",
]
