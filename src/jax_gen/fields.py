"""The learned field over the data's 2-D plane: what ``plot-field`` draws.

For 2-D data (or 2-D data embedded in R^D, see :func:`jax_gen.data.to_plane`) the network's
field at time t, the velocity dz/dt every sampler integrates or the score grad log p_t(z), is
evaluated over a grid of the plane, beside the noisy marginal z_t = alpha(t) x + sigma(t) eps of
fresh data at the same t. A strategy without an instantaneous velocity (a consistency model)
draws the average velocity of its jump to the data instead (:func:`field_label`).
"""

from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from jax_gen.config import DatasetConfig
from jax_gen.data import from_plane, get_batch, to_plane
from jax_gen.strategies import Strategy

Field = Literal["velocity", "score"]


def plane(points: Any, dataset: DatasetConfig) -> Float[np.ndarray, "... 2"]:
    """Points of any shape (..., D) mapped to the data's 2-D plane, on the host."""
    points = np.asarray(points)
    flat = to_plane(points.reshape(-1, points.shape[-1]), dataset)
    return np.asarray(flat).reshape(*points.shape[:-1], 2)


def field_label(strategy: Strategy, field: Field) -> str:
    """What ``field`` is for ``strategy``: the field's name, except the ``velocity`` of a
    strategy without an instantaneous one (a consistency model), whose ``velocity`` is the
    average velocity of its jump to the data (``"average velocity to the data"``)."""
    if field == "velocity" and not strategy.has_velocity():
        return "average velocity to the data"
    return field


@eqx.filter_jit
def field_at(
    strategy: Strategy, model: Any, t: Float[Array, ""], points: Float[Array, "n d"], field: Field
) -> Float[Array, "n d"]:
    """``strategy.velocity`` (or ``.score``) of the network at time t, at every point."""
    fn = strategy.velocity if field == "velocity" else strategy.score
    return jax.vmap(lambda z: fn(model, t, z))(points)


@eqx.filter_jit
def noised(
    strategy: Strategy, t: Float[Array, ""], data: Float[Array, "n d"], keys: PRNGKeyArray
) -> Float[Array, "n d"]:
    """z_t = alpha(t) x + sigma(t) eps of each point, with its own key (``strategy.forward``)."""
    return jax.vmap(lambda x, key: strategy.forward(t, x, key)[0])(data, keys)


def field_views(
    strategy: Strategy,
    model: Any,
    dataset: DatasetConfig,
    times: Float[np.ndarray, " T"],
    grid: Float[np.ndarray, "G 2"],
    key: PRNGKeyArray,
    num_points: int,
    field: Field,
) -> tuple[Float[np.ndarray, "T G 2"], Float[np.ndarray, "T num_points 2"]]:
    """The field at the grid points and the noisy marginal, at each time, in the data's plane.

    Args:
        strategy, model: a trained strategy and its network.
        dataset: the dataset config (its plane embeds the 2-D grid in R^D).
        times: T times in [0, 1].
        grid: (G, 2) points of the plane.
        key: draws the marginal's data and noise (the same draws at every time).
        num_points: points of each marginal.
        field: ``"velocity"`` (``strategy.velocity``) or ``"score"`` (``strategy.score``).

    Returns:
        The field's in-plane component at the grid, (T, G, 2), and the marginals z_t = alpha(t)
        x + sigma(t) eps of fresh data, (T, num_points, 2).
    """
    data_key, noise_key = jax.random.split(key)
    data = get_batch(data_key, dataset, num_points)
    noise_keys = jax.random.split(noise_key, num_points)
    points = from_plane(grid, dataset)
    vectors, marginals = [], []
    for t in times:
        t = jnp.float32(t)
        vectors.append(plane(field_at(strategy, model, t, points, field), dataset))
        marginals.append(plane(noised(strategy, t, data, noise_keys), dataset))
    return np.stack(vectors), np.stack(marginals)
