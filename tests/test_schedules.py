import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SCHEDULES

from jax_gen.schedules import LinearPath, VPLinearBetaSchedule


@pytest.mark.parametrize("name", SCHEDULES)
def test_endpoints_and_monotonicity(name):
    schedule = SCHEDULES[name]
    end = schedule(jnp.array(1.0))
    assert end.alpha == 1.0 and end.sigma == 0.0  # t=1 is the data, exactly
    start = schedule(jnp.array(0.0))
    assert start.alpha <= 1e-2 and start.sigma >= 0.999  # t=0 is (close to) pure noise
    c = schedule(jnp.linspace(0.0, 1.0, 201))
    assert np.all(np.diff(c.alpha) > 0) and np.all(np.diff(c.sigma) < 0)


def test_linear_path_closed_form():
    t = jnp.linspace(0.0, 1.0, 11)
    c = LinearPath()(t)
    np.testing.assert_allclose(c.alpha, t)
    np.testing.assert_allclose(c.sigma, 1 - t)
    np.testing.assert_allclose(c.d_alpha, 1.0)
    np.testing.assert_allclose(c.d_sigma, -1.0)


def test_vp_path_preserves_variance():
    c = VPLinearBetaSchedule()(jnp.linspace(0.0, 1.0, 101))
    np.testing.assert_allclose(c.alpha**2 + c.sigma**2, 1.0, atol=1e-6)


@pytest.mark.parametrize("name", SCHEDULES)
def test_derivatives_match_autodiff(name):
    schedule = SCHEDULES[name]
    with jax.enable_x64(True):
        for t in np.linspace(0.01, 0.99, 17):
            t = jnp.asarray(t, jnp.float64)
            c = schedule(t)
            d_alpha = jax.grad(lambda s: schedule(s).alpha)(t)
            d_sigma = jax.grad(lambda s: schedule(s).sigma)(t)
            np.testing.assert_allclose(c.d_alpha, d_alpha, rtol=1e-10)
            np.testing.assert_allclose(c.d_sigma, d_sigma, rtol=1e-10)


@pytest.mark.parametrize("num_steps", [10, 50, 100, 1000])
def test_ddpm_chain_reaches_noise_for_any_number_of_steps(num_steps):
    schedule = VPLinearBetaSchedule()
    k = np.arange(num_steps + 1)
    abar = np.exp(np.asarray(schedule.log_abar((num_steps - k) / num_steps), np.float64))
    assert abar[0] == 1.0
    assert abar[-1] <= 1e-3
    betas = 1 - abar[1:] / abar[:-1]
    assert np.all((betas > 0) & (betas < 1))


def test_fixed_per_step_betas_would_not_reach_noise():
    # The pitfall this schedule avoids: betas 1e-4..0.02 taken over only 50 steps.
    abar_end = np.prod(1 - np.linspace(1e-4, 0.02, 50))
    assert abar_end > 0.5


def test_ddpm_betas_at_1000_steps_are_the_papers():
    schedule = VPLinearBetaSchedule()
    t = (1000 - np.arange(1001)) / 1000
    abar = np.exp(np.asarray(schedule.log_abar(t), np.float64))
    # The noise added by step k, -log(1 - beta_k), is the rate integrated over the step: the
    # paper's linear betas up to half a step's offset (beta_max - beta_min) / 2T^2 ~ 1e-5.
    step_noise = -np.log(abar[1:] / abar[:-1])
    np.testing.assert_allclose(step_noise, np.linspace(1e-4, 0.02, 1000), atol=1.1e-5)
