"""Class-conditional generation end to end: labelled data, class embedding, label dropout.

A tiny conditional flow-matching model of the Gaussian mixture, sampled with the strategy's own
Euler steps on ``ClassConditioned(model, k)``, must put the samples of class k on component k,
and with the null class on all four components.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_gen.config import (
    CatConfig,
    DigitsConfig,
    FlowMatchingStrategyConfig,
    GaussianMixtureConfig,
    MLPConfig,
    OptimizerConfig,
    ResNetConfig,
    SamplerConfig,
    TrainConfig,
)
from jax_gen.data import data_dim, gaussian_mixture_centres, get_labeled_batch, num_classes
from jax_gen.models import ClassConditioned, create_model
from jax_gen.sampling import Guided, sample
from jax_gen.strategies import create_strategy
from jax_gen.train import model_num_classes, train

GMM = GaussianMixtureConfig()
OPTIMIZER = OptimizerConfig(learning_rate=3e-3, warmup_steps=50)


def fit_conditional(dataset, train_cfg, model_cfg, strategy_cfg, seed=0):
    init_key, train_key = jax.random.split(jax.random.key(seed))
    strategy = create_strategy(strategy_cfg)
    k = model_num_classes(dataset, train_cfg)
    model = create_model(model_cfg, init_key, data_dim(dataset), num_classes=k)
    return strategy, *train(strategy, model, dataset, train_cfg, OPTIMIZER, train_key)


@pytest.fixture(scope="module")
def mixture_model():
    train_cfg = TrainConfig(
        batch_size=256,
        train_steps=500,
        log_interval=500,
        ema_decay=0.99,
        conditional=True,
        label_dropout=0.2,
    )
    strategy_cfg = FlowMatchingStrategyConfig(num_transport_steps=20)
    strategy, _, ema_model, losses = fit_conditional(
        GMM, train_cfg, MLPConfig(hidden_dim=64, depth=2), strategy_cfg
    )
    assert np.all(np.isfinite(np.asarray(losses)))
    return strategy, ema_model


def nearest_component(samples):
    centres = gaussian_mixture_centres(GMM)
    return np.linalg.norm(np.asarray(samples)[:, None] - centres[None], axis=-1).argmin(axis=1)


@pytest.mark.parametrize("label", range(4))
def test_conditional_samples_land_on_their_component(mixture_model, label):
    strategy, model = mixture_model
    samples = sample(
        strategy, ClassConditioned(model, label), jax.random.key(label), 500, 2
    ).samples
    centre = gaussian_mixture_centres(GMM)[label]
    assert np.mean(nearest_component(samples) == label) > 0.9
    assert np.mean(np.linalg.norm(np.asarray(samples) - centre, axis=1) < 1.0) > 0.8


def test_a_local_euler_sampler_on_the_conditional_velocity_agrees(mixture_model):
    strategy, model = mixture_model
    num_steps, label = 20, 2

    def velocity(t, x):
        return strategy.velocity(lambda s, z: model(s, z, label=jnp.int32(label)), t, x)

    x = jax.random.normal(jax.random.key(11), (400, 2))
    for i in range(num_steps):
        x = x + jax.vmap(velocity, in_axes=(None, 0))(jnp.float32(i / num_steps), x) / num_steps
    assert np.mean(nearest_component(x) == label) > 0.9


def test_null_class_samples_the_whole_mixture(mixture_model):
    strategy, model = mixture_model
    samples = sample(strategy, ClassConditioned(model, None), jax.random.key(9), 1000, 2).samples
    shares = np.bincount(nearest_component(samples), minlength=4) / 1000
    assert shares.min() > 0.15, f"the null class covers every component: {shares}"


def test_conditional_training_on_unlabelled_data_names_the_dataset():
    train_cfg = TrainConfig(batch_size=8, train_steps=2, log_interval=2, conditional=True)
    with pytest.raises(ValueError, match="dataset cat has no labels"):
        fit_conditional(
            CatConfig(), train_cfg, MLPConfig(hidden_dim=8, depth=1), FlowMatchingStrategyConfig()
        )


def test_conditional_digits_model_trains_and_round_trips_through_serialisation(tmp_path):
    digits = DigitsConfig()
    train_cfg = TrainConfig(batch_size=16, train_steps=4, log_interval=4, conditional=True)
    strategy, model, _, losses = fit_conditional(
        digits, train_cfg, ResNetConfig(hidden_dim=16, num_blocks=1), FlowMatchingStrategyConfig()
    )
    assert losses.shape == (4,) and np.all(np.isfinite(np.asarray(losses)))
    assert model.num_classes == num_classes(digits) == 10
    x, labels = get_labeled_batch(jax.random.key(0), digits, 3)
    out = jax.vmap(model, in_axes=(None, 0, 0))(jnp.float32(0.5), x, labels)
    assert out.shape == (3, 64)

    # What a checkpoint loader does: rebuild the skeleton from the configs alone, then load.
    path = tmp_path / "model.eqx"
    eqx.tree_serialise_leaves(path, model)
    skeleton = create_model(
        ResNetConfig(hidden_dim=16, num_blocks=1),
        jax.random.key(123),
        data_dim(digits),
        num_classes=model_num_classes(digits, train_cfg),
    )
    loaded = eqx.tree_deserialise_leaves(path, skeleton)
    np.testing.assert_array_equal(
        jax.vmap(loaded, in_axes=(None, 0, 0))(jnp.float32(0.5), x, labels), out
    )


# ----------------------------------------------------------------------------------------------
# Classifier-free guidance
# ----------------------------------------------------------------------------------------------


def test_guidance_zero_and_one_are_exactly_the_unconditional_and_conditional_predictions():
    model = create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(0), 2, num_classes=4)
    t, x, label = jnp.float32(0.3), jnp.array([0.5, -1.0]), jnp.int32(2)
    unconditional = model(t, x, label=None)
    conditional = model(t, x, label=label)
    assert not np.allclose(unconditional, conditional)
    np.testing.assert_array_equal(Guided(model, label, 0.0)(t, x), unconditional)
    np.testing.assert_array_equal(Guided(model, label, 1.0)(t, x), conditional)
    np.testing.assert_allclose(
        Guided(model, label, 3.0)(t, x),
        unconditional + 3 * (conditional - unconditional),
        rtol=1e-6,
    )


SAMPLER_NAMES = ["default", "ddim", "euler", "heun", "dpm-solver", "euler-maruyama", "adaptive"]


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_draws_each_point_from_its_own_class(mixture_model, sampler):
    strategy, model = mixture_model
    labels = jnp.arange(800) % 4
    cfg = SamplerConfig(sampler=sampler, num_sampling_steps=20 if sampler != "heun" else 10)
    samples = sample(strategy, model, jax.random.key(1), 800, 2, cfg, labels=labels).samples
    assert np.mean(nearest_component(samples) == np.asarray(labels)) > 0.9


def test_guidance_scale_zero_samples_the_unconditional_model(mixture_model):
    strategy, model = mixture_model
    cfg = SamplerConfig(sampler="euler", num_sampling_steps=20, guidance_scale=0.0)
    guided = sample(strategy, model, jax.random.key(3), 300, 2, cfg, labels=jnp.zeros(300, int))
    plain = sample(
        strategy,
        ClassConditioned(model, None),
        jax.random.key(3),
        300,
        2,
        SamplerConfig("euler", 20),
    )
    np.testing.assert_allclose(guided.samples, plain.samples, rtol=1e-5, atol=1e-5)


def test_stronger_guidance_concentrates_each_class(mixture_model):
    """w > 1 sharpens p(x | y) p(y | x)^(w - 1): samples pull towards their own mode."""
    strategy, model = mixture_model
    centres = gaussian_mixture_centres(GMM)
    spreads = []
    for scale in (1.0, 3.0):
        cfg = SamplerConfig(sampler="euler", num_sampling_steps=20, guidance_scale=scale)
        labels = jnp.arange(1000) % 4
        samples = np.asarray(
            sample(strategy, model, jax.random.key(4), 1000, 2, cfg, labels).samples
        )
        spreads.append(np.mean(np.linalg.norm(samples - centres[np.asarray(labels)], axis=1)))
    assert spreads[1] < spreads[0]


def test_guidance_needs_labels_and_a_valid_scale(mixture_model):
    strategy, model = mixture_model
    with pytest.raises(ValueError, match="needs class labels"):
        sample(strategy, model, jax.random.key(0), 4, 2, SamplerConfig(guidance_scale=2.0))
    with pytest.raises(ValueError, match="labels must be 4 ints"):
        sample(strategy, model, jax.random.key(0), 4, 2, SamplerConfig(), labels=jnp.zeros(3, int))
    with pytest.raises(ValueError, match="guidance_scale=-1.0"):
        SamplerConfig(guidance_scale=-1.0)


class _CallLog:
    """Records each network call as it is traced (hashable by identity: a static field)."""

    def __init__(self):
        self.calls = 0


class _Counted(eqx.Module):
    model: eqx.Module
    log: _CallLog = eqx.field(static=True)

    def __call__(self, t, x, label=None):
        self.log.calls += 1
        return self.model(t, x, label=label)


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
def test_nfe_counts_both_network_calls_of_a_guided_prediction(mixture_model, scale):
    strategy, model = mixture_model
    counted = _Counted(model, _CallLog())
    cfg = SamplerConfig(sampler="euler", num_sampling_steps=1, guidance_scale=scale)
    result = sample(strategy, counted, jax.random.key(0), 8, 2, cfg, labels=jnp.zeros(8, int))
    # One step traced once: the calls the step makes per point.
    assert counted.log.calls == (2 if scale == 3.0 else 1)
    assert int(result.nfe) == counted.log.calls
