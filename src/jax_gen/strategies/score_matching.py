"""Score matching (NCSN): denoising score matching over noise levels, annealed Langevin sampling."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jax_gen.parameterization import Parameterization, path_coefficients
from jax_gen.schedules import VEGeometricSchedule
from jax_gen.strategies.base import Model, Strategy


class ScoreMatchingStrategy(Strategy):
    """Noise-conditional score network on the variance-exploding path, sampled by annealed Langevin.

    **Levels.** The path is z = x + sigma(t) eps with the geometric levels of
    :class:`VEGeometricSchedule`. Level k in {0, ..., L} (L = ``num_transport_steps``) sits at the
    grid time t_k = k / L, computed as in :meth:`Strategy.time_grid`, so sigma_0 = sigma_max is
    the source and sigma_L = sigma_min the data end. The L trained levels are k = 1, ..., L: the
    step of the sampler from grid time t_{k-1} to t_k runs Langevin dynamics at level k, so
    every level is visited once, in order, and the last one is sigma_min at t = 1. Level 0 needs
    no network: its samples are drawn directly from N(0, sigma_max^2 I) (which stands in for
    p_data * N(0, sigma_max^2 I), see the schedule). Like every strategy, the path is read
    through :func:`~jax_gen.parameterization.path_coefficients`, so t = 1 is read at
    t = 1 - 1e-3, i.e. the smallest level actually used is sigma_min (sigma_max / sigma_min)^1e-3
    (0.7% above sigma_min for the default 1e3 ratio), identically in training and sampling.

    **Training** draws k uniformly from {1, ..., L} (the very floats t_k the sampler visits) and
    regresses the parameterization's target. With eps-prediction this is denoising score
    matching with NCSN's weighting lambda(sigma) = sigma^2: the score is s = -eps_hat / sigma and

        sigma^2 || s(z, sigma) - grad_z log q(z | x) ||^2 = || sigma s + eps ||^2
                                                          = || eps_hat - eps ||^2,

    since grad_z log q(z | x) = -(z - x) / sigma^2 = -eps / sigma. (x-prediction weights the same
    score error by sigma^4, v = sigma' eps by sigma^4 log(sigma_min / sigma_max)^2: both starve
    the small levels, and a small MLP trained with them lands samples off the modes, so eps is
    the prediction to train.)

    **Sampling** runs, at each level i, ``langevin_steps`` steps of unadjusted Langevin dynamics

        x <- x + a_i s(x, sigma_i) + sqrt(2 a_i) xi,   xi ~ N(0, I),   a_i = step_size sigma_i^2.

    This is NCSN's rule (Algorithm 1: x <- x + (alpha_i / 2) s + sqrt(alpha_i) z with alpha_i =
    epsilon sigma_i^2 / sigma_L^2), since a_i = alpha_i / 2, with epsilon = 2 step_size
    sigma_L^2, written so that ``step_size`` does not depend on sigma_min. It is scale-free and
    stable for any data: the Hessian of -log(p_data * N(0, sigma^2 I)) is (I - Cov[x | z] /
    sigma^2) / sigma^2, at most 1 / sigma^2, so a_i times the curvature never exceeds
    ``step_size`` (stable below 2). For Gaussian data N(m, s^2 I) one Langevin step contracts
    the error of the variance by (1 - a_i / (s^2 + sigma_i^2))^2: once sigma_i falls below s the
    chain freezes, and the leftover excess variance is what sets ``step_size``. With L = 20
    levels of 20 steps from 10 to 0.01 the samples' std comes out 24% too large at step_size
    0.05, 11% at 0.1, 5% at 0.2 and 2.3% at 0.5, for any data std s well inside (sigma_min,
    sigma_max) (measured with the exact score of a mixture: +20-27%, +9-12%, +3-6%, -1..+3%).
    The default 0.5 also keeps the weights of the modes of a mixture within about 2 points
    (0.4/0.3/0.2/0.1 come out 0.38-0.39/0.29-0.30/0.20-0.21/0.11); at 1.0 and above the
    discretisation bias at the large levels starts to flatten them. A final noise-free Tweedie
    step x <- x + sigma_min^2 s(x) is not taken: it moves the samples by about sigma_min, which
    changed the per-mode std by 0.1% and no sample's mode at sigma_min = 0.01 (the leftover
    error is the frozen chain's, not sigma_min's noise).

    References: Song & Ermon, "Generative Modeling by Estimating Gradients of the Data
    Distribution" (2019), Algorithm 1; Song & Ermon, "Improved Techniques for Training
    Score-Based Generative Models" (2020); Vincent, "A Connection Between Score Matching and
    Denoising Autoencoders" (2011).
    """

    schedule: VEGeometricSchedule
    parameterization: Parameterization
    num_transport_steps: int = eqx.field(static=True)
    langevin_steps: int = eqx.field(static=True)
    step_size: float = eqx.field(static=True)
    loss_target: str = eqx.field(static=True, default="prediction")
    source_mean: Float[Array, " d"] | None = None
    """Centre m of the source N(m, sigma_max^2 I): the data's mean (None: the origin)."""

    def __check_init__(self):
        if not self.num_transport_steps > 0:
            raise ValueError(f"{self.num_transport_steps=} must be positive")
        if not self.langevin_steps > 0:
            raise ValueError(f"{self.langevin_steps=} must be positive")
        if not self.step_size > 0:
            raise ValueError(f"{self.step_size=} must be positive")

    def training_levels(self) -> int:
        return self.num_transport_steps

    def time_of_level(self, k: Int[Array, "*k"]) -> Float[Array, "*k"]:
        """t_k = k / L, computed the same way in training and on the sampling grid."""
        return k.astype(jnp.float32) / jnp.float32(self.num_transport_steps)

    def level_index(self, t: Float[Array, "*t"]) -> Int[Array, "*t"]:
        """The level k of grid time t (rounded, not floored, so float error is harmless)."""
        return jnp.round(t * self.num_transport_steps).astype(jnp.int32)

    def sample_time(self, key: PRNGKeyArray) -> Float[Array, ""]:
        k = jax.random.randint(key, (), 1, self.num_transport_steps + 1)
        return self.time_of_level(k)

    def sample_from_source_distribution(
        self, key: PRNGKeyArray, num_samples: int, data_dim: int
    ) -> Float[Array, "n d"]:
        """N(m, sigma_max^2 I): the variance-exploding path's state at t=0.

        The path's true state there is the data blurred by sigma_max, whose mean is the data's
        mean m (:attr:`source_mean`); centring the source at the origin instead would start
        off-centre data from the wrong place, which annealed Langevin and the ODE only partly
        undo (data of mean (3, -1.5): sample mean 2.85, log_prob 0.9 nats off).
        """
        noise = self.schedule.sigma_max * jax.random.normal(key, (num_samples, data_dim))
        return noise if self.source_mean is None else noise + self.source_mean

    def source_name(self) -> str:
        return "N(m, sigma_max^2 I)"

    def source_log_prob(self, z: Float[Array, " d"]) -> Float[Array, ""]:
        """log N(z; m, sigma_max^2 I) = -(d log(2 pi sigma_max^2) + |z - m|^2 / sigma_max^2) / 2."""
        variance = self.schedule.sigma_max**2
        centred = z if self.source_mean is None else z - self.source_mean
        return -0.5 * (
            z.shape[-1] * jnp.log(2 * math.pi * variance) + jnp.sum(centred**2, axis=-1) / variance
        )

    def reverse(
        self,
        model: Model,
        t: Float[Array, ""],
        t_next: Float[Array, ""],
        x_t: Float[Array, " d"],
        key: PRNGKeyArray,
    ) -> Float[Array, " d"]:
        """``langevin_steps`` Langevin steps at the level of t_next (a training level)."""
        t_level = t_next
        sigma = path_coefficients(self.schedule, t_level).sigma
        a = self.step_size * sigma**2

        def langevin(x, step_key):
            noise = jax.random.normal(step_key, x.shape, x.dtype)
            return x + a * self.score(model, t_level, x) + jnp.sqrt(2 * a) * noise, None

        x, _ = jax.lax.scan(langevin, x_t, jax.random.split(key, self.langevin_steps))
        return x
