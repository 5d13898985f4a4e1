"""Explicit Runge-Kutta solvers of the probability-flow ODE dz/dt = v(t, z), one per tableau.

A solver here is its Butcher tableau: :class:`AbstractRungeKutta` takes the stages, and each
final class only names its coefficients. Another explicit method is one class more::

    class Ralston(AbstractRungeKutta):
        tableau = ButcherTableau(a=((2 / 3,),), b=(1 / 4, 3 / 4), c=(0.0, 2 / 3))
"""

from typing import ClassVar, NamedTuple

from jax_gen.sampling.solver import AbstractFixedStepSolver, GridKind
from jax_gen.strategies.base import Strategy


class ButcherTableau(NamedTuple):
    """Coefficients of an explicit Runge-Kutta method with s stages.

    Stage i reads k_i = v(t + c_i dt, z + dt sum_j a_ij k_j) and the step is
    z + dt sum_i b_i k_i.
    """

    a: tuple[tuple[float, ...], ...]
    """Rows 2..s of the strictly lower triangular matrix (the first stage has none)."""
    b: tuple[float, ...]
    """Weights of the s stages in the step."""
    c: tuple[float, ...]
    """Where in the step each stage reads the velocity, as a fraction of dt."""


class AbstractRungeKutta(AbstractFixedStepSolver):
    """An explicit Runge-Kutta step on the grid, one model call per stage."""

    tableau: ClassVar[ButcherTableau]
    needs_score: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    time_grids: ClassVar[tuple[GridKind, ...]] = ("uniform", "logsnr")
    leaves_levels: ClassVar[bool] = True

    def evals_per_step(self, strategy: Strategy) -> int:
        return len(self.tableau.b)

    def step(self, network, interval, z, key, carry):
        a, b, c = self.tableau
        t, dt = interval.t, interval.dt
        stages = []
        for a_i, c_i in zip(((),) + a, c, strict=True):  # the first stage has no a_i
            increment = sum((a_ij * k for a_ij, k in zip(a_i, stages, strict=True)), 0.0)
            stages.append(network.velocity(t + c_i * dt, z + dt * increment))
        return z + dt * sum(b_i * k for b_i, k in zip(b, stages, strict=True)), carry


class Euler(AbstractRungeKutta):
    """Euler's method: first order, one call per step."""

    tableau = ButcherTableau(a=(), b=(1.0,), c=(0.0,))


class Midpoint(AbstractRungeKutta):
    """The explicit midpoint method: second order, two calls per step."""

    tableau = ButcherTableau(a=((0.5,),), b=(0.0, 1.0), c=(0.0, 0.5))


class Heun(AbstractRungeKutta):
    """Heun's method (the explicit trapezoidal rule): second order, two calls per step."""

    tableau = ButcherTableau(a=((1.0,),), b=(0.5, 0.5), c=(0.0, 1.0))


class RK4(AbstractRungeKutta):
    """The classical Runge-Kutta method: fourth order, four calls per step."""

    tableau = ButcherTableau(
        a=((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
        c=(0.0, 0.5, 0.5, 1.0),
    )
