"""Learning-rate schedules: values at and around every boundary, Keras equivalence, serialisation, compiled use."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vitres.training.schedules import StepDecay, Warmup, warmup_cosine_decay, warmup_linear_decay


def values(schedule, steps):
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def test_step_decay_divides_by_ten_at_32k_and_48k():
    schedule = StepDecay(0.1, boundaries=(32000, 48000), factor=0.1)
    steps = [0, 1, 31999, 32000, 32001, 47999, 48000, 48001, 63999, 64000]
    expected = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001]
    np.testing.assert_allclose(values(schedule, steps), expected, rtol=1e-6)


def test_step_decay_switches_one_step_before_keras_piecewise_constant():
    # Ours decays once `step >= boundary` updates were applied; Keras' PiecewiseConstantDecay once `step > boundary`.
    ours = StepDecay(0.1, boundaries=(5, 9))
    keras_schedule = keras.optimizers.schedules.PiecewiseConstantDecay([5, 9], [0.1, 0.01, 0.001])
    steps = np.arange(0, 13)
    np.testing.assert_allclose(values(ours, steps), values(keras_schedule, steps + 1), rtol=1e-6)
    assert values(ours, [5])[0] != pytest.approx(values(keras_schedule, [5])[0])


def test_linear_warmup_around_a_constant():
    schedule = Warmup(0.1, warmup_steps=10)
    np.testing.assert_allclose(values(schedule, [0, 1, 5, 9, 10, 11, 1000]),
                               [0.0, 0.01, 0.05, 0.09, 0.1, 0.1, 0.1], rtol=1e-6, atol=1e-9)


def test_linear_warmup_from_a_start_rate_targets_the_schedule_at_the_end_of_warmup():
    schedule = Warmup(StepDecay(0.1, boundaries=(4,)), warmup_steps=8, warmup_learning_rate=0.002)
    # Unshifted: the step decay already decayed at step 4, so the warmup climbs to 0.01, its value at step 8.
    target = 0.01
    expected = [0.002 + (target - 0.002) * s / 8 for s in (0, 4, 7)] + [0.01, 0.01]
    np.testing.assert_allclose(values(schedule, [0, 4, 7, 8, 9]), expected, rtol=1e-6)


def test_constant_warmup_of_the_resnet110_recipe():
    # arXiv:1512.03385 §4.2: 0.01 for the warmup, back to 0.1, /10 at 32k and 48k counted from step 0.
    schedule = Warmup(StepDecay(0.1), warmup_steps=400, warmup_learning_rate=0.01, mode="constant")
    steps = [0, 1, 399, 400, 401, 31999, 32000, 47999, 48000]
    expected = [0.01, 0.01, 0.01, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001]
    np.testing.assert_allclose(values(schedule, steps), expected, rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.1])
@pytest.mark.parametrize("initial", [0.0, 1e-5])
def test_warmup_cosine_matches_keras_cosine_decay_with_warmup(alpha, initial):
    total, warmup, peak = 1000, 100, 1e-3
    ours = warmup_cosine_decay(peak, total, warmup, initial_learning_rate=initial, alpha=alpha)
    reference = keras.optimizers.schedules.CosineDecay(
        initial, total - warmup, alpha=alpha, warmup_target=peak, warmup_steps=warmup
    )
    steps = [0, 1, 50, 99, 100, 101, 550, 999, 1000, 1001, 5000]
    np.testing.assert_allclose(values(ours, steps), values(reference, steps), rtol=1e-5, atol=1e-10)
    # And against the formula: half-way through the decay the rate is (1 + alpha) / 2 of the peak.
    assert values(ours, [550])[0] == pytest.approx(peak * ((1 - alpha) * 0.5 + alpha), rel=1e-5)
    assert values(ours, [100])[0] == pytest.approx(peak, rel=1e-6)


def test_warmup_linear_decay_hand_values():
    schedule = warmup_linear_decay(1e-3, total_steps=110, warmup_steps=10, final_learning_rate=1e-5)
    steps = [0, 5, 9, 10, 11, 60, 109, 110, 200]
    down = lambda s: 1e-3 - (1e-3 - 1e-5) * (s - 10) / 100  # noqa: E731
    expected = [0.0, 5e-4, 9e-4, 1e-3, down(11), down(60), down(109), 1e-5, 1e-5]
    np.testing.assert_allclose(values(schedule, steps), expected, rtol=1e-5, atol=1e-10)


def test_adaptive_warmup_releases_once_and_caps():
    schedule = Warmup(StepDecay(0.1), warmup_steps=1000, warmup_learning_rate=0.01, mode="constant", adaptive=True)
    assert schedule.released_at is None
    np.testing.assert_allclose(values(schedule, [0, 500, 999, 1000]), [0.01, 0.01, 0.01, 0.1], rtol=1e-6)
    assert schedule.release(37) is True
    assert schedule.release(80) is False  # exactly once
    assert schedule.released_at == 37
    np.testing.assert_allclose(values(schedule, [36, 37, 38]), [0.01, 0.1, 0.1], rtol=1e-6)
    capped = Warmup(0.1, warmup_steps=10, warmup_learning_rate=0.01, mode="constant", adaptive=True)
    capped.release(500)
    assert capped.released_at == 10


def all_schedules():
    adaptive = Warmup(StepDecay(0.1, (20, 30)), 15, 0.01, mode="constant", adaptive=True)
    adaptive.release(7)
    return {
        "step": StepDecay(0.1, (20, 30)),
        "constant_warmup": Warmup(StepDecay(0.1, (20, 30)), 10, 0.01, mode="constant"),
        "cosine": warmup_cosine_decay(1e-3, 40, 10, alpha=0.1),
        "linear": warmup_linear_decay(1e-3, 40, 10, final_learning_rate=1e-5),
        "float": Warmup(0.3, 5),
        "adaptive_released": adaptive,
    }


@pytest.mark.parametrize("name", sorted(all_schedules()))
def test_config_round_trip(name):
    schedule = all_schedules()[name]
    config = keras.saving.serialize_keras_object(schedule)
    assert config["registered_name"].startswith("keras_vitres>")
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    steps = range(0, 45)
    np.testing.assert_allclose(values(restored, steps), values(schedule, steps), rtol=1e-7)


@pytest.mark.parametrize("name", sorted(all_schedules()))
def test_schedules_run_under_xla(name):
    schedule = all_schedules()[name]
    compiled = tf.function(lambda step: schedule(step), jit_compile=True)
    steps = [0, 9, 10, 25, 44]
    np.testing.assert_allclose([float(compiled(tf.constant(s, tf.int64))) for s in steps], values(schedule, steps),
                               rtol=1e-5)  # XLA fuses the float32 arithmetic differently


def test_schedule_inside_a_saved_and_loaded_compiled_model(tmp_path):
    schedule = Warmup(StepDecay(0.1, (3,)), 2, 0.01, mode="constant", adaptive=True)
    schedule.release(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9), "mse")
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 2), "float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps
    path = os.fspath(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = loaded.optimizer._learning_rate
    assert isinstance(restored, Warmup) and restored.released_at == 1
    assert isinstance(restored.schedule, StepDecay)
    assert int(loaded.optimizer.iterations) == 2
    np.testing.assert_allclose(values(restored, range(6)), values(schedule, range(6)), rtol=1e-7)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.1)  # step 2: released, before the decay at 3


def test_schedule_drives_the_optimizer_inside_fit():
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.optimizer.learning_rate))

    schedule = warmup_cosine_decay(0.05, total_steps=12, warmup_steps=4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(schedule), "mse", jit_compile=True)
    model.fit(np.ones((48, 4), "float32"), np.zeros((48, 2), "float32"), batch_size=4, epochs=1, verbose=0,
              callbacks=[Record()])
    np.testing.assert_allclose(seen, values(schedule, range(12)), rtol=1e-6)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: StepDecay(0.1, boundaries=(48000, 32000)), "boundaries"),
        (lambda: StepDecay(-1.0), "initial_learning_rate"),
        (lambda: Warmup(0.1, warmup_steps=-1), "warmup_steps"),
        (lambda: Warmup(0.1, warmup_steps=10, mode="cosine"), "mode"),
        (lambda: Warmup(0.1, warmup_steps=10, released_at=3), "released_at"),
        (lambda: warmup_cosine_decay(1e-3, total_steps=10, warmup_steps=10), "total_steps"),
        (lambda: Warmup(0.1, 10).release(3), "adaptive"),
    ],
)
def test_invalid_arguments_name_the_argument(build, message):
    with pytest.raises(ValueError, match=message):
        build()
