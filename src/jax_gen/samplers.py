"""Samplers: every way of carrying the source (t=0) to the data (t=1) with a trained strategy.

All of them read the network only through the strategy (``reverse``, ``denoise``, ``velocity``,
``score``), so they work for every strategy and prediction:

- ``default``: the strategy's own step (DDPM ancestral, flow-matching Euler, annealed Langevin);
- ``ddim`` (eta in [0, 1]) and ``ancestral`` (= DDIM with eta = 1), on any Gaussian path;
- ``euler``, ``midpoint``, ``heun``, ``rk4``: explicit Runge-Kutta on the probability-flow ODE
  dz/dt = v(t, z);
- ``dpm-solver``: DPM-Solver++(2M), a second-order multistep solver of the same ODE written in
  the log signal-to-noise ratio, one network evaluation per step;
- ``adaptive``: diffrax's Tsit5 with a PID step-size controller (rtol, atol);
- ``euler-maruyama``: the reverse SDE dz = [v + (w/2) score] dt + sqrt(w) dW with w = sigma(t),
  whose marginals are the path's for any w >= 0 (Fokker-Planck: the score term's drift cancels
  the diffusion); the last step is noise-free;
- ``pc``: predictor-corrector (Song et al. 2021): ``corrector_steps`` Langevin steps at the
  current time, step size set by ``snr``, then an Euler-Maruyama predictor step.

The fixed-step samplers (all but ``default`` and ``adaptive``) run on the time grid
``cfg.time_grid`` picks (:func:`time_grid`): ``uniform`` in t, or ``logsnr``, uniform in
lambda = log(alpha / sigma), which spends fewer steps near the noise end of a
variance-preserving path, where lambda moves slowly in t. For a strategy trained at discrete
times only (DDPM's T steps, score matching's levels) the grid is then moved onto those times
(:func:`snap_to_levels`).

Each returns the samples, the trajectory on the time grid (frame 0 the source) and the number of
network evaluations (NFE) it used.
"""

import dataclasses
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from jax_gen.config import SamplerConfig
from jax_gen.models import Guided
from jax_gen.parameterization import T_CLIP, path_coefficients
from jax_gen.sampling import integrate
from jax_gen.schedules import Schedule

# Butcher tableaux (a, b, c) of the fixed-step explicit Runge-Kutta solvers.
TABLEAUS: dict[str, tuple[tuple[tuple[float, ...], ...], tuple[float, ...], tuple[float, ...]]] = {
    "euler": ((), (1.0,), (0.0,)),
    "midpoint": (((0.5,),), (0.0, 1.0), (0.0, 0.5)),
    "heun": (((1.0,),), (0.5, 0.5), (0.0, 1.0)),
    "rk4": (
        ((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        (1 / 6, 1 / 3, 1 / 3, 1 / 6),
        (0.0, 0.5, 0.5, 1.0),
    ),
}

STOCHASTIC = ("ancestral", "euler-maruyama", "pc")
"""Samplers that need the score (with ``ddim`` at eta > 0); the rest integrate the ODE."""
ODE_SAMPLERS = ("default", "ddim", "euler", "midpoint", "heun", "rk4", "adaptive", "dpm-solver")

BISECTION_STEPS = 40
"""Halvings of [T_CLIP, 1 - T_CLIP] that invert lambda(t): below float32's resolution of t."""

TSIT5_EVALS_PER_STEP = 6
"""Tsit5 has 7 stages, the first equal to the last of the previous step (FSAL)."""


class SampleResult(NamedTuple):
    samples: Float[Array, "n d"]
    trajectory: Float[Array, "steps+1 n d"]
    nfe: Int[Array, ""]
    """Network evaluations per point."""


def evals_per_step(strategy, cfg: SamplerConfig) -> int | None:
    """Network evaluations per step of a fixed-step sampler (``None`` for ``adaptive``).

    Counts calls of the model as the sampler sees it; a guided model makes two network calls
    per call (:func:`guided_calls`).
    """
    match cfg.sampler:
        case "default":
            return getattr(strategy, "langevin_steps", 1)
        case "euler" | "midpoint" | "heun" | "rk4":
            return len(TABLEAUS[cfg.sampler][1])
        case "pc":
            return 1 + cfg.corrector_steps
        case "adaptive":
            return None
        case _:
            return 1


def guided_calls(cfg: SamplerConfig, conditional: bool) -> int:
    """Network calls per model call: 2 under classifier-free guidance with a scale other than
    0 or 1 (the unconditional and the conditional prediction), else 1 (:class:`Guided`)."""
    return 2 if conditional and cfg.guidance_scale not in (0.0, 1.0) else 1


def grid_kind(cfg: SamplerConfig) -> str:
    """The time grid a sampler runs on: ``cfg.time_grid``, with ``auto`` resolved.

    ``auto`` is ``logsnr`` for ``dpm-solver``: it extrapolates the data estimate linearly in
    lambda = log(alpha / sigma), and on a grid uniform in t the steps near t = 1 stay of size
    about log(k / (k - 1)) in lambda (the k-th step from the end) however many steps are taken,
    so it converges at first order only there. Every other sampler runs on the uniform grid.
    """
    if cfg.time_grid != "auto":
        return cfg.time_grid
    return "logsnr" if cfg.sampler == "dpm-solver" else "uniform"


def sample(
    strategy,
    model,
    key: PRNGKeyArray,
    num_samples: int,
    data_dim: int,
    cfg: SamplerConfig | None = None,
    labels: Int[ArrayLike, " n"] | None = None,
) -> SampleResult:
    """Draws ``num_samples`` points with the sampler ``cfg`` describes.

    With ``labels``, point i is drawn from class ``labels[i]`` of a class-conditional model,
    guided with ``cfg.guidance_scale`` (:class:`~jax_gen.models.Guided`: every network call of
    the sampler is the guided prediction); without, the model is called as ``model(t, x)``.

    Args:
        strategy: a trained strategy's definition (DDPM, flow matching, score matching, ...).
        model: the network, ``model(t, x)`` on one point.
        key: the key of the source draw and of every noise draw.
        num_samples, data_dim: shape of the output.
        cfg: which sampler, its number of steps (default: the strategy's
            ``num_transport_steps``) and its options.
        labels: int class labels, shape (num_samples,), or None.

    Returns:
        The samples, the trajectory (num_steps + 1 frames, frame 0 the source) and the NFE
        (network evaluations per point, both calls of a guided prediction counted).

    Raises:
        ValueError: an invalid option, a sampler that needs the score of a strategy without
            one, or the ``default`` sampler asked for more steps than the levels a
            discrete-time strategy was trained at.
    """
    cfg = SamplerConfig() if cfg is None else cfg
    cfg.validate()
    if labels is None:
        if cfg.guidance_scale != 1.0:
            raise ValueError(f"guidance_scale={cfg.guidance_scale!r} needs class labels")
    else:
        labels = jnp.asarray(labels)
        if labels.shape != (num_samples,) or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(f"labels must be {num_samples} ints, got {labels.dtype}{labels.shape}")
        labels = labels.astype(jnp.int32)
    stochastic = cfg.sampler in STOCHASTIC or (cfg.sampler == "ddim" and cfg.eta > 0)
    if stochastic and not strategy.has_score():
        raise ValueError(
            f"sampler {cfg.sampler} needs the score, which a flow trained with coupled (optimal "
            f"transport) pairs does not give; use an ODE sampler ({', '.join(ODE_SAMPLERS)})"
        )
    num_steps = cfg.num_sampling_steps or strategy.num_transport_steps
    levels = strategy.training_levels()
    if cfg.sampler == "default" and levels is not None and num_steps > levels:
        raise ValueError(
            f"the default sampler steps from one training level to the next, so it takes at "
            f"most the {levels} levels the network was trained at, not {num_steps}; use "
            f"another sampler (ddim, heun, dpm-solver, ...) for more steps"
        )
    cfg = dataclasses.replace(cfg, num_sampling_steps=num_steps, time_grid=grid_kind(cfg))
    result = _sample(strategy, model, key, num_samples, data_dim, cfg, labels)
    return result._replace(nfe=result.nfe * guided_calls(cfg, labels is not None))


@eqx.filter_jit
def _sample(strategy, model, key, num_samples, data_dim, cfg, labels) -> SampleResult:
    num_steps = cfg.num_sampling_steps
    source_key, path_key = jax.random.split(key)
    x0 = strategy.sample_from_source_distribution(source_key, num_samples, data_dim)

    def per_point(fn):
        """``fn(model, t, *point_args)`` on one point, applied to every point of the batch.

        With labels, each point sees the guided model of its own label.
        """
        if labels is None:
            return lambda t, *args: jax.vmap(lambda *a: fn(model, t, *a))(*args)
        scale = cfg.guidance_scale
        return lambda t, *args: jax.vmap(lambda y, *a: fn(Guided(model, y, scale), t, *a))(
            labels, *args
        )

    velocity = per_point(strategy.velocity)

    if cfg.sampler == "adaptive":
        return _adaptive(velocity, x0, num_steps, cfg)

    # A discrete-time strategy's own step always runs on its training levels (sample() caps
    # its steps at their number); the other samplers are snapped unless told not to.
    levels = strategy.training_levels()
    snap = (
        (cfg.snap_to_training_times or cfg.sampler == "default")
        and levels is not None
        and num_steps <= levels
    )
    if cfg.time_grid == "uniform" and not snap:
        grid = time_grid(None, num_steps)
        # Steps of exactly 1 / N, not differences of rounded grid times: all steps are equal.
        steps = (grid[:-1], jnp.full(num_steps, 1.0 / num_steps))
    else:
        grid = time_grid(strategy.schedule, num_steps, cfg.time_grid)
        if snap:
            grid = snap_to_levels(grid, levels)
        steps = (grid[:-1], jnp.diff(grid))
    memory = None

    if cfg.sampler == "default":
        steps = (grid[:-1], grid[1:])  # the strategy's step reads both ends of its interval

        @_memoryless
        def step(t, t_next, x, step_key):
            keys = jax.random.split(step_key, x.shape[0])
            reverse = per_point(lambda m, t, x, k: strategy.reverse(m, t, t_next, x, k))
            return reverse(t, x, keys)

    elif cfg.sampler in ("ddim", "ancestral"):
        eta = 1.0 if cfg.sampler == "ancestral" else cfg.eta
        ddim = per_point(strategy.denoise)

        @_memoryless
        def step(t, dt, x, step_key):
            x_hat, eps_hat = ddim(t, x)
            return _ddim_update(strategy.schedule, t, t + dt, x, x_hat, eps_hat, eta, step_key)

    elif cfg.sampler == "dpm-solver":
        denoise = per_point(strategy.denoise)
        steps = (*steps, _multistep_weights(strategy.schedule, grid))
        memory = jnp.zeros_like(x0)  # x_hat of the previous step; the first step ignores it

        def step(inputs, x, x_hat_prev, step_key):
            t, dt, weight = inputs
            x_hat, eps_hat = denoise(t, x)
            x_next = _dpm_solver_update(
                strategy.schedule, t, t + dt, x, x_hat, eps_hat, x_hat_prev, weight
            )
            return x_next, x_hat

    elif cfg.sampler in TABLEAUS:
        a, b, c = TABLEAUS[cfg.sampler]

        @_memoryless
        def step(t, dt, x, step_key):
            stages = []
            for a_i, c_i in zip(((),) + a, c, strict=True):  # the first stage has no a_i
                increment = sum((a_ij * k for a_ij, k in zip(a_i, stages, strict=True)), 0.0)
                stages.append(velocity(t + c_i * dt, x + dt * increment))
            return x + dt * sum(b_i * k for b_i, k in zip(b, stages, strict=True))

    else:  # euler-maruyama and pc
        denoise = per_point(strategy.denoise)
        score = per_point(strategy.score)

        @_memoryless
        def step(t, dt, x, step_key):
            corrector_key, predictor_key = jax.random.split(step_key)
            if cfg.sampler == "pc":
                for corrector_step_key in jax.random.split(corrector_key, cfg.corrector_steps):
                    x = _langevin_corrector(score(t, x), x, cfg.snr, corrector_step_key)
            x_hat, eps_hat = denoise(t, x)
            return _euler_maruyama(strategy.schedule, t, dt, x, x_hat, eps_hat, predictor_key)

    samples, trajectory = integrate(step, x0, steps, path_key, memory)
    return SampleResult(samples, trajectory, jnp.asarray(num_steps * evals_per_step(strategy, cfg)))


def _memoryless(update):
    """Adapts a one-step update ``x_next = update(t, dt, x, key)`` to the loop of ``integrate``."""

    def step(inputs, x, memory, key):
        t, dt = inputs
        return update(t, dt, x, key), memory

    return step


def log_snr(schedule: Schedule, t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
    """lambda(t) = log(alpha(t) / sigma(t)) on the clipped path, increasing in t."""
    c = path_coefficients(schedule, t)
    return jnp.log(c.alpha) - jnp.log(c.sigma)


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


def _multistep_weights(
    schedule: Schedule, grid: Float[Array, " steps+1"]
) -> Float[Array, " steps"]:
    """DPM-Solver++(2M)'s weights 1 / (2 r_i) = h_i / (2 h_{i-1}), h_i = lambda_{i+1} - lambda_i.

    The first step has no previous estimate and the last one ends at t = 1, where lambda is
    infinite on most paths: both are first order (weight 0), the last as in the reference
    implementations' ``lower_order_final``.
    """
    h = jnp.diff(log_snr(schedule, grid))
    h_prev = jnp.concatenate([jnp.zeros(1, h.dtype), h[:-1]])
    inner = jnp.arange(h.shape[0]) < h.shape[0] - 1
    usable = inner & (h_prev > 0)  # the uniform grid's first times all clip to T_CLIP if N > 1000
    return jnp.where(usable, h / (2 * jnp.where(usable, h_prev, 1.0)), 0.0)


def _ddim_update(schedule, t, t_next, z, x_hat, eps_hat, eta, key):
    """z_{t'} = alpha' x_hat + sqrt(sigma'^2 - c^2) eps_hat + c xi (Song et al., DDIM, eq. 12).

    c^2 = eta^2 sigma'^2 s^2 / sigma^2 with s^2 = sigma^2 - (alpha / alpha')^2 sigma'^2 is the
    variance of the posterior q(z_{t'} | z_t, x) scaled by eta^2: eta = 0 is deterministic and
    eta = 1 on DDPM's path is its ancestral step. The destination is read unclipped, so the step
    onto t' = 1 lands exactly on x_hat.
    """
    c = path_coefficients(schedule, t)
    nxt = schedule(jnp.minimum(t_next, 1.0))
    s2 = jnp.maximum(c.sigma**2 - (c.alpha / nxt.alpha) ** 2 * nxt.sigma**2, 0.0)
    var = eta**2 * nxt.sigma**2 * s2 / c.sigma**2
    noise = jax.random.normal(key, z.shape, z.dtype)
    return (
        nxt.alpha * x_hat
        + jnp.sqrt(jnp.maximum(nxt.sigma**2 - var, 0.0)) * eps_hat
        + jnp.sqrt(var) * noise
    )


def _dpm_solver_update(schedule, t, t_next, z, x_hat, eps_hat, x_hat_prev, weight):
    """One step of DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), from t to t'.

    With lambda = log(alpha / sigma), h = lambda' - lambda and D = x_hat + weight (x_hat -
    x_hat_prev), the linear extrapolation of the data estimate to the step's midpoint in lambda
    (weight = h / (2 h_prev), :func:`_multistep_weights`),

        z' = (sigma' / sigma) z + alpha' (1 - e^-h) D,

    the exact solution of the probability-flow ODE in lambda,
    z' = (sigma' / sigma) z + sigma' integral_lambda^lambda' e^l x_hat(l) dl, with x_hat held
    at D over the step. This is the deterministic DDIM step from the data estimate D and the
    noise estimate (z - alpha D) / sigma = eps_hat - (alpha / sigma) (D - x_hat) that goes with
    it; with weight 0 it is DDIM itself (DPM-Solver++ 1), and onto t' = 1 it lands on D.

    Reference: Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
    Probabilistic Models" (2022), Algorithm 2.
    """
    c = path_coefficients(schedule, t)
    nxt = schedule(jnp.minimum(t_next, 1.0))  # unclipped, as in _ddim_update
    correction = weight * (x_hat - x_hat_prev)
    return nxt.alpha * (x_hat + correction) + nxt.sigma * (
        eps_hat - (c.alpha / c.sigma) * correction
    )


def _euler_maruyama(schedule, t, dt, z, x_hat, eps_hat, key):
    """One step of dz = [v + (w/2) score] dt + sqrt(w) dW, w = sigma(t); the last is noise-free."""
    c = path_coefficients(schedule, t)
    v = c.d_alpha * x_hat + c.d_sigma * eps_hat
    score = -eps_hat / c.sigma
    w = c.sigma * (t + dt < 1.0 - 0.5 * dt)  # the last step takes no noise
    noise = jax.random.normal(key, z.shape, z.dtype)
    return z + (v + 0.5 * w * score) * dt + jnp.sqrt(w * dt) * noise


def _langevin_corrector(score, z, snr, key):
    """z <- z + e score + sqrt(2 e) xi with e = 2 (snr |xi| / |score|)^2.

    The norms are averaged over the batch, as in Song et al.'s implementation: per point, a
    point near a mode has a tiny score and would get a huge step (in two dimensions the norms do
    not concentrate).
    """
    noise = jax.random.normal(key, z.shape, z.dtype)
    noise_norm = jnp.mean(jnp.linalg.norm(noise, axis=-1))
    score_norm = jnp.maximum(jnp.mean(jnp.linalg.norm(score, axis=-1)), 1e-12)
    step = 2 * (snr * noise_norm / score_norm) ** 2
    return z + step * score + jnp.sqrt(2 * step) * noise


def _adaptive(velocity, x0, num_steps, cfg) -> SampleResult:
    """Tsit5 with a PID controller from t=0 to t=1; the trajectory is saved on the grid."""
    ts = jnp.arange(num_steps + 1, dtype=jnp.float32) / jnp.float32(num_steps)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: velocity(t, y)),
        diffrax.Tsit5(),
        t0=0.0,
        t1=1.0,
        dt0=1.0 / num_steps,
        y0=x0,
        stepsize_controller=diffrax.PIDController(rtol=cfg.rtol, atol=cfg.atol),
        saveat=diffrax.SaveAt(ts=ts),
        max_steps=16384,
    )
    trajectory = solution.ys
    nfe = TSIT5_EVALS_PER_STEP * solution.stats["num_steps"] + 1
    return SampleResult(trajectory[-1], trajectory, jnp.asarray(nfe))


def nfe_schedule(strategy, cfg: SamplerConfig, nfe_budgets) -> dict[int, int]:
    """Steps giving each NFE budget exactly (budgets the sampler cannot hit are left out)."""
    per_step = evals_per_step(strategy, cfg)
    if per_step is None:
        return {}
    return {int(n): int(n) // per_step for n in np.atleast_1d(nfe_budgets) if n % per_step == 0}
