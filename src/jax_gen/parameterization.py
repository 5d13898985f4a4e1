"""What the network predicts, and the conversions between x, eps and v.

On a Gaussian path z = alpha x + sigma eps with velocity v = dz/dt = alpha' x + sigma' eps,
any one of (x, eps, v) together with z determines the other two:

    from x:    eps = (z - alpha x) / sigma
    from eps:  x   = (z - sigma eps) / alpha
    from v:    x   = (sigma' z - sigma v) / (alpha sigma' - sigma alpha')
               eps = (alpha v - alpha' z) / (alpha sigma' - sigma alpha')

(for the linear path: v = x - eps, x = z + (1 - t) v, eps = z - t v). This module is the only
place that divides by alpha, sigma or the determinant alpha sigma' - sigma alpha'.

**The singular ends.** alpha(0) = 0 on the linear path and sigma(1) = 0 on every path, so
eps -> x is undefined at t = 0 and x -> eps at t = 1 (and a variance-preserving sigma' is
infinite at t = 1). :func:`path_coefficients` therefore reads every schedule at t clipped into
[T_CLIP, 1 - T_CLIP]; the whole library (training targets, conversions, samplers) reads the path
through it, so the clipped path is the one that is learned and sampled, and all values are finite
at exactly t = 0 and t = 1. The clip moves alpha by at most about 1% at the noisy end of the DDPM
path and changes nothing else measurably.
"""

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jax_gen.schedules import PathCoefficients, Schedule

T_CLIP = 1e-3
"""Times are clipped into [T_CLIP, 1 - T_CLIP] before the path is read."""


def path_coefficients(schedule: Schedule, t: Float[ArrayLike, "*t"]) -> PathCoefficients:
    """alpha, sigma, alpha', sigma' of ``schedule`` at ``t`` clipped into [T_CLIP, 1 - T_CLIP]."""
    return schedule(jnp.clip(t, T_CLIP, 1 - T_CLIP))


def velocity(
    x: Float[Array, "*dims"], eps: Float[Array, "*dims"], c: PathCoefficients
) -> Float[Array, "*dims"]:
    """The path's velocity v = dz/dt = alpha' x + sigma' eps."""
    return c.d_alpha * x + c.d_sigma * eps


class Parameterization(eqx.Module):
    """One choice of network output: x, eps or v.

    ``target`` says what the network should output for a (x, eps) pair; ``to_x_eps`` recovers
    (x, eps) from the network's output and z. One is the inverse of the other.
    """

    @abc.abstractmethod
    def target(
        self, x: Float[Array, "*dims"], eps: Float[Array, "*dims"], c: PathCoefficients
    ) -> Float[Array, "*dims"]:
        """The regression target for data x and noise eps."""

    @abc.abstractmethod
    def to_x_eps(
        self, prediction: Float[Array, "*dims"], z: Float[Array, "*dims"], c: PathCoefficients
    ) -> tuple[Float[Array, "*dims"], Float[Array, "*dims"]]:
        """(x, eps) implied by the network's output at the point z."""

    def to_velocity(
        self, prediction: Float[Array, "*dims"], z: Float[Array, "*dims"], c: PathCoefficients
    ) -> Float[Array, "*dims"]:
        """The velocity dz/dt implied by the network's output at the point z."""
        return velocity(*self.to_x_eps(prediction, z, c), c)


class XPrediction(Parameterization):
    """The network predicts the clean data x."""

    def target(self, x, eps, c):
        return x

    def to_x_eps(self, prediction, z, c):
        return prediction, (z - c.alpha * prediction) / c.sigma


class EpsPrediction(Parameterization):
    """The network predicts the noise eps."""

    def target(self, x, eps, c):
        return eps

    def to_x_eps(self, prediction, z, c):
        return (z - c.sigma * prediction) / c.alpha, prediction


class VPrediction(Parameterization):
    """The network predicts the velocity v = dz/dt = alpha' x + sigma' eps."""

    def target(self, x, eps, c):
        return velocity(x, eps, c)

    def to_x_eps(self, prediction, z, c):
        det = c.alpha * c.d_sigma - c.sigma * c.d_alpha
        x = (c.d_sigma * z - c.sigma * prediction) / det
        eps = (c.alpha * prediction - c.d_alpha * z) / det
        return x, eps

    def to_velocity(self, prediction, z, c):
        return prediction


PARAMETERIZATIONS: dict[str, Parameterization] = {
    "x": XPrediction(),
    "eps": EpsPrediction(),
    "v": VPrediction(),
}
"""The parameterization for each value of a strategy config's ``prediction`` field."""
