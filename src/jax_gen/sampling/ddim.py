"""DDIM and DPM-Solver++(2M): steps written with the data and noise estimates, on any Gaussian path.

Both read the network through the strategy's denoiser (x_hat, eps_hat) = (E[x | z_t],
E[eps | z_t]) and step from the path's coefficients at the two ends of the interval, so they
work for every strategy and prediction.
"""

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Float

from jax_gen.parameterization import path_coefficients
from jax_gen.sampling.grids import log_snr
from jax_gen.sampling.solver import AbstractFixedStepSolver, GridKind
from jax_gen.schedules import Schedule
from jax_gen.strategies.base import Strategy


class DDIM(AbstractFixedStepSolver):
    """DDIM (Song et al. 2021): deterministic at eta = 0, DDPM's ancestral step at eta = 1.

    At eta = 0 it is a first-order solver of the probability-flow ODE, at eta > 0 it samples
    with fresh noise and needs the score (:func:`ddim_update`). One model call per step.
    """

    eta: float = 0.0
    """Noise: 0 deterministic, 1 the ancestral DDPM posterior."""
    time_grids: ClassVar[tuple[GridKind, ...]] = ("uniform", "logsnr")
    leaves_levels: ClassVar[bool] = True

    @property
    def needs_score(self) -> bool:
        return self.eta > 0

    @property
    def stochastic(self) -> bool:
        return self.eta > 0

    def evals_per_step(self, strategy: Strategy) -> int:
        return 1

    def step(self, network, interval, z, key, carry):
        t, dt = interval.t, interval.dt
        x_hat, eps_hat = network.denoise(t, z)
        return (
            ddim_update(
                network.schedule, t, t + dt, z, x_hat, eps_hat, self.eta, network.noise(key, z)
            ),
            carry,
        )


class Ancestral(AbstractFixedStepSolver):
    """Ancestral sampling on any Gaussian path: DDIM with eta = 1, the posterior of each step."""

    needs_score: ClassVar[bool] = True
    stochastic: ClassVar[bool] = True
    time_grids: ClassVar[tuple[GridKind, ...]] = ("uniform", "logsnr")
    leaves_levels: ClassVar[bool] = True

    def evals_per_step(self, strategy: Strategy) -> int:
        return 1

    def step(self, network, interval, z, key, carry):
        return DDIM(eta=1.0).step(network, interval, z, key, carry)


class DPMSolver(AbstractFixedStepSolver):
    """DPM-Solver++(2M): second order at one model call per step, on the log-SNR grid.

    It carries the previous step's data estimate and extrapolates it linearly in
    lambda = log(alpha / sigma) (:func:`dpm_solver_update`). On a grid uniform in t the steps
    near t = 1 stay of size about log(k / (k - 1)) in lambda (the k-th step from the end)
    however many steps are taken, so it converges at first order only there: it runs on the
    log-SNR grid unless told otherwise.
    """

    needs_score: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    time_grids: ClassVar[tuple[GridKind, ...]] = ("logsnr", "uniform")
    leaves_levels: ClassVar[bool] = True

    def evals_per_step(self, strategy: Strategy) -> int:
        return 1

    def init(self, network, grid, z):
        # x_hat of the previous step (the first step ignores it), and every step's weight.
        return jnp.zeros_like(z), multistep_weights(network.schedule, grid)

    def step(self, network, interval, z, key, carry):
        x_hat_prev, weights = carry
        t, dt = interval.t, interval.dt
        x_hat, eps_hat = network.denoise(t, z)
        z_next = dpm_solver_update(
            network.schedule, t, t + dt, z, x_hat, eps_hat, x_hat_prev, weights[interval.index]
        )
        return z_next, (x_hat, weights)


def ddim_update(schedule, t, t_next, z, x_hat, eps_hat, eta, noise):
    """z_{t'} = alpha' x_hat + sqrt(sigma'^2 - c^2) eps_hat + c xi (Song et al., DDIM, eq. 12).

    c^2 = eta^2 sigma'^2 s^2 / sigma^2 with s^2 = sigma^2 - (alpha / alpha')^2 sigma'^2 is the
    variance of the posterior q(z_{t'} | z_t, x) scaled by eta^2: eta = 0 is deterministic and
    eta = 1 on DDPM's path is its ancestral step, and xi = ``noise`` (standard normal, shaped
    like z). The destination is read unclipped, so the step onto t' = 1 lands exactly on x_hat.
    """
    c = path_coefficients(schedule, t)
    nxt = schedule(jnp.minimum(t_next, 1.0))
    s2 = jnp.maximum(c.sigma**2 - (c.alpha / nxt.alpha) ** 2 * nxt.sigma**2, 0.0)
    var = eta**2 * nxt.sigma**2 * s2 / c.sigma**2
    return (
        nxt.alpha * x_hat
        + jnp.sqrt(jnp.maximum(nxt.sigma**2 - var, 0.0)) * eps_hat
        + jnp.sqrt(var) * noise
    )


def multistep_weights(schedule: Schedule, grid: Float[Array, " steps+1"]) -> Float[Array, " steps"]:
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


def dpm_solver_update(schedule, t, t_next, z, x_hat, eps_hat, x_hat_prev, weight):
    """One step of DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), from t to t'.

    With lambda = log(alpha / sigma), h = lambda' - lambda and D = x_hat + weight (x_hat -
    x_hat_prev), the linear extrapolation of the data estimate to the step's midpoint in lambda
    (weight = h / (2 h_prev), :func:`multistep_weights`),

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
    nxt = schedule(jnp.minimum(t_next, 1.0))  # unclipped, as in ddim_update
    correction = weight * (x_hat - x_hat_prev)
    return nxt.alpha * (x_hat + correction) + nxt.sigma * (
        eps_hat - (c.alpha / c.sigma) * correction
    )
