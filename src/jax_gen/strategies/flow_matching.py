"""Flow matching on a Gaussian path, sampled with Euler steps on the learned velocity."""

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from jax_gen.parameterization import Parameterization, path_coefficients
from jax_gen.schedules import Schedule
from jax_gen.strategies.base import Model, Strategy


class FlowMatchingStrategy(Strategy):
    """Conditional flow matching: regress the velocity of z_t = alpha(t) x + sigma(t) eps.

    The path is the linear one z_t = t x + (1 - t) eps (``LinearPath``, v = x - eps) or the
    variance-preserving ``CosinePath``. Training draws t ~ U[0, 1]. Sampling integrates
    dz/dt = v(t, z) from t = 0 (noise) to t = 1 (data) with N Euler steps z <- z + v / N, the
    velocity obtained from the network's x, eps or v prediction through the parameterization.

    Reference: Lipman et al., "Flow Matching for Generative Modeling" (2023).
    """

    schedule: Schedule
    parameterization: Parameterization
    num_transport_steps: int = eqx.field(static=True)
    loss_target: str = eqx.field(static=True, default="prediction")

    def sample_time(self, key: PRNGKeyArray) -> Float[Array, ""]:
        return jax.random.uniform(key)

    def reverse(
        self, model: Model, t: Float[Array, ""], x_t: Float[Array, " d"], key: PRNGKeyArray
    ) -> Float[Array, " d"]:
        v = self.parameterization.to_velocity(
            model(t, x_t), x_t, path_coefficients(self.schedule, t)
        )
        return x_t + v / self.num_transport_steps
