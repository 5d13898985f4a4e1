"""Gaussian probability paths: alpha(t), sigma(t) and their time derivatives.

Every method in the library moves points along

    z_t = alpha(t) x + sigma(t) eps,    eps ~ N(0, I),

with **t = 0 the source (noise) and t = 1 the data**: alpha(0) ~ 0, sigma(0) ~ 1, alpha(1) = 1,
sigma(1) = 0. A schedule only gives these four numbers at a time t; it knows nothing about
networks or predictions. Formulas hold on the open interval (0, 1); the singular ends are
clipped once, in :func:`jax_gen.parameterization.path_coefficients`, which is how the rest of
the library reads a schedule.
"""

import abc
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


class PathCoefficients(NamedTuple):
    """alpha, sigma and their derivatives d/dt at one time (or a batch of times)."""

    alpha: Float[Array, "*t"]
    sigma: Float[Array, "*t"]
    d_alpha: Float[Array, "*t"]
    d_sigma: Float[Array, "*t"]


class Schedule(eqx.Module):
    """A Gaussian path z_t = alpha(t) x + sigma(t) eps with t=0 noise and t=1 data."""

    @abc.abstractmethod
    def __call__(self, t: Float[ArrayLike, "*t"]) -> PathCoefficients:
        """Returns alpha(t), sigma(t), alpha'(t), sigma'(t)."""


class LinearPath(Schedule):
    """The linear (rectified-flow, conditional optimal-transport) path of flow matching.

        alpha(t) = t,  sigma(t) = 1 - t,  alpha' = 1,  sigma' = -1,

    so the velocity v = dz/dt = x - eps is constant along each straight line from noise to data.

    Reference: Lipman et al., "Flow Matching for Generative Modeling" (2023); Liu et al.,
    "Flow Straight and Fast" (2023).
    """

    def __call__(self, t: Float[ArrayLike, "*t"]) -> PathCoefficients:
        t = jnp.asarray(t, dtype=jnp.result_type(float, t))
        one = jnp.ones_like(t)
        return PathCoefficients(alpha=t, sigma=1 - t, d_alpha=one, d_sigma=-one)


class VPLinearBetaSchedule(Schedule):
    """DDPM's variance-preserving path with a linear noise rate, in continuous time.

    With s = 1 - t the diffusion time (s = 0 data, s = 1 noise) and the noise rate
    beta(s) = beta_min + s (beta_max - beta_min),

        abar(t) = exp(-integral_0^s beta) = exp(-(beta_min s + (beta_max - beta_min) s^2 / 2)),
        alpha = sqrt(abar),  sigma = sqrt(1 - abar),
        alpha' = beta(s) alpha / 2,  sigma' = -beta(s) abar / (2 sigma).

    A chain of T steps reads this path at t_k = 1 - k / T (k = 0 data, ..., T noise) and takes
    the discrete betas beta_k = 1 - abar(t_k) / abar(t_{k-1}). For T = 1000 these are the DDPM
    paper's linear betas from 1e-4 to 0.02 (beta_min = 0.1, beta_max = 20); for any other T the
    chain still ends at abar = exp(-(beta_min + beta_max) / 2) ~ 4e-5, i.e. at noise, which
    fixed per-step betas (1e-4..0.02 over 50 steps ends at abar ~ 0.6) do not.

    References: Ho et al., "Denoising Diffusion Probabilistic Models" (2020); Song et al.,
    "Score-Based Generative Modeling through Stochastic Differential Equations" (2021).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def log_abar(self, t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        """log abar(t) for t in [0, 1]; exactly 0 at t = 1, so the data end is noise-free.

        The diffusion time s = 1 - t is clipped into [0, 1]: compiled code may compute a grid
        time such as T / T a rounding error above 1, which must not make abar exceed 1.
        """
        s = jnp.clip(1 - jnp.asarray(t, dtype=jnp.result_type(float, t)), 0.0, 1.0)
        return -(self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2)

    def __call__(self, t: Float[ArrayLike, "*t"]) -> PathCoefficients:
        t = jnp.asarray(t, dtype=jnp.result_type(float, t))
        beta = self.beta_min + (1 - t) * (self.beta_max - self.beta_min)
        abar = jnp.exp(self.log_abar(t))
        alpha = jnp.sqrt(abar)
        sigma = jnp.sqrt(-jnp.expm1(self.log_abar(t)))  # 1 - abar without cancellation
        return PathCoefficients(
            alpha=alpha,
            sigma=sigma,
            d_alpha=0.5 * beta * alpha,
            d_sigma=-0.5 * beta * abar / sigma,
        )
