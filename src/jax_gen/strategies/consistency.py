"""Consistency training: a network that jumps from any point of the path to the data in one step.

On the linear path z_t = t x + (1 - t) eps (t = 0 noise, t = 1 data) the probability-flow ODE
carries each z_t to one data point; the **consistency function** f(z_t, t) is that end point.
It is parameterised so that the boundary condition holds exactly,

    f(z, t) = z + (1 - t) F(z, t),        F the network,

so f(z, 1) = z for every network. F is then the average velocity from t to the data end,
(f(z, t) - z) / (1 - t), not an instantaneous velocity: the strategy has no velocity for the ODE
samplers or the likelihood (``has_velocity`` False), and samples with its own step.

**Discretisation and curriculum.** Training uses the M + 1 levels t_n = n / M (n = 0..M) of
the uniform grid, which holds both ends exactly: t_0 = 0, the source the one-step sampler starts
from, and t_M = 1, where f is the identity. In the noise-level variable of Song & Dhariwal,
z_t / t = x + sigma eps with sigma = (1 - t) / t, the grid is sigma_n = (M - n) / n: infinite at
t = 0, zero at t = 1, half the levels below sigma = 1, like their Karras grid between 0.002 and
80. M follows their doubling curriculum (:func:`curriculum_intervals`): iCT's N(k) = M + 1
discretisation points.

**Loss.** For a level n, one eps gives the two points z_n = t_n x + (1 - t_n) eps and
z_n+1 = t_n+1 x + (1 - t_n+1) eps of the same straight path, and

    L = lambda_n d(f(z_n, t_n), sg f(z_n+1, t_n+1)),     lambda_n = 1 / (t_n+1 - t_n) = M,

the online network at the noisier time against a stop-gradient copy of itself nearer the data
(iCT's choice: no EMA teacher). At n = M - 1 the target is f(x, 1) = x itself. d is the
pseudo-Huber distance (:func:`pseudo_huber`). lambda is iCT's 1 / (sigma_n+1 - sigma_n) in the
variable t; it makes lambda d about |df/dt| whatever M, so the loss keeps its scale as the
curriculum refines the grid.

**Levels.** iCT draws level n with the lognormal mass of [sigma_n+1, sigma_n], log sigma ~
N(P_mean, P_std^2). Since log sigma = -logit(t), that is the logit-normal mass of [t_n, t_n+1]
with logit(t) ~ N(-P_mean, P_std^2): n = floor(M sigmoid(m + s g)), g ~ N(0, 1).

**Sampling** (the ``default`` sampler's step, :meth:`ConsistencyStrategy.reverse`):
x_hat = f(z, t), then re-noise to the next grid time with fresh noise, z = t_next x_hat +
(1 - t_next) eps'. The last step (t_next = 1) returns x_hat. One step from t = 0 is one
network evaluation.

References: Song, Dhariwal, Chen, Sutskever, "Consistency Models" (2023); Song & Dhariwal,
"Improved Techniques for Training Consistency Models" (2023).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from jax_gen.parameterization import Parameterization
from jax_gen.schedules import Schedule
from jax_gen.strategies.base import Model, Strategy, source_point


def pseudo_huber(a: Float[Array, " d"], b: Float[Array, " d"], c: float) -> Scalar:
    """The pseudo-Huber distance sqrt(|a - b|^2 + c^2) - c.

    About |a - b|^2 / (2c) for |a - b| << c and |a - b| - c for |a - b| >> c: a squared error
    near zero, a norm (less weight on outliers) far from it. Computed as |a - b|^2 /
    (sqrt(|a - b|^2 + c^2) + c), the same number without the cancellation of the difference.
    """
    r2 = jnp.sum((a - b) ** 2)
    return r2 / (jnp.sqrt(r2 + c**2) + c)


def curriculum_intervals(
    step: Int[Array, ""], total_steps: Int[Array, ""], initial: int, final: int
) -> Int[Array, ""]:
    """iCT's number of intervals M(k) = N(k) - 1 at training step k of a run of K steps.

        M(k) = min(s0 2^floor(k / K'), s1),   K' = floor(K / (log2 floor(s1 / s0) + 1)),

    with s0 = ``initial`` and s1 = ``final``: s0 for the first K' steps, doubling every K' steps
    until s1. K = 0 (a run of unknown length) gives s1; K' is at least 1.
    """
    stages = math.log2(final // initial) + 1
    total = jnp.asarray(total_steps, jnp.int32)
    stage_length = jnp.maximum(jnp.floor(total / stages).astype(jnp.int32), 1)
    # s0 2^E >= s1 already, so capping the exponent at E changes nothing and avoids overflow.
    doublings = jnp.minimum(jnp.asarray(step, jnp.int32) // stage_length, math.ceil(stages))
    intervals = jnp.minimum(initial * jnp.left_shift(jnp.int32(1), doublings), final)
    return jnp.where(total > 0, intervals, final).astype(jnp.int32)


class ConsistencyStrategy(Strategy):
    """Consistency training (iCT) on the linear path, sampled in one or a few steps.

    See the module's docstring for the parameterisation f = z + (1 - t) F, the grid, the
    curriculum, the loss and the sampler.
    """

    schedule: Schedule
    parameterization: Parameterization
    num_intervals: Int[Array, ""]
    """M, the intervals of the current training grid (set by :meth:`at_step`)."""
    num_transport_steps: int = eqx.field(static=True)
    initial_intervals: int = eqx.field(static=True, default=10)
    final_intervals: int = eqx.field(static=True, default=160)
    level_mean: float = eqx.field(static=True, default=0.4)
    level_std: float = eqx.field(static=True, default=1.0)
    huber_scale: float = eqx.field(static=True, default=0.00054)
    loss_target: str = eqx.field(static=True, default="prediction")

    def consistency_function(
        self,
        model: Model,
        t: Float[Array, ""],
        z: Float[Array, " d"],
        label: Int[Array, ""] | None = None,
    ) -> Float[Array, " d"]:
        """f(z, t) = z + (1 - t) F(z, t): the data point the ODE carries z_t to; f(z, 1) = z."""
        return z + (1 - t) * self.network_output(model, t, z, label)

    def at_step(self, step: Int[Array, ""], total_steps: Int[Array, ""]) -> "ConsistencyStrategy":
        """The strategy on the grid of the curriculum's step (:func:`curriculum_intervals`)."""
        intervals = curriculum_intervals(
            step, total_steps, self.initial_intervals, self.final_intervals
        )
        return eqx.tree_at(lambda s: s.num_intervals, self, intervals)

    def sample_level(self, key: PRNGKeyArray) -> Int[Array, ""]:
        """A level n in 0..M-1 with the logit-normal mass of [t_n, t_n+1]."""
        t = jax.nn.sigmoid(self.level_mean + self.level_std * jax.random.normal(key))
        n = jnp.floor(t * self.num_intervals).astype(jnp.int32)
        return jnp.clip(n, 0, self.num_intervals - 1)

    def sample_time(self, key: PRNGKeyArray) -> Float[Array, ""]:
        """The online time t_n = n / M of a training level n (:meth:`sample_level`)."""
        return self.sample_level(key) / self.num_intervals.astype(jnp.float32)

    def loss_fn(
        self,
        model: Model,
        x: Float[Array, " d"],
        key: PRNGKeyArray,
        label: Int[Array, ""] | None = None,
        eps: Float[Array, " d"] | None = None,
    ) -> Scalar:
        """M d(f(z_n, t_n), sg f(z_n+1, t_n+1)) for one data point, one eps at both times.

        d is :func:`pseudo_huber` with c = ``huber_scale`` sqrt(dim).
        """
        level_key, noise_key = jax.random.split(key)
        n = self.sample_level(level_key)
        intervals = self.num_intervals.astype(jnp.float32)
        t, t_next = n / intervals, (n + 1) / intervals
        eps = source_point(noise_key, x, eps)
        online = self.consistency_function(model, t, t * x + (1 - t) * eps, label)
        z_next = t_next * x + (1 - t_next) * eps
        target = jax.lax.stop_gradient(self.consistency_function(model, t_next, z_next, label))
        c = self.huber_scale * math.sqrt(x.shape[-1])
        return pseudo_huber(online, target, c) / (t_next - t)

    def reverse(
        self,
        model: Model,
        t: Float[Array, ""],
        t_next: Float[Array, ""],
        x_t: Float[Array, " d"],
        key: PRNGKeyArray,
    ) -> Float[Array, " d"]:
        """x_hat = f(x_t, t), re-noised to t_next: t_next x_hat + (1 - t_next) eps' (x_hat at
        t_next = 1, where the noise's weight is exactly 0)."""
        x_hat = self.consistency_function(model, t, x_t)
        return t_next * x_hat + (1 - t_next) * jax.random.normal(key, x_t.shape, x_t.dtype)

    def denoise(
        self, model: Model, t: Float[Array, ""], z: Float[Array, " d"]
    ) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        """(f(z, t), z - t F): the one-step data estimate and the eps the path then implies
        (z = t x_hat + (1 - t) eps_hat), exact at both ends (no clipped path)."""
        average = self.network_output(model, t, z)
        return z + (1 - t) * average, z - t * average

    def velocity(
        self, model: Model, t: Float[Array, ""], z: Float[Array, " d"]
    ) -> Float[Array, " d"]:
        """The average velocity to the data, F(z, t) = (f(z, t) - z) / (1 - t): the direction
        and length per unit time of the jump to the data. ``plot-field`` draws it. It is not
        an instantaneous velocity, so ``has_velocity`` is False and no ODE sampler and no
        likelihood reads it."""
        return self.network_output(model, t, z)

    def score(self, model: Model, t: Float[Array, ""], z: Float[Array, " d"]) -> Float[Array, " d"]:
        """Refused: a consistency model gives the jump to the data, not E[eps | z_t].

        Raises:
            ValueError: always.
        """
        raise ValueError("a consistency model has no score; it gives only the jump to the data")

    def has_velocity(self) -> bool:
        """False: F is the average velocity to the data end, not dz/dt."""
        return False
