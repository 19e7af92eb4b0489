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
    local_accelerators,
    resolve_jit_compile,
    resolve_strategy,
)
from keras_vitres.training.recipes import RECIPES, Recipe, get_recipe, list_recipes
from keras_vitres.training.runner import (
    BEST_FILE,
    MODEL_FILE,
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
    "BEST_FILE",
    "MODEL_FILE",
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
    "local_accelerators",
    "resolve_config",
    "resolve_jit_compile",
    "resolve_strategy",
    "train",
    "warmup_cosine_decay",
    "warmup_linear_decay",
]
