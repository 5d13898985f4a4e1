"""Pairing a batch of data with a batch of source points: minibatch optimal transport, exact or
entropic.

Flow matching learns the velocity E[x - eps | z_t] of z_t = t x + (1 - t) eps over pairs
(x, eps). Drawn independently, the pairs' straight lines cross, the learned field averages
over the crossings and its trajectories curve, so few-step samplers miss. Pairing a batch of
n data points with n source points by optimal transport,

    pi = argmin over permutations pi of  sum_j |x_j - eps_pi(j)|^2,

keeps both marginals (every x_j and every eps_i is used once) and makes the lines nearly
disjoint, so the flow is straighter (Tong et al., "Improving and generalizing flow-based
generative models with minibatch optimal transport", 2024; Pooladian et al., "Multisample Flow
Matching", 2023).

The assignment is solved exactly by POT's network simplex (``ot.emd``; scipy's
``linear_sum_assignment``, a shortest augmenting path method, where the simplex stops short) on
the host, reached from compiled code through ``jax.pure_callback``, so it runs inside the
jitted, scanned training loop. On 2 CPU cores it adds about 7 ms to a training step at n = 256,
28 ms at 512 and 110 ms at 1024 (``scripts/benchmark_coupling.py``), 2-5 times less than
``linear_sum_assignment`` took on the same batches: choose the batch size with that in mind.

**The entropic plan** (the Schrodinger bridge's coupling) softens the assignment:

    P = argmin over plans P with marginals 1/n of  sum_ij P_ij |x_i - y_j|^2 - epsilon H(P),

with H the entropy. For the Brownian bridge of noise sigma between the pairs, the static
Schrodinger bridge between two distributions is exactly the entropic plan with epsilon =
2 sigma^2 (Leonard, "A survey of the Schrodinger problem", 2014; Tong et al., "Simulation-free
Schrodinger bridges via score and flow matching", 2024). :func:`entropic_plan` solves it with
ott-jax's Sinkhorn in the log domain, compiled with the rest of the step, and
:func:`pair_by_entropic_plan` draws each data point's partner from its row of P, so the data
batch is kept whole and the source's marginal holds to Sinkhorn's tolerance. As epsilon -> 0
the plan tends to the exact assignment's, and as epsilon -> infinity to independent pairs.
Sinkhorn's iterations grow like (cost scale) / epsilon: see :data:`SINKHORN_MAX_ITERATIONS`.
Outside the log domain Sinkhorn fails at small epsilon: POT's ``ot.sinkhorn``, which torchcfm's
SB-CFM calls at sigma = 0.1, stops at its first iteration on a batch of 512 of the eight
Gaussians against the moons (exp(-C / 0.02) underflows to 0 for the costs above ~15, and some
rows have no smaller cost) and returns a "plan" summing to 4e-4, about exp(-C / epsilon) /
n^2, from which torchcfm then draws its pairs.

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
    columns = [_assignment(c) for c in flat]
    return np.stack(columns).reshape(cost.shape[:-1]).astype(np.int32)


def _assignment(cost: np.ndarray) -> np.ndarray:
    """The optimal permutation of one square cost matrix: POT's network simplex, whose optimal
    plan between uniform weights is a vertex of the Birkhoff polytope (a permutation matrix,
    divided by n); scipy's shortest augmenting path if the simplex stops short."""
    import ot  # POT: imported on first use, it takes a second

    n = cost.shape[0]
    weights = np.full(n, 1.0 / n)
    plan, log = ot.emd(weights, weights, cost, numItermax=_SIMPLEX_ITERATIONS, log=True)
    columns = plan.argmax(axis=1)
    if log["result_code"] == 1 and np.array_equal(np.sort(columns), np.arange(n)):
        return columns
    return scipy.optimize.linear_sum_assignment(cost)[1]


_SIMPLEX_ITERATIONS = 10_000_000


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


SINKHORN_THRESHOLD = 1e-3
"""Sinkhorn stops when the plan's marginals are this close to uniform (ott-jax's error: the
1-norm of the marginal's deviation, relative to the weights' total of 1)."""
SINKHORN_MAX_ITERATIONS = 3000
"""Sinkhorn's iteration cap. At batch 512, 8 Gaussians of radius 5 against the moons, epsilon =
0.02 (sigma = 0.1) converges in about 1,150 iterations, 0.19 s of a training step on 2 CPU
cores; epsilon = 2 (sigma = 1) in tens, 16 ms. The exact assignment of the same batch takes
28 ms (``scripts/benchmark_coupling.py``)."""


def entropic_plan(
    x: Float[Array, "n d"],
    y: Float[Array, "m d"],
    epsilon: float,
    *,
    threshold: float = SINKHORN_THRESHOLD,
    max_iterations: int = SINKHORN_MAX_ITERATIONS,
) -> Float[Array, "n m"]:
    """The entropic optimal-transport plan between the uniform weights of two point sets.

    P = argmin <P, C> - epsilon H(P) over P >= 0 with P 1 = 1/n and P^T 1 = 1/m, with
    C_ij = |x_i - y_j|^2 and H(P) = -sum_ij P_ij (log P_ij - 1), by Sinkhorn's iterations in
    the log domain (ott-jax), which stay finite for any epsilon > 0.

    Args:
        x: n points; row i of P.
        y: m points; column j of P.
        epsilon: the entropic regularisation, in units of squared distance.
        threshold: Sinkhorn stops when the marginals' 1-norm error is below it.
        max_iterations: Sinkhorn's cap (its last iterate is returned if it does not converge).

    Returns:
        The plan P, shape (n, m), summing to 1.
    """
    from ott.geometry import pointcloud  # ott-jax: imported on first use, it takes seconds
    from ott.solvers import linear
    from ott.solvers.linear import acceleration

    if not epsilon > 0:
        raise ValueError(f"epsilon={epsilon!r} must be positive")
    x, y = jax.lax.stop_gradient(x), jax.lax.stop_gradient(y)
    geometry = pointcloud.PointCloud(x, y, epsilon=epsilon)  # squared Euclidean cost
    # Over-relaxation with its factor fitted to the observed rate after 100 iterations (ott's
    # adaptive momentum): at epsilon = 0.02 on 8 Gaussians against the moons it converges in
    # about 1,150 iterations where plain Sinkhorn had not after 5,000.
    momentum = acceleration.Momentum(start=100)
    out = linear.solve(
        geometry, threshold=threshold, max_iterations=max_iterations, momentum=momentum
    )
    return out.matrix


def pair_by_entropic_plan(
    key: PRNGKeyArray, x: Float[Array, "n d"], source: Float[Array, "n d"], epsilon: float
) -> Float[Array, "n d"]:
    """Each data point's partner drawn from its row of the entropic plan (the SB coupling).

    source'[j] = source[i_j] with i_j ~ P[j, :] / P[j, :].sum() independently, P =
    :func:`entropic_plan` (x, source, epsilon). Every x_j keeps one partner, so the data batch
    is unchanged, and the partners are distributed as the plan's second marginal: the source
    batch, to Sinkhorn's tolerance. Partners may repeat (a source point can be drawn twice).
    """
    plan = entropic_plan(x, source, epsilon)
    partner = jax.random.categorical(key, jnp.log(plan), axis=-1)
    return source[partner]


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
    "SINKHORN_MAX_ITERATIONS",
    "SINKHORN_THRESHOLD",
    "entropic_plan",
    "optimal_assignment",
    "pair_by_entropic_plan",
    "pair_by_optimal_transport",
    "pairing_cost",
    "squared_distances",
]
