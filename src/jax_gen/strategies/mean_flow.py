"""MeanFlow: a network for the average velocity over a time interval, sampled in one step."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from jax_gen.parameterization import Parameterization, path_coefficients, velocity
from jax_gen.schedules import Schedule
from jax_gen.strategies.base import Model, Strategy, read_network, source_point

ADAPTIVE_LOSS_OFFSET = 1e-3
"""The c of the adaptive loss weight 1 / (|u - target|^2 + c)^p."""


class MeanFlowStrategy(Strategy):
    """MeanFlow on the linear path z_t = t x + (1 - t) eps (t = 0 noise, t = 1 data).

    The network reads two times and predicts the **average velocity** from t to a later t_end,

        u(z_t, t, t_end) = 1 / (t_end - t) * integral_t^t_end v(z_s, s) ds,

    so z_t_end = z_t + (t_end - t) u(z_t, t, t_end) exactly: one network evaluation crosses the
    whole interval, and one step from t = 0 to 1 generates a sample. At t_end = t, u is the
    instantaneous velocity v, the flow-matching field; the ODE samplers, the likelihood and
    the score read that.

    **Training.** Differentiating (t_end - t) u = integral_t^t_end v ds along the path in its
    start time t gives the MeanFlow identity, in this project's direction of time

        u(z_t, t, t_end) = v(z_t, t) + (t_end - t) d/dt u(z_t, t, t_end),

    with the total derivative d/dt u = (grad_z u) v + du/dt, a Jacobian-vector product of the
    network with the tangent (v, 1, 0) in (z, t, t_end) (``jax.jvp``). The loss regresses u on
    the right-hand side with the conditional velocity v = x - eps in place of v and a
    stop-gradient on the whole target. (Geng et al. write it u = v - (t - r) du/dt with time
    running from data to noise, r < t; here t runs from noise to data, so the sign flips.)
    Times are two logit-normal draws sorted into t <= t_end, and a share of the pairs has
    t_end = t (flow matching itself). The network reads (t, t_end - t).

    References: Geng, Deng, Bai, Kolter, He, "Mean Flows for One-step Generative Modeling"
    (2025).
    """

    schedule: Schedule
    parameterization: Parameterization
    num_transport_steps: int = eqx.field(static=True)
    time_mean: float = eqx.field(static=True, default=0.4)
    time_std: float = eqx.field(static=True, default=1.0)
    equal_time_share: float = eqx.field(static=True, default=0.75)
    adaptive_loss_power: float = eqx.field(static=True, default=1.0)
    time_sampler: str = eqx.field(static=True, default="logit-normal")
    jvp_tangent: str = eqx.field(static=True, default="conditional")
    loss_target: str = eqx.field(static=True, default="prediction")

    def average_velocity(
        self,
        model: Model,
        t: Float[Array, ""],
        t_end: Float[Array, ""],
        z: Float[Array, " d"],
        label: Int[Array, ""] | None = None,
    ) -> Float[Array, " d"]:
        """u(z, t, t_end): the network read at the times (t, t_end - t)."""
        times = jnp.stack([t, t_end - t])
        return read_network(model, times, z, label)

    def sample_time(self, key: PRNGKeyArray) -> Float[Array, ""]:
        """A logit-normal time sigmoid(m + s n), n ~ N(0, 1), or a uniform one."""
        if self.time_sampler == "uniform":
            return jax.random.uniform(key)
        return jax.nn.sigmoid(self.time_mean + self.time_std * jax.random.normal(key))

    def sample_times(self, key: PRNGKeyArray) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """A training pair t <= t_end: two sorted draws, equal with ``equal_time_share``."""
        first_key, second_key, equal_key = jax.random.split(key, 3)
        a, b = self.sample_time(first_key), self.sample_time(second_key)
        t, t_end = jnp.minimum(a, b), jnp.maximum(a, b)
        equal = jax.random.uniform(equal_key) < self.equal_time_share
        return t, jnp.where(equal, t, t_end)

    def regression(
        self,
        model: Model,
        t: Float[Array, ""],
        t_end: Float[Array, ""],
        z: Float[Array, " d"],
        v: Float[Array, " d"],
        label: Int[Array, ""] | None = None,
    ) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        """(u, its target v + (t_end - t) d/dt u), the target behind a stop-gradient.

        d/dt u is the derivative along the path: the Jacobian-vector product of
        u(z, t, t_end) with the tangent (w, 1, 0), where the path moves at w = v
        (``jvp_tangent="conditional"``) or at the network's own instantaneous velocity
        w = u(z, t, t) held fixed (``"model"``). For the exact u both targets equal u; the
        second does not carry the noise of the pair's x - eps through the Jacobian.
        """

        def u(z, t, t_end):
            return self.average_velocity(model, t, t_end, z, label)

        tangent = v
        if self.jvp_tangent == "model":
            tangent = jax.lax.stop_gradient(self.average_velocity(model, t, t, z, label))
        one, zero = jnp.ones_like(t), jnp.zeros_like(t_end)
        output, du_dt = jax.jvp(u, (z, t, t_end), (tangent, one, zero))
        return output, jax.lax.stop_gradient(v + (t_end - t) * du_dt)

    def loss_fn(
        self,
        model: Model,
        x: Float[Array, " d"],
        key: PRNGKeyArray,
        label: Int[Array, ""] | None = None,
        eps: Float[Array, " d"] | None = None,
    ) -> Scalar:
        """The MeanFlow loss of one data point: w |u - target|^2 / d at a random (t, t_end).

        w = 1 / (sg(|u - target|^2 / d) + c)^p is the adaptive weight (p =
        ``adaptive_loss_power``; p = 0 leaves the plain squared error).
        """
        time_key, noise_key = jax.random.split(key)
        t, t_end = self.sample_times(time_key)
        eps = source_point(noise_key, x, eps)
        c = path_coefficients(self.schedule, t)
        z = c.alpha * x + c.sigma * eps
        v = velocity(x, eps, c)
        output, target = self.regression(model, t, t_end, z, v, label)
        error = jnp.mean((output - target) ** 2)
        if self.adaptive_loss_power == 0:
            return error
        weight = (jax.lax.stop_gradient(error) + ADAPTIVE_LOSS_OFFSET) ** self.adaptive_loss_power
        return error / weight

    def network_output(
        self,
        model: Model,
        t: Float[Array, ""],
        z: Float[Array, " d"],
        label: Int[Array, ""] | None = None,
    ) -> Float[Array, " d"]:
        """The instantaneous velocity u(z, t, t), from which the denoiser, the ODE samplers'
        velocity, the likelihood and the score follow."""
        return self.average_velocity(model, t, t, z, label)

    def reverse(
        self,
        model: Model,
        t: Float[Array, ""],
        t_next: Float[Array, ""],
        x_t: Float[Array, " d"],
        key: PRNGKeyArray,
    ) -> Float[Array, " d"]:
        """One step across the interval: z + (t_next - t) u(z, t, t_next)."""
        return x_t + (t_next - t) * self.average_velocity(model, t, t_next, x_t)
