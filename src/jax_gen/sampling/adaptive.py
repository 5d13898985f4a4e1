"""The adaptive solver: diffrax's Tsit5 with a PID step-size controller on the ODE."""

from typing import ClassVar

import diffrax
import jax.numpy as jnp

from jax_gen.sampling.solver import AbstractAdaptiveSolver, GridKind
from jax_gen.strategies.base import Strategy

TSIT5_EVALS_PER_STEP = 6
"""Tsit5 has 7 stages, the first equal to the last of the previous step (FSAL)."""

MAX_STEPS = 16384
"""Steps the solver may take before it gives up."""


class Adaptive(AbstractAdaptiveSolver):
    """Tsit5 (5th order, embedded 4th order error estimate) from t=0 to t=1 with steps chosen
    by a PID controller to keep the local error within ``atol + rtol |z|``.

    It starts at dt = 1 / N and saves the trajectory at the N + 1 times i / N. Its NFE is
    counted from the steps it took (accepted and rejected) and is known only afterwards. The
    error it controls is the whole batch's, so a point's steps depend on the other points
    sampled with it.
    """

    rtol: float = 1e-3
    """Relative tolerance."""
    atol: float = 1e-3
    """Absolute tolerance."""
    needs_score: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    time_grids: ClassVar[tuple[GridKind, ...]] = ("uniform",)
    leaves_levels: ClassVar[bool] = True

    def evals_per_step(self, strategy: Strategy) -> None:
        return None

    def solve(self, network, z, num_steps, keep_trajectory):
        ts = jnp.arange(num_steps + 1, dtype=jnp.float32) / jnp.float32(num_steps)
        # Saved at every ts either way: saving at t1 alone moves the end points by an ulp, and
        # the same seed gives the same points with or without the trajectory.
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: network.velocity(t, y)),
            diffrax.Tsit5(),
            t0=0.0,
            t1=1.0,
            dt0=1.0 / num_steps,
            y0=z,
            stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
            saveat=diffrax.SaveAt(ts=ts),
            max_steps=MAX_STEPS,
        )
        nfe = TSIT5_EVALS_PER_STEP * solution.stats["num_steps"] + 1
        frames = solution.ys if keep_trajectory else solution.ys[-1:]
        return frames, jnp.asarray(nfe)
