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
import math
from typing import NamedTuple

import equinox as eqx
import jax
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


def _clipped_time(t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
    """t as a float array clipped into [0, 1].

    Compiled code may compute a grid time such as T / T a rounding error above 1, which must
    not push a variance-preserving abar above 1.
    """
    return jnp.clip(jnp.asarray(t, dtype=jnp.result_type(float, t)), 0.0, 1.0)


class VPSchedule(Schedule):
    """A variance-preserving path (alpha^2 + sigma^2 = 1), defined by log abar(t).

    abar(t) is the fraction of signal variance left at time t: 1 at the data end t = 1, close
    to 0 at the noise end t = 0. A concrete schedule gives log abar and its derivative in closed
    form, and the path follows:

        alpha = sqrt(abar),   sigma = sqrt(1 - abar),
        alpha' = alpha (log abar)' / 2,   sigma' = -abar (log abar)' / (2 sigma),

    with 1 - abar computed as -expm1(log abar), without cancellation near the data end.

    A DDPM chain of T steps reads abar at t_k = 1 - k / T (k = 0 data, ..., T noise) and takes
    the discrete betas beta_k = 1 - abar(t_k) / abar(t_{k-1}). Every concrete schedule
    guarantees what makes these a valid chain for every T: log abar(1) = 0 exactly (the data
    end is noise-free, abar_0 = 1), log abar strictly increasing in t (every beta_k > 0) and
    finite at t = 0 (every beta_k < 1, in particular the last one).

    Reference: Ho et al., "Denoising Diffusion Probabilistic Models" (2020), eq. 4;
    Kingma et al., "Variational Diffusion Models" (2021), which writes every such path through
    one monotone function of t.
    """

    @abc.abstractmethod
    def log_abar(self, t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        """log abar(t) for t in [0, 1]: exactly 0 at t = 1, finite at t = 0, increasing in t.

        Times are clipped into [0, 1] first, so the result never exceeds 0.
        """

    @abc.abstractmethod
    def d_log_abar(self, t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        """d log abar / dt in closed form: positive and finite on [0, 1]."""

    def __call__(self, t: Float[ArrayLike, "*t"]) -> PathCoefficients:
        t = jnp.asarray(t, dtype=jnp.result_type(float, t))
        log_abar = self.log_abar(t)
        rate = self.d_log_abar(t)
        abar = jnp.exp(log_abar)
        alpha = jnp.sqrt(abar)
        sigma = jnp.sqrt(-jnp.expm1(log_abar))  # 1 - abar without cancellation
        return PathCoefficients(
            alpha=alpha,
            sigma=sigma,
            d_alpha=0.5 * rate * alpha,
            d_sigma=-0.5 * rate * abar / sigma,
        )


class VPLinearBetaSchedule(VPSchedule):
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

    def d_log_abar(self, t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        """d log abar / dt = beta(s), the noise rate at s = 1 - t (clipped like ``log_abar``)."""
        s = 1 - _clipped_time(t)
        return self.beta_min + (self.beta_max - self.beta_min) * s


def _sigmoid(x: float) -> float:
    """The logistic function in plain Python, without overflow for large |x|."""
    return 0.5 * (1 + math.tanh(0.5 * x))


def _check_log_abar_min(log_abar_min: float) -> None:
    if not -math.inf < log_abar_min < 0:
        raise ValueError(f"{log_abar_min=} must be negative and finite")


class VPCosineSchedule(VPSchedule):
    """Nichol & Dhariwal's cosine schedule in continuous time, stopped at a finite noise level.

    With s = 1 - t the diffusion time (s = 0 data, s = 1 noise) and a small offset c, the
    paper's schedule is

        abar_paper(s) = f(s) / f(0),   f(s) = cos^2((s + c) / (1 + c) * pi / 2),

    close to linear in the middle and flat at both ends, so far fewer steps are spent on nearly
    pure noise than with the linear schedule. It reaches abar = 0 at s = 1: log abar is -inf
    there and the last discrete beta is 1, which the paper avoids by clipping its discrete
    betas at 0.999.

    **The noise end.** A clip of the betas depends on T, and a clip of abar stalls the last
    steps of the chain (alpha would be constant there, no longer strictly monotone), so the
    curve is truncated instead: the path runs through the paper's curve for s in [0, s_end]
    only, s_end < 1 being the one value with abar_paper(s_end) = exp(log_abar_min):

        abar(t) = abar_paper(s_end (1 - t)),

    smooth, strictly monotone, exactly 1 at t = 1 and exp(log_abar_min) at t = 0. The default
    log_abar_min = -10 is about where the default linear schedule ends (exp(-10.05)), so both
    start from the same noise level (alpha(0) = e^-5 ~ 0.007); it keeps every discrete beta of
    every chain with T >= 10 below the paper's cap of 0.999, and s_end ~ 0.9957, i.e. the paper's
    curve read 0.4% faster. The same truncation of a cosine (log-SNR) schedule, at both ends, is
    used by Hoogeboom et al. (2023).

    In closed form, with theta = pi / (2 (1 + c)), q = s_end (1 - t) and r = 1 - q,

        sqrt(abar) = sin(r theta) / sin(theta)
                   = 1 - 2 cos((1 - q / 2) theta) sin(q theta / 2) / sin(theta),
        d log abar / dt = 2 theta s_end / tan(r theta);

    the second form of sqrt(abar) is exactly 1 at t = 1 and free of cancellation near it.

    References: Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models" (2021),
    eq. 17; Hoogeboom et al., "simple diffusion: End-to-end diffusion for high resolution
    images" (2023), the truncated cosine log-SNR schedule.
    """

    offset: float = eqx.field(default=0.008, static=True)
    """The offset c, which keeps the first betas from being too small near the data end."""
    log_abar_min: float = eqx.field(default=-10.0, static=True)
    """log abar at the noise end t = 0, where the paper's curve is cut; negative and finite."""

    def __check_init__(self):
        if not self.offset >= 0:
            raise ValueError(f"offset={self.offset!r} must be non-negative")
        _check_log_abar_min(self.log_abar_min)

    @property
    def _theta(self) -> float:
        return 0.5 * math.pi / (1 + self.offset)

    @property
    def s_end(self) -> float:
        """The paper's diffusion time at which the path stops (t = 0), just below 1."""
        theta = self._theta
        return 1 - math.asin(math.exp(0.5 * self.log_abar_min) * math.sin(theta)) / theta

    def log_abar(self, t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        q = self.s_end * (1 - _clipped_time(t))
        theta = self._theta
        return 2 * jnp.log1p(
            -2 * jnp.cos((1 - 0.5 * q) * theta) * jnp.sin(0.5 * q * theta) / math.sin(theta)
        )

    def d_log_abar(self, t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        r = 1 - self.s_end * (1 - _clipped_time(t))
        return 2 * self._theta * self.s_end / jnp.tan(r * self._theta)


class VPSigmoidSchedule(VPSchedule):
    """The sigmoid schedule in continuous time, stopped at a finite noise level.

    With s = 1 - t the diffusion time (s = 0 data, s = 1 noise) and sigmoid(x) = 1 / (1 + e^-x),

        abar_paper(s) = (sigmoid(-(s (end - start) + start) / tau) - sigmoid(-end / tau))
                        / (sigmoid(-start / tau) - sigmoid(-end / tau)):

    the stretch [start, end] of a (reflected) sigmoid of temperature tau, rescaled to run from
    1 at s = 0 to 0 at s = 1. A larger tau or a narrower [start, end] makes it closer to linear
    in s. It reaches abar = 0 at s = 1 (linearly in 1 - s), where Chen clips abar at 1e-9.

    **The noise end** is handled as in :class:`VPCosineSchedule`: the path runs through the
    curve for s in [0, s_end] only, abar(t) = abar_paper(s_end (1 - t)), with s_end < 1 the one
    value where abar_paper(s_end) = exp(log_abar_min). The default log_abar_min = -10 is about
    the end of the default linear schedule, keeps every discrete beta of every chain with
    T >= 10 below 0.999, and gives s_end ~ 0.99985.

    In closed form, with k = (end - start) / tau, q = s_end (1 - t), r = 1 - q,
    x = (q (end - start) + start) / tau, and sigmoid(a) - sigmoid(b) =
    sigmoid(a) sigmoid(-b) (1 - e^(b - a)),

        1 - abar = sigmoid(x) / sigmoid(end / tau) * expm1(-k q) / expm1(-k),
        d log abar / dt = s_end k (sigmoid(x) + 1 / expm1(k r));

    the first is exactly 0 at t = 1 and free of cancellation near it (the price: near t = 0,
    abar is accurate only to a rounding error of 1, 6e-8 in float32: log abar(0) = -10.002).

    References: Jabri et al., "Scalable Adaptive Computation for Iterative Generation" (2023);
    Chen, "On the Importance of Noise Scheduling for Diffusion Models" (2023), Algorithm 1.
    """

    start: float = eqx.field(default=-3.0, static=True)
    """Left end of the stretch of the sigmoid used (at the data end)."""
    end: float = eqx.field(default=3.0, static=True)
    """Right end of the stretch of the sigmoid used (at the noise end); greater than start."""
    tau: float = eqx.field(default=1.0, static=True)
    """Temperature of the sigmoid; positive."""
    log_abar_min: float = eqx.field(default=-10.0, static=True)
    """log abar at the noise end t = 0, where the curve is cut; negative and finite."""

    def __check_init__(self):
        if not self.tau > 0:
            raise ValueError(f"tau={self.tau!r} must be positive")
        if not self.end > self.start:
            raise ValueError(f"end={self.end!r} must be greater than start={self.start!r}")
        _check_log_abar_min(self.log_abar_min)

    @property
    def s_end(self) -> float:
        """The curve's diffusion time at which the path stops (t = 0), just below 1."""
        low, high = _sigmoid(-self.end / self.tau), _sigmoid(-self.start / self.tau)
        p = low + math.exp(self.log_abar_min) * (high - low)  # sigmoid(-x) at s_end
        x_end = math.log1p(-p) - math.log(p)
        return (self.tau * x_end - self.start) / (self.end - self.start)

    def log_abar(self, t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        q = self.s_end * (1 - _clipped_time(t))
        k = (self.end - self.start) / self.tau
        x = (q * (self.end - self.start) + self.start) / self.tau
        one_minus_abar = (
            jax.nn.sigmoid(x) / _sigmoid(self.end / self.tau) * jnp.expm1(-k * q) / math.expm1(-k)
        )
        return jnp.log1p(-one_minus_abar)

    def d_log_abar(self, t: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        q = self.s_end * (1 - _clipped_time(t))
        k = (self.end - self.start) / self.tau
        x = (q * (self.end - self.start) + self.start) / self.tau
        return self.s_end * k * (jax.nn.sigmoid(x) + 1 / jnp.expm1(k * (1 - q)))


class CosinePath(Schedule):
    """The variance-preserving cosine path of flow matching.

        alpha(t) = sin(pi t / 2),   sigma(t) = cos(pi t / 2),
        alpha' = (pi / 2) sigma,    sigma' = -(pi / 2) alpha,

    so alpha^2 + sigma^2 = 1 and (alpha, sigma) moves at constant speed along the quarter
    circle from (0, 1) (noise) to (1, 0) (data). It is :class:`VPCosineSchedule` without offset
    and without truncation (flow matching reads it at t in [T_CLIP, 1 - T_CLIP] and never forms
    a ratio abar_k / abar_(k-1)). sigma is computed as sin(pi (1 - t) / 2), exactly 0 at t = 1,
    which cos of a rounded pi / 2 is not.

    References: Albergo & Vanden-Eijnden, "Building Normalizing Flows with Stochastic
    Interpolants" (2023), the trigonometric interpolant; Lipman et al., "Flow Matching Guide
    and Code" (2024), the cosine scheduler.
    """

    def __call__(self, t: Float[ArrayLike, "*t"]) -> PathCoefficients:
        t = jnp.asarray(t, dtype=jnp.result_type(float, t))
        alpha = jnp.sin(0.5 * math.pi * t)
        sigma = jnp.sin(0.5 * math.pi * (1 - t))
        return PathCoefficients(
            alpha=alpha, sigma=sigma, d_alpha=0.5 * math.pi * sigma, d_sigma=-0.5 * math.pi * alpha
        )


class VEGeometricSchedule(Schedule):
    """The variance-exploding path of score matching, with geometric noise levels.

        z = x + sigma(t) eps,   alpha = 1,   sigma(t) = sigma_max^(1 - t) sigma_min^t,
        alpha' = 0,   sigma' = sigma(t) log(sigma_min / sigma_max),

    so log sigma falls linearly from log sigma_max at t = 0 to log sigma_min at t = 1, and a grid
    of L + 1 equally spaced times reads the geometric sequence of noise levels of NCSN.

    Unlike the other paths, the source end is **not** N(0, I): at t = 0 the data is only buried
    in noise of std sigma_max, so z_0 ~ p_data * N(0, sigma_max^2 I), which is close to
    N(0, sigma_max^2 I) when sigma_max is about the data's diameter or larger; the strategies on
    this path draw their source points from N(0, sigma_max^2 I). Nothing is singular: alpha never
    vanishes and sigma(1) = sigma_min > 0.

    Reference: Song & Ermon, "Generative Modeling by Estimating Gradients of the Data
    Distribution" (2019); Song et al., "Score-Based Generative Modeling through Stochastic
    Differential Equations" (2021), the VE SDE.
    """

    sigma_min: float = 0.01
    sigma_max: float = 10.0

    def __check_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got {self.sigma_min=}, {self.sigma_max=}"
            )

    def __call__(self, t: Float[ArrayLike, "*t"]) -> PathCoefficients:
        t = jnp.asarray(t, dtype=jnp.result_type(float, t))
        log_ratio = jnp.log(jnp.asarray(self.sigma_min / self.sigma_max, dtype=t.dtype))
        sigma = self.sigma_max * jnp.exp(t * log_ratio)
        return PathCoefficients(
            alpha=jnp.ones_like(t),
            sigma=sigma,
            d_alpha=jnp.zeros_like(t),
            d_sigma=sigma * log_ratio,
        )
