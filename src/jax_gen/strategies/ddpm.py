"""DDPM: a discrete variance-preserving chain, trained at its T levels, sampled ancestrally."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jax_gen.parameterization import Parameterization, path_coefficients
from jax_gen.schedules import VPSchedule
from jax_gen.strategies.base import Model, Strategy


class DDPMStrategy(Strategy):
    """Denoising diffusion with T steps on any variance-preserving path (:class:`VPSchedule`).

    The schedule (linear, cosine, sigmoid, ...) only enters through log abar(t), so the chain
    has the betas beta_k = 1 - abar(t_k) / abar(t_{k-1}), all in (0, 1) for every T, and ends
    at the schedule's abar(0), close to pure noise.

    Noise level k in {0, ..., T} (k = 0 data, k = T noise) sits at time t_k = (T - k) / T, the
    one time convention of the library. Training draws k uniformly from {1, ..., T}; sampling
    starts from N(0, I) at k = T and takes each step k -> k - 1 exactly once, the network
    seeing the same t_k in both. The step is the posterior q(z_{k-1} | z_k, x = x_hat):

        mean = sqrt(abar_{k-1}) beta_k / (1 - abar_k) x_hat
               + sqrt(1 - beta_k) (1 - abar_{k-1}) / (1 - abar_k) z_k,
        var  = beta_k (1 - abar_{k-1}) / (1 - abar_k),

    which at k = 1 (abar_0 = 1) is exactly x_hat: the last step is noise-free.

    Reference: Ho et al., "Denoising Diffusion Probabilistic Models" (2020), eqs. 6-7.
    """

    schedule: VPSchedule
    parameterization: Parameterization
    num_transport_steps: int = eqx.field(static=True)
    loss_target: str = eqx.field(static=True, default="prediction")

    def training_levels(self) -> int:
        return self.num_transport_steps

    def time_of_step(self, k: Int[Array, "*k"]) -> Float[Array, "*k"]:
        """t_k = (T - k) / T, computed the same way in training and on the sampling grid."""
        t_steps = self.num_transport_steps
        return (t_steps - k).astype(jnp.float32) / jnp.float32(t_steps)

    def step_index(self, t: Float[Array, "*t"]) -> Int[Array, "*t"]:
        """The noise level k of grid time t (rounded, not floored, so float error is harmless)."""
        return self.num_transport_steps - jnp.round(t * self.num_transport_steps).astype(jnp.int32)

    def sample_time(self, key: PRNGKeyArray) -> Float[Array, ""]:
        k = jax.random.randint(key, (), 1, self.num_transport_steps + 1)
        return self.time_of_step(k)

    def reverse(
        self,
        model: Model,
        t: Float[Array, ""],
        t_next: Float[Array, ""],
        x_t: Float[Array, " d"],
        key: PRNGKeyArray,
    ) -> Float[Array, " d"]:
        """The posterior step from level k (time t) to level j < k (time t_next).

        With t_next one level on (the full chain) this is eq. 6-7 below; over several levels
        it is the same posterior of the coarser chain, abar_{k-1} read at t_next and
        beta = 1 - abar(t) / abar(t_next).
        """
        log_abar = self.schedule.log_abar(t)
        log_abar_prev = self.schedule.log_abar(t_next)
        beta = -jnp.expm1(log_abar - log_abar_prev)
        one_minus_abar = -jnp.expm1(log_abar)
        one_minus_abar_prev = -jnp.expm1(log_abar_prev)

        x_hat, _ = self.parameterization.to_x_eps(
            model(t, x_t), x_t, path_coefficients(self.schedule, t)
        )
        mean = (
            jnp.exp(0.5 * log_abar_prev) * beta / one_minus_abar * x_hat
            + jnp.sqrt(1 - beta) * one_minus_abar_prev / one_minus_abar * x_t
        )
        variance = beta * one_minus_abar_prev / one_minus_abar
        return mean + jnp.sqrt(variance) * jax.random.normal(key, x_t.shape, x_t.dtype)
