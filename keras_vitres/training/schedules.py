"""Learning-rate schedules of the two papers, as serialisable `keras.optimizers.schedules.LearningRateSchedule`s:
the ResNet paper's step decay and (adaptive) constant warmup (arXiv:1512.03385 §4.2), and the ViT paper's linear
warmup before Keras' own cosine or linear decay (arXiv:2010.11929 §4.1, App. B.1). Written with `keras.ops` only,
so they run inside compiled train steps and round-trip through `get_config`, also inside a saved model.
"""

import math

import keras
from keras import ops

WARMUP_MODES = ("linear", "constant")


def _check_non_negative_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"`{name}` must be an int >= 0; received {name}={value!r}.")


def _check_rate(name, value):
    # NaN and inf pass `value < 0`: require a finite number.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite float >= 0; received {name}={value!r}.")


def _check_decay_args(peak_learning_rate, total_steps, warmup_steps, initial_learning_rate):
    """The checks `warmup_cosine_decay` and `warmup_linear_decay` share, each naming the caller's argument."""
    _check_rate("peak_learning_rate", peak_learning_rate)
    _check_rate("initial_learning_rate", initial_learning_rate)
    _check_non_negative_int("warmup_steps", warmup_steps)
    if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps <= warmup_steps:
        raise ValueError(
            f"`total_steps` must be an int > warmup_steps={warmup_steps}; received total_steps={total_steps!r}."
        )


@keras.saving.register_keras_serializable(package="keras_vitres")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Step decay: the rate is multiplied by `factor` at every boundary (arXiv:1512.03385 §4.2).

    `lr(step) = initial_learning_rate * factor ** k`, where k is the number of boundaries `b` with `step >= b`.
    `step` counts the updates already applied, so the update after the 32,000th uses the decayed rate. (Keras'
    `PiecewiseConstantDecay` switches one step later, at `step > b`; it agrees everywhere else.)

    Args:
        initial_learning_rate: float. The rate before the first boundary (0.1 in the paper).
        boundaries: increasing ints, the steps at which the rate decays ((32000, 48000) in the paper).
        factor: float. Multiplier applied at each boundary (0.1: "divide it by 10").
        name: str.

    Examples:
        >>> schedule = StepDecay(0.1, boundaries=(32000, 48000))
        >>> tuple(round(float(schedule(s)), 6) for s in (0, 31999, 32000, 48000))
        (0.1, 0.1, 0.01, 0.001)
    """

    def __init__(self, initial_learning_rate, boundaries=(32000, 48000), factor=0.1, name="step_decay"):
        super().__init__()
        _check_rate("initial_learning_rate", initial_learning_rate)
        if not isinstance(boundaries, (list, tuple)):
            raise ValueError(f"`boundaries` must be a list or tuple of ints; received boundaries={boundaries!r}.")
        bounds = list(boundaries)
        if any(not isinstance(b, int) or isinstance(b, bool) or b < 0 for b in bounds) or bounds != sorted(set(bounds)):
            raise ValueError(f"`boundaries` must be strictly increasing ints >= 0; received boundaries={boundaries!r}.")
        _check_rate("factor", factor)
        self.initial_learning_rate = initial_learning_rate
        self.boundaries = tuple(bounds)
        self.factor = factor
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        # The rates are computed in Python double precision, so 0.1 * 0.1 is 0.01 exactly as a float32.
        rates = ops.convert_to_tensor(
            [self.initial_learning_rate * self.factor**k for k in range(len(self.boundaries) + 1)], dtype="float32"
        )
        passed = ops.zeros((), dtype="int32")
        for boundary in self.boundaries:
            passed = passed + ops.cast(ops.greater_equal(step, float(boundary)), "int32")
        return ops.take(rates, passed)

    def get_config(self):
        return dict(
            initial_learning_rate=self.initial_learning_rate,
            boundaries=list(self.boundaries),
            factor=self.factor,
            name=self.name,
        )


@keras.saving.register_keras_serializable(package="keras_vitres")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Warmup around any schedule or constant rate.

    For `step < warmup_steps` (the warmup):
        mode="linear":   `lr = warmup_learning_rate + (target - warmup_learning_rate) * step / warmup_steps`, where
                         `target` is the wrapped schedule's rate at the end of the warmup;
        mode="constant": `lr = warmup_learning_rate` (the ResNet paper's ResNet-110 recipe: 0.01, then 0.1).
    Afterwards, the wrapped schedule: `schedule(step)`, or `schedule(step - warmup_steps)` when
    `shift_schedule=True` (the decay then starts at the end of the warmup, as in Keras' `CosineDecay(...,
    warmup_steps=...)`; the step decay's boundaries count from step 0 instead).

    With `adaptive=True` the warmup ends at `min(warmup_steps, release_step)`, a non-trainable variable that
    `release(step)` sets once (`keras_vitres.training.AdaptiveWarmup` calls it); `released_at` restores it from a
    saved config.

    Args:
        schedule: a `LearningRateSchedule` or a float, the rate after the warmup.
        warmup_steps: int >= 0. Length of the warmup in steps (its upper bound when `adaptive=True`).
        warmup_learning_rate: float. The rate at step 0 (linear) or throughout the warmup (constant).
        mode, shift_schedule, adaptive, released_at, name: as above.

    Examples:
        >>> schedule = Warmup(StepDecay(0.1), warmup_steps=400, warmup_learning_rate=0.01, mode="constant")
        >>> tuple(round(float(schedule(s)), 6) for s in (0, 399, 400, 32000))
        (0.01, 0.01, 0.1, 0.01)
    """

    def __init__(
        self,
        schedule,
        warmup_steps,
        warmup_learning_rate=0.0,
        mode="linear",
        shift_schedule=False,
        adaptive=False,
        released_at=None,
        name="warmup",
    ):
        super().__init__()
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            _check_rate("schedule", schedule)
        _check_non_negative_int("warmup_steps", warmup_steps)
        _check_rate("warmup_learning_rate", warmup_learning_rate)
        if mode not in WARMUP_MODES:
            raise ValueError(f"`mode` must be one of {WARMUP_MODES}; received mode={mode!r}.")
        if released_at is not None:
            if not adaptive:
                raise ValueError(f"`released_at` needs adaptive=True; received released_at={released_at!r}.")
            _check_non_negative_int("released_at", released_at)
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.warmup_learning_rate = warmup_learning_rate
        self.mode = mode
        self.shift_schedule = shift_schedule
        self.adaptive = adaptive
        self.name = name
        self.release_step = None
        if adaptive:
            end = warmup_steps if released_at is None else min(released_at, warmup_steps)
            self.release_step = keras.Variable(float(end), dtype="float32", trainable=False, name=f"{name}_release_step")
            self._released = released_at is not None

    @property
    def released_at(self):
        """The step at which an adaptive warmup was released, or None."""
        if not self.adaptive or not self._released:
            return None
        return int(round(float(ops.convert_to_numpy(self.release_step))))

    def release(self, step):
        """Ends an adaptive warmup at `step` (no effect if it was already released). Returns True if it acted."""
        if not self.adaptive:
            raise ValueError("`release()` needs a Warmup built with adaptive=True; this one has adaptive=False.")
        if self._released:
            return False
        self.release_step.assign(float(min(int(step), self.warmup_steps)))
        self._released = True
        return True

    def _rate(self, step):
        if isinstance(self.schedule, keras.optimizers.schedules.LearningRateSchedule):
            return ops.cast(self.schedule(step), "float32")
        return ops.convert_to_tensor(float(self.schedule), dtype="float32")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        end = self.release_step.value if self.adaptive else ops.convert_to_tensor(float(self.warmup_steps), "float32")
        start = ops.convert_to_tensor(float(self.warmup_learning_rate), "float32")
        after = self._rate(ops.maximum(step - end, 0.0) if self.shift_schedule else step)
        if self.mode == "constant":
            during = start
        else:
            target = self._rate(0.0 if self.shift_schedule else float(self.warmup_steps))
            during = start + (target - start) * step / float(max(self.warmup_steps, 1))
        return ops.where(ops.less(step, end), during, after)

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        return dict(
            schedule=schedule,
            warmup_steps=self.warmup_steps,
            warmup_learning_rate=self.warmup_learning_rate,
            mode=self.mode,
            shift_schedule=self.shift_schedule,
            adaptive=self.adaptive,
            released_at=self.released_at,
            name=self.name,
        )


def warmup_cosine_decay(peak_learning_rate, total_steps, warmup_steps, initial_learning_rate=0.0, alpha=0.0):
    """Linear warmup to `peak_learning_rate`, then cosine decay to `alpha * peak` at `total_steps` (ViT §4.1).

    Equal to `keras.optimizers.schedules.CosineDecay(initial_learning_rate, total_steps - warmup_steps, alpha,
    warmup_target=peak_learning_rate, warmup_steps=warmup_steps)`, built as a `Warmup` around `CosineDecay`.
    """
    _check_decay_args(peak_learning_rate, total_steps, warmup_steps, initial_learning_rate)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"`alpha` must be a float in [0, 1]; received alpha={alpha!r}.")
    decay = keras.optimizers.schedules.CosineDecay(peak_learning_rate, total_steps - warmup_steps, alpha=alpha)
    return Warmup(decay, warmup_steps, initial_learning_rate, mode="linear", shift_schedule=True, name="warmup_cosine")


def warmup_linear_decay(peak_learning_rate, total_steps, warmup_steps, initial_learning_rate=0.0, final_learning_rate=0.0):
    """Linear warmup to `peak_learning_rate`, then linear decay to `final_learning_rate` at `total_steps` (ViT §4.1).

    Built as a `Warmup` around `keras.optimizers.schedules.PolynomialDecay(power=1)`.
    """
    _check_decay_args(peak_learning_rate, total_steps, warmup_steps, initial_learning_rate)
    _check_rate("final_learning_rate", final_learning_rate)
    decay = keras.optimizers.schedules.PolynomialDecay(
        peak_learning_rate, total_steps - warmup_steps, end_learning_rate=final_learning_rate, power=1.0
    )
    return Warmup(decay, warmup_steps, initial_learning_rate, mode="linear", shift_schedule=True, name="warmup_linear")


def find_warmup(schedule):
    """Returns the adaptive `Warmup` inside an optimizer's schedule (itself, or None)."""
    if isinstance(schedule, Warmup) and schedule.adaptive:
        return schedule
    return None
