"""The exact GELU's two evaluations (`keras_vitres.layers.gelu`): each backend's within 1e-6 of the erf form."""

import keras
import numpy as np
import pytest

from keras_vitres.layers import gelu
from keras_vitres.layers.transformer import _erfc

pytestmark = pytest.mark.backend_agnostic

SQRT_HALF = 0.7071067811865476


def dense_float32_grid():
    """2**21 + 1 evenly spaced float32 values over [-12, 12] (beyond it both forms round to x or to -0), and 2 x 800
    values from 1e-30 to 12 on a log scale, both signs (the small inputs where x * Phi(x) is about x / 2)."""
    linear = np.linspace(-12.0, 12.0, 2**21 + 1, dtype=np.float32)
    small = np.logspace(-30, np.log10(12.0), 800, dtype=np.float32)
    return np.concatenate([linear, small, -small, np.float32([0.0])])


def test_gelu_is_within_1e6_of_the_erf_form_for_every_grid_input():
    """The reference is the exact GELU as it was written before, `x * (0.5 + 0.5 * erf(x / sqrt 2))` with the
    backend's erf, in float32. On TensorFlow the two forms are the same arithmetic (the 0.5 scalings are exact), so
    they agree to the bit; elsewhere erf is replaced by the erfc approximation (relative error below 1.2e-7), and the
    difference stays below 1e-6 where the output is large (ulps of the output near 1e-6) and where it is tiny (the
    negative tail, where the backend's own erf is what is off by up to 9e-7)."""
    x = keras.ops.convert_to_tensor(dense_float32_grid())
    before = keras.ops.convert_to_numpy(x * (0.5 + 0.5 * keras.ops.erf(x * SQRT_HALF))).astype(np.float64)
    now = keras.ops.convert_to_numpy(gelu(x)).astype(np.float64)
    difference = np.abs(now - before)
    assert difference.max() <= 1e-6, f"{difference.max():.3g} at x={float(keras.ops.convert_to_numpy(x)[difference.argmax()])}"
    if keras.backend.backend() == "tensorflow":
        np.testing.assert_array_equal(now, before)


def test_erfc_has_its_stated_relative_accuracy():
    """erfc from arithmetic and exp against SciPy's in float64, over the range where erfc(z) is a normal float32:
    relative error below 1.2e-7 (the fit's bound) plus float32's: the exponent -z**2 + P(t) is rounded to about
    (z**2 + 2) * 2**-24 absolute, which exp turns into the same relative error (7.7e-6 at z = 9, where erfc is 4e-37),
    and a few roundings of the result."""
    from scipy.special import erfc

    z = np.linspace(-9.0, 9.0, 200_001, dtype=np.float32)
    ours = keras.ops.convert_to_numpy(_erfc(keras.ops.convert_to_tensor(z))).astype(np.float64)
    exact = erfc(z.astype(np.float64))
    budget = 1.2e-7 + (2 * (z.astype(np.float64) ** 2 + 2) + 4) * 2.0**-24
    over = np.abs(ours - exact) / exact > budget
    assert not over.any(), f"z={z[over][:5]}: relative errors {(np.abs(ours - exact) / exact)[over][:5]}"
