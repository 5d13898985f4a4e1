"""The sampling loop: apply a step function over a time grid with ``lax.scan``.

A sampler knows nothing about networks, schedules or predictions; it only calls a step
``x_next = step(t, x, key)`` at each time of the grid and keeps every intermediate state.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

Step = Callable[[Float[Array, ""], Float[Array, "n d"], PRNGKeyArray], Float[Array, "n d"]]


def integrate(
    step: Step,
    x0: Float[Array, "n d"],
    times: Float[Array, " steps"],
    key: PRNGKeyArray,
) -> tuple[Float[Array, "n d"], Float[Array, "steps+1 n d"]]:
    """Runs ``x_{i+1} = step(times[i], x_i, key_i)`` for every time, fused into one ``lax.scan``.

    Args:
        step: the update from time ``times[i]`` to the next grid time, on a batch of points.
        x0: the starting points, shape (n, d).
        times: the times at which the steps start, shape (steps,).
        key: split into one independent key per step.

    Returns:
        The final points (n, d) and the trajectory (steps + 1, n, d) whose frame 0 is ``x0``.
    """
    keys = jax.random.split(key, times.shape[0])

    def body(x, inputs):
        t, step_key = inputs
        x_next = step(t, x, step_key)
        return x_next, x_next

    final, states = jax.lax.scan(body, x0, (times, keys))
    return final, jnp.concatenate([x0[None], states])
