import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_gen.config import MLPConfig, MoonConfig, ResNetConfig
from jax_gen.models import MLP, ResNet, SinusoidalTimeEmbed, create_model

MODEL_CONFIGS = [
    MLPConfig(hidden_dim=32, depth=2),
    MLPConfig(hidden_dim=32, depth=3, activation="relu"),
    ResNetConfig(hidden_dim=32, num_blocks=2),
    ResNetConfig(hidden_dim=32, num_blocks=1, use_layer_norm=False, activation="swish"),
]


def test_every_time_channel_varies_over_unit_interval():
    embed = SinusoidalTimeEmbed(32)
    values = jax.vmap(embed)(jnp.linspace(0.0, 1.0, 1001))
    spread = values.max(axis=0) - values.min(axis=0)
    # Even the slowest channels sweep their whole range: sin 0 -> 1, cos 1 -> -1.
    assert spread.min() >= 0.99


def test_transformer_frequencies_would_barely_move():
    # The pitfall: frequencies from 1 down to 1e-4 over t in [0, 1].
    freqs = 1e-4 ** (jnp.arange(16) / 15)
    spread = jnp.abs(jnp.sin(freqs * 1.0) - jnp.sin(0.0))
    assert jnp.mean(spread < 0.1) > 0.5


def test_embedding_distinguishes_neighbouring_grid_times():
    embed = SinusoidalTimeEmbed(32)
    t = jnp.arange(1001) / 1000
    values = jax.vmap(embed)(t)
    gaps = jnp.linalg.norm(jnp.diff(values, axis=0), axis=1)
    assert gaps.min() > 0.1


@pytest.mark.parametrize("cfg", MODEL_CONFIGS, ids=repr)
def test_model_maps_one_point_and_vmaps(cfg):
    model = create_model(cfg, jax.random.key(0), data_dim=3)
    out = model(jnp.float32(0.3), jnp.ones(3))
    assert out.shape == (3,) and out.dtype == jnp.float32
    batch = jax.vmap(model)(jnp.linspace(0, 1, 5), jnp.ones((5, 3)))
    assert batch.shape == (5, 3)
    # The output depends on time.
    assert not np.allclose(batch[0], batch[-1])


@pytest.mark.parametrize("cfg", MODEL_CONFIGS, ids=repr)
def test_time_embedding_constants_are_not_trainable(cfg):
    model = create_model(cfg, jax.random.key(0), data_dim=2)
    params = eqx.filter(model.time_embed, eqx.is_inexact_array)
    assert jax.tree.leaves(params) == []
    grads = eqx.filter_grad(lambda m: jnp.sum(m(jnp.float32(0.5), jnp.ones(2))))(model)
    assert jax.tree.leaves(grads.time_embed) == []


def test_architectures_match_their_config():
    mlp = create_model(MLPConfig(hidden_dim=16, depth=3), jax.random.key(0), 2)
    assert isinstance(mlp, MLP) and len(mlp.layers) == 4
    resnet = create_model(ResNetConfig(hidden_dim=16, num_blocks=4), jax.random.key(0), 2)
    assert isinstance(resnet, ResNet) and len(resnet.blocks) == 4
    no_norm = create_model(ResNetConfig(use_layer_norm=False), jax.random.key(0), 2)
    assert all(block.norm is None for block in no_norm.blocks)


def test_same_key_same_weights_and_unknown_config_rejected():
    a = create_model(MLPConfig(), jax.random.key(1), 2)
    b = create_model(MLPConfig(), jax.random.key(1), 2)
    assert all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    with pytest.raises(TypeError, match="MoonConfig"):
        create_model(MoonConfig(), jax.random.key(0), 2)
