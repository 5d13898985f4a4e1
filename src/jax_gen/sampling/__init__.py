"""Sampling: every way of carrying the source (t=0) to the data (t=1) with a trained strategy.

Every solver reads the network only through the strategy (``reverse``, ``denoise``,
``velocity``, ``score``), so it works for every strategy and prediction. By command-line name
(:data:`SOLVERS`, the one registry):

- ``default``: the strategy's own step (DDPM ancestral, flow-matching Euler, annealed Langevin;
  :class:`~jax_gen.sampling.strategy_step.StrategyStep`);
- ``ddim`` (eta in [0, 1]) and ``ancestral`` (= DDIM with eta = 1), on any Gaussian path, and
  ``dpm-solver``: DPM-Solver++(2M), a second-order multistep solver of the probability-flow
  ODE written in the log signal-to-noise ratio, one network evaluation per step
  (:mod:`~jax_gen.sampling.ddim`);
- ``euler``, ``midpoint``, ``heun``, ``rk4``: explicit Runge-Kutta on the probability-flow ODE
  dz/dt = v(t, z) (:mod:`~jax_gen.sampling.runge_kutta`);
- ``adaptive``: diffrax's Tsit5 with a PID step-size controller (rtol, atol;
  :mod:`~jax_gen.sampling.adaptive`);
- ``euler-maruyama``: the reverse SDE dz = [v + (w/2) score] dt + sqrt(w) dW with w = sigma(t),
  whose marginals are the path's for any w >= 0; the last step is noise-free; and ``pc``:
  predictor-corrector (Song et al. 2021), ``corrector_steps`` Langevin steps at the current
  time, step size set by ``snr``, then an Euler-Maruyama predictor step
  (:mod:`~jax_gen.sampling.sde`).

The fixed-step samplers (all but ``default`` and ``adaptive``) run on the time grid
``cfg.time_grid`` picks (:func:`time_grid`): ``uniform`` in t, or ``logsnr``, uniform in
lambda = log(alpha / sigma), which spends fewer steps near the noise end of a
variance-preserving path, where lambda moves slowly in t. For a strategy trained at discrete
times only (DDPM's T steps, score matching's levels) the grid is then moved onto those times
(:func:`snap_to_levels`).

Each returns the samples, the trajectory on the time grid (frame 0 the source) when asked for it,
and the number of network evaluations (NFE) it used. Every point's random draws come from its
own key, so many points can be drawn in batches (:func:`sample_batches`) with bounded memory.

A new sampler is a final class (:class:`AbstractFixedStepSolver`, or a Butcher tableau on
:class:`~jax_gen.sampling.runge_kutta.AbstractRungeKutta`) plus one line in :data:`SOLVERS`.
"""

from jax_gen.sampling.grids import BISECTION_STEPS, log_snr, snap_to_levels, time_grid
from jax_gen.sampling.guidance import Guided, guided_calls
from jax_gen.sampling.loop import (
    BATCH_SIZE,
    SampleResult,
    frame_times,
    integrate,
    sample,
    sample_batches,
    source_points,
)
from jax_gen.sampling.registry import (
    ODE_SAMPLERS,
    SOLVERS,
    STOCHASTIC,
    TABLEAUS,
    evals_per_step,
    grid_kind,
    nfe_schedule,
    solver_for,
)
from jax_gen.sampling.solver import (
    AbstractAdaptiveSolver,
    AbstractFixedStepSolver,
    AbstractSolver,
    Interval,
    Network,
)

__all__ = [
    "BATCH_SIZE",
    "BISECTION_STEPS",
    "ODE_SAMPLERS",
    "SOLVERS",
    "STOCHASTIC",
    "TABLEAUS",
    "AbstractAdaptiveSolver",
    "AbstractFixedStepSolver",
    "AbstractSolver",
    "Guided",
    "Interval",
    "Network",
    "SampleResult",
    "evals_per_step",
    "frame_times",
    "grid_kind",
    "guided_calls",
    "integrate",
    "log_snr",
    "nfe_schedule",
    "sample",
    "sample_batches",
    "snap_to_levels",
    "solver_for",
    "source_points",
    "time_grid",
]
