"""The sampling loop and the registry: every sampler on every strategy, the NFE it reports, the
grid it steps on, and what the solvers' declarations imply."""

import dataclasses
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import GaussianOracle

from jax_gen.config import (
    DDPMStrategyConfig,
    FlowMatchingStrategyConfig,
    MLPConfig,
    SamplerConfig,
    SamplerName,
)
from jax_gen.models import create_model
from jax_gen.sampling import (
    ODE_SAMPLERS,
    SOLVERS,
    STOCHASTIC,
    TABLEAUS,
    evals_per_step,
    grid_kind,
    nfe_schedule,
    sample,
    sample_batches,
    solver_for,
    source_points,
)
from jax_gen.sampling.adaptive import Adaptive
from jax_gen.sampling.ddim import DDIM, ddim_update
from jax_gen.sampling.sde import PredictorCorrector
from jax_gen.strategies import create_strategy

MEAN, STD = jnp.array([2.0, -1.0]), 0.5

SAMPLERS = typing.get_args(SamplerName)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_runs_on_both_strategies_with_finite_output(name):
    model = create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(0), 2)
    for cfg in (DDPMStrategyConfig(10, "eps"), FlowMatchingStrategyConfig(10, "x")):
        strategy = create_strategy(cfg)
        result = sample(
            strategy, model, jax.random.key(1), 32, 2, SamplerConfig(name, 4), keep_trajectory=True
        )
        assert result.samples.shape == (32, 2) and result.trajectory.shape == (5, 32, 2)
        assert np.all(np.isfinite(result.trajectory))
        per_step = evals_per_step(strategy, SamplerConfig(name))
        if per_step is not None:
            assert int(result.nfe) == 4 * per_step
        again = sample(strategy, model, jax.random.key(1), 32, 2, SamplerConfig(name, 4))
        np.testing.assert_array_equal(result.samples, again.samples)


def test_nfe_schedule_hits_each_budget_exactly():
    strategy = create_strategy(FlowMatchingStrategyConfig())
    budgets = [1, 2, 4, 8, 16, 32, 64]
    assert nfe_schedule(strategy, SamplerConfig("euler"), budgets) == {n: n for n in budgets}
    assert nfe_schedule(strategy, SamplerConfig("rk4"), budgets) == {
        4: 1,
        8: 2,
        16: 4,
        32: 8,
        64: 16,
    }
    assert nfe_schedule(strategy, SamplerConfig("heun"), budgets) == {
        n: n // 2 for n in budgets[1:]
    }
    assert nfe_schedule(strategy, SamplerConfig("adaptive"), budgets) == {}
    with pytest.raises(ValueError, match="sampler='bogus'"):
        sample(
            strategy,
            None,
            jax.random.key(0),
            2,
            2,
            dataclasses.replace(SamplerConfig(), sampler="bogus"),
        )


def test_the_registry_holds_every_command_line_sampler():
    assert tuple(SOLVERS) == SAMPLERS


def test_the_solver_takes_the_options_it_declares_from_the_config():
    assert solver_for(SamplerConfig("ddim", eta=0.5, snr=0.3)) == DDIM(eta=0.5)
    assert solver_for(SamplerConfig("pc", corrector_steps=3, snr=0.2, eta=0.5)) == (
        PredictorCorrector(corrector_steps=3, snr=0.2)
    )
    assert solver_for(SamplerConfig("adaptive", rtol=1e-4, atol=1e-5)) == Adaptive(1e-4, 1e-5)


def test_the_tables_follow_the_solvers_declarations():
    assert STOCHASTIC == ("ancestral", "euler-maruyama", "pc")
    assert ODE_SAMPLERS == (
        "default",
        "ddim",
        "euler",
        "midpoint",
        "heun",
        "rk4",
        "adaptive",
        "dpm-solver",
    )
    assert solver_for(SamplerConfig("ddim", eta=0.5)).needs_score
    assert not solver_for(SamplerConfig("ddim")).needs_score
    assert sorted(TABLEAUS) == ["euler", "heun", "midpoint", "rk4"]
    strategy = create_strategy(FlowMatchingStrategyConfig())
    assert evals_per_step(strategy, SamplerConfig("pc", corrector_steps=3)) == 4


@pytest.mark.parametrize("name", SAMPLERS)
def test_the_config_refuses_exactly_the_grids_a_solver_does_not_run_on(name):
    grids = SOLVERS[name]().time_grids
    assert grid_kind(SamplerConfig(name)) == grids[0]
    for kind in ("uniform", "logsnr"):
        if kind in grids:
            assert grid_kind(SamplerConfig(name, time_grid=kind)) == kind
        else:
            with pytest.raises(ValueError, match=f"time_grid='{kind}'"):
                SamplerConfig(name, time_grid=kind)


def _old_uniform_loop(strategy, oracle, key, num_steps, sampler):
    """The samplers' loop before time grids existed: t = i / N, dt = 1 / N."""
    source_key, path_key = jax.random.split(key)
    x0 = source_points(strategy, source_key, jnp.arange(64), 2)
    times = jnp.arange(num_steps, dtype=jnp.float32) / jnp.float32(num_steps)
    dt = 1.0 / num_steps
    velocity = jax.vmap(lambda t, z: strategy.velocity(oracle, t, z), in_axes=(None, 0))
    denoise = jax.vmap(lambda t, z: strategy.denoise(oracle, t, z), in_axes=(None, 0))

    def step(t, step_key, x):
        if sampler == "ddim":
            x_hat, eps_hat = denoise(t, x)
            noise = jax.random.normal(step_key, x.shape)  # multiplied by eta = 0
            return ddim_update(strategy.schedule, t, t + dt, x, x_hat, eps_hat, 0.0, noise)
        a, b, c = TABLEAUS[sampler]
        stages = []
        for a_i, c_i in zip(((),) + a, c, strict=True):
            increment = sum((a_ij * k for a_ij, k in zip(a_i, stages, strict=True)), 0.0)
            stages.append(velocity(t + c_i * dt, x + dt * increment))
        return x + dt * sum(b_i * k for b_i, k in zip(b, stages, strict=True))

    def loop():
        keys = jax.random.split(path_key, num_steps)
        _, states = jax.lax.scan(lambda x, tk: (step(*tk, x),) * 2, x0, (times, keys))
        return jnp.concatenate([x0[None], states])

    return jax.jit(loop)()


@pytest.mark.parametrize("sampler", ["ddim", "rk4"])
def test_uniform_grid_reproduces_the_fixed_step_loop_exactly(sampler):
    # Flow matching trains at every t, so its grid is not moved onto training levels.
    strategy = create_strategy(FlowMatchingStrategyConfig(prediction="eps"))
    oracle = GaussianOracle(strategy, MEAN, STD)
    key = jax.random.key(4)
    result = sample(strategy, oracle, key, 64, 2, SamplerConfig(sampler, 7), keep_trajectory=True)
    np.testing.assert_array_equal(
        result.trajectory, _old_uniform_loop(strategy, oracle, key, 7, sampler)
    )


def test_time_grid_is_only_for_fixed_step_samplers():
    for name in ("default", "adaptive"):
        with pytest.raises(ValueError, match="time_grid='logsnr'"):
            SamplerConfig(name, time_grid="logsnr")
    with pytest.raises(ValueError, match="time_grid='log'"):
        SamplerConfig("euler", time_grid="log")


# ----------------------------------------------------------------------------------------------
# Grids on a discrete-time strategy's training times
# ----------------------------------------------------------------------------------------------


class OnLevelsOnly:
    """A model that is the exact Gaussian denoiser at the times k / T and NaN between them."""

    def __init__(self, strategy, mean, std):
        self.oracle = GaussianOracle(strategy, mean, std)
        self.levels = strategy.num_transport_steps

    def __call__(self, t, z):
        on_level = jnp.abs(t * self.levels - jnp.round(t * self.levels)) < 1e-3
        return jnp.where(on_level, self.oracle(t, z), jnp.nan)


@pytest.mark.parametrize("sampler", ["ddim", "euler", "dpm-solver", "euler-maruyama"])
@pytest.mark.parametrize("kind", ["uniform", "logsnr"])
def test_samplers_query_a_ddpm_network_only_at_its_training_times(sampler, kind):
    strategy = create_strategy(DDPMStrategyConfig(num_transport_steps=100))
    model = OnLevelsOnly(strategy, [1.0, -2.0], 0.5)
    cfg = SamplerConfig(sampler=sampler, num_sampling_steps=24, time_grid=kind)
    n = 4000
    result = sample(strategy, model, jax.random.key(0), n, 2, cfg)
    samples = np.asarray(result.samples)
    assert np.isfinite(samples).all()
    # 24 steps leave a bias of the mean of at most 0.03 (Euler-Maruyama, uniform grid; measured
    # at 20,000 points), beside 4 standard errors of the mean of n points of std 0.5.
    np.testing.assert_allclose(samples.mean(0), [1.0, -2.0], atol=0.035 + 4 * 0.5 / n**0.5)
    # Unsnapped, or with more steps than levels (which cannot be snapped), this model shows it.
    for off_levels in (
        dataclasses.replace(cfg, snap_to_training_times=False),
        dataclasses.replace(cfg, num_sampling_steps=150),
    ):
        samples = sample(strategy, model, jax.random.key(0), 8, 2, off_levels).samples
        assert not np.isfinite(np.asarray(samples)).all()


@pytest.mark.parametrize("steps", [8, 16, 32, 64, 100])
def test_default_sampler_steps_between_a_ddpm_network_s_training_times(steps):
    strategy = create_strategy(DDPMStrategyConfig(num_transport_steps=100))
    model = OnLevelsOnly(strategy, [1.0, -2.0], 0.5)
    n = 2000
    samples = np.asarray(
        sample(
            strategy, model, jax.random.key(0), n, 2, SamplerConfig(num_sampling_steps=steps)
        ).samples
    )
    assert np.isfinite(samples).all()
    np.testing.assert_allclose(samples.mean(0), [1.0, -2.0], atol=4 * 0.5 / n**0.5)
    with pytest.raises(ValueError, match="at most the 100 levels"):
        sample(strategy, model, jax.random.key(0), 8, 2, SamplerConfig(num_sampling_steps=101))


# ----------------------------------------------------------------------------------------------
# Batches, and the trajectory kept only when asked for
# ----------------------------------------------------------------------------------------------

BATCH_INVARIANT = [name for name in SAMPLERS if name not in ("pc", "adaptive")]
"""Every sampler but the two whose steps read the whole batch (pc's step size, adaptive's error
control)."""


@pytest.mark.parametrize("name", BATCH_INVARIANT)
def test_batches_give_the_points_of_one_batch_and_a_prefix_is_a_smaller_draw(name):
    model = create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(0), 2)
    strategy = create_strategy(DDPMStrategyConfig(10, "eps"))
    cfg, key = SamplerConfig(name, 4), jax.random.key(1)
    whole = sample(strategy, model, key, 100, 2, cfg)
    assert whole.trajectory is None
    # Three batches of 34, the last one padded with 2 points that are dropped.
    batched = sample(strategy, model, key, 100, 2, cfg, batch_size=40, keep_trajectory=True)
    np.testing.assert_allclose(batched.samples, whole.samples, rtol=1e-5, atol=1e-5)
    assert batched.trajectory.shape == (5, 100, 2) and int(batched.nfe) == int(whole.nfe)
    np.testing.assert_array_equal(batched.trajectory[-1], batched.samples)
    # The prefix and the other key's draw share one compiled program: 34 points without the
    # trajectory, the shape of the batches of 100 at batch size 40.
    first = sample(strategy, model, key, 34, 2, cfg)
    np.testing.assert_allclose(first.samples, whole.samples[:34], rtol=1e-5, atol=1e-5)
    other = sample(strategy, model, jax.random.key(2), 100, 2, cfg, batch_size=40)
    assert not np.allclose(other.samples, whole.samples)


def test_batches_of_a_guided_class_conditional_draw():
    model = create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(0), 2, num_classes=3)
    strategy = create_strategy(FlowMatchingStrategyConfig(8, "v"))
    labels = jax.random.randint(jax.random.key(3), (50,), 0, 3)
    cfg = SamplerConfig("heun", 4, guidance_scale=2.0)
    whole = sample(strategy, model, jax.random.key(1), 50, 2, cfg, labels)
    batched = sample(strategy, model, jax.random.key(1), 50, 2, cfg, labels, batch_size=16)
    np.testing.assert_allclose(batched.samples, whole.samples, rtol=1e-5, atol=1e-5)
    assert int(batched.nfe) == int(whole.nfe) == 16  # 4 Heun steps, 2 stages, 2 guided calls


def test_sample_batches_yields_the_draw_in_order_and_checks_options_at_once():
    model = create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(0), 2)
    strategy = create_strategy(FlowMatchingStrategyConfig(8, "v"))
    key = jax.random.key(1)
    # The fewest batches of at most 32 (three), all of one size: 24, 24 and 22 + 2 padding.
    batches = list(sample_batches(strategy, model, key, 70, 2, batch_size=32))
    assert [(start, len(result.samples)) for start, result in batches] == [
        (0, 24),
        (24, 24),
        (48, 22),
    ]
    whole = sample(strategy, model, key, 70, 2)
    np.testing.assert_allclose(
        np.concatenate([r.samples for _, r in batches]), whole.samples, rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="batch_size=0"):
        sample_batches(strategy, model, key, 70, 2, batch_size=0)
    with pytest.raises(ValueError, match="needs the score"):
        sample_batches(
            create_strategy(FlowMatchingStrategyConfig(coupling="ot")),
            model,
            key,
            70,
            2,
            SamplerConfig("euler-maruyama"),
        )
