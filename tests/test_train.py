import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import STRATEGY_CFGS, STRATEGY_IDS

import jax_gen.train as train_module
from jax_gen.config import GaussianMixtureConfig, MLPConfig, OptimizerConfig, TrainConfig
from jax_gen.models import create_model
from jax_gen.strategies import create_strategy
from jax_gen.train import make_optimizer, train

GMM = GaussianMixtureConfig()
CORNERS = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * GMM.scale
TINY = MLPConfig(hidden_dim=64, depth=3)


def fit(strategy_cfg, train_cfg, key=0, model_cfg=TINY):
    init_key, train_key = jax.random.split(jax.random.key(key))
    strategy = create_strategy(strategy_cfg)
    model = create_model(model_cfg, init_key, data_dim=2)
    opt = OptimizerConfig(learning_rate=3e-3, warmup_steps=50)
    return strategy, *train(strategy, model, GMM, train_cfg, opt, train_key)


def leaves(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))


@pytest.mark.parametrize("cfg", STRATEGY_CFGS, ids=STRATEGY_IDS)
def test_tiny_model_lands_samples_on_the_four_modes(cfg):
    train_cfg = TrainConfig(batch_size=256, train_steps=1500, log_interval=500, ema_decay=0.99)
    strategy, _, ema_model, losses = fit(cfg, train_cfg)
    assert losses.shape == (1500,) and np.all(np.isfinite(losses))
    assert losses[-100:].mean() < losses[:100].mean()
    samples, _ = strategy.sample_from_target_distribution(ema_model, jax.random.key(7), 2000, 2)
    distances = np.linalg.norm(np.asarray(samples)[:, None] - CORNERS[None], axis=-1)
    nearest = distances.argmin(axis=1)
    assert np.mean(distances.min(axis=1) < 1.0) > 0.9, "most samples lie within 1.0 of a corner"
    shares = np.bincount(nearest, minlength=4) / len(samples)
    assert shares.min() > 0.15, f"every mode is populated: {shares}"


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
