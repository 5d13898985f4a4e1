"""Time grids: uniform, uniform in log SNR, and moved onto a network's training levels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SCHEDULES, GaussianOracle

from jax_gen.config import DDPMStrategyConfig, SamplerConfig
from jax_gen.parameterization import path_coefficients
from jax_gen.sampling import log_snr, sample, snap_to_levels, time_grid
from jax_gen.schedules import VEGeometricSchedule
from jax_gen.strategies import create_strategy

MEAN, STD = jnp.array([2.0, -1.0]), 0.5

GRID_SCHEDULES = {**SCHEDULES, "ve": VEGeometricSchedule()}


@pytest.mark.parametrize("name", sorted(GRID_SCHEDULES))
def test_logsnr_grid_runs_from_0_to_1_in_equal_steps_of_log_snr(name):
    schedule = GRID_SCHEDULES[name]
    grid = time_grid(schedule, 12, "logsnr")
    assert grid.shape == (13,) and grid.dtype == jnp.float32
    assert float(grid[0]) == 0.0 and float(grid[-1]) == 1.0
    assert np.all(np.diff(np.asarray(grid)) > 0)
    increments = np.diff(np.asarray(log_snr(schedule, grid)))
    np.testing.assert_allclose(increments, increments.mean(), rtol=1e-4)


def test_uniform_grid_is_i_over_n_and_needs_no_schedule():
    np.testing.assert_array_equal(time_grid(None, 8), np.arange(9, dtype=np.float32) / 8)


@pytest.mark.parametrize("name", ["euler", "ddim", "euler-maruyama"])
def test_fixed_step_samplers_follow_the_logsnr_grid(name):
    # The trajectory's frame i holds z at t_i: its mean is alpha(t_i) MEAN for Gaussian data.
    strategy = create_strategy(DDPMStrategyConfig())
    oracle = GaussianOracle(strategy, MEAN, STD)
    n = 8000
    result = sample(
        strategy,
        oracle,
        jax.random.key(6),
        n,
        2,
        SamplerConfig(name, 40, time_grid="logsnr", snap_to_training_times=False),
        keep_trajectory=True,
    )
    assert np.all(np.isfinite(result.trajectory)) and int(result.nfe) == 40
    grid = time_grid(strategy.schedule, 40, "logsnr")
    c = path_coefficients(strategy.schedule, grid)
    stderr = np.sqrt(c.alpha**2 * STD**2 + c.sigma**2)[:, None] / np.sqrt(n)
    # DDIM is exact for Gaussian data up to sampling noise; Euler and Euler-Maruyama carry their
    # first-order error, 0.07 at most at 40 steps (the frames of a uniform grid miss by 0.5).
    atol = 4 * stderr if name == "ddim" else 0.08
    deviation = np.abs(np.asarray(result.trajectory.mean(1)) - c.alpha[:, None] * MEAN)
    assert np.all(deviation <= atol)


@pytest.mark.parametrize("levels, steps", [(100, 8), (100, 24), (100, 25), (10, 10), (20, 19)])
@pytest.mark.parametrize("kind", ["uniform", "logsnr"])
def test_snap_to_levels_lands_on_training_times_and_stays_increasing(levels, steps, kind):
    schedule = SCHEDULES["vp"]
    grid = time_grid(schedule, steps, kind)
    snapped = np.asarray(snap_to_levels(grid, levels))
    k = snapped * levels
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)
    assert snapped[0] == 0.0 and snapped[-1] == 1.0
    assert np.all(np.diff(snapped) > 0)
    # Each time moves to its nearest level, or to the next free one when earlier times took it,
    # and no further than leaves room for the steps after it.
    expected, previous = [], -1
    for i, t in enumerate(np.asarray(grid)):
        k = min(max(int(np.round(t * levels)), previous + 1), levels - steps + i)
        expected.append(k / levels)
        previous = k
    np.testing.assert_allclose(snapped, expected, rtol=0, atol=1e-7)
    if kind == "uniform":
        assert np.max(np.abs(snapped - np.asarray(grid))) <= 0.5 / levels + 1e-7
    if kind == "uniform" and levels % steps == 0:
        np.testing.assert_array_equal(snapped, np.asarray(grid))
