"""Distances between point clouds, for measuring sample quality against fresh data.

A distance alone says little: two independent draws of the same data are not at distance 0.
Report every distance beside its **noise floor**, the same distance between two fresh draws of
the data of the same size.
"""

import functools

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
