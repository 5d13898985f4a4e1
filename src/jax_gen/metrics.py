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


def distance_and_floor(
    samples: Float[Array, "n d"],
    draw_data: Callable[[PRNGKeyArray, int], Float[Array, "n d"]],
    key: PRNGKeyArray,
    repeats: int = 5,
) -> tuple[float, float]:
    """Sliced W2 from samples to fresh data, and its noise floor, each averaged over draws.

    The floor is the same distance between two independent fresh draws of the data of the same
    size. Both are averaged over ``repeats`` independent draws (and projection sets), because on
    data with far-apart modes a single draw's mode counts dominate either number.

    Args:
        samples: generated points (n, d).
        draw_data: ``draw_data(key, n)`` returns n fresh data points.
        key: the key of every fresh draw and projection.
        repeats: number of independent draws to average over.

    Returns:
        (distance, floor) as Python floats.
    """
    n = samples.shape[0]
    distances, floors = [], []
    for repeat_key in jax.random.split(key, repeats):
        fresh_key, other_key, proj_key = jax.random.split(repeat_key, 3)
        fresh = draw_data(fresh_key, n)
        distances.append(sliced_wasserstein(samples, fresh, proj_key))
        floors.append(sliced_wasserstein(draw_data(other_key, n), fresh, proj_key))
    return float(jnp.mean(jnp.stack(distances))), float(jnp.mean(jnp.stack(floors)))
