"""Tests of jax_gen.likelihood: log p through the probability-flow ODE against closed forms.

For Gaussian data N(m, s^2 I) the exact denoiser (``GaussianOracle``) makes every marginal of the
path Gaussian and the probability-flow ODE linear, so the backward solve is an affine map
z_0 = a + b x per coordinate, and the expected log_prob is source_log_prob(z_0) + d log b in
closed form (:func:`affine_flow_map`).
"""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import STRATEGY_CFGS, STRATEGY_IDS, GaussianOracle

from jax_gen import likelihood
from jax_gen.config import (
    DDPMStrategyConfig,
    FlowMatchingStrategyConfig,
    GaussianMixtureConfig,
    MLPConfig,
    OptimizerConfig,
    ScoreMatchingStrategyConfig,
    TrainConfig,
)
from jax_gen.data import get_batch, log_density
from jax_gen.likelihood import log_prob, nats_per_dim
from jax_gen.models import create_model
from jax_gen.parameterization import T_CLIP, path_coefficients
from jax_gen.strategies import create_strategy
from jax_gen.train import train

MEAN, STD = np.array([1.0, -0.5]), 0.7
ALL_CFGS = STRATEGY_CFGS + [ScoreMatchingStrategyConfig(prediction="eps")]
ALL_IDS = STRATEGY_IDS + ["score-eps"]
CLIP_EFFECT = {
    DDPMStrategyConfig: 1e-3,
    FlowMatchingStrategyConfig: 1e-3,
    ScoreMatchingStrategyConfig: 1e-2,
}
"""How far the clip of t into [1e-3, 1 - 1e-3] may move log_prob of the exact model.

On [0, c] and [1 - c, 1] (c = 1e-3) the velocity is frozen at the clipped time: a first-order
extrapolation of the flow, so the flow map moves by O(c^2) except where the path is stiff at the
data end. On the VP and linear paths that gives ~3e-4 nats. The VE path stops at
sigma(1 - c) = 1.007 sigma_min instead of sigma_min, which widens the data by ~1e-4 / s^2 in
variance and moves z_0 by ~1e-4 |z_0|; at the far points (|z_0| ~ 50 with sigma_max = 10) the
source's log-density moves by ~|z_0|^2 1e-4 / sigma_max^2 ~ 5e-3 nats.
"""


def gaussian_points(n=16, seed=0):
    """Points of the data N(MEAN, STD^2 I), plus two in its far tails."""
    x = MEAN + STD * np.asarray(jax.random.normal(jax.random.key(seed), (n, 2)))
    return np.concatenate([x, [[4.0, -4.0], [-3.0, 2.5]]]).astype(np.float32)


def affine_flow_map(strategy, mean, std):
    """The backward flow z_1 = x -> z_0 of the Gaussian oracle as z_0 = offset + slope x.

    With the path read at t clipped into [c, 1 - c] (c = T_CLIP), per coordinate:

    - on [c, 1 - c] the ODE is the exact flow of the marginals N(mu_t, std_t^2),
      mu_t = alpha m, std_t^2 = alpha^2 s^2 + sigma^2, which maps z_(1-c) to
      z_c = mu_c + (std_c / std_(1-c)) (z_(1-c) - mu_(1-c));
    - on [1 - c, 1] and [0, c] the velocity is frozen at the clipped time tau:
      v(z) = mu'_tau + k (z - mu_tau), k = std'_tau / std_tau, a linear autonomous ODE whose
      flow backwards over a time c is z -> z + v(z) (e^(-k c) - 1) / k, of slope e^(-k c).

    Returns:
        (offset, slope) with z_0 = offset + slope * x, computed in float64.
    """
    mean = np.asarray(mean, np.float64)

    def moments(tau):
        c = path_coefficients(strategy.schedule, jnp.float32(tau))
        alpha, sigma, d_alpha, d_sigma = (float(v) for v in c)
        var = alpha**2 * std**2 + sigma**2
        k = (alpha * d_alpha * std**2 + sigma * d_sigma) / var
        return alpha * mean, math.sqrt(var), d_alpha * mean, k

    def frozen(tau):
        """The backward flow over a time T_CLIP at frozen time tau, as (offset, slope)."""
        mu, _, d_mu, k = moments(tau)
        factor = math.expm1(-k * T_CLIP) / k
        slope = 1 + k * factor
        return (d_mu - k * mu) * factor, slope

    mu_lo, std_lo, _, _ = moments(T_CLIP)
    mu_hi, std_hi, _, _ = moments(1 - T_CLIP)
    maps = [frozen(1 - T_CLIP), (mu_lo - std_lo / std_hi * mu_hi, std_lo / std_hi), frozen(T_CLIP)]
    offset, slope = np.zeros(2), 1.0
    for a, b in maps:  # compose z -> a + b z in the order of the backward solve
        offset, slope = a + b * offset, b * slope
    return offset, slope


def expected_log_prob(strategy, x, mean=MEAN, std=STD):
    offset, slope = affine_flow_map(strategy, mean, std)
    z0 = offset + slope * np.asarray(x, np.float64)
    source = jax.vmap(strategy.source_log_prob)(jnp.asarray(z0, jnp.float32))
    # source_log_prob in float32 rounds at ~1e-6 relative: far below the tolerances below.
    return np.asarray(source, np.float64) + x.shape[1] * math.log(slope)


def gaussian_log_density(x, mean=MEAN, std=STD):
    return -0.5 * np.sum(((x - mean) / std) ** 2 + math.log(2 * math.pi * std**2), axis=-1)


def source_mismatch(strategy, x, mean=MEAN, std=STD):
    """log source(z_0) - log p_0(z_0): what replacing the path's true p_0 by the source costs.

    Read on the unclipped path: p_0 = N(alpha(0) m, std_0^2 I), std_0^2 = alpha(0)^2 s^2 +
    sigma(0)^2, and z_0 = alpha(0) m + (std_0 / s) (x - m) is the exact flow of x back to t=0.
    Zero on the linear path (p_0 = N(0, I)); for DDPM, alpha(0) ~ e^-5 leaves a mean
    alpha(0) m, ~0.05 nats at the far points; for the VE path p_0 = N(m, (s^2 + sigma_max^2) I)
    against N(0, sigma_max^2 I), about |m| |x - m| / (s sigma_max): up to 0.8 nats here.
    """
    c = strategy.schedule(jnp.float32(0.0))
    alpha, sigma = float(c.alpha), float(c.sigma)
    std_0 = math.sqrt(alpha**2 * std**2 + sigma**2)
    z0 = alpha * mean + std_0 / std * (np.asarray(x, np.float64) - mean)
    source = jax.vmap(strategy.source_log_prob)(jnp.asarray(z0, jnp.float32))
    return np.asarray(source, np.float64) - gaussian_log_density(z0, alpha * mean, std_0)


# ----------------------------------------------------------------------------------------------
# Gaussian data: closed forms
# ----------------------------------------------------------------------------------------------


@functools.cache
def gaussian_model(cfg):
    """The strategy of ``cfg`` and its exact model of N(MEAN, STD^2 I), one per config.

    Cached so that tests sharing a config share its compiled solve (an oracle is static under
    ``jit``, compared by identity).
    """
    strategy = create_strategy(cfg)
    return strategy, GaussianOracle(strategy, MEAN, STD)


@pytest.mark.parametrize("cfg", ALL_CFGS, ids=ALL_IDS)
def test_gaussian_log_prob_matches_the_closed_form_flow(cfg):
    strategy, oracle = gaussian_model(cfg)
    x = gaussian_points()
    # Tight tolerances, so that the solver's error (~3e-3 nats at the 6-sigma points with the
    # default 1e-5, ~1e-4 at typical ones) stays well below the tolerance of the comparison.
    log_p = np.asarray(log_prob(strategy, oracle, x, rtol=1e-6, atol=1e-6))
    assert log_p.shape == (len(x),)
    np.testing.assert_allclose(log_p, expected_log_prob(strategy, x), rtol=0, atol=5e-4)

    # Against the data's own density: log_prob = log N(x; m, s^2 I) + source_mismatch, up to the
    # time clip, whose effect CLIP_EFFECT bounds (see there). The Jacobian term
    # d log(std_0 / s) is +0.7 nats (DDPM, flow) to +5.3 (VE): a wrong sign costs twice that.
    gap = log_p - gaussian_log_density(x)
    np.testing.assert_allclose(
        gap, source_mismatch(strategy, x), rtol=0, atol=CLIP_EFFECT[type(cfg)]
    )
    if isinstance(cfg, FlowMatchingStrategyConfig):
        np.testing.assert_allclose(gap, 0.0, atol=CLIP_EFFECT[type(cfg)])


def test_centred_ve_source_removes_the_log_prob_bias_of_off_centre_data():
    # N(0, sigma_max^2) as the source of data of mean MEAN costs ~0.1 nats at typical points
    # and up to 0.8 at the far ones; centred on the mean only the variance sigma_max^2 against
    # s^2 + sigma_max^2 is left: ~5e-3 nats at typical points (0.1 at the two 6-sigma ones).
    x = gaussian_points()[:16]
    gaps = {}
    for source_mean in (None, tuple(MEAN)):
        cfg = ScoreMatchingStrategyConfig(prediction="eps", source_mean=source_mean)
        strategy, oracle = gaussian_model(cfg)
        log_p = np.asarray(log_prob(strategy, oracle, x, rtol=1e-6, atol=1e-6))
        np.testing.assert_allclose(log_p, expected_log_prob(strategy, x), rtol=0, atol=5e-4)
        gaps[source_mean] = np.max(np.abs(log_p - gaussian_log_density(x)))
    assert gaps[None] > 0.1, gaps
    assert gaps[tuple(MEAN)] < 0.02, gaps


@pytest.mark.parametrize("cfg", STRATEGY_CFGS[:2], ids=STRATEGY_IDS[:2])
def test_log_prob_at_a_time_is_the_density_of_that_marginal(cfg):
    strategy, oracle = gaussian_model(cfg)
    x = gaussian_points()
    source = np.asarray(jax.vmap(strategy.source_log_prob)(jnp.asarray(x)))
    at_zero = np.asarray(log_prob(strategy, oracle, x, time=0.0))
    np.testing.assert_allclose(at_zero, source, rtol=0, atol=1e-5)
    if isinstance(cfg, FlowMatchingStrategyConfig):
        # The linear path's p_0 is the source N(0, I), so the ODE of the exact model carries it
        # through the marginals N(t m, (t^2 s^2 + (1 - t)^2) I); only the clip on [0, 1e-3]
        # moves it (~3e-4 nats, see CLIP_EFFECT).
        for t in (0.3, 0.7):
            c = path_coefficients(strategy.schedule, jnp.float32(t))
            spread = math.sqrt(float(c.alpha) ** 2 * STD**2 + float(c.sigma) ** 2)
            expected = gaussian_log_density(x, float(c.alpha) * MEAN, spread)
            log_p = np.asarray(log_prob(strategy, oracle, x, time=t, rtol=1e-6, atol=1e-6))
            np.testing.assert_allclose(log_p, expected, rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="time=1.5"):
        log_prob(strategy, oracle, x, time=1.5)


def test_source_log_prob_is_the_source_density():
    z = jnp.array([0.3, -1.2, 2.0])
    strategy = create_strategy(STRATEGY_CFGS[0])
    score = create_strategy(ScoreMatchingStrategyConfig(sigma_max=5.0))
    np.testing.assert_allclose(strategy.source_log_prob(z), gaussian_log_density(z, 0.0, 1.0))
    np.testing.assert_allclose(score.source_log_prob(z), gaussian_log_density(z, 0.0, 5.0))


# ----------------------------------------------------------------------------------------------
# Hutchinson's estimator
# ----------------------------------------------------------------------------------------------


def untrained_model(seed=0):
    return create_model(MLPConfig(hidden_dim=32, depth=2), jax.random.key(seed), data_dim=2)


class SwirlingField(eqx.Module):
    """A velocity v(t, z) = (1 + t) A tanh(z) whose Jacobian has large off-diagonal entries."""

    matrix: jax.Array

    def __call__(self, t, z):
        return (1 + t) * self.matrix @ jnp.tanh(z)


def test_hutchinson_is_unbiased_and_reproducible():
    strategy = create_strategy(FlowMatchingStrategyConfig(50, "v"))  # velocity = model output
    model = SwirlingField(jnp.array([[0.3, -1.5], [1.5, -0.2]]))
    x = np.array([[0.5, -1.0], [2.0, 1.0], [-1.5, 0.3]], np.float32)
    exact = np.asarray(log_prob(strategy, model, x), np.float64)

    # Every copy of a point gets its own probe: 400 independent estimates per point.
    copies = 400
    key = jax.random.key(3)
    copied = np.repeat(x, copies, axis=0)
    estimates = log_prob(strategy, model, copied, key=key, estimator="hutchinson")
    estimates = np.asarray(estimates, np.float64).reshape(len(x), copies)
    mean = estimates.mean(axis=1)
    standard_error = estimates.std(axis=1, ddof=1) / math.sqrt(copies)
    assert np.all(standard_error > 1e-3), "the probes do vary the estimate"
    assert np.all(standard_error < 0.1)
    assert np.all(np.abs(mean - exact) < 4 * standard_error), (mean - exact, standard_error)

    # In d = 2, e^T J e = tr J + (J_12 + J_21) e_1 e_2 with e_1 e_2 = +-1 fixed over the solve:
    # every estimate of a point is the exact value plus or minus the same c = int (J_12 + J_21).
    offsets = estimates - exact[:, None]
    c = np.abs(offsets[:, :1])
    np.testing.assert_allclose(np.abs(offsets), np.broadcast_to(c, offsets.shape), rtol=1e-3)
    # With K probes the offset is c times the mean of K signs: a multiple of 2 c / K in [-c, c].
    many = log_prob(
        strategy, model, np.repeat(x, 20, axis=0), key=key, estimator="hutchinson", num_probes=16
    )
    ratios = (np.asarray(many, np.float64).reshape(len(x), 20) - exact[:, None]) / c
    np.testing.assert_allclose(ratios * 8, np.round(ratios * 8), atol=0.02)
    assert np.all(np.abs(ratios) <= 1.001) and np.mean(np.abs(ratios) < 0.99) > 0.5

    again = log_prob(strategy, model, copied, key=key, estimator="hutchinson")
    np.testing.assert_array_equal(np.asarray(again, np.float64).reshape(len(x), copies), estimates)
    other = log_prob(strategy, model, copied, key=jax.random.key(4), estimator="hutchinson")
    assert not np.array_equal(np.asarray(other, np.float64).reshape(len(x), copies), estimates)


def test_rademacher_hutchinson_is_exact_for_a_diagonal_jacobian():
    # The Gaussian oracle's velocity is mu' + k (z - mu): its Jacobian is k I, and
    # e^T (k I) e = k |e|^2 = k d for every Rademacher probe.
    strategy, oracle = gaussian_model(STRATEGY_CFGS[0])
    x = gaussian_points()
    exact = log_prob(strategy, oracle, x)
    hutchinson = log_prob(strategy, oracle, x, key=jax.random.key(0), estimator="hutchinson")
    np.testing.assert_allclose(hutchinson, exact, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Invariants and validation
# ----------------------------------------------------------------------------------------------


def test_batch_equals_one_point_at_a_time_and_far_points_are_finite(monkeypatch):
    traces = []
    original = likelihood._log_prob_one

    def counting(*args, **kwargs):
        traces.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(likelihood, "_log_prob_one", counting)
    strategy, oracle = gaussian_model(STRATEGY_CFGS[1])
    x = np.array([[0.0, 0.0], [1.0, -2.0], [50.0, -50.0], [-1e3, 0.0]], np.float32)
    batch = np.asarray(log_prob(strategy, oracle, x))
    assert batch.shape == (4,)
    assert np.all(np.isfinite(batch))
    # log p ~ -1e6 at the farthest point: float32 resolves it to ~1e-5 relative.
    np.testing.assert_allclose(batch, expected_log_prob(strategy, x), rtol=5e-5, atol=1e-3)
    singles = np.concatenate(
        [np.asarray(log_prob(strategy, oracle, x[i : i + 1])) for i in range(4)]
    )
    assert len(traces) == 2, "one trace per batch shape"
    # Each point has its own steps, but batched and unbatched arithmetic may round differently,
    # and the step-size controller's accept/reject decisions can turn that into another
    # sequence of steps: then the two agree to the solver's error, not to the last bit.
    np.testing.assert_allclose(batch, singles, rtol=1e-4, atol=1e-4)


def test_invalid_arguments_are_refused_and_a_solve_out_of_steps_is_nan():
    strategy = create_strategy(STRATEGY_CFGS[1])
    model = untrained_model()
    x = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match="key"):
        log_prob(strategy, model, x, estimator="hutchinson")
    with pytest.raises(ValueError, match="estimator"):
        log_prob(strategy, model, x, estimator="trace")
    with pytest.raises(ValueError, match="num_probes"):
        log_prob(strategy, model, x, key=jax.random.key(0), estimator="hutchinson", num_probes=0)
    with pytest.raises(ValueError, match="rtol"):
        log_prob(strategy, model, x, rtol=0.0)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        log_prob(strategy, model, x[0])
    assert np.all(np.isnan(np.asarray(log_prob(strategy, model, x, max_steps=2))))


# ----------------------------------------------------------------------------------------------
# A trained model of the Gaussian mixture
# ----------------------------------------------------------------------------------------------


def test_trained_model_nll_obeys_gibbs_inequality_on_the_gaussian_mixture():
    dataset = GaussianMixtureConfig()
    strategy = create_strategy(FlowMatchingStrategyConfig(50, "v"))
    init_key, train_key, data_key = jax.random.split(jax.random.key(0), 3)
    model = create_model(MLPConfig(hidden_dim=64, depth=3), init_key, data_dim=2)
    train_cfg = TrainConfig(batch_size=256, train_steps=400, log_interval=400, ema_decay=0.99)
    optimizer_cfg = OptimizerConfig(learning_rate=3e-3, warmup_steps=50)
    _, ema_model, _ = train(strategy, model, dataset, train_cfg, optimizer_cfg, train_key)

    x = get_batch(data_key, dataset, 500)
    log_q = np.asarray(log_prob(strategy, ema_model, x), np.float64)
    log_p = np.asarray(log_density(dataset, x), np.float64)
    assert np.all(np.isfinite(log_q))
    # mean(log p - log q) estimates KL(p_data || q) >= 0 (Gibbs); paired over the same points.
    gap = log_p - log_q
    standard_error = gap.std(ddof=1) / math.sqrt(len(gap))
    assert gap.mean() > -4 * standard_error, (gap.mean(), standard_error)
    # This model's KL is 0.12 +- 0.02 nats; half the training steps leave 0.89, and a source
    # density that counts its normaliser d/2 log(2 pi) twice gives 1.96.
    assert gap.mean() < 0.25, f"KL {gap.mean():.3f} +- {standard_error:.3f} nats"
    assert nats_per_dim(log_q, 2) == pytest.approx(-log_q.mean() / 2, rel=1e-6)
