"""Training: warmup and decay schedules, the papers' recipes, callbacks, distribution, the training loop and the
run driver."""

from keras_vitres.training.backup import VerifiedBackup
from keras_vitres.training.callbacks import (
    AdaptiveWarmup,
    EpochLog,
    LearningRateLogger,
    StopAtStep,
    TerminateOnNaN,
)
from keras_vitres.training.config import RunConfig, resolve_config
from keras_vitres.training.distribute import (
    STRATEGIES,
    Distribution,
    get_distribution,
    local_accelerators,
    resolve_jit_compile,
    resolve_strategy,
)
from keras_vitres.training.evaluation import evaluate
from keras_vitres.training.fit import StepPlan, compile_for_recipe, fit_model, plan_steps
from keras_vitres.training.interrupt import TrainingInterrupted
from keras_vitres.training.recipes import RECIPES, Recipe, bit_hyperrule, get_recipe, list_recipes
from keras_vitres.training.run_dir import BEST_FILE, MODEL_FILE
from keras_vitres.training.runner import train
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
    "EpochLog",
    "LearningRateLogger",
    "Recipe",
    "RunConfig",
    "StepDecay",
    "StepPlan",
    "StopAtStep",
    "TerminateOnNaN",
    "TrainingInterrupted",
    "VerifiedBackup",
    "Warmup",
    "bit_hyperrule",
    "compile_for_recipe",
    "evaluate",
    "fit_model",
    "get_distribution",
    "get_recipe",
    "list_recipes",
    "local_accelerators",
    "plan_steps",
    "resolve_config",
    "resolve_jit_compile",
    "resolve_strategy",
    "train",
    "warmup_cosine_decay",
    "warmup_linear_decay",
]
