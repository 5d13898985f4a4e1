"""The built-in datasets: two moons, the swiss roll, the Gaussian mixture (2-D), the eight
Gaussians, the S-curve and the 1-D mixture."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jax_gen.config import (
    EightGaussiansConfig,
    GaussianMixture1DConfig,
    GaussianMixtureConfig,
    MoonConfig,
    SCurveConfig,
    SwissRollConfig,
)
from jax_gen.config.datasets import MIXTURE_1D_WEIGHTS
from jax_gen.data.registry import _DTYPE, Dataset, register

# ----------------------------------------------------------------------------------------------
# Two moons
# ----------------------------------------------------------------------------------------------

_MOON_CENTRE = (0.5, 0.25)


def _sample_moons(
    key: PRNGKeyArray, cfg: MoonConfig, batch_size: int
) -> tuple[Float[Array, "batch 2"], Int[Array, " batch"]]:
    """scikit-learn's two moons, centred at the origin, times ``cfg.scale``, and their labels.

    ``sklearn.datasets.make_moons(noise=sigma)`` puts points on the outer moon
    (cos t, sin t) and the inner moon (1 - cos t, 0.5 - sin t), t in [0, pi], and adds
    N(0, sigma^2) to each coordinate. The inner moon is the outer one rotated by 180 degrees
    about c = (0.5, 0.25): (1 - cos t, 0.5 - sin t) = 2 c - (cos t, sin t). So the mixture of the
    two (with equal weights) is symmetric about c and its mean is exactly c. Here

        x = scale * (s * ((cos t, sin t) - c) + sigma * eps),
        s = +-1 with probability 1/2 each,  t ~ U[0, pi],  eps ~ N(0, I).

    Each point picks its moon by an independent fair coin (s), so points are i.i.d. draws of the
    mixture; make_moons instead splits the batch exactly in half and spaces t evenly, which has
    the same per-point distribution but correlated points. The noise is symmetric, so flipping
    its sign with s changes nothing. The label is the moon, as in make_moons: 0 for the outer
    one (s = +1), 1 for the inner one (s = -1).
    """
    key_moon, key_angle, key_noise = jax.random.split(key, 3)
    sign = jax.random.rademacher(key_moon, (batch_size, 1), dtype=_DTYPE)
    t = jax.random.uniform(key_angle, (batch_size,), dtype=_DTYPE, maxval=math.pi)
    outer = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    centred = sign * (outer - jnp.asarray(_MOON_CENTRE, _DTYPE))
    noise = cfg.noise * jax.random.normal(key_noise, (batch_size, 2), dtype=_DTYPE)
    labels = (sign[:, 0] < 0).astype(jnp.int32)
    return (centred + noise) * jnp.asarray(cfg.scale, _DTYPE), labels


def _moon_frequencies(cfg: MoonConfig) -> np.ndarray:
    return np.array([0.5, 0.5])


# ----------------------------------------------------------------------------------------------
# Swiss roll
# ----------------------------------------------------------------------------------------------

_ROLL_MEAN = (2.0, 2.0 / (3.0 * math.pi))
_ROLL_MAX_RADIUS = 4.5 * math.pi


def _sample_swiss_roll(
    key: PRNGKeyArray, cfg: SwissRollConfig, batch_size: int
) -> Float[Array, "batch 2"]:
    """The 2-D swiss roll (columns 0 and 2 of scikit-learn's), centred, radius scaled to ``scale``.

    ``sklearn.datasets.make_swiss_roll(noise=sigma)`` draws s = 1.5 pi (1 + 2 u), u ~ U(0, 1),
    i.e. s uniform on [a, b] = [1.5 pi, 4.5 pi], and its columns 0 and 2 are
    (s cos s, s sin s) + N(0, sigma^2 I). The exact mean, from the antiderivatives
    int s cos s ds = s sin s + cos s and int s sin s ds = sin s - s cos s
    (sin a = -1, sin b = 1, cos a = cos b = 0, b - a = 3 pi):

        E[s cos s] = [s sin s + cos s]_a^b / (3 pi) = (4.5 pi + 1.5 pi) / (3 pi) = 2,
        E[s sin s] = [sin s - s cos s]_a^b / (3 pi) = (1 - (-1)) / (3 pi) = 2 / (3 pi).

    The point is then x = scale * ((s cos s, s sin s) + sigma eps - (2, 2 / (3 pi))) / (4.5 pi),
    4.5 pi being the largest radius of the noiseless spiral.
    """
    key_position, key_noise = jax.random.split(key)
    u = jax.random.uniform(key_position, (batch_size,), dtype=_DTYPE)
    s = 1.5 * math.pi * (1 + 2 * u)
    spiral = jnp.stack([s * jnp.cos(s), s * jnp.sin(s)], axis=1)
    noise = cfg.noise * jax.random.normal(key_noise, (batch_size, 2), dtype=_DTYPE)
    centred = spiral + noise - jnp.asarray(_ROLL_MEAN, _DTYPE)
    return centred * jnp.asarray(cfg.scale / _ROLL_MAX_RADIUS, _DTYPE)


# ----------------------------------------------------------------------------------------------
# Gaussian mixture
# ----------------------------------------------------------------------------------------------


# Component k is centred at scale * _MIXTURE_SIGNS[k]: k = 2 [s_1 < 0] + [s_2 < 0].
_MIXTURE_SIGNS = ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0))


def gaussian_mixture_centres(cfg: GaussianMixtureConfig) -> np.ndarray:
    """The centres of the mixture's components, row k that of label k, in the plane.

    Args:
        cfg: the mixture's config.

    Returns:
        A new float64 array of shape (4, 2): scale (1, 1), (1, -1), (-1, 1), (-1, -1), in 2-D
        plane coordinates (:func:`from_plane` embeds them when ``ambient_dim`` > 2).
    """
    return cfg.scale * np.array(_MIXTURE_SIGNS)


def _sample_gaussian_mixture(
    key: PRNGKeyArray, cfg: GaussianMixtureConfig, batch_size: int
) -> tuple[Float[Array, "batch 2"], Int[Array, " batch"]]:
    """Four equally likely Gaussians N((+-scale, +-scale), std^2 I), and the component drawn.

    The four centres are the four sign patterns of (scale, scale), so drawing the two signs as
    independent fair coins picks each component with probability 1/4:

        x = scale * (s_1, s_2) + std * eps,   s_i = +-1 each with probability 1/2,  eps ~ N(0, I),

    and the label is the component, k = 2 [s_1 < 0] + [s_2 < 0] (see
    :func:`gaussian_mixture_centres`).
    """
    key_component, key_noise = jax.random.split(key)
    signs = jax.random.rademacher(key_component, (batch_size, 2), dtype=_DTYPE)
    noise = jax.random.normal(key_noise, (batch_size, 2), dtype=_DTYPE)
    negative = (signs < 0).astype(jnp.int32)
    labels = 2 * negative[:, 0] + negative[:, 1]
    return cfg.scale * signs + cfg.std * noise, labels


def _gaussian_mixture_frequencies(cfg: GaussianMixtureConfig) -> np.ndarray:
    return np.full(len(_MIXTURE_SIGNS), 1.0 / len(_MIXTURE_SIGNS))


def _log_density_gaussian_mixture(
    cfg: GaussianMixtureConfig, x: Float[Array, "n 2"]
) -> Float[Array, " n"]:
    """log p(x) = log sum_j (1/4) N(x; scale (s_1, s_2)_j, std^2 I), over the four sign patterns.

    Evaluated as logsumexp_j(-|x - m_j|^2 / (2 std^2)) - log 4 - log(2 pi std^2).
    """
    signs = jnp.asarray(_MIXTURE_SIGNS, x.dtype)
    squared = jnp.sum((x[:, None, :] - cfg.scale * signs) ** 2, axis=-1)
    log_normaliser = math.log(4.0) + math.log(2 * math.pi * cfg.std**2)
    return jax.scipy.special.logsumexp(-squared / (2 * cfg.std**2), axis=1) - log_normaliser


# ----------------------------------------------------------------------------------------------
# Eight Gaussians on a circle
# ----------------------------------------------------------------------------------------------

_EIGHT = 8


def eight_gaussians_centres(cfg: EightGaussiansConfig) -> np.ndarray:
    """The centres of the eight Gaussians, row k that of label k, in the plane.

    Args:
        cfg: the eight Gaussians' config.

    Returns:
        A new float64 array of shape (8, 2): radius (cos(k pi / 4), sin(k pi / 4)), k = 0..7,
        in 2-D plane coordinates (:func:`from_plane` embeds them when ``ambient_dim`` > 2).
    """
    angles = np.arange(_EIGHT) * (2 * math.pi / _EIGHT)
    return cfg.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _sample_eight_gaussians(
    key: PRNGKeyArray, cfg: EightGaussiansConfig, batch_size: int
) -> tuple[Float[Array, "batch 2"], Int[Array, " batch"]]:
    """x = m_k + std * eps, k uniform on {0, ..., 7}, eps ~ N(0, I); the label is k.

    m_k = radius (cos(k pi / 4), sin(k pi / 4)) (:func:`eight_gaussians_centres`).
    """
    key_component, key_noise = jax.random.split(key)
    labels = jax.random.randint(key_component, (batch_size,), 0, _EIGHT, dtype=jnp.int32)
    noise = jax.random.normal(key_noise, (batch_size, 2), dtype=_DTYPE)
    centres = jnp.asarray(eight_gaussians_centres(cfg), _DTYPE)
    return centres[labels] + cfg.std * noise, labels


def _eight_gaussians_frequencies(cfg: EightGaussiansConfig) -> np.ndarray:
    return np.full(_EIGHT, 1.0 / _EIGHT)


def _log_density_eight_gaussians(
    cfg: EightGaussiansConfig, x: Float[Array, "n 2"]
) -> Float[Array, " n"]:
    """log p(x) = log sum_k (1/8) N(x; m_k, std^2 I), over the eight centres m_k.

    Evaluated as logsumexp_k(-|x - m_k|^2 / (2 std^2)) - log 8 - log(2 pi std^2).
    """
    centres = jnp.asarray(eight_gaussians_centres(cfg), x.dtype)
    squared = jnp.sum((x[:, None, :] - centres) ** 2, axis=-1)
    log_normaliser = math.log(_EIGHT) + math.log(2 * math.pi * cfg.std**2)
    return jax.scipy.special.logsumexp(-squared / (2 * cfg.std**2), axis=1) - log_normaliser


# ----------------------------------------------------------------------------------------------
# S-curve
# ----------------------------------------------------------------------------------------------


def _sample_s_curve(
    key: PRNGKeyArray, cfg: SCurveConfig, batch_size: int
) -> Float[Array, "batch 2"]:
    """Columns 0 and 2 of scikit-learn's S-curve, times ``cfg.scale``.

    ``sklearn.datasets.make_s_curve(noise=sigma)`` draws t = 3 pi (u - 1/2), u ~ U(0, 1), and
    its columns 0 and 2 are (sin t, sign(t) (cos t - 1)) + N(0, sigma^2 I). Here

        x = scale * ((sin t, sign(t) (cos t - 1)) + sigma * eps),   eps ~ N(0, I).

    The noiseless curve is two arcs of unit circles, centred at (0, -1) for t > 0 and (0, 1)
    for t < 0, meeting at the origin; its mean is 0 (both coordinates are odd in t).
    """
    key_position, key_noise = jax.random.split(key)
    u = jax.random.uniform(key_position, (batch_size,), dtype=_DTYPE)
    t = 3 * math.pi * (u - 0.5)
    curve = jnp.stack([jnp.sin(t), jnp.sign(t) * (jnp.cos(t) - 1)], axis=1)
    noise = cfg.noise * jax.random.normal(key_noise, (batch_size, 2), dtype=_DTYPE)
    return (curve + noise) * jnp.asarray(cfg.scale, _DTYPE)


# ----------------------------------------------------------------------------------------------
# Gaussian mixture on the line
# ----------------------------------------------------------------------------------------------


def mixture_1d_components(cfg: GaussianMixture1DConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """The 1-D mixture's weights, centres and common standard deviation, component k label k.

    Args:
        cfg: the mixture's config.

    Returns:
        (weights, centres, std): float64 arrays of shape (3,), weights (0.3, 0.2, 0.5) and
        centres scale (-1, 0, 1), and ``cfg.std``.
    """
    return np.array(MIXTURE_1D_WEIGHTS), cfg.scale * np.array([-1.0, 0.0, 1.0]), cfg.std


def _sample_gaussian_mixture_1d(
    key: PRNGKeyArray, cfg: GaussianMixture1DConfig, batch_size: int
) -> tuple[Float[Array, "batch 1"], Int[Array, " batch"]]:
    """x = m_k + std * eps with k drawn with probabilities w_k, eps ~ N(0, 1); the label is k."""
    weights, centres, std = mixture_1d_components(cfg)
    key_component, key_noise = jax.random.split(key)
    labels = jax.random.categorical(
        key_component, jnp.log(jnp.asarray(weights, _DTYPE)), shape=(batch_size,)
    ).astype(jnp.int32)
    noise = jax.random.normal(key_noise, (batch_size, 1), dtype=_DTYPE)
    return jnp.asarray(centres, _DTYPE)[labels][:, None] + std * noise, labels


def _log_density_gaussian_mixture_1d(
    cfg: GaussianMixture1DConfig, x: Float[Array, "n 1"]
) -> Float[Array, " n"]:
    """log p(x) = log sum_k w_k N(x; m_k, std^2), by logsumexp over the components."""
    weights, centres, std = mixture_1d_components(cfg)
    squared = (x - jnp.asarray(centres, x.dtype)) ** 2  # (n, 3)
    log_terms = jnp.log(jnp.asarray(weights, x.dtype)) - squared / (2 * std**2)
    return jax.scipy.special.logsumexp(log_terms, axis=1) - 0.5 * math.log(2 * math.pi * std**2)


register(MoonConfig, Dataset(labeled=_sample_moons, class_frequencies=_moon_frequencies))
register(SwissRollConfig, Dataset(sample=_sample_swiss_roll))
register(
    GaussianMixtureConfig,
    Dataset(
        labeled=_sample_gaussian_mixture,
        class_frequencies=_gaussian_mixture_frequencies,
        log_density=_log_density_gaussian_mixture,
    ),
)
register(
    EightGaussiansConfig,
    Dataset(
        labeled=_sample_eight_gaussians,
        class_frequencies=_eight_gaussians_frequencies,
        log_density=_log_density_eight_gaussians,
    ),
)
register(SCurveConfig, Dataset(sample=_sample_s_curve))
register(
    GaussianMixture1DConfig,
    Dataset(
        labeled=_sample_gaussian_mixture_1d,
        class_frequencies=lambda cfg: mixture_1d_components(cfg)[0],
        native_dim=lambda cfg: 1,
        log_density=_log_density_gaussian_mixture_1d,
    ),
)
