import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import PREDICTIONS, GaussianOracle
from test_train import mode_mismatch, mode_statistics

from jax_gen.config import (
    DDPMStrategyConfig,
    FlowMatchingStrategyConfig,
    GaussianMixtureConfig,
    MLPConfig,
    OptimizerConfig,
    SamplerConfig,
    ScoreMatchingStrategyConfig,
    TrainConfig,
)
from jax_gen.models import create_model
from jax_gen.parameterization import path_coefficients
from jax_gen.sampling import sample
from jax_gen.schedules import VEGeometricSchedule
from jax_gen.strategies import ScoreMatchingStrategy, create_strategy, measure_on_data
from jax_gen.train import train

SIGMA_MIN, SIGMA_MAX = 0.01, 10.0
MEAN, STD = jnp.array([2.0, -1.0]), 0.5
# An unevenly weighted mixture, so that a sampler that ignores the weights cannot pass.
MIX_MEANS = np.array([[3.0, 3.0], [3.0, -3.0], [-3.0, 3.0], [-3.0, -3.0]])
MIX_WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])
MIX_STD = 0.3


def tiny_model(seed=0):
    return create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(seed), data_dim=2)


class MixtureOracle:
    """The exact noise prediction of an isotropic Gaussian mixture on the VE path, as model(t, z).

    The data convolved with N(0, sigma^2 I) is the mixture with the same weights and means and
    std sqrt(s^2 + sigma^2), whose score is sum_j r_j(z) (m_j - z) / (s^2 + sigma^2) with r_j the
    posterior responsibilities; the oracle returns what the parameterization asks for, from
    eps = -sigma score and x = z - sigma eps (alpha = 1).
    """

    def __init__(self, strategy, means, weights, std):
        self.strategy = strategy
        self.means = jnp.asarray(means, jnp.float32)
        self.log_weights = jnp.log(jnp.asarray(weights, jnp.float32))
        self.std = std

    def __call__(self, t, z):
        c = path_coefficients(self.strategy.schedule, t)
        variance = self.std**2 + c.sigma**2
        logits = self.log_weights - jnp.sum((z - self.means) ** 2, axis=-1) / (2 * variance)
        score = jax.nn.softmax(logits) @ (self.means - z) / variance
        eps = -c.sigma * score
        return self.strategy.parameterization.target(z - c.sigma * eps, eps, c)


def score_matching(**kwargs):
    return create_strategy(ScoreMatchingStrategyConfig(**kwargs))


# ----------------------------------------------------------------------------------------------
# The variance-exploding schedule
# ----------------------------------------------------------------------------------------------


def test_ve_schedule_is_geometric_from_sigma_max_to_sigma_min():
    schedule = VEGeometricSchedule(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    c = schedule(jnp.linspace(0.0, 1.0, 11))
    np.testing.assert_allclose(c.alpha, 1.0)
    np.testing.assert_allclose(c.d_alpha, 0.0)
    np.testing.assert_allclose(c.sigma[0], SIGMA_MAX, rtol=1e-6)
    np.testing.assert_allclose(c.sigma[-1], SIGMA_MIN, rtol=1e-6)
    ratios = c.sigma[1:] / c.sigma[:-1]
    np.testing.assert_allclose(ratios, (SIGMA_MIN / SIGMA_MAX) ** 0.1, rtol=1e-5)
    np.testing.assert_allclose(c.d_sigma, c.sigma * np.log(SIGMA_MIN / SIGMA_MAX), rtol=1e-6)


def test_ve_derivatives_match_autodiff():
    schedule = VEGeometricSchedule(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    with jax.enable_x64(True):
        for t in np.linspace(0.0, 1.0, 17):
            t = jnp.asarray(t, jnp.float64)
            c = schedule(t)
            assert c.sigma.dtype == jnp.float64
            np.testing.assert_allclose(c.d_alpha, jax.grad(lambda s: schedule(s).alpha)(t))
            d_sigma = jax.grad(lambda s: schedule(s).sigma)(t)
            np.testing.assert_allclose(c.d_sigma, d_sigma, rtol=1e-12)


@pytest.mark.parametrize(("sigma_min", "sigma_max"), [(1.0, 1.0), (2.0, 1.0), (0.0, 1.0)])
def test_ve_schedule_rejects_bad_levels(sigma_min, sigma_max):
    with pytest.raises(ValueError, match="sigma_min"):
        VEGeometricSchedule(sigma_min=sigma_min, sigma_max=sigma_max)


# ----------------------------------------------------------------------------------------------
# Levels, training times, loss
# ----------------------------------------------------------------------------------------------


def test_create_strategy_builds_score_matching_from_its_config():
    cfg = ScoreMatchingStrategyConfig(
        num_transport_steps=7, sigma_min=0.1, sigma_max=5.0, langevin_steps=3, step_size=0.2
    )
    strategy = create_strategy(cfg)
    assert isinstance(strategy, ScoreMatchingStrategy)
    assert (strategy.schedule.sigma_min, strategy.schedule.sigma_max) == (0.1, 5.0)
    assert (strategy.num_transport_steps, strategy.langevin_steps) == (7, 3)
    assert strategy.step_size == 0.2


@pytest.mark.parametrize("num_levels", [7, 20, 37])
def test_training_times_are_exactly_the_levels_the_sampler_visits(num_levels):
    strategy = score_matching(num_transport_steps=num_levels)
    keys = jax.random.split(jax.random.key(0), 4000)
    levels = strategy.time_grid()[1:]  # the sampler's step from grid[k - 1] runs at grid[k]
    for draw in (jax.vmap(strategy.sample_time), jax.jit(jax.vmap(strategy.sample_time))):
        times = np.asarray(draw(keys))
        assert set(times.tolist()) == set(np.asarray(levels).tolist())  # bitwise the same floats
    visited = strategy.level_index(strategy.time_grid()[:-1]) + 1
    np.testing.assert_array_equal(visited, np.arange(1, num_levels + 1))
    assert levels[-1] == 1.0  # the last level is sigma_min (read at t = 1 - 1e-3)
    np.testing.assert_allclose(path_coefficients(strategy.schedule, 1.0).sigma, 0.01, rtol=0.01)


def test_reverse_runs_langevin_at_the_next_level_with_step_size_sigma_squared():
    # With a zero score a Langevin step only adds N(0, 2a): after K steps from x = 0 the spread
    # is sqrt(2 K a) = sigma sqrt(2 K step_size), which reads off the level the step used.
    strategy = score_matching(num_transport_steps=5, langevin_steps=4, step_size=0.3)
    zero_score = lambda t, z: jnp.zeros_like(z)  # noqa: E731
    keys = jax.random.split(jax.random.key(1), 20000)
    x0 = jnp.zeros((20000, 2))
    reverse = jax.jit(
        jax.vmap(strategy.reverse, in_axes=(None, None, None, 0, 0)), static_argnums=0
    )
    grid = strategy.time_grid()
    for t, t_next in zip(grid[:-1], grid[1:], strict=True):
        sigma = path_coefficients(strategy.schedule, t_next).sigma
        spread = reverse(zero_score, t, t_next, x0, keys).std(0)
        np.testing.assert_allclose(spread, sigma * np.sqrt(2 * 4 * 0.3), rtol=0.03)


def test_eps_loss_is_denoising_score_matching_weighted_by_sigma_squared():
    strategy, model = score_matching(prediction="eps"), tiny_model()
    x = jnp.array([1.0, -2.0])
    for seed in range(5):
        key = jax.random.key(seed)
        time_key, noise_key = jax.random.split(key)
        t = strategy.sample_time(time_key)
        eps = jax.random.normal(noise_key, x.shape)
        sigma = path_coefficients(strategy.schedule, t).sigma
        z = x + sigma * eps
        dsm = jnp.mean((sigma * strategy.score(model, t, z) + eps) ** 2)
        np.testing.assert_allclose(strategy.loss_fn(model, x, key), dsm, rtol=1e-4)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_no_nan_or_inf_at_the_ends(prediction):
    strategy, model = score_matching(prediction=prediction), tiny_model()
    x, key = jnp.array([3.0, -3.0]), jax.random.key(0)
    for t in (0.0, 1.0):
        z, target = strategy.forward(jnp.float32(t), x, key)
        assert np.all(np.isfinite(z)) and np.all(np.isfinite(target))
    assert np.isfinite(strategy.loss_fn(model, x, key))
    grid = strategy.time_grid()
    for i in (0, -2):  # the first and last reverse steps
        assert np.all(np.isfinite(strategy.reverse(model, grid[i], grid[i + 1], 10 * x, key)))


# ----------------------------------------------------------------------------------------------
# Annealed Langevin dynamics with exact scores
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_exact_score_samples_the_mixture_with_its_weights(prediction):
    strategy = score_matching(prediction=prediction)
    oracle = MixtureOracle(strategy, MIX_MEANS, MIX_WEIGHTS, MIX_STD)
    samples = sample(strategy, oracle, jax.random.key(0), 4000, 2).samples
    samples = np.asarray(samples)
    nearest = np.linalg.norm(samples[:, None] - MIX_MEANS[None], axis=-1).argmin(axis=1)
    shares = np.bincount(nearest, minlength=4) / len(samples)
    np.testing.assert_allclose(shares, MIX_WEIGHTS, atol=0.04)
    np.testing.assert_allclose(samples.mean(0), MIX_WEIGHTS @ MIX_MEANS, atol=0.25)
    for j in range(4):
        spread = (samples[nearest == j] - MIX_MEANS[j]).std(0)
        np.testing.assert_allclose(spread, MIX_STD, rtol=0.07)


def test_exact_score_samples_a_single_gaussian():
    strategy = score_matching()
    oracle = GaussianOracle(strategy, MEAN, STD)
    samples = sample(strategy, oracle, jax.random.key(0), 8000, 2).samples
    np.testing.assert_allclose(samples.mean(0), MEAN, atol=0.03)
    np.testing.assert_allclose(samples.std(0), STD, rtol=0.04)


def test_default_step_size_leaves_little_excess_spread():
    # Why step_size = 0.5: below the data's std the chain freezes, and the excess spread it
    # keeps shrinks with the step (24% at 0.05, 11% at 0.1, 5% at 0.2, 2-3% at 0.5).
    errors = []
    for step_size in (0.05, 0.2, 0.5):
        strategy = score_matching(step_size=step_size)
        samples = sample(
            strategy, GaussianOracle(strategy, MEAN, STD), jax.random.key(3), 4000, 2
        ).samples
        errors.append(float(samples.std(0).mean() / STD - 1))
    assert errors[0] > 0.15 and errors[0] > errors[1] > errors[2]
    assert abs(errors[2]) < 0.04
    assert ScoreMatchingStrategyConfig().step_size == 0.5


def test_trajectory_starts_from_sigma_max_noise_and_is_deterministic():
    strategy, model = score_matching(num_transport_steps=10, langevin_steps=5), tiny_model()
    key = jax.random.key(42)
    a, traj_a, _ = sample(strategy, model, key, 2000, 2, keep_trajectory=True)
    b, traj_b, _ = sample(strategy, model, key, 2000, 2, keep_trajectory=True)
    assert traj_a.shape == (11, 2000, 2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(traj_a, traj_b)
    np.testing.assert_array_equal(traj_a[-1], a)
    c = sample(strategy, model, jax.random.key(43), 2000, 2).samples
    assert not np.allclose(a, c)
    np.testing.assert_allclose(traj_a[0].std(0), SIGMA_MAX, rtol=0.05)
    source_key, _ = jax.random.split(key)
    # Point i is the source's one-point draw with fold_in(source_key, i).
    source = jax.vmap(
        lambda i: strategy.sample_from_source_distribution(jax.random.fold_in(source_key, i), 1, 2)
    )(jnp.arange(2000))[:, 0]
    np.testing.assert_allclose(traj_a[0], source, rtol=1e-6)  # compiled, 1 ulp may differ


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def test_tiny_model_lands_samples_on_the_four_modes():
    gmm = GaussianMixtureConfig()
    corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * gmm.scale
    init_key, train_key = jax.random.split(jax.random.key(0))
    strategy = score_matching()
    # A plain MLP on x, as in tests/test_train.py's tiny recipe.
    model_cfg = MLPConfig(hidden_dim=64, depth=3, fourier_features=0)
    model = create_model(model_cfg, init_key, data_dim=2)
    train_cfg = TrainConfig(batch_size=256, train_steps=1500, log_interval=500, ema_decay=0.99)
    opt_cfg = OptimizerConfig(learning_rate=3e-3, warmup_steps=50)
    _, ema_model, losses = train(strategy, model, gmm, train_cfg, opt_cfg, train_key)
    assert losses.shape == (1500,) and np.all(np.isfinite(losses))
    assert losses[-100:].mean() < losses[:100].mean()
    # Beside the exact score sampled from the same noise: the Langevin chain's own error (2-3%
    # excess spread at the default step size) is not the network's.
    n, key = 2000, jax.random.key(7)
    samples = sample(strategy, ema_model, key, n, 2).samples
    oracle = MixtureOracle(strategy, corners, np.full(4, 0.25), gmm.std)
    exact = sample(strategy, oracle, key, n, 2).samples
    samples, exact = np.asarray(samples), np.asarray(exact)
    exact_shares, exact_spreads, _ = mode_statistics(exact, corners)
    assert np.all(np.abs(exact_shares - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)), exact_shares
    assert np.all(np.abs(exact_spreads / gmm.std - 1) < 0.1), exact_spreads
    distances = np.linalg.norm(samples[:, None] - corners[None], axis=-1)
    assert np.mean(distances.min(axis=1) < 1.0) > 0.9, "most samples lie within 1.0 of a corner"
    mismatch = mode_mismatch(samples, exact, corners)
    assert not mismatch, mismatch


# ----------------------------------------------------------------------------------------------
# The source is centred on the data
# ----------------------------------------------------------------------------------------------

OFF_CENTRE = np.array([3.0, -1.5])


def test_measure_on_data_centres_the_source_on_the_data_mean():
    x = OFF_CENTRE + 0.5 * np.asarray(jax.random.normal(jax.random.key(0), (1000, 2)))
    cfg = measure_on_data(ScoreMatchingStrategyConfig(), x)
    np.testing.assert_allclose(cfg.source_mean, x.mean(0), rtol=1e-6)
    source = create_strategy(cfg).sample_from_source_distribution(jax.random.key(1), 20000, 2)
    np.testing.assert_allclose(source.mean(0), x.mean(0), atol=4 * SIGMA_MAX / 20000**0.5)
    given = ScoreMatchingStrategyConfig(source_mean=(1.0, 2.0))
    assert measure_on_data(given, x) is given
    with pytest.raises(ValueError, match="source_mean has 3 entries but the data has 2"):
        measure_on_data(ScoreMatchingStrategyConfig(source_mean=(1.0, 2.0, 3.0)), x)
    for other in (DDPMStrategyConfig(), FlowMatchingStrategyConfig()):
        assert measure_on_data(other, x) is other


def test_ode_and_sde_samples_of_off_centre_data_land_at_its_mean():
    # From N(0, sigma_max^2) the probability-flow ODE carries data of mean (3, -1.5) to mean
    # (2.84, -1.43) and Euler-Maruyama to (2.88, -1.45); annealed Langevin forgets its start.
    n = 8000
    centred = create_strategy(ScoreMatchingStrategyConfig(source_mean=tuple(OFF_CENTRE)))
    at_origin = score_matching()
    for cfg in (SamplerConfig("heun", 50), SamplerConfig("euler-maruyama", 200)):
        for strategy, close in ((centred, True), (at_origin, False)):
            oracle = GaussianOracle(strategy, OFF_CENTRE, STD)
            samples = np.asarray(sample(strategy, oracle, jax.random.key(0), n, 2, cfg).samples)
            error = np.max(np.abs(samples.mean(0) - OFF_CENTRE))
            assert (error < 4 * STD / n**0.5) == close, (cfg.sampler, error)


def test_training_stores_the_data_mean_as_the_source_mean():
    from jax_gen.config import CatConfig, ExperimentConfig
    from jax_gen.data import get_batch
    from jax_gen.engine import init_state

    cfg = ExperimentConfig(strategy=ScoreMatchingStrategyConfig(), dataset=CatConfig())
    state = init_state(cfg)
    n = 100_000
    x = np.asarray(get_batch(jax.random.key(9), cfg.dataset, n))
    mean = np.asarray(state.config.strategy.source_mean)
    assert np.linalg.norm(x.mean(0)) > 0.3  # the cat is off the origin
    np.testing.assert_allclose(mean, x.mean(0), atol=4 * x.std(0).max() / 10_000**0.5)
    explicit = ExperimentConfig(strategy=ScoreMatchingStrategyConfig(source_mean=(1.0, 2.0)))
    assert init_state(explicit).config == explicit
