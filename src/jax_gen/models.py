"""Time-conditioned networks. Every model acts on ONE point: ``model(t, x) -> same shape as x``.

Batch with ``jax.vmap``. Constants are kept out of training: the time-embedding frequencies are
computed on the fly from static sizes, and the MLP's random Fourier frequencies, drawn once from
the model's key and saved with it, sit behind ``stop_gradient`` (their gradient is exactly 0, so
Adam never moves them).

**Class conditioning.** ``create_model(cfg, key, data_dim, num_classes=K)`` with K > 0 builds a
class-conditional network, called as ``model(t, x, label)`` with an int32 scalar label in
{0, ..., K - 1}. Its learned class embedding E, a (K + 1, time_embed_dim) table, is *added* to
the time embedding wherever the network reads time:

    c(t, label) = embed(t) + E[label],

so the layers after it keep their sizes. Row K of E is the *null class*: ``label=None`` (or the
label K) means "no condition", and training with label dropout (``TrainConfig.label_dropout``)
makes the one network learn both the conditional and the unconditional model that
classifier-free guidance combines (:class:`jax_gen.sampling.guidance.Guided`). An
unconditional model (K = 0) has no embedding, is called as ``model(t, x)`` exactly as before,
and raises if given a label, so a condition is never silently ignored.
:class:`ClassConditioned` fixes the label, giving a plain ``model(t, x)`` for the samplers.
"""

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from jax_gen.config import MLPConfig, ResNetConfig
from jax_gen.config.models import DEFAULT_TIME_FREQUENCY

ACTIVATIONS = {
    "gelu": jax.nn.gelu,
    "relu": jax.nn.relu,
    "swish": jax.nn.swish,
    "selu": jax.nn.selu,
}


def _time_frequency(cfg) -> float:
    """The config's time-embedding top frequency, the default when unset."""
    return DEFAULT_TIME_FREQUENCY if cfg.time_max_frequency is None else cfg.time_max_frequency


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
    num_times: int = eqx.field(static=True, default=1)
    """Times the network reads: 1 (t, a scalar) or more (a vector, each embedded in turn and
    the embeddings concatenated; a two-time strategy such as MeanFlow passes (t, t_end - t))."""

    @property
    def out_dim(self) -> int:
        """Size of the embedding: ``dim`` per time."""
        return self.num_times * self.dim

    def frequencies(self) -> Float[Array, " half"]:
        half = self.dim // 2
        exponents = jnp.linspace(0.0, 1.0, half) if half > 1 else jnp.zeros(1)
        return math.pi * self.max_frequency**exponents

    def __call__(self, t: Float[ArrayLike, "*times"]) -> Float[Array, " out"]:
        t = jnp.asarray(t, dtype=float)
        expected = () if self.num_times == 1 else (self.num_times,)
        if t.shape != expected:
            raise ValueError(
                f"the network reads {self.num_times} time(s), shape {expected}; got shape {t.shape}"
            )
        angles = t[..., None] * self.frequencies()
        return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(-1)


def _class_embedding(
    num_classes: int, dim: int, key: PRNGKeyArray
) -> tuple[PRNGKeyArray, eqx.nn.Embedding | None]:
    """The (num_classes + 1, dim) class table of a conditional model, or None if unconditional.

    Returns the key the rest of the network is initialised with: ``key`` itself when
    ``num_classes`` is 0, so an unconditional model's weights do not depend on this option.
    """
    if not (isinstance(num_classes, int) and num_classes >= 0):
        raise ValueError(f"num_classes={num_classes!r} must be a non-negative int")
    if num_classes == 0:
        return key, None
    key, embed_key = jax.random.split(key)
    return key, eqx.nn.Embedding(num_classes + 1, dim, key=embed_key)


def _conditioning(
    model: "MLP | ResNet", t: Float[ArrayLike, ""], label: Int[ArrayLike, ""] | None
) -> Float[Array, " time"]:
    """embed(t) + E[label] (E[K], the null class, for ``label=None``), or embed(t) alone."""
    temb = model.time_embed(t)
    if model.class_embed is None:
        if label is not None:
            raise ValueError(
                f"{type(model).__name__} is unconditional but was given a label; build it with "
                "create_model(..., num_classes=K) to condition on classes"
            )
        return temb
    index = model.num_classes if label is None else label
    return temb + model.class_embed(jnp.asarray(index, jnp.int32)).astype(temb.dtype)


class FourierFeatures(eqx.Module):
    """Random Fourier features of a point: [x, sin(2 pi B x), cos(2 pi B x)].

    B is an (n, d) matrix of independent N(0, scale^2) frequencies in cycles per unit of x, drawn
    once from the model's key (Tancik et al., "Fourier Features Let Networks Learn High
    Frequency Functions in Low Dimensional Domains", 2020). A plain MLP on x is smooth at the
    scale of its inputs and blurs sharp edges (a silhouette's outline); these features give it
    oscillations of about 1 / scale units of x to build them from. B is part of the saved model
    but not trained: the forward pass reads it through ``stop_gradient``.
    """

    frequencies: Float[Array, "n d"]

    def __init__(self, num: int, dim: int, scale: float, *, key: PRNGKeyArray):
        self.frequencies = scale * jax.random.normal(key, (num, dim))

    @property
    def out_dim(self) -> int:
        """d + 2n, the size of the features of a d-dimensional point."""
        num, dim = self.frequencies.shape
        return dim + 2 * num

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " out"]:
        angles = 2 * math.pi * (jax.lax.stop_gradient(self.frequencies) @ x)
        return jnp.concatenate([x, jnp.sin(angles), jnp.cos(angles)])


class MLP(eqx.Module):
    """An MLP on the concatenation [f(x), c], c = embed(t) (+ E[label] if class-conditional).

    f(x) is x itself, or x with its random Fourier features (:class:`FourierFeatures`) when
    ``cfg.fourier_features`` > 0.
    """

    time_embed: SinusoidalTimeEmbed
    fourier: FourierFeatures | None
    """The input's Fourier features, or None to read x as it is."""
    class_embed: eqx.nn.Embedding | None
    """The learned class table (K + 1 rows, the last the null class); None if unconditional."""
    layers: tuple[eqx.nn.Linear, ...]
    activation: Callable[[Array], Array]

    def __init__(
        self,
        data_dim: int,
        cfg: MLPConfig,
        *,
        num_classes: int = 0,
        num_times: int = 1,
        key: PRNGKeyArray,
    ):
        self.time_embed = SinusoidalTimeEmbed(
            cfg.time_embed_dim, max_frequency=_time_frequency(cfg), num_times=num_times
        )
        time_dim = self.time_embed.out_dim
        key, self.class_embed = _class_embedding(num_classes, time_dim, key)
        if cfg.fourier_features:
            key, fourier_key = jax.random.split(key)
            self.fourier = FourierFeatures(
                cfg.fourier_features, data_dim, cfg.fourier_scale, key=fourier_key
            )
            in_dim = self.fourier.out_dim
        else:
            self.fourier, in_dim = None, data_dim
        sizes = [in_dim + time_dim] + [cfg.hidden_dim] * cfg.depth + [data_dim]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(n_in, n_out, key=k)
            for n_in, n_out, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )
        self.activation = ACTIVATIONS[cfg.activation]

    @property
    def num_classes(self) -> int:
        """K, the number of real classes (0 for an unconditional model)."""
        return 0 if self.class_embed is None else self.class_embed.num_embeddings - 1

    def __call__(
        self,
        t: Float[ArrayLike, ""],
        x: Float[Array, " dim"],
        label: Int[ArrayLike, ""] | None = None,
    ) -> Float[Array, " dim"]:
        """The network's output at one point.

        Args:
            t: time in [0, 1].
            x: the point, shape (dim,).
            label: int32 scalar class in {0, ..., K - 1} (K, or None, for the null class). Only
                for a class-conditional model; an unconditional one raises ``ValueError``.

        Returns:
            Shape (dim,).
        """
        features = x if self.fourier is None else self.fourier(x)
        h = jnp.concatenate([features, _conditioning(self, t, label)])
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
    """A residual MLP: x -> hidden, blocks conditioned on c, hidden -> output.

    c = embed(t), plus E[label] for a class-conditional model, enters every block.
    """

    time_embed: SinusoidalTimeEmbed
    class_embed: eqx.nn.Embedding | None
    """The learned class table (K + 1 rows, the last the null class); None if unconditional."""
    linear_in: eqx.nn.Linear
    blocks: tuple[ResidualBlock, ...]
    norm_out: eqx.nn.LayerNorm | None
    linear_out: eqx.nn.Linear

    def __init__(
        self,
        data_dim: int,
        cfg: ResNetConfig,
        *,
        num_classes: int = 0,
        num_times: int = 1,
        key: PRNGKeyArray,
    ):
        self.time_embed = SinusoidalTimeEmbed(
            cfg.time_embed_dim, max_frequency=_time_frequency(cfg), num_times=num_times
        )
        time_dim = self.time_embed.out_dim
        key, self.class_embed = _class_embedding(num_classes, time_dim, key)
        k_in, k_blocks, k_out = jax.random.split(key, 3)
        self.linear_in = eqx.nn.Linear(data_dim, cfg.hidden_dim, key=k_in)
        self.blocks = tuple(
            ResidualBlock(cfg.hidden_dim, time_dim, cfg, key=k)
            for k in jax.random.split(k_blocks, cfg.num_blocks)
        )
        self.norm_out = eqx.nn.LayerNorm(cfg.hidden_dim) if cfg.use_layer_norm else None
        self.linear_out = eqx.nn.Linear(cfg.hidden_dim, data_dim, key=k_out)

    @property
    def num_classes(self) -> int:
        """K, the number of real classes (0 for an unconditional model)."""
        return 0 if self.class_embed is None else self.class_embed.num_embeddings - 1

    def __call__(
        self,
        t: Float[ArrayLike, ""],
        x: Float[Array, " dim"],
        label: Int[ArrayLike, ""] | None = None,
    ) -> Float[Array, " dim"]:
        """The network's output at one point; arguments as for :meth:`MLP.__call__`."""
        temb = _conditioning(self, t, label)
        h = self.linear_in(x)
        for block in self.blocks:
            h = block(h, temb)
        if self.norm_out is not None:
            h = self.norm_out(h)
        return self.linear_out(h)


class ClassConditioned(eqx.Module):
    """A class-conditional model with its label fixed: ``model(t, x, label)`` as ``f(t, x)``.

    The label is stored as an int32 array (a leaf, not a static field), so jitted samplers
    taking this module compile once for every label. ``label=None`` gives the null class, the
    unconditional model.
    """

    model: eqx.Module
    label: Int[Array, ""] | None

    def __init__(self, model: eqx.Module, label: Int[ArrayLike, ""] | None):
        self.model = model
        self.label = None if label is None else jnp.asarray(label, jnp.int32)

    def __call__(self, t: Float[ArrayLike, ""], x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        return self.model(t, x, label=self.label)


@functools.singledispatch
def create_model(
    cfg, key: PRNGKeyArray, data_dim: int, num_classes: int = 0, num_times: int = 1
) -> eqx.Module:
    """Builds the network described by ``cfg`` for points of dimension ``data_dim``.

    Register a new config type with ``@create_model.register`` to add an architecture.

    Args:
        cfg: the model config.
        key: initialises the weights.
        data_dim: size of a point.
        num_classes: K > 0 builds a class-conditional model with a learned embedding of the K
            classes and of the null class K (see the module docstring); 0 (the default) an
            unconditional one, with no class embedding and the key used as for the plain
            architecture.
        num_times: how many times the network reads: 1, ``model(t, x)`` with a scalar t, or
            more, ``model(times, x)`` with a vector of them (a strategy's ``time_inputs``).
    """
    raise TypeError(f"no model registered for config type {type(cfg).__name__}")


@create_model.register
def _(
    cfg: MLPConfig, key: PRNGKeyArray, data_dim: int, num_classes: int = 0, num_times: int = 1
) -> MLP:
    return MLP(data_dim, cfg, num_classes=num_classes, num_times=num_times, key=key)


@create_model.register
def _(
    cfg: ResNetConfig, key: PRNGKeyArray, data_dim: int, num_classes: int = 0, num_times: int = 1
) -> ResNet:
    return ResNet(data_dim, cfg, num_classes=num_classes, num_times=num_times, key=key)
