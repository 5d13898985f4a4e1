"""The sampling loop: a solver's step over a time grid, fused into one ``lax.scan``.

The loop owns everything around the solver: the step count (resolved once, here), the grid
and its move onto a discrete-time strategy's training levels, the keys, guidance and the
counting of network evaluations. The solver only steps.
"""

from collections.abc import Iterator
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from jax_gen.config import SamplerConfig
from jax_gen.sampling.grids import snap_to_levels, time_grid
from jax_gen.sampling.guidance import check_labels, guided_calls
from jax_gen.sampling.registry import grid_kind, samplers, solver_for
from jax_gen.sampling.solver import (
    AbstractAdaptiveSolver,
    AbstractFixedStepSolver,
    AbstractSolver,
    Interval,
    Network,
    point_keys,
)
from jax_gen.strategies.base import Model, Strategy


class SampleResult(NamedTuple):
    samples: Float[Array, "n d"]
    trajectory: Float[Array, "steps+1 n d"] | None
    """Frame i the points at the i-th grid time, frame 0 the source (None unless asked for)."""
    nfe: Int[Array, ""]
    """Network evaluations per point."""


BATCH_SIZE = 16_384
"""Points sampled per compiled call unless told otherwise: more points are sampled in batches of
at most this size, so memory stays bounded however many are drawn. On two CPU cores the default
MLP's throughput is the same (0.42-0.51 M evaluations/s) for batches of 2,048 to 65,536."""


def sample(
    strategy: Strategy,
    model: Model,
    key: PRNGKeyArray,
    num_samples: int,
    data_dim: int,
    cfg: SamplerConfig | None = None,
    labels: Int[ArrayLike, " n"] | None = None,
    *,
    keep_trajectory: bool = False,
    batch_size: int | None = None,
) -> SampleResult:
    """Draws ``num_samples`` points with the sampler ``cfg`` describes.

    With ``labels``, point i is drawn from class ``labels[i]`` of a class-conditional model,
    guided with ``cfg.guidance_scale`` (:class:`~jax_gen.sampling.guidance.Guided`: every
    network call of the sampler is the guided prediction); without, the model is called as
    ``model(t, x)``.

    Every random draw of point i (its source point, the noise of each step) comes from its own
    key, ``fold_in(k, i)`` of the draw's key k (:func:`source_points`,
    :meth:`~jax_gen.sampling.Network.noise`). So the first m points of a draw of n > m are the
    draw of m, and sampling in batches gives the points of one batch (up to the order of float
    operations), for every sampler but two whose steps read the whole batch: ``pc`` (its
    Langevin step size averages norms over the batch) and ``adaptive`` (its error control is
    the batch's).

    Args:
        strategy: a trained strategy's definition (DDPM, flow matching, score matching, ...).
        model: the network, ``model(t, x)`` on one point.
        key: the key of the source draw and of every noise draw.
        num_samples, data_dim: shape of the output.
        cfg: which sampler (:data:`~jax_gen.sampling.SOLVERS`), its number of steps (default:
            the strategy's ``num_transport_steps``) and its options.
        labels: int class labels, shape (num_samples,), or None.
        keep_trajectory: also return every grid time's points (memory: steps + 1 copies of
            the samples); else only the final points are kept.
        batch_size: points per compiled call, at most (default :data:`BATCH_SIZE`); more
            points are sampled in equal batches (:func:`sample_batches`) and concatenated.

    Returns:
        The samples, the trajectory (num_steps + 1 frames, frame 0 the source; None without
        ``keep_trajectory``) and the NFE (network evaluations per point, both calls of a guided
        prediction counted; the largest batch's for the adaptive solver).

    Raises:
        ValueError: an invalid option, a sampler that needs the score (or the velocity) of a
            strategy without one, or a sampler that stays on the training levels (``default``)
            asked for more steps than the levels a discrete-time strategy was trained at, or
            for a step count the strategy's own step refuses (``check_reverse_steps``).
    """
    batches = [
        result
        for _, result in sample_batches(
            strategy,
            model,
            key,
            num_samples,
            data_dim,
            cfg,
            labels,
            keep_trajectory=keep_trajectory,
            batch_size=batch_size,
        )
    ]
    if len(batches) == 1:
        return batches[0]
    trajectory = None
    if keep_trajectory:
        trajectory = jnp.concatenate([b.trajectory for b in batches], axis=1)
    return SampleResult(
        jnp.concatenate([b.samples for b in batches]),
        trajectory,
        jnp.max(jnp.stack([b.nfe for b in batches])),
    )


def sample_batches(
    strategy: Strategy,
    model: Model,
    key: PRNGKeyArray,
    num_samples: int,
    data_dim: int,
    cfg: SamplerConfig | None = None,
    labels: Int[ArrayLike, " n"] | None = None,
    *,
    keep_trajectory: bool = False,
    batch_size: int | None = None,
) -> Iterator[tuple[int, SampleResult]]:
    """:func:`sample`, one batch at a time: yields ``(start, result)`` for the points
    ``start .. start + len(result.samples) - 1`` of the draw, in order.

    The n points are split into the fewest batches of at most ``batch_size``, all of one size
    (n = 100,000 at 16,384: 7 batches of 14,286, the last one padded with 2 points that are
    then dropped), so every batch is one call of the same compiled function and almost no work
    is wasted; nothing of a batch is kept once the caller lets it go: a
    caller that streams the points to disk holds one batch at a time. The options are checked
    here, before the first batch is drawn.

    Args and raises: as :func:`sample`.
    """
    cfg = SamplerConfig() if cfg is None else cfg
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"{batch_size=} must be positive")
    if num_samples < 1:
        raise ValueError(f"{num_samples=} must be positive")
    solver, num_steps, kind, levels = _plan(strategy, cfg)
    labels = check_labels(labels, num_samples, cfg.guidance_scale)
    return _batches(
        strategy,
        model,
        solver,
        key,
        num_samples,
        data_dim,
        num_steps,
        kind,
        levels,
        labels,
        cfg.guidance_scale,
        guided_calls(cfg, labels is not None),
        keep_trajectory,
        _equal_batches(num_samples, batch_size or BATCH_SIZE),
    )


def frame_times(strategy: Strategy, cfg: SamplerConfig | None = None) -> Float[Array, " steps+1"]:
    """The time of each frame of the trajectory :func:`sample` keeps with the sampler ``cfg``.

    Frame i holds the points at the i-th time of the sampler's grid: uniform in t, uniform in
    log SNR, or moved onto a discrete-time strategy's training levels, as :func:`sample`
    decides; the adaptive solver saves at i / N.

    Args:
        strategy: the strategy sampled.
        cfg: the sampler, as given to :func:`sample`.

    Returns:
        The N + 1 times, from 0 to 1, float32.

    Raises:
        ValueError: as :func:`sample`, for the sampler's options.
    """
    solver, num_steps, kind, levels = _plan(strategy, SamplerConfig() if cfg is None else cfg)
    if isinstance(solver, AbstractAdaptiveSolver):
        return jnp.arange(num_steps + 1, dtype=jnp.float32) / jnp.float32(num_steps)
    return _grid(strategy, num_steps, kind, levels)[0]


def _plan(strategy: Strategy, cfg: SamplerConfig) -> tuple[AbstractSolver, int, str, int | None]:
    """Checks the sampler against the strategy; returns its solver, its number of steps, the
    kind of its grid and the training levels its grid moves onto (None: it stays put)."""
    cfg.validate()
    solver = solver_for(cfg)
    if solver.needs_score and not strategy.has_score():
        raise ValueError(
            f"sampler {cfg.sampler} needs the score, which a flow with coupled pairs, path noise "
            f"or a source other than N(0, I) does not give; use an ODE sampler "
            f"({', '.join(samplers(needs_score=False))})"
        )
    if not solver.only_strategy_step and not strategy.has_velocity():
        raise ValueError(
            f"sampler {cfg.sampler} integrates the velocity, which a "
            f"{type(strategy).__name__} does not give; use the default sampler"
        )
    num_steps = cfg.num_sampling_steps or strategy.num_transport_steps
    if solver.only_strategy_step:
        strategy.check_reverse_steps(num_steps)
    levels = strategy.training_levels()
    if not solver.leaves_levels and levels is not None and num_steps > levels:
        raise ValueError(
            f"the {cfg.sampler} sampler steps from one training level to the next, so it takes "
            f"at most the {levels} levels the network was trained at, not {num_steps}; use "
            f"another sampler (ddim, heun, dpm-solver, ...) for more steps"
        )
    # A solver that stays on the training levels always runs on them; the others are moved
    # onto them unless told not to, and only when they fit.
    snap = (
        (cfg.snap_to_training_times or not solver.leaves_levels)
        and levels is not None
        and num_steps <= levels
    )
    return solver, num_steps, grid_kind(cfg), levels if snap else None


def _equal_batches(num_samples: int, batch_size: int) -> int:
    """The size of the fewest equal batches of at most ``batch_size`` that hold every point."""
    count = -(-num_samples // batch_size)
    return -(-num_samples // count)


def _batches(
    strategy,
    model,
    solver,
    key,
    num_samples,
    data_dim,
    num_steps,
    kind,
    levels,
    labels,
    guidance_scale,
    calls,
    keep_trajectory,
    size,
) -> Iterator[tuple[int, SampleResult]]:
    for start in range(0, num_samples, size):
        index = jnp.arange(start, start + size)
        batch_labels = None
        if labels is not None:  # the padding repeats the last label: any class would do
            batch_labels = labels[jnp.minimum(index, num_samples - 1)]
        result = _sample(
            strategy,
            model,
            solver,
            key,
            index,
            data_dim,
            num_steps,
            kind,
            levels,
            batch_labels,
            guidance_scale,
            keep_trajectory,
        )
        count = min(size, num_samples - start)
        if count < size:
            result = SampleResult(
                result.samples[:count],
                None if result.trajectory is None else result.trajectory[:, :count],
                result.nfe,
            )
        yield start, result._replace(nfe=result.nfe * calls)


def source_points(
    strategy: Strategy, key: PRNGKeyArray, index: Int[Array, " n"], data_dim: int
) -> Float[Array, "n d"]:
    """The source points numbered ``index`` of a draw with ``key``: point i is the strategy's
    one-point source draw with ``fold_in(key, i)``."""
    return jax.vmap(lambda k: strategy.sample_from_source_distribution(k, 1, data_dim)[0])(
        point_keys(key, index)
    )


@eqx.filter_jit
def _sample(
    strategy: Strategy,
    model: Model,
    solver: AbstractSolver,
    key,
    index,
    data_dim,
    num_steps,
    kind,
    levels,
    labels,
    guidance_scale,
    keep_trajectory,
) -> SampleResult:
    source_key, path_key = jax.random.split(key)
    z0 = source_points(strategy, source_key, index, data_dim)
    network = Network(strategy, model, labels, guidance_scale, index)
    if isinstance(solver, AbstractAdaptiveSolver):
        frames, nfe = solver.solve(network, z0, num_steps, keep_trajectory)
        return SampleResult(frames[-1], frames if keep_trajectory else None, nfe)
    grid, dt = _grid(strategy, num_steps, kind, levels)
    intervals = Interval(grid[:-1], grid[1:], dt, jnp.arange(num_steps))
    samples, trajectory = integrate(
        solver, network, z0, grid, intervals, path_key, keep_trajectory=keep_trajectory
    )
    return SampleResult(
        samples, trajectory, jnp.asarray(num_steps * solver.evals_per_step(strategy))
    )


def _grid(strategy: Strategy, num_steps: int, kind: str, levels: int | None):
    """The grid (N + 1 times) and the N step lengths: exactly 1 / N on the plain uniform grid
    (all steps equal, unlike differences of the rounded grid times), else the differences of
    the ``kind`` grid (:func:`time_grid`), moved onto the ``levels`` if given
    (:func:`snap_to_levels`)."""
    if kind == "uniform" and levels is None:
        return time_grid(None, num_steps), jnp.full(num_steps, 1.0 / num_steps)
    grid = time_grid(strategy.schedule, num_steps, kind)
    if levels is not None:
        grid = snap_to_levels(grid, levels)
    return grid, jnp.diff(grid)


def integrate(
    solver: AbstractFixedStepSolver,
    network: Network,
    z0: Float[Array, "n d"],
    grid: Float[Array, " steps+1"],
    intervals: Interval,
    key: PRNGKeyArray,
    *,
    keep_trajectory: bool = True,
) -> tuple[Float[Array, "n d"], Float[Array, "steps+1 n d"] | None]:
    """Runs ``z_{i+1}, c_{i+1} = solver.step(network, interval_i, z_i, key_i, c_i)`` in one scan.

    Args:
        solver: the fixed-step solver; ``c_0 = solver.init(network, grid, z0)``.
        network: the model as the solver reads it.
        z0: the starting points, shape (n, d).
        grid: the N + 1 grid times.
        intervals: the N steps, each field with a leading axis of length N.
        key: split into one independent key per step.
        keep_trajectory: return every step's points too (else the scan keeps only the last).

    Returns:
        The final points (n, d) and the trajectory (N + 1, n, d) whose frame 0 is ``z0`` (None
        without ``keep_trajectory``).
    """
    keys = jax.random.split(key, intervals.t.shape[0])

    def body(state, inputs):
        z, carry = state
        interval, step_key = inputs
        z_next, carry = solver.step(network, interval, z, step_key, carry)
        return (z_next, carry), (z_next if keep_trajectory else None)

    init = (z0, solver.init(network, grid, z0))
    (final, _), states = jax.lax.scan(body, init, (intervals, keys))
    if not keep_trajectory:
        return final, None
    return final, jnp.concatenate([z0[None], states])
