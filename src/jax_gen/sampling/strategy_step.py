"""The strategy's own step: DDPM's ancestral posterior, flow matching's Euler step, annealed
Langevin for score matching."""

from typing import ClassVar

from jax_gen.sampling.solver import AbstractFixedStepSolver, GridKind
from jax_gen.strategies.base import Strategy


class StrategyStep(AbstractFixedStepSolver):
    """Steps the strategy's ``reverse(model, t, t_next, z, key)`` over the grid.

    A discrete-time strategy (DDPM, score matching) defines its step between its training
    levels only, so this solver always runs on them: at most L steps, on the uniform grid
    moved onto the levels (every step one level when N = L). The strategy itself is never
    changed; the grid alone decides the number of steps.
    """

    needs_score: ClassVar[bool] = False
    stochastic: ClassVar[bool] = True
    time_grids: ClassVar[tuple[GridKind, ...]] = ("uniform",)
    leaves_levels: ClassVar[bool] = False
    only_strategy_step: ClassVar[bool] = True

    def evals_per_step(self, strategy: Strategy) -> int:
        return getattr(strategy, "langevin_steps", 1)

    def step(self, network, interval, z, key, carry):
        return network.reverse(interval.t, interval.t_next, z, key), carry
