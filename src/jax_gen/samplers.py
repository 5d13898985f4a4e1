"""Samplers: every way of carrying the source (t=0) to the data (t=1) with a trained strategy.

All of them read the network only through the strategy (``reverse``, ``denoise``, ``velocity``,
``score``), so they work for every strategy and prediction:

- ``default``: the strategy's own step (DDPM ancestral, flow-matching Euler, annealed Langevin);
- ``ddim`` (eta in [0, 1]) and ``ancestral`` (= DDIM with eta = 1), on any Gaussian path;
- ``euler``, ``midpoint``, ``heun``, ``rk4``: explicit Runge-Kutta on the probability-flow ODE
  dz/dt = v(t, z);
- ``adaptive``: diffrax's Tsit5 with a PID step-size controller (rtol, atol);
- ``euler-maruyama``: the reverse SDE dz = [v + (w/2) score] dt + sqrt(w) dW with w = sigma(t),
  whose marginals are the path's for any w >= 0 (Fokker-Planck: the score term's drift cancels
  the diffusion); the last step is noise-free;
- ``pc``: predictor-corrector (Song et al. 2021): ``corrector_steps`` Langevin steps at the
  current time, step size set by ``snr``, then an Euler-Maruyama predictor step.

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
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jax_gen.config import SamplerConfig
from jax_gen.parameterization import path_coefficients
from jax_gen.sampling import integrate

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

TSIT5_EVALS_PER_STEP = 6
"""Tsit5 has 7 stages, the first equal to the last of the previous step (FSAL)."""


class SampleResult(NamedTuple):
    samples: Float[Array, "n d"]
    trajectory: Float[Array, "steps+1 n d"]
    nfe: Int[Array, ""]
    """Network evaluations per point."""


def evals_per_step(strategy, cfg: SamplerConfig) -> int | None:
    """Network evaluations per step of a fixed-step sampler (``None`` for ``adaptive``)."""
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


def sample(
    strategy,
    model,
    key: PRNGKeyArray,
    num_samples: int,
    data_dim: int,
    cfg: SamplerConfig | None = None,
) -> SampleResult:
    """Draws ``num_samples`` points with the sampler ``cfg`` describes.

    Args:
        strategy: a trained strategy's definition (DDPM, flow matching, score matching, ...).
        model: the network, ``model(t, x)`` on one point.
        key: the key of the source draw and of every noise draw.
        num_samples, data_dim: shape of the output.
        cfg: which sampler, its number of steps (default: the strategy's
            ``num_transport_steps``) and its options.

    Returns:
        The samples, the trajectory (num_steps + 1 frames, frame 0 the source) and the NFE.
    """
    cfg = SamplerConfig() if cfg is None else cfg
    cfg.validate()
    if cfg.sampler == "default" and cfg.num_sampling_steps is not None:
        strategy = dataclasses.replace(strategy, num_transport_steps=cfg.num_sampling_steps)
    return _sample(strategy, model, key, num_samples, data_dim, cfg)


@eqx.filter_jit
def _sample(strategy, model, key, num_samples, data_dim, cfg) -> SampleResult:
    num_steps = cfg.num_sampling_steps or strategy.num_transport_steps
    source_key, path_key = jax.random.split(key)
    x0 = strategy.sample_from_source_distribution(source_key, num_samples, data_dim)
    times = jnp.arange(num_steps, dtype=jnp.float32) / jnp.float32(num_steps)
    dt = 1.0 / num_steps

    def batched(fn):
        """A one-point function of (t, z) applied to a batch of points."""
        return jax.vmap(fn, in_axes=(None, 0))

    velocity = batched(lambda t, z: strategy.velocity(model, t, z))

    if cfg.sampler == "adaptive":
        return _adaptive(velocity, x0, num_steps, cfg)

    if cfg.sampler == "default":

        def step(t, x, step_key):
            keys = jax.random.split(step_key, x.shape[0])
            return jax.vmap(strategy.reverse, in_axes=(None, None, 0, 0))(model, t, x, keys)

    elif cfg.sampler in ("ddim", "ancestral"):
        eta = 1.0 if cfg.sampler == "ancestral" else cfg.eta
        ddim = batched(lambda t, z: strategy.denoise(model, t, z))

        def step(t, x, step_key):
            x_hat, eps_hat = ddim(t, x)
            return _ddim_update(strategy.schedule, t, t + dt, x, x_hat, eps_hat, eta, step_key)

    elif cfg.sampler in TABLEAUS:
        a, b, c = TABLEAUS[cfg.sampler]

        def step(t, x, step_key):
            stages = []
            for a_i, c_i in zip(((),) + a, c, strict=True):  # the first stage has no a_i
                increment = sum((a_ij * k for a_ij, k in zip(a_i, stages, strict=True)), 0.0)
                stages.append(velocity(t + c_i * dt, x + dt * increment))
            return x + dt * sum(b_i * k for b_i, k in zip(b, stages, strict=True))

    else:  # euler-maruyama and pc
        denoise = batched(lambda t, z: strategy.denoise(model, t, z))
        score = batched(lambda t, z: strategy.score(model, t, z))

        def step(t, x, step_key):
            corrector_key, predictor_key = jax.random.split(step_key)
            if cfg.sampler == "pc":
                for corrector_step_key in jax.random.split(corrector_key, cfg.corrector_steps):
                    x = _langevin_corrector(score(t, x), x, cfg.snr, corrector_step_key)
            x_hat, eps_hat = denoise(t, x)
            return _euler_maruyama(strategy.schedule, t, dt, x, x_hat, eps_hat, predictor_key)

    samples, trajectory = integrate(step, x0, times, path_key)
    return SampleResult(samples, trajectory, jnp.asarray(num_steps * evals_per_step(strategy, cfg)))


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
