"""Distances between point clouds, for measuring sample quality against fresh data.

A distance alone says little: two independent draws of the same data are not at distance 0.
Report every distance beside its **noise floor**, the same distance between two fresh draws of
the data of the same size.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


@functools.partial(jax.jit, static_argnames="num_projections")
def sliced_wasserstein(
    a: Float[Array, "n d"], b: Float[Array, "n d"], key: PRNGKeyArray, num_projections: int = 256
) -> Float[Array, ""]:
    """Sliced Wasserstein-2 distance between two equally sized point clouds.

        SW2(a, b)^2 = d * E_theta[ W2^2(theta . a, theta . b) ],  theta uniform on the sphere,

    where the 1-D W2 between projections is the root mean square difference of their sorted
    values. The factor d makes a pure shift by a vector s give exactly |s|, so the number reads
    in the data's own units.

    Args:
        a, b: point clouds of the same shape (n, d).
        key: draws the projection directions (fixed key, fixed directions).
        num_projections: number of random directions.
    """
    directions = jax.random.normal(key, (num_projections, a.shape[1]))
    directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    proj_a = jnp.sort(a @ directions.T, axis=0)
    proj_b = jnp.sort(b @ directions.T, axis=0)
    return jnp.sqrt(a.shape[1] * jnp.mean((proj_a - proj_b) ** 2))


def _pairwise_distances(a: Float[Array, "n d"], b: Float[Array, "m d"]) -> Float[Array, "n m"]:
    squared = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2 * a @ b.T
    return jnp.sqrt(jnp.maximum(squared, 0.0))


@jax.jit
def energy_distance(
    a: Float[Array, "n d"], b: Float[Array, "m d"], key: PRNGKeyArray | None = None
) -> Float[Array, ""]:
    """Energy distance (Szekely & Rizzo), the square root of

        E^2(a, b) = 2 E|x - y| - E|x - x'| - E|y - y'|,   x, x' ~ a,  y, y' ~ b,

    with every expectation the mean over all pairs (V-statistic), so identical sets give exactly
    0. E^2 >= 0, and it is 0 only when the distributions agree. ``key`` is unused (the metrics
    share one signature).
    """
    e2 = (
        2 * jnp.mean(_pairwise_distances(a, b))
        - jnp.mean(_pairwise_distances(a, a))
        - jnp.mean(_pairwise_distances(b, b))
    )
    return jnp.sqrt(jnp.maximum(e2, 0.0))


MMD_BANDWIDTHS = (0.1, 0.3, 1.0, 3.0)
"""Bandwidths h of the RBF kernels summed in :func:`mmd`, in the data's units (scale ~3)."""


@jax.jit
def mmd(
    a: Float[Array, "n d"], b: Float[Array, "m d"], key: PRNGKeyArray | None = None
) -> Float[Array, ""]:
    """Maximum mean discrepancy with the kernel k = sum_h exp(-|x - y|^2 / (2 h^2)).

        MMD^2(a, b) = E k(x, x') + E k(y, y') - 2 E k(x, y)   (V-statistic, >= 0),

    summed over the bandwidths h of ``MMD_BANDWIDTHS`` so that both fine structure and the
    placement of far-apart modes count. Returns MMD (the square root). ``key`` is unused.
    """

    def kernel_mean(x, y):
        squared = _pairwise_distances(x, y) ** 2
        return sum(jnp.mean(jnp.exp(-squared / (2 * h**2))) for h in MMD_BANDWIDTHS)

    mmd2 = kernel_mean(a, a) + kernel_mean(b, b) - 2 * kernel_mean(a, b)
    return jnp.sqrt(jnp.maximum(mmd2, 0.0))


def distance_and_floor(
    samples: Float[Array, "n d"],
    draw_data: Callable[[PRNGKeyArray, int], Float[Array, "n d"]],
    key: PRNGKeyArray,
    repeats: int = 5,
    metric: Callable[..., Float[Array, ""]] = sliced_wasserstein,
) -> tuple[float, float]:
    """A distance from samples to fresh data, and its noise floor, each averaged over draws.

    The floor is the same distance between two independent fresh draws of the data of the same
    size. Both are averaged over ``repeats`` independent draws (and projection sets), because on
    data with far-apart modes a single draw's mode counts dominate either number.

    Args:
        samples: generated points (n, d).
        draw_data: ``draw_data(key, n)`` returns n fresh data points.
        key: the key of every fresh draw and projection.
        repeats: number of independent draws to average over.
        metric: ``metric(a, b, key)``: :func:`sliced_wasserstein` (default),
            :func:`energy_distance` or :func:`mmd`.

    Returns:
        (distance, floor) as Python floats.
    """
    n = samples.shape[0]
    distances, floors = [], []
    for repeat_key in jax.random.split(key, repeats):
        fresh_key, other_key, proj_key = jax.random.split(repeat_key, 3)
        fresh = draw_data(fresh_key, n)
        distances.append(metric(samples, fresh, proj_key))
        floors.append(metric(draw_data(other_key, n), fresh, proj_key))
    return float(jnp.mean(jnp.stack(distances))), float(jnp.mean(jnp.stack(floors)))
