import dataclasses
import typing

import equinox as eqx
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
from jax_gen.samplers import TABLEAUS, _ddim_update, evals_per_step, nfe_schedule, sample
from jax_gen.strategies import create_strategy

MEAN, STD = jnp.array([2.0, -1.0]), 0.5
ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


class ExponentialODE(eqx.Module):
    """A stand-in strategy whose velocity is dz/dt = t z: z(1) = z(0) exp(1/2) exactly."""

    num_transport_steps: int = eqx.field(static=True, default=4)

    def velocity(self, model, t, z):
        return t * z

    def sample_from_source_distribution(self, key, num_samples, data_dim):
        return jax.random.normal(key, (num_samples, data_dim))


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_fixed_step_solvers_have_their_order_of_accuracy(name):
    with jax.enable_x64(True):
        ode = ExponentialODE()
        errors = []
        for steps in (4, 8, 16):
            result = sample(ode, None, jax.random.key(0), 8, 2, SamplerConfig(name, steps))
            exact = result.trajectory[0] * np.exp(0.5)
            errors.append(float(jnp.max(jnp.abs(result.samples - exact))))
            assert int(result.nfe) == steps * len(TABLEAUS[name][1])
        rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        np.testing.assert_allclose(rates, ORDERS[name], atol=0.25)


def test_adaptive_solver_agrees_with_fine_rk4_and_reports_its_nfe():
    strategy = create_strategy(FlowMatchingStrategyConfig())
    oracle = GaussianOracle(strategy, MEAN, STD)
    key = jax.random.key(1)
    adaptive = sample(
        strategy, oracle, key, 500, 2, SamplerConfig("adaptive", 10, rtol=1e-5, atol=1e-5)
    )
    rk4 = sample(strategy, oracle, key, 500, 2, SamplerConfig("rk4", 200))
    np.testing.assert_allclose(adaptive.samples, rk4.samples, atol=2e-3)
    np.testing.assert_array_equal(adaptive.trajectory[0], rk4.trajectory[0])
    assert adaptive.trajectory.shape == (11, 500, 2)
    assert 7 <= int(adaptive.nfe) < 800
    loose = sample(
        strategy, oracle, key, 500, 2, SamplerConfig("adaptive", 10, rtol=1e-2, atol=1e-2)
    )
    assert int(loose.nfe) < int(adaptive.nfe)


def test_ddim_with_eta_zero_is_deterministic_and_eta_one_is_not():
    strategy = create_strategy(DDPMStrategyConfig())
    z = jax.random.normal(jax.random.key(0), (4, 2))
    x_hat, eps_hat = jnp.ones((4, 2)), jnp.zeros((4, 2))
    t = jnp.float32(0.3)
    a = [
        _ddim_update(strategy.schedule, t, t + 0.01, z, x_hat, eps_hat, 0.0, jax.random.key(k))
        for k in (1, 2)
    ]
    np.testing.assert_array_equal(a[0], a[1])
    b = [
        _ddim_update(strategy.schedule, t, t + 0.01, z, x_hat, eps_hat, 1.0, jax.random.key(k))
        for k in (1, 2)
    ]
    assert not np.allclose(b[0], b[1])


@pytest.mark.parametrize(
    "cfg", [DDPMStrategyConfig(), FlowMatchingStrategyConfig()], ids=["ddpm", "flow"]
)
def test_deterministic_ddim_converges_to_the_exact_flow_of_gaussian_data(cfg):
    # For Gaussian data the exact flow maps the source z0 to mean + std z0; deterministic DDIM
    # is a first-order solver of that flow.
    strategy = create_strategy(cfg)
    oracle = GaussianOracle(strategy, MEAN, STD)
    errors = []
    for steps in (50, 200):
        result = sample(strategy, oracle, jax.random.key(0), 1000, 2, SamplerConfig("ddim", steps))
        errors.append(
            float(jnp.mean(jnp.abs(result.samples - (MEAN + STD * result.trajectory[0]))))
        )
    assert errors[1] < 0.01
    assert errors[0] / errors[1] > 3


def test_ddim_with_eta_one_matches_ancestral_ddpm_statistics():
    strategy = create_strategy(DDPMStrategyConfig(num_transport_steps=100))
    oracle = GaussianOracle(strategy, MEAN, STD)
    ancestral = sample(strategy, oracle, jax.random.key(0), 16000, 2, SamplerConfig("default"))
    ddim = sample(strategy, oracle, jax.random.key(1), 16000, 2, SamplerConfig("ddim", eta=1.0))
    np.testing.assert_allclose(ddim.samples.mean(0), ancestral.samples.mean(0), atol=0.02)
    np.testing.assert_allclose(ddim.samples.std(0), ancestral.samples.std(0), atol=0.01)
    same = sample(strategy, oracle, jax.random.key(1), 16000, 2, SamplerConfig("ancestral"))
    np.testing.assert_array_equal(same.samples, ddim.samples)


@pytest.mark.parametrize("sampler", ["euler-maruyama", "pc"])
@pytest.mark.parametrize(
    "cfg", [DDPMStrategyConfig(), FlowMatchingStrategyConfig()], ids=["ddpm", "flow"]
)
def test_stochastic_samplers_reach_the_gaussian_marginal(cfg, sampler):
    strategy = create_strategy(cfg)
    result = sample(
        strategy,
        GaussianOracle(strategy, MEAN, STD),
        jax.random.key(0),
        8000,
        2,
        SamplerConfig(sampler, 200),
    )
    np.testing.assert_allclose(result.samples.mean(0), MEAN, atol=0.03)
    np.testing.assert_allclose(result.samples.std(0), STD, rtol=0.05)


@pytest.mark.parametrize(
    "cfg",
    [
        DDPMStrategyConfig(num_transport_steps=20),
        FlowMatchingStrategyConfig(num_transport_steps=20),
    ],
    ids=["ddpm", "flow"],
)
def test_default_sampler_is_the_strategy_s_own_loop(cfg):
    strategy = create_strategy(cfg)
    model = create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(0), 2)
    key = jax.random.key(3)
    own, own_trajectory = strategy.sample_from_target_distribution(model, key, 64, 2)
    result = sample(strategy, model, key, 64, 2)
    np.testing.assert_array_equal(result.samples, own)
    np.testing.assert_array_equal(result.trajectory, own_trajectory)
    assert int(result.nfe) == 20
    fewer = sample(strategy, model, key, 64, 2, SamplerConfig(num_sampling_steps=5))
    assert fewer.trajectory.shape == (6, 64, 2) and int(fewer.nfe) == 5


SAMPLERS = typing.get_args(SamplerName)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_runs_on_both_strategies_with_finite_output(name):
    model = create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(0), 2)
    for cfg in (DDPMStrategyConfig(10, "eps"), FlowMatchingStrategyConfig(10, "x")):
        strategy = create_strategy(cfg)
        result = sample(strategy, model, jax.random.key(1), 32, 2, SamplerConfig(name, 4))
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
