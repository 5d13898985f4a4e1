import json

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
    MLPConfig,
    SamplerConfig,
    ShortcutStrategyConfig,
    TrainConfig,
)
from jax_gen.data import get_batch
from jax_gen.engine import fit
from jax_gen.likelihood import log_prob
from jax_gen.models import create_model
from jax_gen.sampling import sample, source_points
from jax_gen.strategies import ShortcutStrategy, create_strategy


def strategy(**overrides):
    return create_strategy(ShortcutStrategyConfig(**overrides))


class Affine(eqx.Module):
    """s(z, t, d) = a z + b t + c d, coordinate-wise, with trainable scalars a, b, c."""

    a: jax.Array
    b: jax.Array
    c: jax.Array

    def __call__(self, times, z):
        return self.a * z + self.b * times[0] + self.c * times[1]


def affine(a=2.0, b=1.0, c=4.0):
    return Affine(jnp.float32(a), jnp.float32(b), jnp.float32(c))


class Times(eqx.Module):
    """s(z, t, d) = (t, d) for 2-D points: what the network was asked, whatever z."""

    def __call__(self, times, z):
        return times


# ----------------------------------------------------------------------------------------------
# d = 0: the instantaneous velocity and flow matching's loss
# ----------------------------------------------------------------------------------------------


def test_velocity_reads_the_network_at_step_size_zero():
    shortcut, model = strategy(), affine()
    t, z = jnp.float32(0.3), jnp.array([0.5, -1.0])
    # a z + b t + c * 0 = (1.0 + 0.3, -2.0 + 0.3): c = 4 would add 4 d for any d > 0.
    expected = np.array([1.3, -1.7])
    np.testing.assert_allclose(shortcut.network_output(model, t, z), expected, rtol=1e-6)
    np.testing.assert_allclose(shortcut.velocity(model, t, z), expected, rtol=1e-6)


def test_flow_matching_branch_is_flow_matching_at_step_size_zero():
    shortcut = strategy(self_consistency_share=0.0)
    x, eps = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.25])
    keys = jax.random.split(jax.random.key(0), 40000)
    # A model ignoring z and t: the loss is |b - (x - eps)|^2 / 2 whatever t, if d = 0 is read.
    constant = affine(a=0.0, b=0.0, c=100.0)
    losses = jax.vmap(lambda k: shortcut.loss_fn(constant, x, k, eps=eps))(keys)
    np.testing.assert_allclose(losses, np.mean((0.0 - np.array([0.5, -2.25])) ** 2), rtol=1e-6)
    # s = a z + b t with z_t = t x + (1 - t) eps: E_t |s - (x - eps)|^2 / 2 over t ~ U[0, 1] is
    # the integral of |p t + q|^2 with p = a (x - eps) + b and q = a eps - (x - eps) (b makes it
    # tell t from 1 - t).
    losses = np.asarray(
        jax.vmap(lambda k: shortcut.loss_fn(affine(1.5, 0.8, 100.0), x, k, eps=eps))(keys)
    )
    p, q = 1.5 * (x - eps) + 0.8, 1.5 * eps - (x - eps)
    exact = float(jnp.mean(p**2 / 3 + p * q + q**2))
    stderr = losses.std() / np.sqrt(losses.size)
    assert abs(losses.mean() - exact) < 4 * stderr, (losses.mean(), exact, stderr)


def test_log_prob_integrates_the_velocity_at_step_size_zero():
    # s = a z (+ 100 d, were d > 0 read): z_t = z_0 e^(a t), so x = z_0 e^a and
    # log p(x) = log N(x e^-a; 0, I) - a D.
    a, x = 0.5, jnp.array([[0.3, -1.2], [2.0, 0.5]])
    logp = log_prob(strategy(), affine(a=a, b=0.0, c=100.0), x)
    z0 = x * np.exp(-a)
    exact = -np.log(2 * np.pi) - 0.5 * np.sum(z0**2, axis=-1) - 2 * a
    np.testing.assert_allclose(logp, exact, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Self-consistency: the target, its stop-gradient, the training pairs
# ----------------------------------------------------------------------------------------------


def test_self_consistency_target_is_two_half_steps():
    shortcut, model = strategy(max_sampling_steps=8), affine(a=2.0, b=1.0, c=4.0)
    z = jnp.array([1.0, -1.0])
    # h = 1/2 at t = 1/4, halves of 1/4 read at d = 1/4:
    # first = 2 z + 1/4 + 1 = (3.25, -0.75); z' = z + first / 4 = (1.8125, -1.1875);
    # second = 2 z' + 1/2 + 1 = (5.125, -0.875); target = (4.1875, -0.8125).
    target = shortcut.self_consistency_target(model, jnp.float32(0.25), jnp.float32(0.5), z)
    np.testing.assert_allclose(target, [4.1875, -0.8125], rtol=1e-6)
    # The finest h = 1/8 at t = 1/2: the halves of 1/16 read d = 0 (flow matching's velocity):
    # first = 2 z + 1/2 = (2.5, -1.5); z' = z + first / 16 = (1.15625, -1.09375);
    # second = 2 z' + 9/16 = (2.875, -1.625); target = (2.6875, -1.5625).
    target = shortcut.self_consistency_target(model, jnp.float32(0.5), jnp.float32(0.125), z)
    np.testing.assert_allclose(target, [2.6875, -1.5625], rtol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_gradient_flows_only_through_the_full_step(seed):
    shortcut = strategy(max_sampling_steps=8, self_consistency_share=1.0)
    model = affine(a=0.7, b=-0.4, c=1.3)
    x, eps = jnp.array([1.0, -2.0]), jnp.array([0.3, 0.8])
    key = jax.random.key(seed)
    t, d, z, target = shortcut.training_pair(model, x, eps, jax.random.split(key)[0])
    assert float(d) > 0
    np.testing.assert_allclose(target, shortcut.self_consistency_target(model, t, d, z), rtol=1e-6)
    grads = eqx.filter_grad(lambda m: shortcut.loss_fn(m, x, key, eps=eps))(model)
    # With the target held fixed: dL/d(a, b, c) = mean(2 (s - target) * (z, t, d)).
    residual = 2 * (model(jnp.stack([t, d]), z) - target)
    expected = [jnp.mean(residual * z), jnp.mean(residual * t), jnp.mean(residual * d)]
    np.testing.assert_allclose([grads.a, grads.b, grads.c], expected, rtol=1e-5, atol=1e-6)
    # The target does move with the parameters (finite differences in a), so a gradient
    # through it would change dL/da.
    moved = [shortcut.self_consistency_target(affine(a, -0.4, 1.3), t, d, z) for a in (0.6, 0.8)]
    assert float(jnp.abs(moved[1] - moved[0]).max()) > 0.01


def test_training_pairs_branch_levels_and_grid():
    shortcut = strategy(max_sampling_steps=8, self_consistency_share=0.25)
    model = affine()
    x, eps = jnp.array([1.0, -2.0]), jnp.array([0.3, 0.8])
    keys = jax.random.split(jax.random.key(1), 20000)
    t, d, _, _ = jax.vmap(lambda k: shortcut.training_pair(model, x, eps, k))(keys)
    t, d = np.asarray(t), np.asarray(d)
    consistency = d > 0
    n = consistency.size
    assert abs(consistency.mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n), consistency.mean()
    # Step sizes 1, 1/2, 1/4, 1/8, each a quarter of the self-consistency pairs.
    levels, counts = np.unique(d[consistency], return_counts=True)
    np.testing.assert_allclose(levels, [1 / 8, 1 / 4, 1 / 2, 1])
    m = consistency.sum()
    assert np.all(np.abs(counts / m - 0.25) < 4 * np.sqrt(0.25 * 0.75 / m)), counts / m
    # t on the grid of its step size, and a full step stays inside [0, 1].
    grid = t[consistency] / d[consistency]
    np.testing.assert_array_equal(grid, np.round(grid))
    assert np.all(t[consistency] + d[consistency] <= 1.0)
    # Flow matching's t ~ U[0, 1]: mean 1/2, variance 1/12.
    fm = t[~consistency]
    np.testing.assert_allclose(
        [fm.mean(), fm.var()], [0.5, 1 / 12], atol=4 / np.sqrt(fm.size) * 0.3
    )


# ----------------------------------------------------------------------------------------------
# Sampling: the step sizes asked for, and the refused counts
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_default_sampler_steps_with_step_size_one_over_n(steps):
    shortcut, key = strategy(max_sampling_steps=8), jax.random.key(2)
    result = sample(shortcut, Times(), key, 16, 2, SamplerConfig(num_sampling_steps=steps))
    source = source_points(shortcut, jax.random.split(key)[0], jnp.arange(16), 2)
    # z_N = z_0 + sum_i (1/N) (t_i, 1/N) with t_i = i/N: ((N - 1) / (2N), 1/N).
    np.testing.assert_allclose(
        result.samples - source, np.tile([(steps - 1) / (2 * steps), 1 / steps], (16, 1)), atol=1e-6
    )
    assert int(result.nfe) == steps


def test_refuses_step_counts_it_was_not_trained_for():
    shortcut = strategy(max_sampling_steps=8)
    for steps, message in [(3, "power of two"), (6, "power of two"), (16, "at most 8 steps")]:
        with pytest.raises(ValueError, match=message):
            sample(
                shortcut, Times(), jax.random.key(0), 4, 2, SamplerConfig(num_sampling_steps=steps)
            )
    # An ODE sampler reads d = 0 and takes any count: Euler's 3 steps add (sum t_i / 3, 0).
    key = jax.random.key(0)
    euler = sample(shortcut, Times(), key, 4, 2, SamplerConfig("euler", num_sampling_steps=3))
    source = source_points(shortcut, jax.random.split(key)[0], jnp.arange(4), 2)
    np.testing.assert_allclose(euler.samples - source, np.tile([1 / 3, 0.0], (4, 1)), atol=1e-6)


def test_config_refuses_step_counts_that_are_not_powers_of_two():
    for fields, message in [
        ({"max_sampling_steps": 6}, "max_sampling_steps=6 must be a power of two"),
        ({"num_transport_steps": 3}, "num_transport_steps=3 must be a power of two"),
        ({"num_transport_steps": 16, "max_sampling_steps": 8}, "must be at most"),
        ({"self_consistency_share": 1.5}, r"self_consistency_share=1.5 must lie in \[0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            ShortcutStrategyConfig(**fields)
    assert isinstance(strategy(), ShortcutStrategy)


# ----------------------------------------------------------------------------------------------
# A tiny trained model
# ----------------------------------------------------------------------------------------------

GMM = GaussianMixtureConfig()
TINY_RUN = ExperimentConfig(
    strategy=ShortcutStrategyConfig(max_sampling_steps=8, self_consistency_share=0.5),
    model=MLPConfig(hidden_dim=64, depth=3, fourier_features=0),
    dataset=GMM,
    train=TrainConfig(batch_size=256, train_steps=1500, log_interval=500, ema_decay=0.99),
)


@pytest.fixture(scope="module")
def trained():
    return fit(TINY_RUN, check_finite=False).ema_model


def relative_disagreement(model, key):
    """mean |one step of 2d - two steps of d| / mean |two steps of d|, averaged over d = 1/8,
    1/4, 1/2, at points z_t of the mixture's path with t on the grid of 2d."""
    shortcut = create_strategy(TINY_RUN.strategy)
    ratios = []
    for d in (1 / 8, 1 / 4, 1 / 2):
        data_key, noise_key, time_key = jax.random.split(jax.random.fold_in(key, round(1 / d)), 3)
        x = get_batch(data_key, GMM, 2000)
        eps = jax.random.normal(noise_key, x.shape)
        t = jax.random.randint(time_key, (2000,), 0, round(1 / (2 * d))) * (2 * d)
        z = t[:, None] * x + (1 - t[:, None]) * eps

        def gap(t, z, d=d):
            one = shortcut.reverse(model, t, t + 2 * d, z, None)
            half = shortcut.reverse(model, t, t + d, z, None)
            two = shortcut.reverse(model, t + d, t + 2 * d, half, None)
            return jnp.linalg.norm(one - two), jnp.linalg.norm(two - z)

        gaps, moves = jax.vmap(gap)(t, z)
        ratios.append(float(gaps.mean() / moves.mean()))
    return np.mean(ratios)


def test_half_steps_and_full_step_agree_better_after_training(trained):
    # Relative to the step's length: the untrained network's outputs are ~100 times smaller
    # than the trained one's, so its absolute disagreement is small for that reason alone.
    # Measured: 0.28 at initialisation, 0.06 trained (a flow-matching-only training: 1.1).
    key = jax.random.key(5)
    initial = create_model(TINY_RUN.model, jax.random.key(0), 2, num_times=2)
    before, after = relative_disagreement(initial, key), relative_disagreement(trained, key)
    assert after < 0.4 * before, (before, after)


@pytest.mark.parametrize("steps", [1, 4])
def test_tiny_model_lands_few_step_samples_on_the_four_modes(trained, steps):
    corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * GMM.scale
    shortcut = create_strategy(TINY_RUN.strategy)
    cfg = SamplerConfig(num_sampling_steps=steps)
    result = sample(shortcut, trained, jax.random.key(1), 4000, 2, cfg)
    assert int(result.nfe) == steps
    distances = np.linalg.norm(np.asarray(result.samples)[:, None] - corners[None], axis=-1)
    shares = np.bincount(distances.argmin(axis=1), minlength=4) / len(distances)
    # Measured 0.81 (1 step) and 0.95 (4 steps) within 1.0 of a mode (data: 100%, std 0.3);
    # a flow-matching model's single Euler step lands at the mean, 3 sqrt(2) from every mode.
    assert np.mean(distances.min(axis=1) < 1.0) > {1: 0.75, 4: 0.9}[steps]
    assert np.all(np.abs(shares - 0.25) < 0.05), shares


# ----------------------------------------------------------------------------------------------
# Command line

TINY = ["model:mlp", "--model.hidden-dim", "16", "--model.depth", "2"]
# ----------------------------------------------------------------------------------------------


def test_command_line_trains_and_samples_a_shortcut_model(tmp_path, capsys):
    path = tmp_path / "shortcut.eqx"
    code, out, err = run(
        ["train", "strategy:shortcut", "dataset:moon", *TINY, *FAST, "--model-path", path], capsys
    )
    assert code == 0, err
    assert checkpoint.load(path).config.strategy == ShortcutStrategyConfig()
    for steps in (1, 4):
        image = tmp_path / f"{steps}.png"
        argv = ["generate", "--model-path", path, "--num-sampling-steps", str(steps)]
        code, out, err = run([*argv, "--output-image-path", image], capsys)
        assert code == 0, err
        assert f"NFE {steps}" in out and image.exists()
    for command, flag, suffix, *small in [
        ("animate", "--output-video-path", ".gif", "--num-samples", "200"),
        ("plot-field", "--output-image-path", ".png", *SMALL_FIELD),
    ]:
        out_path = tmp_path / f"{command}{suffix}"
        code, out, err = run([command, "--model-path", path, flag, out_path, *small], capsys)
        assert code == 0, err
        assert out_path.exists()
    json_path = tmp_path / "eval.json"
    argv = ["evaluate", "--model-path", path, "--steps", "1", "--num-samples", "200"]
    argv += ["--repeats", "2", "--nll-points", "16", "--density-resolution", "0"]
    argv += ["--output-json-path", json_path]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    report = json.loads(json_path.read_text())
    assert [(row["steps"], row["nfe"]) for row in report["rows"]] == [(1, 1)]
    assert np.isfinite(report["nll_nats_per_dim"]["mean"])
    code, out, err = run(["generate", "--model-path", path, "--num-sampling-steps", "3"], capsys)
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "power of two" in lines[0] and "Traceback" not in err, err
