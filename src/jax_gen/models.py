"""Time-conditioned networks. Every model acts on ONE point: ``model(t, x) -> same shape as x``.

Batch with ``jax.vmap``. Constants (the time-embedding frequencies) are computed on the fly from
static sizes, so they are never in the trainable partition of the model.
"""

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from jax_gen.config import MLPConfig, ResNetConfig

ACTIVATIONS = {"gelu": jax.nn.gelu, "relu": jax.nn.relu, "swish": jax.nn.swish}


class SinusoidalTimeEmbed(eqx.Module):
    """Sines and cosines of t at geometrically spaced frequencies, for t in [0, 1].

        embed(t) = [sin(w_1 t), ..., sin(w_n t), cos(w_1 t), ..., cos(w_n t)],
        w_i = pi * max_frequency ** ((i - 1) / (n - 1)),   n = dim / 2.

    The lowest frequency is pi, half a period over [0, 1], so even the slowest channels sweep
    their whole range (sin from 0 to 1, cos from 1 to -1) as t goes from noise to data; the
    highest, pi * max_frequency, resolves time differences of about 1 / max_frequency. (The
    transformer recipe with frequencies from 1 down to 1e-4 was made for integer positions up to
    ~10^4; on t in [0, 1] most of its channels barely move.)
    """

    dim: int = eqx.field(static=True)
    max_frequency: float = eqx.field(static=True, default=100.0)

    def frequencies(self) -> Float[Array, " half"]:
        half = self.dim // 2
        exponents = jnp.linspace(0.0, 1.0, half) if half > 1 else jnp.zeros(1)
        return math.pi * self.max_frequency**exponents

    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, " dim"]:
        angles = jnp.asarray(t, dtype=float) * self.frequencies()
        return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])


class MLP(eqx.Module):
    """An MLP on the concatenation [x, embed(t)]."""

    time_embed: SinusoidalTimeEmbed
    layers: tuple[eqx.nn.Linear, ...]
    activation: Callable[[Array], Array]

    def __init__(self, data_dim: int, cfg: MLPConfig, *, key: PRNGKeyArray):
        self.time_embed = SinusoidalTimeEmbed(cfg.time_embed_dim)
        sizes = [data_dim + cfg.time_embed_dim] + [cfg.hidden_dim] * cfg.depth + [data_dim]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(n_in, n_out, key=k)
            for n_in, n_out, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )
        self.activation = ACTIVATIONS[cfg.activation]

    def __call__(self, t: Float[ArrayLike, ""], x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        h = jnp.concatenate([x, self.time_embed(t)])
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h)


class ResidualBlock(eqx.Module):
    """h + W2 act(W1 norm(h) + U embed(t)): time enters every block."""

    norm: eqx.nn.LayerNorm | None
    linear_in: eqx.nn.Linear
    time_proj: eqx.nn.Linear
    linear_out: eqx.nn.Linear
    activation: Callable[[Array], Array]

    def __init__(self, hidden_dim: int, time_dim: int, cfg: ResNetConfig, *, key: PRNGKeyArray):
        k_in, k_time, k_out = jax.random.split(key, 3)
        self.norm = eqx.nn.LayerNorm(hidden_dim) if cfg.use_layer_norm else None
        self.linear_in = eqx.nn.Linear(hidden_dim, hidden_dim, key=k_in)
        self.time_proj = eqx.nn.Linear(time_dim, hidden_dim, key=k_time)
        self.linear_out = eqx.nn.Linear(hidden_dim, hidden_dim, key=k_out)
        self.activation = ACTIVATIONS[cfg.activation]

    def __call__(
        self, h: Float[Array, " hidden"], temb: Float[Array, " time"]
    ) -> Float[Array, " hidden"]:
        u = self.norm(h) if self.norm is not None else h
        u = self.activation(self.linear_in(u) + self.time_proj(temb))
        return h + self.linear_out(u)


class ResNet(eqx.Module):
    """A residual MLP: x -> hidden, blocks conditioned on embed(t), hidden -> output."""

    time_embed: SinusoidalTimeEmbed
    linear_in: eqx.nn.Linear
    blocks: tuple[ResidualBlock, ...]
    norm_out: eqx.nn.LayerNorm | None
    linear_out: eqx.nn.Linear

    def __init__(self, data_dim: int, cfg: ResNetConfig, *, key: PRNGKeyArray):
        k_in, k_blocks, k_out = jax.random.split(key, 3)
        self.time_embed = SinusoidalTimeEmbed(cfg.time_embed_dim)
        self.linear_in = eqx.nn.Linear(data_dim, cfg.hidden_dim, key=k_in)
        self.blocks = tuple(
            ResidualBlock(cfg.hidden_dim, cfg.time_embed_dim, cfg, key=k)
            for k in jax.random.split(k_blocks, cfg.num_blocks)
        )
        self.norm_out = eqx.nn.LayerNorm(cfg.hidden_dim) if cfg.use_layer_norm else None
        self.linear_out = eqx.nn.Linear(cfg.hidden_dim, data_dim, key=k_out)

    def __call__(self, t: Float[ArrayLike, ""], x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        temb = self.time_embed(t)
        h = self.linear_in(x)
        for block in self.blocks:
            h = block(h, temb)
        if self.norm_out is not None:
            h = self.norm_out(h)
        return self.linear_out(h)


@functools.singledispatch
def create_model(cfg, key: PRNGKeyArray, data_dim: int) -> eqx.Module:
    """Builds the network described by ``cfg`` for points of dimension ``data_dim``.

    Register a new config type with ``@create_model.register`` to add an architecture.
    """
    raise TypeError(f"no model registered for config type {type(cfg).__name__}")


@create_model.register
def _(cfg: MLPConfig, key: PRNGKeyArray, data_dim: int) -> MLP:
    return MLP(data_dim, cfg, key=key)


@create_model.register
def _(cfg: ResNetConfig, key: PRNGKeyArray, data_dim: int) -> ResNet:
    return ResNet(data_dim, cfg, key=key)
