"""The hooks a strategy may override: ``at_step`` (a curriculum) and ``has_velocity``."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_gen.config import (
    GaussianMixtureConfig,
    MLPConfig,
    OptimizerConfig,
    SamplerConfig,
    TrainConfig,
)
from jax_gen.likelihood import log_prob
from jax_gen.models import create_model
from jax_gen.parameterization import PARAMETERIZATIONS
from jax_gen.sampling import sample
from jax_gen.schedules import LinearPath
from jax_gen.strategies import FlowMatchingStrategy
from jax_gen.train import train

TINY = MLPConfig(hidden_dim=16, depth=2, fourier_features=0)


class Scheduled(FlowMatchingStrategy):
    """Flow matching whose loss is scaled by the share of the run already trained."""

    weight: jax.Array = eqx.field(default_factory=lambda: jnp.ones(()))

    def at_step(self, step, total_steps):
        return eqx.tree_at(lambda s: s.weight, self, step / jnp.maximum(total_steps, 1))

    def loss_fn(self, model, x, key, label=None, eps=None):
        return self.weight * super().loss_fn(model, x, key, label, eps)


class NoVelocity(FlowMatchingStrategy):
    def has_velocity(self):
        return False


def linear(cls):
    return cls(
        schedule=LinearPath(), parameterization=PARAMETERIZATIONS["v"], num_transport_steps=4
    )


def test_training_hands_the_strategy_its_step_and_the_run_length():
    strategy = linear(Scheduled)
    model = create_model(TINY, jax.random.key(0), data_dim=2)
    losses = {}
    for total in (4, 8):
        train_cfg = TrainConfig(batch_size=32, train_steps=total, log_interval=4)
        losses[total] = train(
            strategy,
            model,
            GaussianMixtureConfig(),
            train_cfg,
            OptimizerConfig(),
            jax.random.key(1),
        )[2]
        assert losses[total][0] == 0.0, "step 0 of the run has weight 0 / total"
        assert np.all(losses[total][1:] > 0)
    # Step 1 of a run twice as long carries half the weight: step 0's weight is 0, so both
    # runs reach step 1 with the same model and batch.
    np.testing.assert_allclose(losses[8][1], losses[4][1] / 2, rtol=1e-5)


def test_without_a_velocity_only_the_strategy_step_samples():
    strategy = linear(NoVelocity)
    model = create_model(TINY, jax.random.key(0), data_dim=2)
    result = sample(strategy, model, jax.random.key(1), 8, 2, SamplerConfig())
    assert result.samples.shape == (8, 2)
    for sampler in ("euler", "heun", "adaptive", "dpm-solver"):
        with pytest.raises(ValueError, match="velocity"):
            sample(strategy, model, jax.random.key(1), 8, 2, SamplerConfig(sampler=sampler))
    with pytest.raises(ValueError, match="velocity"):
        log_prob(strategy, model, jnp.zeros((3, 2)))
