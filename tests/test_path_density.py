"""One-dimensional data: the 1-D mixture, sampling it with every sampler, and the density p_t(x)
over the (t, x) plane (jax_gen.path_density) against closed forms.

The exact denoiser of the mixture (``MixtureOracle1D``) makes every marginal of the path the
mixture sum_k w_k N(alpha m_k, alpha^2 s^2 + sigma^2) in closed form, so the samplers' points,
the model's ODE density and the true path's quadrature all have an exact answer.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import MixtureOracle1D

from jax_gen.config import (
    DDPMStrategyConfig,
    FlowMatchingStrategyConfig,
    GaussianMixture1DConfig,
    SamplerConfig,
    ScoreMatchingStrategyConfig,
)
from jax_gen.data import (
    class_frequencies,
    data_dim,
    get_labeled_batch,
    has_log_density,
    is_planar,
    log_density,
)
from jax_gen.data.builtin import mixture_1d_components
from jax_gen.metrics import sliced_wasserstein
from jax_gen.parameterization import path_coefficients
from jax_gen.path_density import (
    has_true_density,
    histogram_density,
    model_density,
    true_density,
    window,
)
from jax_gen.sampling import frame_times, sample
from jax_gen.strategies import create_strategy

DATA = GaussianMixture1DConfig()
WEIGHTS, CENTRES, STD = mixture_1d_components(DATA)


def mixture_path_density(strategy, t, xs):
    """sum_k w_k N(x; alpha m_k, alpha^2 s^2 + sigma^2) on the clipped path, in float64."""
    c = path_coefficients(strategy.schedule, jnp.float32(t))
    alpha, sigma = float(c.alpha), float(c.sigma)
    variance = alpha**2 * STD**2 + sigma**2
    terms = WEIGHTS * np.exp(-((xs[:, None] - alpha * CENTRES) ** 2) / (2 * variance))
    return terms.sum(axis=1) / math.sqrt(2 * math.pi * variance)


def oracle(cfg):
    strategy = create_strategy(cfg)
    return strategy, MixtureOracle1D(strategy, WEIGHTS, CENTRES, STD)


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------


def test_mixture_1d_draws_its_components_with_their_weights_and_spread():
    n = 100_000
    points, labels = get_labeled_batch(jax.random.key(0), DATA, n)
    points, labels = np.asarray(points), np.asarray(labels)
    assert points.shape == (n, 1) and data_dim(DATA) == 1 and not is_planar(DATA)
    np.testing.assert_allclose(class_frequencies(DATA), [0.3, 0.2, 0.5])
    shares = np.bincount(labels, minlength=3) / n
    stderr = np.sqrt(WEIGHTS * (1 - WEIGHTS) / n)
    assert np.all(np.abs(shares - WEIGHTS) < 4 * stderr), shares
    for k in range(3):
        chosen = points[labels == k, 0]
        assert abs(chosen.mean() - CENTRES[k]) < 4 * STD / math.sqrt(chosen.size)
        assert abs(chosen.std() / STD - 1) < 0.02


def test_mixture_1d_density_is_the_closed_form_and_integrates_to_one():
    assert has_log_density(DATA)
    xs = np.linspace(-6, 6, 6001)
    p = np.exp(np.asarray(log_density(DATA, jnp.asarray(xs[:, None])), np.float64))
    by_hand = sum(
        w * np.exp(-((xs - m) ** 2) / (2 * STD**2)) / math.sqrt(2 * math.pi * STD**2)
        for w, m in zip(WEIGHTS, CENTRES, strict=True)
    )
    np.testing.assert_allclose(p, by_hand, rtol=1e-5, atol=1e-9)
    assert abs(np.trapezoid(p, xs) - 1) < 1e-6


def test_sliced_w2_is_the_exact_w2_in_one_dimension():
    a = np.asarray(jax.random.normal(jax.random.key(1), (500, 1)))
    b = 0.5 + 2 * np.asarray(jax.random.normal(jax.random.key(2), (500, 1)))
    exact = math.sqrt(np.mean((np.sort(a[:, 0]) - np.sort(b[:, 0])) ** 2))
    assert float(sliced_wasserstein(a, b, jax.random.key(3))) == pytest.approx(exact, rel=1e-5)


# ----------------------------------------------------------------------------------------------
# Every sampler on the line
# ----------------------------------------------------------------------------------------------

SAMPLERS = [
    ("default", 100),
    ("ancestral", 100),
    ("ddim", 50),
    ("euler", 100),
    ("midpoint", 25),
    ("heun", 25),
    ("rk4", 10),
    ("dpm-solver", 20),
    ("euler-maruyama", 100),
    ("pc", 50),
    ("adaptive", 10),
]


@pytest.mark.parametrize(("sampler", "steps"), SAMPLERS, ids=[s for s, _ in SAMPLERS])
def test_every_sampler_recovers_the_modes_and_weights_of_a_1d_mixture(sampler, steps):
    strategy, model = oracle(DDPMStrategyConfig(num_transport_steps=100))
    n = 4000
    result = sample(strategy, model, jax.random.key(4), n, 1, SamplerConfig(sampler, steps))
    points = np.asarray(result.samples)[:, 0]
    assert np.all(np.isfinite(points))
    nearest = np.argmin(np.abs(points[:, None] - CENTRES), axis=1)
    shares = np.bincount(nearest, minlength=3) / n
    # 4 standard errors of a share at n = 4000 is at most 0.032.
    np.testing.assert_allclose(shares, WEIGHTS, atol=0.032)
    for k in range(3):
        chosen = points[nearest == k]
        assert abs(chosen.mean() - CENTRES[k]) < 0.05, (k, chosen.mean())
        assert 0.85 < chosen.std() / STD < 1.15, (k, chosen.std())


def test_frame_times_are_the_times_of_the_trajectory_frames():
    flow = create_strategy(FlowMatchingStrategyConfig())
    np.testing.assert_allclose(
        frame_times(flow, SamplerConfig("euler", 4)), [0, 0.25, 0.5, 0.75, 1]
    )
    np.testing.assert_allclose(frame_times(flow, SamplerConfig("adaptive", 5)), np.arange(6) / 5)
    ddpm = create_strategy(DDPMStrategyConfig(num_transport_steps=100))
    times = np.asarray(frame_times(ddpm, SamplerConfig("ddim", 10)))
    assert times[0] == 0 and times[-1] == 1 and np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times * 100, np.round(times * 100), atol=1e-4)  # training levels
    # The frames of an exact flow sit on the path's marginals at those times: on the logsnr
    # grid of DPM-Solver (frame 24 of 64 is at t = 0.15, not 0.375) each frame has the
    # mixture's spread at its frame time.
    strategy, model = oracle(FlowMatchingStrategyConfig())
    cfg = SamplerConfig("dpm-solver", 64)
    grid = np.asarray(frame_times(strategy, cfg))
    assert abs(grid[24] - 0.151) < 1e-3
    result = sample(strategy, model, jax.random.key(5), 20_000, 1, cfg, keep_trajectory=True)
    spread = np.asarray(result.trajectory[..., 0], np.float64).std(axis=1)
    c = jax.vmap(lambda t: path_coefficients(strategy.schedule, t))(jnp.asarray(grid))
    alpha, sigma = np.asarray(c.alpha, np.float64), np.asarray(c.sigma, np.float64)
    mean = alpha * (WEIGHTS @ CENTRES)
    second = alpha**2 * (WEIGHTS @ (CENTRES**2 + STD**2)) + sigma**2
    np.testing.assert_allclose(spread, np.sqrt(second - mean**2), atol=0.03)


# ----------------------------------------------------------------------------------------------
# p_t(x) over the (t, x) plane
# ----------------------------------------------------------------------------------------------

PATH_CONFIGS = [
    FlowMatchingStrategyConfig(),
    DDPMStrategyConfig(num_transport_steps=100),
    ScoreMatchingStrategyConfig(sigma_max=5.0),
]


@pytest.mark.parametrize(
    ("cfg", "limit", "atol"),
    [(PATH_CONFIGS[0], 8, 5e-5), (PATH_CONFIGS[1], 8, 5e-5), (PATH_CONFIGS[2], 30, 4e-4)],
    ids=["flow", "ddpm", "score"],
)
def test_true_density_is_the_mixture_along_the_path_and_integrates_to_one(cfg, limit, atol):
    # The window [-limit, limit] holds all but 1e-8 of every marginal (the VE path's p_0 is
    # about N(., 5^2)). The quadrature interpolates p_data linearly between points h = 1.2
    # limit / 4096 apart: an error of O(h^2 p_data''), 1.6e-5 at limit 8 and 2.3e-4 at 30.
    strategy = create_strategy(cfg)
    assert has_true_density(strategy, DATA)
    times = np.array([0.0, 0.2, 0.5, 0.8, 0.95, 1.0])
    xs = np.linspace(-limit, limit, 801)
    density = true_density(strategy, DATA, times, xs)
    for row, t in zip(density, times, strict=True):
        np.testing.assert_allclose(row, mixture_path_density(strategy, t, xs), atol=atol)
        assert abs(np.trapezoid(row, xs) - 1) < 1e-6


def test_true_density_needs_the_independent_gaussian_path():
    ot = create_strategy(FlowMatchingStrategyConfig(coupling="ot"))
    assert not has_true_density(ot, DATA)
    with pytest.raises(ValueError, match="independent Gaussian path"):
        true_density(ot, DATA, np.array([0.5]), np.linspace(-1, 1, 5))


@pytest.mark.parametrize("cfg", PATH_CONFIGS[:2], ids=["flow", "ddpm"])
def test_model_density_of_the_exact_denoiser_is_the_true_path(cfg):
    # The probability-flow ODE of the exact denoiser carries the source along the path's own
    # marginals, so its density at every t is the mixture's, and integrates to 1 at each t.
    strategy, model = oracle(cfg)
    times = np.array([0.0, 0.3, 0.6, 0.9])
    xs = np.linspace(-5, 5, 201)
    density = model_density(strategy, model, times, xs)
    expected = np.stack([mixture_path_density(strategy, t, xs) for t in times])
    # DDPM's source N(0, 1) against the path's p_0 (alpha(0) = 0.006) and the time clip
    # differ by ~1e-3 at most; a wrong divergence sign is off by the whole density.
    np.testing.assert_allclose(density, expected, atol=3e-3)
    mass = density.sum(axis=1) * (xs[1] - xs[0])
    np.testing.assert_allclose(mass, 1.0, atol=2e-3)


def test_histogram_density_integrates_to_the_share_inside_the_window():
    points = np.asarray(jax.random.normal(jax.random.key(6), (2, 50_000)), np.float64)
    points[1] *= 3.0  # a third of these fall outside the window
    xs = np.linspace(-3, 3, 61)
    density = histogram_density(points, xs)
    h = xs[1] - xs[0]
    inside = np.mean(np.abs(points) < 3 + h / 2, axis=1)
    np.testing.assert_allclose(density.sum(axis=1) * h, inside, atol=1e-12)
    gaussian = np.exp(-(xs**2) / 2) / math.sqrt(2 * math.pi)
    assert np.max(np.abs(density[0] - gaussian)) < 0.02


def test_window_spans_the_points_with_a_margin():
    xs = window(np.array([[-1.0, np.nan], [3.0, 2.0]]), 5, margin=0.25)
    np.testing.assert_allclose(xs, np.linspace(-2, 4, 5))
    np.testing.assert_allclose(window(np.ones(3), 3, margin=0.5), [0.5, 1.0, 1.5])
