"""The learned field over the data's plane: the velocity at grid points, the noisy marginals."""

import jax
import numpy as np
from helpers import GaussianOracle

from jax_gen import fields
from jax_gen.config import FlowMatchingStrategyConfig, GaussianMixtureConfig, SwissRollConfig
from jax_gen.data import from_plane
from jax_gen.strategies import create_strategy


def test_field_views_are_the_velocity_at_the_grid_points():
    """With the exact denoiser of Gaussian data the velocity is known in closed form."""
    strategy = create_strategy(FlowMatchingStrategyConfig(prediction="eps"))
    mean, std = np.array([0.5, -1.0]), 0.7
    oracle = GaussianOracle(strategy, mean, std)
    grid = np.stack(np.meshgrid(np.linspace(-3, 3, 5), np.linspace(-2, 2, 4)), -1).reshape(-1, 2)
    times = np.array([0.1, 0.5, 0.9], dtype=np.float32)
    dataset = GaussianMixtureConfig()
    vectors, marginals = fields.field_views(
        strategy, oracle, dataset, times, grid, jax.random.key(0), 300, "velocity"
    )
    assert vectors.shape == (3, 20, 2) and marginals.shape == (3, 300, 2)
    for t, v in zip(times.astype(np.float64), vectors, strict=True):
        # Linear path z = t x + (1 - t) eps: mu_t = t m, var_t = t^2 s^2 + (1 - t)^2 and
        # v = mu_t' + (var_t' / (2 var_t)) (z - mu_t).
        var = t**2 * std**2 + (1 - t) ** 2
        dvar = 2 * t * std**2 - 2 * (1 - t)
        expected = mean + dvar / (2 * var) * (grid - t * mean)
        np.testing.assert_allclose(v, expected, rtol=1e-4, atol=1e-4)
    # The marginal at t = 0.1 is mostly noise: its spread is close to var_t's.
    assert np.std(marginals[0]) > 0.8


def test_plane_keeps_leading_axes_and_inverts_the_embedding():
    dataset = SwissRollConfig(ambient_dim=5)
    flat = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    embedded = np.asarray(from_plane(flat.reshape(-1, 2), dataset)).reshape(3, 4, 5)
    np.testing.assert_allclose(fields.plane(embedded, dataset), flat, rtol=1e-5, atol=1e-5)


class CountingOracle(GaussianOracle):
    """The Gaussian oracle, counting its calls: inside a compiled function, one per trace."""

    calls = 0

    def __call__(self, t, z):
        self.calls += 1
        return super().__call__(t, z)


def test_the_field_is_traced_once_for_every_time():
    strategy = create_strategy(FlowMatchingStrategyConfig())
    grid = np.zeros((6, 2), np.float32)
    counts = []
    for times in (np.array([0.5]), np.linspace(0, 1, 5)):
        oracle = CountingOracle(strategy, np.zeros(2), 1.0)
        fields.field_views(
            strategy,
            oracle,
            GaussianMixtureConfig(),
            times,
            grid,
            jax.random.key(0),
            10,
            "velocity",
        )
        counts.append(oracle.calls)
    assert counts[0] > 0 and counts[1] == counts[0]
