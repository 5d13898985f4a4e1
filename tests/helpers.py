"""Shared parametrisations and analytic references for the tests."""

import itertools
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jax_gen.config import DDPMStrategyConfig, FlowMatchingStrategyConfig
from jax_gen.parameterization import path_coefficients
from jax_gen.schedules import (
    CosinePath,
    LinearPath,
    VPCosineSchedule,
    VPLinearBetaSchedule,
    VPSigmoidSchedule,
)

PREDICTIONS = ("eps", "x", "v")
SCHEDULES = {
    "linear": LinearPath(),
    "vp": VPLinearBetaSchedule(),
    "vp-cosine": VPCosineSchedule(),
    "vp-sigmoid": VPSigmoidSchedule(),
    "cosine": CosinePath(),
}


def strategy_configs(ddpm_steps: int = 100, flow_steps: int = 50):
    """Every strategy with every prediction, as (id, config) pairs."""
    out = []
    for prediction in PREDICTIONS:
        out.append((f"ddpm-{prediction}", DDPMStrategyConfig(ddpm_steps, prediction)))
        out.append((f"flow-{prediction}", FlowMatchingStrategyConfig(flow_steps, prediction)))
    return out


STRATEGY_CONFIGS = strategy_configs()
STRATEGY_IDS = [name for name, _ in STRATEGY_CONFIGS]
STRATEGY_CFGS = [cfg for _, cfg in STRATEGY_CONFIGS]
STRATEGY_AND_PREDICTION = list(itertools.product(("ddpm", "flow"), PREDICTIONS))


class GaussianOracle:
    """The exact denoiser of Gaussian data x ~ N(mean, std^2 I), as a model(t, z).

    For z = alpha x + sigma eps, E[x | z] = mean + alpha std^2 / (alpha^2 std^2 + sigma^2)
    (z - alpha mean); the oracle returns whatever the strategy's parameterization asks for.
    """

    def __init__(self, strategy, mean, std):
        self.strategy = strategy
        self.mean = jnp.asarray(mean)
        self.std = std

    def __call__(self, t, z):
        c = path_coefficients(self.strategy.schedule, t)
        gain = c.alpha * self.std**2 / (c.alpha**2 * self.std**2 + c.sigma**2)
        x_hat = self.mean + gain * (z - c.alpha * self.mean)
        eps_hat = (z - c.alpha * x_hat) / c.sigma
        return self.strategy.parameterization.target(x_hat, eps_hat, c)


FAST = ["--batch-size", "64", "--train-steps", "20", "--log-interval", "10", "--num-samples", "200"]
"""Command-line options of a training run that takes seconds."""

SMALL_FIELD = ["--times", "0", "0.5", "1", "--gif-frames", "3", "--grid-size", "8"]
SMALL_FIELD += ["--num-points", "100"]
"""`plot-field` options that draw a small field: three panels, a three-frame GIF."""


def run_cli(argv, capsys):
    """Runs the CLI in-process; returns (exit code, stdout, stderr)."""
    from jax_gen.cli import main

    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def ring_trajectory(num_states=41, n=24, seed=0):
    """Straight lines from Gaussian noise (state 0) to a small ring of points (last state)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, 2))
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = 0.5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    t = np.linspace(0, 1, num_states)[:, None, None]
    return (1 - t) * noise + t * ring


def only_file(directory, name):
    assert sorted(p.name for p in Path(directory).iterdir()) == [name], "a temp file was left"


class MixtureOracle1D:
    """The exact denoiser of 1-D data sum_k w_k N(m_k, s^2), as a model(t, z) on one point.

    For z = alpha x + sigma eps, component k gives z ~ N(alpha m_k, v), v = alpha^2 s^2 +
    sigma^2, and E[x | z, k] = m_k + alpha s^2 / v (z - alpha m_k); E[x | z] averages these with
    the posterior weights r_k(z) proportional to w_k N(z; alpha m_k, v).
    """

    def __init__(self, strategy, weights, centres, std):
        self.strategy = strategy
        self.log_weights = jnp.log(jnp.asarray(weights, jnp.float32))
        self.centres = jnp.asarray(centres, jnp.float32)
        self.std = float(std)

    def __call__(self, t, z):
        c = path_coefficients(self.strategy.schedule, t)
        variance = c.alpha**2 * self.std**2 + c.sigma**2
        log_r = self.log_weights - (z[0] - c.alpha * self.centres) ** 2 / (2 * variance)
        r = jnp.exp(log_r - jnp.max(log_r))
        r = r / jnp.sum(r)
        means = self.centres + c.alpha * self.std**2 / variance * (z[0] - c.alpha * self.centres)
        x_hat = jnp.sum(r * means)[None]
        eps_hat = (z - c.alpha * x_hat) / c.sigma
        return self.strategy.parameterization.target(x_hat, eps_hat, c)
