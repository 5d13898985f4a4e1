import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FAST, SMALL_FIELD
from helpers import run_cli as run
from scipy.stats import norm

from jax_gen import checkpoint
from jax_gen.config import (
    ConsistencyStrategyConfig,
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    GaussianMixtureConfig,
    MLPConfig,
    OptimizerConfig,
    SamplerConfig,
    TrainConfig,
    name_of,
)
from jax_gen.engine import fit
from jax_gen.fields import field_at, field_label
from jax_gen.likelihood import log_prob
from jax_gen.models import create_model
from jax_gen.sampling import sample
from jax_gen.strategies import ConsistencyStrategy, create_strategy
from jax_gen.strategies.consistency import curriculum_intervals, pseudo_huber
from jax_gen.train import train

TINY = MLPConfig(hidden_dim=32, depth=2, fourier_features=0)


def strategy(**overrides) -> ConsistencyStrategy:
    return create_strategy(ConsistencyStrategyConfig(**overrides))


def random_model(seed=0):
    return create_model(TINY, jax.random.key(seed), 2)


class Affine(eqx.Module):
    """A hand model F(t, z) = a * z + b * t (elementwise), whose gradients are known."""

    a: jax.Array
    b: jax.Array

    def __call__(self, t, z):
        return self.a * z + self.b * t


# ----------------------------------------------------------------------------------------------
# The parameterisation: exact identity at the data end
# ----------------------------------------------------------------------------------------------


def test_the_consistency_function_is_the_identity_at_the_data_end_exactly():
    consistency, model = strategy(), random_model()
    z = jax.random.normal(jax.random.key(1), (256, 2)) * 3
    f = jax.vmap(lambda z: consistency.consistency_function(model, jnp.float32(1.0), z))(z)
    np.testing.assert_array_equal(f, z)
    # Away from t = 1 the network moves the point: f = z + (1 - t) F, F = model(t, z).
    t = jnp.float32(0.3)
    f = jax.vmap(lambda z: consistency.consistency_function(model, t, z))(z)
    F = jax.vmap(lambda z: model(t, z))(z)
    np.testing.assert_allclose(f, z + 0.7 * F, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(f - z).max()) > 0.05
    # The denoiser is the same jump, unclipped: exact at t = 1 too.
    x_hat, eps_hat = jax.vmap(lambda z: consistency.denoise(model, jnp.float32(1.0), z))(z)
    np.testing.assert_array_equal(x_hat, z)
    x_hat, eps_hat = jax.vmap(lambda z: consistency.denoise(model, t, z))(z)
    np.testing.assert_allclose(t * x_hat + (1 - t) * eps_hat, z, rtol=1e-5, atol=1e-5)


def test_the_last_sampling_step_returns_the_jump_itself():
    consistency, model = strategy(), random_model()
    z = jax.random.normal(jax.random.key(2), (2,))
    t = jnp.float32(0.5)
    out = consistency.reverse(model, t, jnp.float32(1.0), z, jax.random.key(3))
    np.testing.assert_array_equal(out, consistency.consistency_function(model, t, z))


# ----------------------------------------------------------------------------------------------
# Pseudo-Huber distance and curriculum
# ----------------------------------------------------------------------------------------------


def test_pseudo_huber_closed_form_and_limits():
    keys = jax.random.split(jax.random.key(4), 2)
    a = np.asarray(jax.random.normal(keys[0], (50, 3)), np.float64)
    b = np.asarray(jax.random.normal(keys[1], (50, 3)), np.float64)
    c = 0.3
    with jax.enable_x64(True):
        got = np.asarray(jax.vmap(lambda a, b: pseudo_huber(a, b, c))(a, b))
        r = np.linalg.norm(a - b, axis=-1)
        np.testing.assert_allclose(got, np.sqrt(r**2 + c**2) - c, rtol=1e-12)
        # Small differences: |a - b|^2 / (2c) up to a relative (|a - b| / c)^2 / 4.
        c = 1.0
        small = pseudo_huber(jnp.array([1e-3, 0.0]), jnp.zeros(2), c)
        np.testing.assert_allclose(float(small), 1e-6 / 2, rtol=1e-6)
        # Large differences: |a - b| - c, so |a - b| to a relative c / |a - b|.
        large = pseudo_huber(jnp.array([3e4, 4e4]), jnp.zeros(2), c)
        np.testing.assert_allclose(float(large), 5e4 - 1.0, rtol=1e-9)
        # No cancellation: tiny differences keep their relative precision in float32.
    tiny = pseudo_huber(jnp.array([1e-5, 0.0]), jnp.zeros(2), 1.0)
    np.testing.assert_allclose(float(tiny), 5e-11, rtol=1e-5)


def reference_intervals(k, total, s0, s1):
    """iCT's N(k) - 1 as the paper writes it."""
    stage = math.floor(total / (math.log2(math.floor(s1 / s0)) + 1))
    return min(s0 * 2 ** math.floor(k / stage), s1)


@pytest.mark.parametrize("total, s0, s1", [(5000, 10, 160), (5000, 10, 100), (777, 3, 50)])
def test_curriculum_follows_the_formula_at_every_step(total, s0, s1):
    steps = jnp.arange(total)
    got = np.asarray(jax.vmap(lambda k: curriculum_intervals(k, jnp.int32(total), s0, s1))(steps))
    expected = [reference_intervals(k, total, s0, s1) for k in range(total)]
    np.testing.assert_array_equal(got, expected)
    assert got[0] == s0 and got[-1] == s1


def test_curriculum_endpoints_and_doublings():
    # 5000 steps, s0 = 10, s1 = 160: 5 stages of 1000 steps, M = 10, 20, 40, 80, 160.
    def at(k, total=5000):
        return int(curriculum_intervals(jnp.int32(k), jnp.int32(total), 10, 160))

    assert [at(k) for k in (0, 999, 1000, 1999, 2000, 3000, 3999, 4000, 4999)] == [
        10,
        10,
        20,
        20,
        40,
        80,
        80,
        160,
        160,
    ]
    assert at(10**9) == 160  # far beyond the run: capped, no overflow
    assert at(0, total=0) == 160  # a run of unknown length trains on the final grid
    assert at(2, total=3) == 40  # shorter than the stages: one step each


# ----------------------------------------------------------------------------------------------
# The loss
# ----------------------------------------------------------------------------------------------


def test_loss_and_its_gradient_against_a_hand_computation():
    consistency = strategy(final_intervals=20, level_mean=0.3, level_std=1.2)
    model = Affine(a=jnp.array([0.3, -0.7]), b=jnp.array([1.5, 0.4]))
    x, eps = jnp.array([0.8, -2.0]), jnp.array([-0.4, 1.1])
    key = jax.random.key(5)

    # The level the loss draws: floor(M sigmoid(m + s g)), g from the first half of the key.
    level_key, noise_key = jax.random.split(key)
    g = float(jax.random.normal(level_key))
    n = min(math.floor(20 / (1 + math.exp(-(0.3 + 1.2 * g)))), 19)
    t, t_next = n / 20, (n + 1) / 20
    a, b = np.array([0.3, -0.7]), np.array([1.5, 0.4])

    def f(t):  # the same eps at both times
        z = t * np.asarray(x) + (1 - t) * np.asarray(eps)
        return z + (1 - t) * (a * z + b * t), z

    (online, z), (target, _) = f(t), f(t_next)
    c = 0.00054 * math.sqrt(2)
    r = np.linalg.norm(online - target)
    expected = (math.sqrt(r**2 + c**2) - c) * 20
    loss, grads = jax.value_and_grad(consistency.loss_fn)(model, x, key, None, eps)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    # Gradient through the online branch only: M (online - target) / sqrt(r^2 + c^2) times
    # d online / d(a, b) = (1 - t) z, (1 - t) t.
    outer = 20 * (online - target) / math.sqrt(r**2 + c**2)
    np.testing.assert_allclose(grads.a, outer * (1 - t) * z, rtol=1e-4)
    np.testing.assert_allclose(grads.b, outer * (1 - t) * t, rtol=1e-4)
    # Without a given eps, the loss draws it from the second half of the key.
    drawn = jax.random.normal(noise_key, (2,))
    np.testing.assert_allclose(
        consistency.loss_fn(model, x, key), consistency.loss_fn(model, x, key, None, drawn)
    )


def test_the_last_level_is_anchored_on_the_data():
    # At n = M - 1 the target is f(x, 1) = x: the loss is M d(f(z, t_M-1), x).
    consistency = strategy(initial_intervals=2, final_intervals=4, level_mean=30.0, level_std=1e-3)
    model = Affine(a=jnp.array([0.5, 0.5]), b=jnp.zeros(2))
    x, eps = jnp.array([1.0, 2.0]), jnp.array([0.0, -1.0])
    z = 0.75 * x + 0.25 * eps
    online = z + 0.25 * 0.5 * z
    c = 0.00054 * math.sqrt(2)
    expected = 4 * float(pseudo_huber(online, x, c))
    loss = consistency.loss_fn(model, x, jax.random.key(0), None, eps)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)


def test_levels_carry_the_logit_normal_mass_of_their_interval():
    consistency = strategy(final_intervals=40, level_mean=0.4, level_std=1.0)
    levels = np.asarray(
        jax.vmap(consistency.sample_level)(jax.random.split(jax.random.key(6), 40000))
    )
    assert levels.min() >= 0 and levels.max() <= 39
    edges = np.arange(1, 40) / 40
    exact = norm.cdf((np.log(edges / (1 - edges)) - 0.4) / 1.0)  # P(n < k) = P(t < k / M)
    empirical = np.array([(levels < k).mean() for k in range(1, 40)])
    tolerance = 5 * np.sqrt(exact * (1 - exact) / 40000) + 1e-4
    assert np.all(np.abs(empirical - exact) < tolerance)
    times = jax.vmap(consistency.sample_time)(jax.random.split(jax.random.key(6), 100))
    np.testing.assert_allclose(np.asarray(times) * 40, levels[:100], rtol=1e-6)


class Recording(ConsistencyStrategy):
    """The curriculum's M at each training step, read out as the loss."""

    def loss_fn(self, model, x, key, label=None, eps=None):
        return self.num_intervals.astype(jnp.float32) + 0.0 * super().loss_fn(
            model, x, key, label, eps
        )


def test_training_grows_the_grid_over_the_run():
    base = strategy(initial_intervals=2, final_intervals=16)
    recording = Recording(**{f: getattr(base, f) for f in base.__dataclass_fields__})
    _, _, losses = train(
        recording,
        random_model(),
        GaussianMixtureConfig(),
        TrainConfig(batch_size=8, train_steps=50, log_interval=25),
        OptimizerConfig(),
        jax.random.key(7),
    )
    # 50 steps, s0 = 2, s1 = 16: 4 stages of 12 steps, then the final grid.
    expected = [2] * 12 + [4] * 12 + [8] * 12 + [16] * 14
    np.testing.assert_array_equal(np.asarray(losses), expected)


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


def test_one_step_is_one_jump_and_two_steps_renoise_halfway():
    consistency, model = strategy(), random_model()
    one = sample(consistency, model, jax.random.key(8), 2000, 2, keep_trajectory=True)
    assert int(one.nfe) == 1 and one.trajectory.shape == (2, 2000, 2)
    z0 = one.trajectory[0]
    jump = jax.vmap(lambda z: consistency.consistency_function(model, jnp.float32(0.0), z))(z0)
    np.testing.assert_allclose(one.samples, jump, rtol=1e-6, atol=1e-6)

    two = sample(
        consistency,
        model,
        jax.random.key(8),
        2000,
        2,
        SamplerConfig(num_sampling_steps=2),
        keep_trajectory=True,
    )
    assert int(two.nfe) == 2
    np.testing.assert_allclose(two.trajectory[0], z0)
    # Halfway: z = 0.5 f(z0, 0) + 0.5 eps' with fresh eps' ~ N(0, I).
    fresh = (two.trajectory[1] - 0.5 * jump) / 0.5
    np.testing.assert_allclose([fresh.mean(), fresh.std()], [0.0, 1.0], atol=0.05)
    assert abs(float(jnp.mean(fresh * z0))) < 0.05  # independent of the source draw
    half = jax.vmap(lambda z: consistency.consistency_function(model, jnp.float32(0.5), z))
    np.testing.assert_allclose(two.samples, half(two.trajectory[1]), rtol=1e-6, atol=1e-6)


def test_ode_samplers_likelihood_and_score_refuse():
    consistency, model = strategy(), random_model()
    assert not consistency.has_velocity()
    for sampler in ("euler", "heun", "adaptive", "dpm-solver"):
        with pytest.raises(ValueError, match="velocity"):
            sample(consistency, model, jax.random.key(1), 8, 2, SamplerConfig(sampler=sampler))
    with pytest.raises(ValueError, match="velocity"):
        log_prob(consistency, model, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="no score"):
        consistency.score(model, jnp.float32(0.5), jnp.zeros(2))


def test_plot_field_draws_the_average_velocity_to_the_data():
    consistency, model = strategy(), random_model()
    points = jax.random.normal(jax.random.key(9), (64, 2))
    t = jnp.float32(0.3)
    drawn = field_at(consistency, model, t, points, "velocity")
    jump = jax.vmap(lambda z: consistency.consistency_function(model, t, z))(points)
    np.testing.assert_allclose(drawn, (jump - points) / 0.7, rtol=1e-4, atol=1e-5)
    assert field_label(consistency, "velocity") == "average velocity to the data"
    flow = create_strategy(FlowMatchingStrategyConfig())
    assert field_label(flow, "velocity") == "velocity"
    assert field_label(consistency, "score") == "score"


def test_tiny_model_lands_one_and_two_step_samples_on_the_four_modes():
    gmm = GaussianMixtureConfig()
    corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * gmm.scale
    cfg = ExperimentConfig(
        strategy=ConsistencyStrategyConfig(),
        model=MLPConfig(hidden_dim=64, depth=3, fourier_features=0),
        dataset=gmm,
        train=TrainConfig(batch_size=256, train_steps=600, log_interval=200),
        optimizer=OptimizerConfig(warmup_steps=100),
    )
    consistency = create_strategy(cfg.strategy)
    init = create_model(cfg.model, jax.random.key(0), 2)
    fitted = fit(cfg, check_finite=False)

    def near_modes(model, steps):
        result = sample(
            consistency, model, jax.random.key(1), 4000, 2, SamplerConfig(num_sampling_steps=steps)
        )
        assert int(result.nfe) == steps
        distances = np.linalg.norm(np.asarray(result.samples)[:, None] - corners, axis=-1)
        shares = np.bincount(distances.argmin(axis=1), minlength=4) / len(distances)
        return np.mean(distances.min(axis=1) < 1.0), shares

    # Measured: 51% of one-step and 82% of two-step samples within 1.0 of a mode after 600
    # steps (data: 100%, std 0.3 per coordinate); at initialisation 0.3% and 0%.
    near = {}
    for steps, floor in ((1, 0.45), (2, 0.75)):
        before, _ = near_modes(init, steps)
        near[steps], shares = near_modes(fitted.model, steps)
        assert before < 0.01 and near[steps] > floor, (steps, before, near[steps])
        assert np.all(np.abs(shares - 0.25) < 0.05), shares
    assert near[2] > near[1] + 0.2, near


# ----------------------------------------------------------------------------------------------
# Config and command line
# ----------------------------------------------------------------------------------------------


def test_config_validation_and_name():
    with pytest.raises(ValueError, match="final_intervals=5 must be at least"):
        ConsistencyStrategyConfig(initial_intervals=10, final_intervals=5)
    with pytest.raises(ValueError, match="huber_scale"):
        ConsistencyStrategyConfig(huber_scale=0.0)
    assert name_of(ConsistencyStrategyConfig()) == "consistency"
    assert isinstance(strategy(), ConsistencyStrategy)


SMALL = ["--num-samples", "200"]


def test_command_line_trains_generates_evaluates_and_draws(tmp_path, capsys):
    path = tmp_path / "consistency.eqx"
    code, out, err = run(
        ["train", "strategy:consistency", "dataset:moon", *FAST, "--model-path", str(path)], capsys
    )
    assert code == 0, err
    assert checkpoint.load(path).config.strategy == ConsistencyStrategyConfig()
    for steps in (1, 2):
        image = tmp_path / f"{steps}.png"
        argv = ["generate", "--model-path", path, "--num-sampling-steps", steps, *SMALL]
        code, out, err = run([*argv, "--output-image-path", image], capsys)
        assert code == 0, err
        assert f"NFE {steps}" in out and image.exists()
    gif = tmp_path / "animate.gif"
    argv = ["animate", "--model-path", path, "--output-video-path", gif, *SMALL]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert gif.exists()

    report_path = tmp_path / "evaluate.json"
    argv = ["evaluate", "--model-path", path, "--num-samples", "200", "--repeats", "2"]
    code, out, err = run([*argv, "--output-json-path", report_path], capsys)
    assert code == 0, err
    assert "no likelihood for consistency" in out
    report = json.loads(report_path.read_text())
    assert report["rows"][0]["nfe"] == 1 and "nll_nats_per_dim" not in report
    assert not path.with_name("consistency.density.png").exists()

    field = tmp_path / "field.png"
    argv = ["plot-field", "--model-path", path, "--output-image-path", field, *SMALL_FIELD]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "average velocity to the data" in out and field.exists()

    for argv, fragment in [
        (["generate", "--model-path", path, "--sampler", "euler"], "velocity"),
        (["plot-field", "--model-path", path, "--field", "score"], "no score"),
    ]:
        code, _, err = run(argv, capsys)
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and fragment in err, err
