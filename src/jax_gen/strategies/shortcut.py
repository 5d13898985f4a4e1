"""Shortcut models: a velocity conditioned on the step size, sampled in any power of two steps."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from jax_gen.parameterization import Parameterization, path_coefficients, velocity
from jax_gen.schedules import Schedule
from jax_gen.strategies.base import Model, Strategy, read_network, source_point


class ShortcutStrategy(Strategy):
    """A shortcut model on the linear path z_t = t x + (1 - t) eps (t = 0 noise, t = 1 data).

    The network reads two times, t and a step size d, and predicts the **shortcut**
    s(z, t, d): the direction for which one step z + d s(z, t, d) lands where the flow from
    (z, t) is at time t + d. At d = 0, s is the instantaneous velocity v, the flow-matching
    field; the ODE samplers, the likelihood and the score read that. The default sampler takes
    N equal steps z <- z + (1 / N) s(z, t, 1 / N), one network evaluation each, for N a power
    of two up to ``max_sampling_steps``: N = 1 is one-step generation.

    **Training.** Each point takes one of two losses, chosen by a Bernoulli draw of
    probability ``self_consistency_share`` from its key (in expectation that share of each
    batch):

    - *flow matching* at d = 0: |s(z_t, t, 0) - (x - eps)|^2 / D with t ~ U[0, 1];
    - *self-consistency* at a step size h = 2^-k, k uniform in {0, ..., K}, K =
      log2(``max_sampling_steps``): one step of h must agree with two steps of h / 2,

          s(z, t, h) = (s(z, t, h / 2) + s(z', t + h / 2, h / 2)) / 2,
          z' = z + (h / 2) s(z, t, h / 2),

      with t on the grid of h (t = j h, j uniform in {0, ..., 2^k - 1}, so t + h <= 1) and
      the right-hand side behind a stop-gradient: the gradient flows through s(z, t, h) alone.
      At the finest h = 1 / ``max_sampling_steps`` the two half steps read d = 0, the
      flow-matching velocity, which anchors the chain of step sizes.

    Frans et al.'s code runs its time the same way (t = 0 noise, t = 1 data) and trains the
    same two losses, with these differences: its flow-matching part reads the finest step
    size 1/128 instead of d = 0 (and then bootstraps only h >= 1/64), draws flow matching's t
    on the grid of 1/128, builds the self-consistency target with the exponential moving
    average of the weights, and clips z' and the target to [-4, 4] for images. Here the target
    comes from the weights being trained (the loss sees no other), flow matching's t is
    continuous, because the ODE samplers read d = 0 at any time, and nothing is clipped.

    References: Frans, Hafner, Levine, Abbeel, "One Step Diffusion via Shortcut Models"
    (2024).
    """

    schedule: Schedule
    parameterization: Parameterization
    num_transport_steps: int = eqx.field(static=True)
    max_sampling_steps: int = eqx.field(static=True, default=128)
    self_consistency_share: float = eqx.field(static=True, default=0.25)
    loss_target: str = eqx.field(static=True, default="prediction")

    def __check_init__(self):
        for name in ("max_sampling_steps", "num_transport_steps"):
            if not _is_power_of_two(getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)!r} must be a power of two")

    def shortcut(
        self,
        model: Model,
        t: Float[Array, ""],
        d: Float[Array, ""],
        z: Float[Array, " d"],
        label: Int[Array, ""] | None = None,
    ) -> Float[Array, " d"]:
        """s(z, t, d): the network read at the times (t, d)."""
        times = jnp.stack([t, d])
        return read_network(model, times, z, label)

    def network_output(
        self,
        model: Model,
        t: Float[Array, ""],
        z: Float[Array, " d"],
        label: Int[Array, ""] | None = None,
    ) -> Float[Array, " d"]:
        """The instantaneous velocity s(z, t, 0), from which the denoiser, the ODE samplers'
        velocity, the likelihood and the score follow."""
        return self.shortcut(model, t, jnp.zeros_like(t), z, label)

    def sample_time(self, key: PRNGKeyArray) -> Float[Array, ""]:
        """Flow matching's time, t ~ U[0, 1]."""
        return jax.random.uniform(key)

    def sample_step(self, key: PRNGKeyArray) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """A self-consistency pair (t, h): h = 2^-k with k uniform in {0, ..., K}, and t = j h
        with j uniform in {0, ..., 2^k - 1}."""
        level_key, time_key = jax.random.split(key)
        levels = self.max_sampling_steps.bit_length() - 1  # K = log2(max_sampling_steps)
        sections = 2 ** jax.random.randint(level_key, (), 0, levels + 1)
        j = jax.random.randint(time_key, (), 0, sections)
        return j.astype(jnp.float32) / sections, 1.0 / sections.astype(jnp.float32)

    def self_consistency_target(
        self,
        model: Model,
        t: Float[Array, ""],
        h: Float[Array, ""],
        z: Float[Array, " d"],
        label: Int[Array, ""] | None = None,
    ) -> Float[Array, " d"]:
        """(s(z, t, h/2) + s(z', t + h/2, h/2)) / 2 with z' = z + (h/2) s(z, t, h/2), behind a
        stop-gradient; the half steps read d = 0 at the finest h = 1 / max_sampling_steps."""
        half = h / 2
        read = jnp.where(h * self.max_sampling_steps > 1.5, half, 0.0)
        first = self.shortcut(model, t, read, z, label)
        second = self.shortcut(model, t + half, read, z + half * first, label)
        return jax.lax.stop_gradient((first + second) / 2)

    def training_pair(
        self,
        model: Model,
        x: Float[Array, " d"],
        eps: Float[Array, " d"],
        key: PRNGKeyArray,
        label: Int[Array, ""] | None = None,
    ) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, " d"], Float[Array, " d"]]:
        """One point's regression (t, d, z_t, target) for the data point x and source point eps.

        With probability ``self_consistency_share``: self-consistency, (t, h) from
        :meth:`sample_step` and the target two half steps (:meth:`self_consistency_target`,
        behind a stop-gradient); else flow matching, t ~ U[0, 1], d = 0 and the target x - eps.
        Both targets are computed and the draw picks one.
        """
        branch_key, time_key, step_key = jax.random.split(key, 3)
        consistency = jax.random.bernoulli(branch_key, self.self_consistency_share)
        t_step, h = self.sample_step(step_key)
        t = jnp.where(consistency, t_step, self.sample_time(time_key))
        d = jnp.where(consistency, h, 0.0)
        c = path_coefficients(self.schedule, t)
        z = c.alpha * x + c.sigma * eps
        target = jnp.where(
            consistency,
            self.self_consistency_target(model, t, h, z, label),
            velocity(x, eps, c),
        )
        return t, d, z, target

    def loss_fn(
        self,
        model: Model,
        x: Float[Array, " d"],
        key: PRNGKeyArray,
        label: Int[Array, ""] | None = None,
        eps: Float[Array, " d"] | None = None,
    ) -> Scalar:
        """|s(z_t, t, d) - target|^2 / D of one data point at its :meth:`training_pair`: flow
        matching's loss at d = 0 or, with probability ``self_consistency_share``,
        self-consistency at a step size d = h > 0 (see the class). The network is read with
        gradient once, at (t, d)."""
        pair_key, noise_key = jax.random.split(key)
        eps = source_point(noise_key, x, eps)
        t, d, z, target = self.training_pair(model, x, eps, pair_key, label)
        return jnp.mean((self.shortcut(model, t, d, z, label) - target) ** 2)

    def check_reverse_steps(self, num_steps: int) -> None:
        """Refuses a step count that is not a power of two or is finer than the trained steps.

        Raises:
            ValueError: ``num_steps`` is not 1, 2, 4, ... or exceeds ``max_sampling_steps``.
        """
        if not _is_power_of_two(num_steps):
            raise ValueError(
                f"a shortcut model samples in a power of two steps (1, 2, 4, ...), not {num_steps}"
            )
        if num_steps > self.max_sampling_steps:
            raise ValueError(
                f"a shortcut model trained down to steps of 1/{self.max_sampling_steps} samples "
                f"in at most {self.max_sampling_steps} steps, not {num_steps}; use an ODE "
                f"sampler (euler, heun, ...) for more"
            )

    def reverse(
        self,
        model: Model,
        t: Float[Array, ""],
        t_next: Float[Array, ""],
        x_t: Float[Array, " d"],
        key: PRNGKeyArray,
    ) -> Float[Array, " d"]:
        """One shortcut step across the interval: z + (t_next - t) s(z, t, t_next - t)."""
        return x_t + (t_next - t) * self.shortcut(model, t, t_next - t, x_t)


def _is_power_of_two(n: int) -> bool:
    return isinstance(n, int) and n > 0 and n & (n - 1) == 0
