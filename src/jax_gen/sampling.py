"""The sampling loop: apply a step function over a time grid with ``lax.scan``.

A loop knows nothing about networks, schedules or predictions; it only calls a step at each
time of the grid and keeps every intermediate state.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


def integrate(
    step, x0: Float[Array, "n d"], steps: tuple, key: PRNGKeyArray, memory=None
) -> tuple[Float[Array, "n d"], Float[Array, "steps+1 n d"]]:
    """Runs ``x_{i+1}, m_{i+1} = step(steps[i], x_i, m_i, key_i)``, fused into one ``lax.scan``.

    Args:
        step: the update from grid time t_i to t_{i+1} on a batch of points; ``m`` is whatever a
            multistep method carries from one step to the next (``None`` for one-step methods).
        x0: the starting points, shape (n, d).
        steps: a tuple of per-step arrays with a leading axis of length N: (t_i, t_{i+1} - t_i)
            and any other per-step constants.
        key: split into one independent key per step.
        memory: the initial ``m``.

    Returns:
        The final points (n, d) and the trajectory (N + 1, n, d) whose frame 0 is ``x0``.
    """
    keys = jax.random.split(key, steps[0].shape[0])

    def body(carry, inputs):
        x, memory = carry
        step_inputs, step_key = inputs
        x_next, memory = step(step_inputs, x, memory, step_key)
        return (x_next, memory), x_next

    (final, _), states = jax.lax.scan(body, (x0, memory), (steps, keys))
    return final, jnp.concatenate([x0[None], states])
