"""Solvers of the reverse SDE: Euler-Maruyama, and predictor-corrector with Langevin steps.

The reverse SDE dz = [v + (w/2) score] dt + sqrt(w) dW has the path's marginals for any
w >= 0 (Fokker-Planck: the score term's drift cancels the diffusion); here w = sigma(t). Both
solvers need the score, which a flow trained with coupled pairs does not give.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp

from jax_gen.parameterization import path_coefficients
from jax_gen.sampling.solver import AbstractFixedStepSolver, GridKind
from jax_gen.strategies.base import Strategy


class EulerMaruyama(AbstractFixedStepSolver):
    """Euler-Maruyama on the reverse SDE, one model call per step; the last step is noise-free."""

    needs_score: ClassVar[bool] = True
    stochastic: ClassVar[bool] = True
    time_grids: ClassVar[tuple[GridKind, ...]] = ("uniform", "logsnr")
    leaves_levels: ClassVar[bool] = True

    def evals_per_step(self, strategy: Strategy) -> int:
        return 1

    def step(self, network, interval, z, key, carry):
        _, predictor_key = jax.random.split(key)
        x_hat, eps_hat = network.denoise(interval.t, z)
        return (
            euler_maruyama_update(
                network.schedule,
                interval.t,
                interval.dt,
                z,
                x_hat,
                eps_hat,
                network.noise(predictor_key, z),
            ),
            carry,
        )


class PredictorCorrector(AbstractFixedStepSolver):
    """Predictor-corrector (Song et al. 2021): Langevin corrector steps, then Euler-Maruyama.

    At each grid time, ``corrector_steps`` steps of Langevin dynamics at the current time
    (:func:`langevin_corrector`, step size set by ``snr``), then one Euler-Maruyama step.

    Reference: Song et al., "Score-Based Generative Modeling through Stochastic Differential
    Equations" (ICLR 2021), Algorithms 4-5.
    """

    corrector_steps: int = 1
    """Langevin corrector steps at each time, before the predictor step."""
    snr: float = 0.1
    """Signal-to-noise ratio that sets the corrector's step size."""
    needs_score: ClassVar[bool] = True
    stochastic: ClassVar[bool] = True
    time_grids: ClassVar[tuple[GridKind, ...]] = ("uniform", "logsnr")
    leaves_levels: ClassVar[bool] = True

    def evals_per_step(self, strategy: Strategy) -> int:
        return 1 + self.corrector_steps

    def step(self, network, interval, z, key, carry):
        t = interval.t
        corrector_key, predictor_key = jax.random.split(key)
        for corrector_step_key in jax.random.split(corrector_key, self.corrector_steps):
            noise = network.noise(corrector_step_key, z)
            z = langevin_corrector(network.score(t, z), z, self.snr, noise)
        x_hat, eps_hat = network.denoise(t, z)
        return (
            euler_maruyama_update(
                network.schedule, t, interval.dt, z, x_hat, eps_hat, network.noise(predictor_key, z)
            ),
            carry,
        )


def euler_maruyama_update(schedule, t, dt, z, x_hat, eps_hat, noise):
    """One step of dz = [v + (w/2) score] dt + sqrt(w) dW, w = sigma(t), with dW = sqrt(dt)
    ``noise`` (standard normal, shaped like z); the last step is noise-free."""
    c = path_coefficients(schedule, t)
    v = c.d_alpha * x_hat + c.d_sigma * eps_hat
    score = -eps_hat / c.sigma
    w = c.sigma * (t + dt < 1.0 - 0.5 * dt)  # the last step takes no noise
    return z + (v + 0.5 * w * score) * dt + jnp.sqrt(w * dt) * noise


def langevin_corrector(score, z, snr, noise):
    """z <- z + e score + sqrt(2 e) xi with e = 2 (snr |xi| / |score|)^2, xi = ``noise``.

    The norms are averaged over the batch, as in Song et al.'s implementation: per point, a
    point near a mode has a tiny score and would get a huge step (in two dimensions the norms do
    not concentrate). So a point's step depends on the other points sampled with it.
    """
    noise_norm = jnp.mean(jnp.linalg.norm(noise, axis=-1))
    score_norm = jnp.maximum(jnp.mean(jnp.linalg.norm(score, axis=-1)), 1e-12)
    step = 2 * (snr * noise_norm / score_norm) ** 2
    return z + step * score + jnp.sqrt(2 * step) * noise
