"""Time grids of the fixed-step solvers: uniform in t, uniform in log SNR, and on training levels.

A grid is N + 1 increasing float32 times from exactly 0 (the source) to exactly 1 (the data).
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jax_gen.parameterization import T_CLIP, path_coefficients
from jax_gen.schedules import Schedule

BISECTION_STEPS = 40
"""Halvings of [T_CLIP, 1 - T_CLIP] that invert lambda(t): below float32's resolution of t."""


def log_snr(schedule: Schedule, t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
    """lambda(t) = log(alpha(t) / sigma(t)) on the clipped path, increasing in t."""
    c = path_coefficients(schedule, t)
    return jnp.log(c.alpha) - jnp.log(c.sigma)


def time_grid(
    schedule: Schedule | None, num_steps: int, kind: str = "uniform"
) -> Float[Array, " steps+1"]:
    """The grid 0 = t_0 < t_1 < ... < t_N = 1 of a fixed-step sampler, in float32.

    - ``uniform``: t_i = i / N.
    - ``logsnr``: lambda(t_i) uniform between lambda(T_CLIP) and lambda(1 - T_CLIP), the ends
      of the clipped path (:func:`log_snr`), as DPM-Solver spaces its steps; t_0 and t_N are
      then set to 0 and 1 (the path is read clipped there anyway). lambda is inverted by
      bisection, which needs only its monotonicity, so any schedule works. On DDPM's default
      path lambda runs from -5.0 to 4.6 and reaches only -1.2 at t = 1/2.

    A DDPM (or score-matching) network is trained at the times k / T of its chain only and is
    unreliable between them, so for those strategies the sampler moves this grid onto them
    (:func:`snap_to_levels`, whenever N <= T). Unsnapped, on two moons DPM-Solver at N = 24 was
    1.7 times the noise floor and at N = 25 (which divides T = 100) 1.04.

    Args:
        schedule: the path (unused by ``uniform``).
        num_steps: the number N of steps.
        kind: ``uniform`` or ``logsnr``.

    Returns:
        The N + 1 grid times, increasing, from exactly 0 to exactly 1.
    """
    if kind == "uniform":
        return jnp.arange(num_steps + 1, dtype=jnp.float32) / jnp.float32(num_steps)
    if kind != "logsnr":
        raise ValueError(f"{kind=} must be uniform or logsnr")
    ends = jnp.array([T_CLIP, 1 - T_CLIP], dtype=jnp.float32)
    lam_start, lam_end = log_snr(schedule, ends)
    fractions = jnp.arange(1, num_steps, dtype=jnp.float32) / jnp.float32(num_steps)
    targets = lam_start + fractions * (lam_end - lam_start)

    def halve(_, bounds):
        low, high = bounds
        middle = 0.5 * (low + high)
        below = log_snr(schedule, middle) < targets
        return jnp.where(below, middle, low), jnp.where(below, high, middle)

    low, high = jax.lax.fori_loop(
        0,
        BISECTION_STEPS,
        halve,
        (jnp.full_like(targets, ends[0]), jnp.full_like(targets, ends[1])),
    )
    inner = 0.5 * (low + high)
    return jnp.concatenate([jnp.zeros(1, jnp.float32), inner, jnp.ones(1, jnp.float32)])


def snap_to_levels(grid: Float[Array, " steps+1"], levels: int) -> Float[Array, " steps+1"]:
    """Moves each grid time to a training time k / L, keeping the grid strictly increasing.

    k_i = round(L t_i), then raised to at least k_{i-1} + 1 and capped at L - N + i, so N <= L
    steps always fit between k_0 = 0 and k_N = L; a grid of N steps with N dividing L is
    unchanged (t_i = i / N is already (i L / N) / L, to the float). This is how DDIM subsamples
    a trained DDPM's chain: its network never sees a time between two of its levels.

    Args:
        grid: N + 1 increasing times from 0 to 1, N <= ``levels``.
        levels: L, the number of steps the network was trained on.

    Returns:
        The N + 1 times k_i / L, in float32.
    """
    n = grid.shape[0] - 1
    i = jnp.arange(n + 1)
    k = jnp.round(grid * levels).astype(jnp.int32)
    k = i + jax.lax.cummax(k - i)
    k = jnp.minimum(k, levels - n + i)
    return k.astype(jnp.float32) / jnp.float32(levels)
