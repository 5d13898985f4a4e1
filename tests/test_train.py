import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import STRATEGY_CFGS, STRATEGY_CONFIGS, STRATEGY_IDS

import jax_gen.train as train_module
from jax_gen.config import (
    CatConfig,
    DigitsConfig,
    GaussianMixtureConfig,
    MLPConfig,
    MoonConfig,
    OptimizerConfig,
    SwissRollConfig,
    TrainConfig,
)
from jax_gen.data import get_batch
from jax_gen.models import create_model
from jax_gen.parameterization import path_coefficients
from jax_gen.sampling import sample
from jax_gen.strategies import create_strategy
from jax_gen.train import (
    check_conditioning,
    drop_labels,
    make_optimizer,
    model_num_classes,
    train,
)

GMM = GaussianMixtureConfig()
CORNERS = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * GMM.scale
# The tiny recipe the mode tests below were measured with: a plain MLP on x. With the default
# 64 Fourier features these 1,500-step runs misweigh the modes (shares 0.18-0.34); the full
# default recipe does not (scripts/benchmark_quality.py).
TINY = MLPConfig(hidden_dim=64, depth=3, fourier_features=0)


def fit(strategy_cfg, train_cfg, key=0, model_cfg=TINY):
    init_key, train_key = jax.random.split(jax.random.key(key))
    strategy = create_strategy(strategy_cfg)
    model = create_model(model_cfg, init_key, data_dim=2)
    opt = OptimizerConfig(learning_rate=3e-3, warmup_steps=50)
    return strategy, *train(strategy, model, GMM, train_cfg, opt, train_key)


def leaves(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))


class MixtureOracle:
    """The exact prediction for the data ``GMM`` on any Gaussian path, as a model(t, z).

    z = alpha x + sigma eps is the mixture of N(alpha m_j, v I), v = alpha^2 s^2 + sigma^2, and
    E[x | z] = sum_j r_j(z) (m_j + alpha s^2 / v (z - alpha m_j)) with r_j the posterior
    responsibilities; the oracle returns what the parameterization asks for.
    """

    def __init__(self, strategy):
        self.strategy = strategy
        self.means = jnp.asarray(CORNERS, jnp.float32)

    def __call__(self, t, z):
        c = path_coefficients(self.strategy.schedule, t)
        variance = c.alpha**2 * GMM.std**2 + c.sigma**2
        logits = -jnp.sum((z - c.alpha * self.means) ** 2, axis=-1) / (2 * variance)
        gain = c.alpha * GMM.std**2 / variance
        x_hat = jax.nn.softmax(logits) @ (self.means + gain * (z - c.alpha * self.means))
        return self.strategy.parameterization.target(x_hat, (z - c.alpha * x_hat) / c.sigma, c)


def mode_statistics(points, corners):
    """Per corner: the share of the points nearest to it, and the spread (the per-coordinate
    std about their mean) and number of those within 1.0 of it."""
    distances = np.linalg.norm(points[:, None] - corners[None], axis=-1)
    nearest, close = distances.argmin(axis=1), distances.min(axis=1) < 1.0
    shares = np.bincount(nearest, minlength=len(corners)) / len(points)
    groups = [points[(nearest == j) & close] for j in range(len(corners))]
    spreads = np.array(
        [np.sqrt(np.mean((g - g.mean(0)) ** 2)) if len(g) else np.nan for g in groups]
    )
    return shares, spreads, np.array([max(len(g), 1) for g in groups])


def mode_mismatch(samples, reference, corners, num_se=4.0):
    """How the modes of ``samples`` differ from ``reference``'s beyond sampling error; '' if not.

    Shares and spreads (:func:`mode_statistics`) are compared within ``num_se`` standard errors
    of the difference of two independent draws of these sizes, sqrt(p (1 - p) / n) per share
    and std / sqrt(4 m) per spread of m points (2 m values); drawn from the same noise, as here,
    the two differ less.
    """
    n, ref_n = len(samples), len(reference)
    shares, spreads, counts = mode_statistics(samples, corners)
    ref_shares, ref_spreads, ref_counts = mode_statistics(reference, corners)
    share_se = np.sqrt(shares * (1 - shares) / n + ref_shares * (1 - ref_shares) / ref_n)
    spread_se = np.sqrt(spreads**2 / (4 * counts) + ref_spreads**2 / (4 * ref_counts))
    problems = []
    if not np.all(np.abs(shares - ref_shares) < num_se * share_se):
        problems.append(f"shares {np.round(shares, 3)}, exact {np.round(ref_shares, 3)}")
    if not np.all(np.abs(spreads - ref_spreads) < num_se * spread_se):
        problems.append(f"mode stds {np.round(spreads, 3)}, exact {np.round(ref_spreads, 3)}")
    return "; ".join(problems)


# What the tiny recipe below does not train to the modes, measured against the exact
# denoiser through the same sampler (mode std about 0.28; shares 0.25 +- 0.01): the test
# holds them to the bounds they meet and fails once they meet the tight ones.
UNDERTRAINED = {
    "ddpm-x": "x-prediction shrinks every mode (std 0.02-0.06); loss_target='v' trains it",
    "flow-x": "x-prediction shrinks every mode (std 0.09-0.17, 0.23 after 3000 steps)",
    "flow-eps": "eps-prediction misweighs the modes (shares 0.19-0.35)",
}
# v-prediction DDPM at 1500 steps leaves its modes 10-18% wider than the exact denoiser's.
TRAIN_STEPS = {"ddpm-v": 3000}


@pytest.mark.parametrize("name, cfg", STRATEGY_CONFIGS, ids=STRATEGY_IDS)
def test_tiny_model_lands_samples_on_the_four_modes(name, cfg):
    steps = TRAIN_STEPS.get(name, 1500)
    train_cfg = TrainConfig(batch_size=256, train_steps=steps, log_interval=500, ema_decay=0.99)
    strategy, _, ema_model, losses = fit(cfg, train_cfg)
    assert losses.shape == (steps,) and np.all(np.isfinite(losses))
    assert losses[-100:].mean() < losses[:100].mean()
    # The reference is the exact denoiser sampled from the same noise, not the data: DDPM's
    # 100-step chain alone leaves the modes 7-13% narrow (it converges with the number of steps).
    n, key = 2000, jax.random.key(7)
    samples = sample(strategy, ema_model, key, n, 2).samples
    exact = sample(strategy, MixtureOracle(strategy), key, n, 2).samples
    samples, exact = np.asarray(samples), np.asarray(exact)
    exact_shares, exact_spreads, _ = mode_statistics(exact, CORNERS)
    assert np.all(np.abs(exact_shares - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)), exact_shares
    assert np.all(np.abs(exact_spreads / GMM.std - 1) < 0.15), exact_spreads
    distances = np.linalg.norm(samples[:, None] - CORNERS[None], axis=-1)
    assert np.mean(distances.min(axis=1) < 1.0) > 0.9, "most samples lie within 1.0 of a corner"
    mismatch = mode_mismatch(samples, exact, CORNERS)
    if name in UNDERTRAINED:
        shares = np.bincount(distances.argmin(axis=1), minlength=4) / len(samples)
        assert shares.min() > 0.15, f"every mode is populated: {shares}"
        assert mismatch, f"{name} now lands on the modes: remove it from UNDERTRAINED"
        pytest.xfail(f"{UNDERTRAINED[name]}: {mismatch}")
    assert not mismatch, mismatch


def test_training_is_deterministic_for_a_seed():
    train_cfg = TrainConfig(batch_size=64, train_steps=60, log_interval=20)
    cfg = STRATEGY_CFGS[0]
    _, model_a, ema_a, losses_a = fit(cfg, train_cfg)
    _, model_b, ema_b, losses_b = fit(cfg, train_cfg)
    np.testing.assert_array_equal(losses_a, losses_b)
    for a, b in zip(leaves(model_a) + leaves(ema_a), leaves(model_b) + leaves(ema_b), strict=True):
        np.testing.assert_array_equal(a, b)
    _, _, _, losses_c = fit(cfg, train_cfg, key=1)
    assert not np.array_equal(losses_a, losses_c)


def test_chunk_length_does_not_change_the_result():
    cfg = STRATEGY_CFGS[1]
    _, model_a, _, losses_a = fit(cfg, TrainConfig(batch_size=64, train_steps=60, log_interval=60))
    _, model_b, _, losses_b = fit(cfg, TrainConfig(batch_size=64, train_steps=60, log_interval=7))
    np.testing.assert_allclose(losses_a, losses_b, rtol=1e-6)
    for a, b in zip(leaves(model_a), leaves(model_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_no_recompilation_across_chunks(monkeypatch):
    traces = []
    original = train_module.train_step

    def counting_step(*args, **kwargs):
        traces.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", counting_step)
    # A batch size no other test uses, so nothing is cached yet.
    train_cfg = TrainConfig(batch_size=72, train_steps=80, log_interval=20)
    fit(STRATEGY_CFGS[0], train_cfg)
    assert len(traces) == 1, "four equal chunks compile the step once"


def test_ema_with_zero_decay_is_the_model():
    train_cfg = TrainConfig(batch_size=32, train_steps=10, log_interval=5, ema_decay=0.0)
    _, model, ema_model, _ = fit(STRATEGY_CFGS[0], train_cfg)
    for a, b in zip(leaves(model), leaves(ema_model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_learning_rate_schedule_warms_up_and_decays():
    opt_cfg = OptimizerConfig(learning_rate=1e-2, warmup_steps=10, final_lr_fraction=0.1)
    optimizer = make_optimizer(opt_cfg, train_steps=100)
    params = {"w": jnp.ones(())}
    state = optimizer.init(params)
    step_sizes = []
    for _ in range(100):
        updates, state = optimizer.update({"w": jnp.ones(())}, state, params)
        step_sizes.append(-float(updates["w"]))
    assert step_sizes[0] < 1e-3  # warmup starts near zero
    assert abs(step_sizes[10] - 1e-2) < 1e-3  # peak after warmup (Adam's unit step)
    assert abs(step_sizes[-1] - 1e-3) < 2e-4  # cosine ends at the final fraction


def test_weight_decay_shrinks_weights_by_rate_times_decay():
    """AdamW's decoupled decay: with zero gradients Adam's step is 0, so each step multiplies
    a weight by exactly (1 - lr_t * weight_decay); with weight_decay 0 the weight stays."""
    opt_cfg = OptimizerConfig(learning_rate=1e-2, warmup_steps=0, final_lr_fraction=1.0)
    decayed = make_optimizer(dataclasses.replace(opt_cfg, weight_decay=0.5), train_steps=10)
    plain = make_optimizer(opt_cfg, train_steps=10)
    params = {"w": jnp.asarray([2.0, -3.0])}
    zero = {"w": jnp.zeros(2)}
    for optimizer, factor in ((decayed, 1 - 1e-2 * 0.5), (plain, 1.0)):
        p, state = params, optimizer.init(params)
        for _ in range(3):
            updates, state = optimizer.update(zero, state, p)
            p = optax.apply_updates(p, updates)
        np.testing.assert_allclose(p["w"], params["w"] * factor**3, rtol=1e-6)
    with pytest.raises(ValueError, match="weight_decay"):
        OptimizerConfig(weight_decay=-1e-5)


# ----------------------------------------------------------------------------------------------
# Class-conditional training
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_label_dropout_outside_the_unit_interval_is_rejected(rate):
    with pytest.raises(ValueError, match="label_dropout"):
        TrainConfig(label_dropout=rate)
    assert TrainConfig(label_dropout=0.0).label_dropout == 0.0
    assert TrainConfig(label_dropout=1.0).label_dropout == 1.0


def test_conditioning_needs_a_labelled_dataset():
    conditional = TrainConfig(conditional=True)
    for dataset, name in ((CatConfig(), "cat"), (SwissRollConfig(ambient_dim=3), "swiss-roll")):
        with pytest.raises(ValueError, match=f"dataset {name} has no labels"):
            check_conditioning(dataset, conditional)
        with pytest.raises(ValueError, match=name):
            model_num_classes(dataset, conditional)
        assert model_num_classes(dataset, TrainConfig()) == 0
    assert model_num_classes(GMM, conditional) == 4
    assert model_num_classes(MoonConfig(), conditional) == 2
    assert model_num_classes(DigitsConfig(), conditional) == 10
    assert model_num_classes(GMM, TrainConfig()) == 0


def test_drop_labels_replaces_a_fraction_rate_by_the_null_class():
    labels = jnp.tile(jnp.arange(4, dtype=jnp.int32), 5000)
    key = jax.random.key(0)
    np.testing.assert_array_equal(drop_labels(key, labels, 4, 0.0), labels)
    np.testing.assert_array_equal(drop_labels(key, labels, 4, 1.0), jnp.full_like(labels, 4))
    dropped = np.asarray(drop_labels(key, labels, 4, 0.3))
    kept = dropped != 4
    np.testing.assert_array_equal(dropped[kept], np.asarray(labels)[kept])
    n = labels.size
    assert abs(np.mean(~kept) - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)
    assert dropped.dtype == np.int32


def _key_data(key):
    return tuple(np.asarray(jax.random.key_data(key)).ravel().tolist())


def test_conditional_step_keeps_the_batch_and_loss_keys_of_the_unconditional_step(monkeypatch):
    """The labels use a key of their own: unconditional runs draw exactly what they did."""
    seen = {}

    def recorder(name, fn, key_position):
        def wrapped(*args, **kwargs):
            seen.setdefault(name, []).append(_key_data(args[key_position]))
            return fn(*args, **kwargs)

        return wrapped

    def cheap_loss(model, strategy, batch, key, labels=None):
        # Only the keys matter here; an eager batch loss and its gradient would be slow.
        return jnp.sum(model.layers[-1].bias) * 0.0

    for name, position in (
        ("get_batch", 0),
        ("get_labeled_batch", 0),
        ("drop_labels", 0),
        ("batch_loss", 3),
    ):
        original = cheap_loss if name == "batch_loss" else getattr(train_module, name)
        monkeypatch.setattr(train_module, name, recorder(name, original, position))
    strategy = create_strategy(STRATEGY_CFGS[0])
    optimizer = make_optimizer(OptimizerConfig(), 10)
    step_key = jax.random.key(17)
    kwargs = dict(strategy=strategy, optimizer=optimizer, dataset=GMM, batch_size=8, ema_decay=0.9)
    for conditional in (False, True):
        model = create_model(TINY, jax.random.key(0), 2, num_classes=4 if conditional else 0)
        state = train_module.init_train_state(model, optimizer)
        train_module.train_step(state, step_key, conditional=conditional, **kwargs)
    batch_key, loss_key = (_key_data(k) for k in jax.random.split(step_key))
    assert seen["get_batch"] == [batch_key] and seen["get_labeled_batch"] == [batch_key]
    assert seen["batch_loss"] == [loss_key, loss_key]
    assert seen["drop_labels"][0] not in (batch_key, loss_key)


def test_unconditional_training_is_the_plain_loop():
    """The loop without conditioning, written out from public pieces, gives the same run."""
    train_cfg = TrainConfig(batch_size=32, train_steps=12, log_interval=4, ema_decay=0.9)
    opt_cfg = OptimizerConfig(learning_rate=3e-3, warmup_steps=5)
    strategy = create_strategy(STRATEGY_CFGS[1])
    init_key, train_key = jax.random.split(jax.random.key(2))
    model = create_model(TINY, init_key, data_dim=2)
    trained, _, losses = train(strategy, model, GMM, train_cfg, opt_cfg, train_key)

    optimizer = make_optimizer(opt_cfg, train_cfg.train_steps)

    @eqx.filter_jit
    def step(model, opt_state, key):
        batch_key, loss_key = jax.random.split(key)
        batch = get_batch(batch_key, GMM, train_cfg.batch_size)
        keys = jax.random.split(loss_key, train_cfg.batch_size)

        def loss(m):
            return jnp.mean(jax.vmap(strategy.loss_fn, in_axes=(None, 0, 0))(m, batch, keys))

        value, grads = eqx.filter_value_and_grad(loss)(model)
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return eqx.apply_updates(model, updates), opt_state, value

    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    reference = []
    for s in range(train_cfg.train_steps):
        model, opt_state, value = step(model, opt_state, jax.random.fold_in(train_key, s))
        reference.append(value)
    np.testing.assert_allclose(losses, np.asarray(reference), rtol=1e-6)
    for a, b in zip(leaves(trained), leaves(model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_null_class_is_learned_only_with_label_dropout():
    def null_row_after_training(label_dropout):
        train_cfg = TrainConfig(
            batch_size=32,
            train_steps=3,
            log_interval=3,
            conditional=True,
            label_dropout=label_dropout,
        )
        init_key, train_key = jax.random.split(jax.random.key(0))
        model = create_model(TINY, init_key, data_dim=2, num_classes=4)
        opt = OptimizerConfig(warmup_steps=0)
        strategy = create_strategy(STRATEGY_CFGS[1])
        trained, _, losses = train(strategy, model, GMM, train_cfg, opt, train_key)
        assert np.all(np.isfinite(np.asarray(losses)))
        return np.asarray(model.class_embed.weight), np.asarray(trained.class_embed.weight)

    before, after = null_row_after_training(0.0)
    np.testing.assert_array_equal(after[4], before[4])  # never seen: zero gradient, no step
    assert np.all(np.any(after[:4] != before[:4], axis=1))
    before, after = null_row_after_training(0.5)
    assert np.all(np.any(after != before, axis=1))
