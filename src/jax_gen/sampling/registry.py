"""The one registry of solvers: command-line name -> class, and what follows from it.

``SamplerConfig`` is the command line's flat spelling of a sampler (``--sampler ddim --eta 0.5
--num-sampling-steps 20``); :func:`solver_for` turns it into the solver it names, each option
going to the solver that declares it as a field. Everything else here (the NFE per step, the
grid, which samplers need the score) is read from the solvers' own declarations.
"""

import dataclasses

import numpy as np

from jax_gen.config import SamplerConfig
from jax_gen.sampling.adaptive import Adaptive
from jax_gen.sampling.ddim import DDIM, Ancestral, DPMSolver
from jax_gen.sampling.runge_kutta import (
    RK4,
    AbstractRungeKutta,
    ButcherTableau,
    Euler,
    Heun,
    Midpoint,
)
from jax_gen.sampling.sde import EulerMaruyama, PredictorCorrector
from jax_gen.sampling.solver import AbstractSolver
from jax_gen.sampling.strategy_step import StrategyStep
from jax_gen.strategies.base import Strategy

SOLVERS: dict[str, type[AbstractSolver]] = {
    "default": StrategyStep,
    "ancestral": Ancestral,
    "ddim": DDIM,
    "euler": Euler,
    "midpoint": Midpoint,
    "heun": Heun,
    "rk4": RK4,
    "adaptive": Adaptive,
    "euler-maruyama": EulerMaruyama,
    "pc": PredictorCorrector,
    "dpm-solver": DPMSolver,
}
"""Every sampler by its command-line name. Register a new one with ``SOLVERS[name] = cls``."""

_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(SamplerConfig))


def solver_for(cfg: SamplerConfig) -> AbstractSolver:
    """The solver ``cfg.sampler`` names, with its options read from ``cfg``.

    Each field of the solver's class named like a field of :class:`SamplerConfig` (``eta``,
    ``rtol``, ``atol``, ``corrector_steps``, ``snr``) takes the config's value; the others keep
    their defaults.

    Raises:
        ValueError: an unknown sampler, or a time grid the solver does not run on.
    """
    cls = SOLVERS.get(cfg.sampler)
    if cls is None:
        raise ValueError(f"sampler={cfg.sampler!r} must be one of {', '.join(SOLVERS)}")
    options = {
        f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls) if f.name in _CONFIG_FIELDS
    }
    solver = cls(**options)
    if cfg.time_grid != "auto" and cfg.time_grid not in solver.time_grids:
        raise ValueError(
            f"time_grid={cfg.time_grid!r} needs a fixed-step sampler, not sampler={cfg.sampler!r}"
        )
    return solver


def samplers(*, needs_score: bool) -> tuple[str, ...]:
    """The registered samplers that need the score (with their default options), or not."""
    return tuple(name for name, cls in SOLVERS.items() if cls().needs_score == needs_score)


STOCHASTIC = samplers(needs_score=True)
"""Samplers that need the score (with ``ddim`` at eta > 0); the rest integrate the ODE."""
ODE_SAMPLERS = samplers(needs_score=False)

TABLEAUS: dict[str, ButcherTableau] = {
    name: cls.tableau for name, cls in SOLVERS.items() if issubclass(cls, AbstractRungeKutta)
}
"""Butcher tableaux (a, b, c) of the explicit Runge-Kutta samplers."""


def evals_per_step(strategy: Strategy, cfg: SamplerConfig) -> int | None:
    """Network evaluations per step of a fixed-step sampler (``None`` for ``adaptive``).

    Counts calls of the model as the sampler sees it; a guided model makes two network calls
    per call (:func:`~jax_gen.sampling.guided_calls`).
    """
    return solver_for(cfg).evals_per_step(strategy)


def grid_kind(cfg: SamplerConfig) -> str:
    """The time grid a sampler runs on: ``cfg.time_grid``, with ``auto`` resolved.

    ``auto`` is the solver's first grid: ``logsnr`` for ``dpm-solver`` (:class:`DPMSolver`),
    ``uniform`` for every other sampler.
    """
    if cfg.time_grid != "auto":
        return cfg.time_grid
    return solver_for(cfg).time_grids[0]


def nfe_schedule(strategy: Strategy, cfg: SamplerConfig, nfe_budgets) -> dict[int, int]:
    """Steps giving each NFE budget exactly (budgets the sampler cannot hit are left out)."""
    per_step = evals_per_step(strategy, cfg)
    if per_step is None:
        return {}
    return {int(n): int(n) // per_step for n in np.atleast_1d(nfe_budgets) if n % per_step == 0}
