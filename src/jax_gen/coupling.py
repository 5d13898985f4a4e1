"""Pairing a batch of data with a batch of source points: minibatch optimal transport.

Flow matching learns the velocity E[x - eps | z_t] of z_t = t x + (1 - t) eps over pairs
(x, eps). Drawn independently, the pairs' straight lines cross, the learned field averages
over the crossings and its trajectories curve, so few-step samplers miss. Pairing a batch of
n data points with n source points by optimal transport,

    pi = argmin over permutations pi of  sum_j |x_j - eps_pi(j)|^2,

keeps both marginals (every x_j and every eps_i is used once) and makes the lines nearly
disjoint, so the flow is straighter (Tong et al., "Improving and generalizing flow-based
generative models with minibatch optimal transport", 2024; Pooladian et al., "Multisample Flow
Matching", 2023).

The assignment is solved exactly by scipy's ``linear_sum_assignment`` (a shortest augmenting
path method, O(n^3)) on the host, reached from compiled code through ``jax.pure_callback``, so
it runs inside the jitted, scanned training loop. On 2 CPU cores it adds 8-12 ms to a training
step at n = 256 and 0.3-0.5 s at n = 1024 (``scripts/benchmark_devices.py``, moons): choose the
batch size with that in mind. An entropic (Sinkhorn) plan was measured slower than the exact
assignment at these sizes (ott-jax 0.6, epsilon 0.01: 330 ms at n = 256, not converged after
2000 iterations) and would need rounding to a permutation.

With several devices the batch is gathered onto one device for the assignment (XLA warns of an
"involuntary full rematerialization"): the pairing is that of the whole batch, as on one device.

**A table of pairs** (:class:`Pairs`) is the other way to couple: the pairs are made once, before
training, and each step draws a batch of whole rows (:func:`draw_pairs`). Reflow (Liu et al.,
"Flow Straight and Fast", 2022) makes such a table from a trained flow, each source point paired
with the end point of the flow's ODE started from it (:func:`jax_gen.engine.reflow_pairs`).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from jaxtyping import Array, Float, Int, PRNGKeyArray


def squared_distances(a: Float[Array, "n d"], b: Float[Array, "m d"]) -> Float[Array, "n m"]:
    """C[i, j] = |a_i - b_j|^2."""
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def _solve_assignment(cost: np.ndarray) -> np.ndarray:
    # Called with a batch of matrices when vmapped (vmap_method="expand_dims").
    cost = np.asarray(cost, dtype=np.float64)
    flat = cost.reshape(-1, *cost.shape[-2:])
    columns = [scipy.optimize.linear_sum_assignment(c)[1] for c in flat]
    return np.stack(columns).reshape(cost.shape[:-1]).astype(np.int32)


def optimal_assignment(cost: Float[Array, "n n"]) -> Int[Array, " n"]:
    """The permutation p minimising sum_i cost[i, p[i]], exactly.

    Args:
        cost: a square matrix; row i may be matched to column j at cost[i, j].

    Returns:
        p with p[i] the column matched to row i; a permutation of 0..n-1.

    Raises:
        ValueError: ``cost`` is not a square matrix.
    """
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"cost must be a square matrix, got shape {cost.shape}")
    result = jax.ShapeDtypeStruct(cost.shape[:1], jnp.int32)
    return jax.pure_callback(
        _solve_assignment, result, jax.lax.stop_gradient(cost), vmap_method="expand_dims"
    )


def pair_by_optimal_transport(
    x: Float[Array, "n d"], source: Float[Array, "n d"]
) -> Float[Array, "n d"]:
    """The source points reordered so that source'[j] is x[j]'s partner under optimal transport.

    source' = source[p] with p the permutation minimising sum_j |x_j - source_p(j)|^2, so the
    mean squared length of the pairs, :func:`pairing_cost` (x, source'), is the smallest any
    reordering of ``source`` achieves.
    """
    return source[optimal_assignment(squared_distances(x, source))]


def pairing_cost(x: Float[Array, "n d"], y: Float[Array, "n d"]) -> Float[Array, ""]:
    """The mean squared distance between paired points, (1/n) sum_j |x_j - y_j|^2."""
    return jnp.mean(jnp.sum((x - y) ** 2, axis=-1))


class Pairs(NamedTuple):
    """A table of M training pairs: row i is the data point ``x[i]`` and its source partner
    ``eps[i]``. Training on it replaces the dataset: x's marginal is the table's, and so is
    eps's."""

    x: Float[Array, "m d"]
    eps: Float[Array, "m d"]


def draw_pairs(
    key: PRNGKeyArray, pairs: Pairs, n: int
) -> tuple[Float[Array, "n d"], Float[Array, "n d"]]:
    """n rows of the table, uniformly and independently (with replacement): (x, eps).

    Whole rows are drawn, so each x keeps its own partner; the batch's x and eps are each
    distributed as the table's columns.
    """
    rows = jax.random.randint(key, (n,), 0, pairs.x.shape[0])
    return pairs.x[rows], pairs.eps[rows]


__all__ = [
    "Pairs",
    "draw_pairs",
    "optimal_assignment",
    "pair_by_optimal_transport",
    "pairing_cost",
    "squared_distances",
]
