import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FAST, SMALL_FIELD
from helpers import run_cli as run

from jax_gen import checkpoint
from jax_gen.config import (
    ExperimentConfig,
    GaussianMixtureConfig,
    MeanFlowStrategyConfig,
    MLPConfig,
    SamplerConfig,
    TrainConfig,
)
from jax_gen.engine import fit
from jax_gen.models import create_model
from jax_gen.sampling import sample, source_points
from jax_gen.strategies import MeanFlowStrategy, create_strategy

MEAN = jnp.array([1.5, -0.5])
STD = 0.5


class GaussianAverageVelocity(eqx.Module):
    """The exact average velocity of N(MEAN, STD^2 I) data on the linear path, as model(times, z).

    z_t = t x + (1 - t) eps is N(t mu, s_t^2 I) with s_t^2 = t^2 STD^2 + (1 - t)^2, and the flow
    carries z_t to z_t' = t' mu + (s_t' / s_t)(z_t - t mu); so the average velocity over [t, t']
    is u = mu + (s_t' - s_t) / (s_t (t' - t)) (z - t mu), and at t' = t the velocity
    v = mu + (ds/dt / s_t)(z - t mu) with ds/dt = (t STD^2 - (1 - t)) / s_t.
    """

    def __call__(self, times, z):
        t, h = times[0], times[1]

        def spread(s):
            return jnp.sqrt(s**2 * STD**2 + (1 - s) ** 2)

        s_t = spread(t)
        safe_h = jnp.where(h > 1e-6, h, 1.0)
        gain = (spread(t + safe_h) - s_t) / (s_t * safe_h)
        instantaneous = (t * STD**2 - (1 - t)) / s_t**2
        return MEAN + jnp.where(h > 1e-6, gain, instantaneous) * (z - t * MEAN)


def strategy(**overrides):
    return create_strategy(MeanFlowStrategyConfig(**overrides))


def test_one_step_of_the_exact_average_velocity_lands_on_the_data_distribution():
    mean_flow = strategy()
    key = jax.random.key(0)
    result = sample(mean_flow, GaussianAverageVelocity(), key, 4000, 2)
    assert int(result.nfe) == 1
    source = source_points(mean_flow, jax.random.split(key)[0], jnp.arange(4000), 2)
    # One step from t = 0 to 1 is the exact flow map: mu + STD * eps for every point.
    np.testing.assert_allclose(result.samples, MEAN + STD * source, atol=2e-6)
    # Two steps of it compose to the same map.
    two = sample(
        mean_flow, GaussianAverageVelocity(), key, 4000, 2, SamplerConfig(num_sampling_steps=2)
    )
    np.testing.assert_allclose(two.samples, MEAN + STD * source, atol=5e-6)


def test_the_exact_average_velocity_satisfies_the_training_identity():
    # u = v + (t_end - t) d/dt u, with v the velocity of the flow and d/dt along it: the target
    # the loss regresses on equals u itself for the exact u (a sign or tangent error breaks it).
    mean_flow, oracle = strategy(), GaussianAverageVelocity()
    keys = jax.random.split(jax.random.key(1), 3)
    t = jax.random.uniform(keys[0], (64,), minval=0.0, maxval=0.9)
    t_end = t + jax.random.uniform(keys[1], (64,)) * (1 - t)
    z = jax.random.normal(keys[2], (64, 2)) * 2

    def check(t, t_end, z):
        v = oracle(jnp.stack([t, 0.0]), z)
        return mean_flow.regression(oracle, t, t_end, z, v)

    u, target = jax.vmap(check)(t, t_end, z)
    np.testing.assert_allclose(target, u, atol=2e-5)
    assert (
        float(jnp.abs(u - jax.vmap(lambda t, z: oracle(jnp.stack([t, 0.0]), z))(t, z)).max()) > 0.1
    )


def test_the_model_tangent_keeps_the_identity_and_drops_the_pair_velocity():
    # With the network's own velocity as the tangent the exact u is still a fixed point of the
    # target; the pair's x - eps then enters the target only additively, not through d/dt u.
    mean_flow, oracle = strategy(jvp_tangent="model"), GaussianAverageVelocity()
    keys = jax.random.split(jax.random.key(5), 4)
    t = jax.random.uniform(keys[0], (64,), minval=0.0, maxval=0.9)
    t_end = t + jax.random.uniform(keys[1], (64,)) * (1 - t)
    z = jax.random.normal(keys[2], (64, 2)) * 2

    def exact(t, z):
        return oracle(jnp.stack([t, 0.0]), z)

    u, target = jax.vmap(
        lambda t, t_end, z: mean_flow.regression(oracle, t, t_end, z, exact(t, z))
    )(t, t_end, z)
    np.testing.assert_allclose(target, u, atol=2e-5)
    # A pair velocity off the marginal one moves the target by exactly that offset, while the
    # conditional tangent also bends d/dt u.
    offset = jax.random.normal(keys[3], (64, 2))
    noisy = jax.vmap(mean_flow.regression, in_axes=(None, 0, 0, 0, 0))(
        oracle, t, t_end, z, jax.vmap(exact)(t, z) + offset
    )[1]
    np.testing.assert_allclose(noisy - target, offset, atol=2e-5)
    conditional = jax.vmap(strategy().regression, in_axes=(None, 0, 0, 0, 0))(
        oracle, t, t_end, z, jax.vmap(exact)(t, z) + offset
    )[1]
    assert float(jnp.abs(conditional - target - offset).max()) > 0.1


def test_uniform_training_times_are_the_order_statistics_of_two_uniforms():
    mean_flow = strategy(time_sampler="uniform", equal_time_share=0.0)
    t, t_end = jax.vmap(mean_flow.sample_times)(jax.random.split(jax.random.key(6), 20000))
    # min and max of two U(0, 1): CDFs 1 - (1 - a)^2 and a^2.
    for times, cdf in ((t, lambda a: 1 - (1 - a) ** 2), (t_end, lambda a: a**2)):
        grid = np.linspace(0.1, 0.9, 9)
        empirical = np.mean(np.asarray(times)[:, None] <= grid, axis=0)
        np.testing.assert_allclose(empirical, cdf(grid), atol=4 * np.sqrt(0.25 / 20000))


def test_target_is_the_velocity_when_the_interval_is_empty():
    model = create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(0), 2, num_times=2)
    mean_flow = strategy()
    t, z, v = jnp.float32(0.3), jnp.array([0.4, -1.2]), jnp.array([2.0, 0.5])
    u, target = mean_flow.regression(model, t, t, z, v)
    np.testing.assert_array_equal(target, v)
    np.testing.assert_array_equal(u, model(jnp.stack([t, 0.0]), z))
    np.testing.assert_array_equal(mean_flow.velocity(model, t, z), u)


def test_total_derivative_matches_finite_differences_along_the_path():
    with jax.enable_x64(True):
        model = create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(2), 2, num_times=2)
        mean_flow = strategy()
        t, t_end = jnp.float64(0.35), jnp.float64(0.8)
        z, v = jnp.array([0.7, -0.3]), jnp.array([1.1, 0.4])
        _, target = mean_flow.regression(model, t, t_end, z, v)
        du_dt = (target - v) / (t_end - t)
        delta = 1e-5

        def u(s):
            return mean_flow.average_velocity(model, t + s, t_end, z + s * v)

        finite = (u(delta) - u(-delta)) / (2 * delta)
        np.testing.assert_allclose(du_dt, finite, rtol=1e-5, atol=1e-7)
        assert float(jnp.abs(du_dt).max()) > 0.01


def test_ode_samplers_read_the_instantaneous_velocity():
    # Heun on u(z, t, t) converges at second order to the exact flow map mu + STD * eps.
    mean_flow, oracle = strategy(), GaussianAverageVelocity()
    key = jax.random.key(3)
    source = source_points(mean_flow, jax.random.split(key)[0], jnp.arange(2000), 2)
    errors = []
    for steps in (10, 20):
        heun = sample(
            mean_flow, oracle, key, 2000, 2, SamplerConfig("heun", num_sampling_steps=steps)
        )
        errors.append(float(jnp.abs(heun.samples - (MEAN + STD * source)).mean()))
    # Measured 4.0e-4-4.1e-4 at 20 steps over three draws; Euler's first order gives 0.028.
    assert errors[1] < 6e-4 and 3.0 < errors[0] / errors[1] < 5.0, errors


def test_training_pairs_are_ordered_and_a_share_is_equal():
    mean_flow = strategy(equal_time_share=0.75)
    t, t_end = jax.vmap(mean_flow.sample_times)(jax.random.split(jax.random.key(4), 20000))
    assert bool(jnp.all(t <= t_end)) and bool(jnp.all((t > 0) & (t_end < 1)))
    equal = np.mean(np.asarray(t == t_end))
    assert abs(equal - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 20000), equal
    # Each draw's logit is N(0.4, 1); t is the smaller of two, whose logit has mean
    # 0.4 - 1 / sqrt(pi) and std sqrt(1 - 1 / pi) (the minimum of two standard normals).
    for times, sign in ((t, -1), (t_end[np.asarray(t != t_end)], 1)):
        logits = np.log(np.asarray(times)) - np.log1p(-np.asarray(times))
        expected = [0.4 + sign / np.sqrt(np.pi), np.sqrt(1 - 1 / np.pi)]
        np.testing.assert_allclose([logits.mean(), logits.std()], expected, atol=0.03)


def test_training_gives_the_network_mean_flows_slow_time_embedding_unless_set():
    from jax_gen.config import FlowMatchingStrategyConfig, MoonConfig
    from jax_gen.engine import init_state

    def top_frequency(strategy_cfg, model_cfg):
        cfg = ExperimentConfig(strategy=strategy_cfg, model=model_cfg, dataset=MoonConfig())
        state = init_state(cfg)
        frequency = float(state.model.time_embed.frequencies().max()) / np.pi
        return state.config.model.time_max_frequency, frequency

    small = MLPConfig(hidden_dim=8, depth=1)
    assert top_frequency(MeanFlowStrategyConfig(), small) == pytest.approx((3.0, 3.0))
    assert top_frequency(FlowMatchingStrategyConfig(), small) == pytest.approx((None, 100.0))
    set_by_user = MLPConfig(hidden_dim=8, depth=1, time_max_frequency=20.0)
    assert top_frequency(MeanFlowStrategyConfig(), set_by_user) == pytest.approx((20.0, 20.0))


def test_two_time_network_refuses_one_time():
    model = create_model(MLPConfig(hidden_dim=8, depth=1), jax.random.key(0), 2, num_times=2)
    with pytest.raises(ValueError, match="reads 2 time"):
        model(jnp.float32(0.5), jnp.zeros(2))
    assert isinstance(strategy(), MeanFlowStrategy)


def test_tiny_model_lands_one_step_samples_on_the_four_modes():
    gmm = GaussianMixtureConfig()
    corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * gmm.scale
    cfg = ExperimentConfig(
        strategy=MeanFlowStrategyConfig(),
        model=MLPConfig(hidden_dim=64, depth=3, time_max_frequency=100.0),
        dataset=gmm,
        train=TrainConfig(batch_size=256, train_steps=2000, log_interval=500, ema_decay=0.99),
    )
    fitted = fit(cfg, check_finite=False)
    result = sample(create_strategy(cfg.strategy), fitted.ema_model, jax.random.key(1), 4000, 2)
    assert int(result.nfe) == 1
    samples = np.asarray(result.samples)
    distances = np.linalg.norm(samples[:, None] - corners[None], axis=-1)
    shares = np.bincount(distances.argmin(axis=1), minlength=4) / len(samples)
    # One network evaluation: 92% within 1.0 of a mode (data: 100%, std 0.3 per coordinate),
    # every mode a quarter of them (a flow-matching model's single Euler step lands at the mean).
    assert np.mean(distances.min(axis=1) < 1.0) > 0.88
    assert np.all(np.abs(shares - 0.25) < 0.05), shares


def test_command_line_trains_mean_flow_and_generates_in_one_step(tmp_path, capsys):
    path = tmp_path / "mean_flow.eqx"
    code, out, err = run(
        ["train", "strategy:mean-flow", "dataset:moon", *FAST, "--model-path", str(path)], capsys
    )
    assert code == 0, err
    assert checkpoint.load(path).config.strategy == MeanFlowStrategyConfig()
    image = tmp_path / "one.png"
    argv = ["generate", "--model-path", path, "--num-sampling-steps", "1"]
    code, out, err = run([*argv, "--output-image-path", image], capsys)
    assert code == 0, err
    assert "NFE 1" in out and image.exists()
    for command, flag, suffix, *small in [
        ("animate", "--output-video-path", ".gif", "--num-samples", "200"),
        ("plot-field", "--output-image-path", ".png", *SMALL_FIELD),
    ]:
        out_path = tmp_path / f"{command}{suffix}"
        code, out, err = run([command, "--model-path", path, flag, out_path, *small], capsys)
        assert code == 0, err
        assert out_path.exists()
