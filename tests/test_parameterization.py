import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import PREDICTIONS, SCHEDULES
from hypothesis import given, settings
from hypothesis import strategies as st

from jax_gen.parameterization import (
    PARAMETERIZATIONS,
    T_CLIP,
    path_coefficients,
    velocity,
)
from jax_gen.schedules import LinearPath

finite = st.floats(-5.0, 5.0, allow_nan=False)
point = st.tuples(finite, finite)


@settings(max_examples=60, deadline=None)
@given(t=st.floats(0.0, 1.0), x=point, eps=point, schedule=st.sampled_from(sorted(SCHEDULES)))
def test_every_conversion_round_trips_in_float64(t, x, eps, schedule):
    with jax.enable_x64(True):
        x, eps = jnp.array(x, jnp.float64), jnp.array(eps, jnp.float64)
        c = path_coefficients(SCHEDULES[schedule], jnp.float64(t))
        z = c.alpha * x + c.sigma * eps
        v = velocity(x, eps, c)
        for name in PREDICTIONS:
            p = PARAMETERIZATIONS[name]
            prediction = p.target(x, eps, c)
            x_back, eps_back = p.to_x_eps(prediction, z, c)
            # The clip keeps the worst conditioning at 1/T_CLIP = 1e3.
            np.testing.assert_allclose(x_back, x, atol=1e-9)
            np.testing.assert_allclose(eps_back, eps, atol=1e-9)
            np.testing.assert_allclose(p.to_velocity(prediction, z, c), v, atol=1e-9)


def test_linear_path_closed_forms():
    key_x, key_eps = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (64, 2))
    eps = jax.random.normal(key_eps, (64, 2))
    for t in (0.1, 0.5, 0.9):
        c = path_coefficients(LinearPath(), t)
        z = t * x + (1 - t) * eps
        v = PARAMETERIZATIONS["v"].target(x, eps, c)
        np.testing.assert_allclose(v, x - eps, atol=1e-6)
        x_back, eps_back = PARAMETERIZATIONS["v"].to_x_eps(v, z, c)
        np.testing.assert_allclose(x_back, z + (1 - t) * v, atol=1e-5)
        np.testing.assert_allclose(eps_back, z - t * v, atol=1e-5)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("name", PREDICTIONS)
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_conversions_are_finite_at_the_ends(schedule, name, t):
    c = path_coefficients(SCHEDULES[schedule], jnp.float32(t))
    assert all(np.isfinite(np.asarray(value)) for value in c)
    z = jnp.array([0.3, -1.2])
    prediction = jnp.array([1.0, 2.0])
    p = PARAMETERIZATIONS[name]
    assert np.all(np.isfinite(np.concatenate(p.to_x_eps(prediction, z, c))))
    assert np.all(np.isfinite(p.to_velocity(prediction, z, c)))


def test_clip_is_applied_once_and_only_at_the_ends():
    schedule = SCHEDULES["vp"]
    inside = jnp.float32(0.5)
    assert path_coefficients(schedule, inside) == schedule(inside)
    np.testing.assert_array_equal(
        path_coefficients(schedule, 0.0).alpha, schedule(jnp.float32(T_CLIP)).alpha
    )
