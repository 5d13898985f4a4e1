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

    **Reverse variance.** That variance is the posterior's given x; but x is only known up to
    Cov[x | z_k], so the true reverse transition q(z_{k-1} | z_k) is wider: its mean is the step's
    mean with x_hat = E[x | z_k], and its variance, averaged over z_k, is

        var* = beta_k (1 - abar_{k-1}) / (1 - abar_k) + c_x^2 E|| x - x_hat(z_k) ||^2 / d,

    with c_x = sqrt(abar_{k-1}) beta_k / (1 - abar_k) the weight of x_hat in the mean. This is
    the variance that minimises the KL divergence of a Gaussian step with the network's own mean
    (Bao et al. 2022b, for an imperfect mean; with the exact denoiser it is Analytic-DPM's
    optimal variance). Without the second term the chain narrows the data: with the exact
    denoiser of N(m, 0.5^2) data it ends at std 0.468 over the T = 100 levels and 0.31 in 8
    steps; with it, at 0.5 for any number of steps, since for Gaussian data both are then the
    exact reverse transition. :meth:`with_optimal_variance` measures the mean squared error of
    the denoiser at every level on data and returns the strategy that uses it.

    References: Ho et al., "Denoising Diffusion Probabilistic Models" (2020), eqs. 6-7; Bao et
    al., "Analytic-DPM: an Analytic Estimate of the Optimal Reverse Variance in Diffusion
    Probabilistic Models" (ICLR 2022); Bao et al., "Estimating the Optimal Covariance with
    Imperfect Mean in Diffusion Probabilistic Models" (ICML 2022), the mean squared error form.
    """

    schedule: VPSchedule
    parameterization: Parameterization
    num_transport_steps: int = eqx.field(static=True)
    loss_target: str = eqx.field(static=True, default="prediction")
    denoiser_error: Float[Array, " levels"] | None = None
    """E|| x - x_hat(z_k) ||^2 / d at each noise level k = 0..T (None: the posterior variance
    alone, as in Ho et al.)."""

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

        x_hat, _ = self.denoise(model, t, x_t)
        mean = (
            jnp.exp(0.5 * log_abar_prev) * beta / one_minus_abar * x_hat
            + jnp.sqrt(1 - beta) * one_minus_abar_prev / one_minus_abar * x_t
        )
        variance = beta * one_minus_abar_prev / one_minus_abar
        if self.denoiser_error is not None:
            weight = jnp.exp(0.5 * log_abar_prev) * beta / one_minus_abar
            variance = variance + weight**2 * self.denoiser_error[self.step_index(t)]
        return mean + jnp.sqrt(variance) * jax.random.normal(key, x_t.shape, x_t.dtype)

    def with_optimal_variance(
        self, model: Model, x: Float[Array, "n d"], key: PRNGKeyArray
    ) -> "DDPMStrategy":
        """This strategy with the reverse variance of least KL divergence for ``model``.

        Measures E|| x - x_hat(z_k) ||^2 / d at every level k = 1..T with the data points ``x``
        (one noise draw per point and level) and stores it as :attr:`denoiser_error`; the
        reverse step then adds c_x^2 times it to the posterior variance. A few thousand points
        measure it to about 2-3%, which moves the samples' std by a fraction of that.

        Args:
            model: the network, unconditional ``model(t, z)`` on one point.
            x: data points (n, d), fresh draws of the training distribution.
            key: the noise of the measurement.
        """
        levels = jnp.arange(self.num_transport_steps + 1)
        times = self.time_of_step(levels)

        def error_at(t, level_key):
            c = path_coefficients(self.schedule, t)
            eps = jax.random.normal(level_key, x.shape, x.dtype)
            z = c.alpha * x + c.sigma * eps
            x_hat = jax.vmap(lambda z_i: self.denoise(model, t, z_i)[0])(z)
            return jnp.mean((x - x_hat) ** 2)

        errors = jax.lax.map(
            lambda args: error_at(*args), (times, jax.random.split(key, levels.size))
        )
        return eqx.tree_at(
            lambda s: s.denoiser_error, self, errors.at[0].set(0.0), is_leaf=lambda v: v is None
        )
