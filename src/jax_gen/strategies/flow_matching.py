"""Flow matching on a Gaussian path, sampled with Euler steps on the learned velocity."""

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from jax_gen.coupling import pair_by_optimal_transport
from jax_gen.parameterization import Parameterization
from jax_gen.schedules import Schedule
from jax_gen.strategies.base import Model, Strategy


class FlowMatchingStrategy(Strategy):
    """Conditional flow matching: regress the velocity of z_t = alpha(t) x + sigma(t) eps.

    The path is the linear one z_t = t x + (1 - t) eps (``LinearPath``, v = x - eps) or the
    variance-preserving ``CosinePath``. Training draws t ~ U[0, 1]. Sampling integrates
    dz/dt = v(t, z) from t = 0 (noise) to t = 1 (data) with N Euler steps z <- z + v / N, the
    velocity obtained from the network's x, eps or v prediction through the parameterization.

    **Coupling.** ``"independent"`` draws each point's eps on its own. ``"ot"`` draws a batch of
    eps and pairs it with the data batch by optimal transport
    (:func:`jax_gen.coupling.pair_by_optimal_transport`): the marginals of x and eps are
    unchanged, so the learned field still carries the source onto the data, along straighter
    paths that few-step samplers follow better. The network then estimates E[x | z_t] and
    E[eps | z_t] under the coupled pairs, which give the velocity but no longer the score
    (-E[eps | z_t] / sigma(t) holds for independent pairs only): stochastic samplers and
    ``score`` refuse such a strategy.

    ``"reflow"`` trains on a table of pairs (x, eps) made once before training from a trained
    teacher flow: eps ~ N(0, I) and x the end point of the teacher's ODE started at eps
    (:func:`jax_gen.engine.reflow_pairs`). Training draws whole rows of the table
    (:class:`jax_gen.coupling.Pairs`) in place of the dataset's batch, so the strategy itself
    never pairs a batch: :meth:`couple` refuses. Both marginals are kept (eps's is N(0, I), x's
    is the teacher's), and since the pairs are a deterministic map, the rectified flow's paths
    are straighter than the teacher's and its one-step samples better. Like ``"ot"``, it gives
    the velocity but not the score.

    References: Lipman et al., "Flow Matching for Generative Modeling" (2023); Tong et al.,
    "Improving and generalizing flow-based generative models with minibatch optimal transport"
    (2024); Liu et al., "Flow Straight and Fast: Learning to Generate and Transfer Data with
    Rectified Flow" (2022).
    """

    schedule: Schedule
    parameterization: Parameterization
    num_transport_steps: int = eqx.field(static=True)
    loss_target: str = eqx.field(static=True, default="prediction")
    coupling: str = eqx.field(static=True, default="independent")

    def __check_init__(self):
        if self.coupling not in ("independent", "ot", "reflow"):
            raise ValueError(f"coupling={self.coupling!r} must be one of independent, ot, reflow")

    def couple(self, key: PRNGKeyArray, x: Float[Array, "n d"]) -> Float[Array, "n d"] | None:
        if self.coupling == "independent":
            return None
        if self.coupling == "reflow":
            raise ValueError(
                "coupling='reflow' trains on the teacher's pairs, not on data batches: train "
                "with jax_gen.engine.fit, or pass pairs=jax_gen.engine.reflow_pairs(...)"
            )
        source = self.sample_from_source_distribution(key, x.shape[0], x.shape[1])
        return pair_by_optimal_transport(x, source.astype(x.dtype))

    def has_score(self) -> bool:
        return self.coupling == "independent"

    def sample_time(self, key: PRNGKeyArray) -> Float[Array, ""]:
        return jax.random.uniform(key)

    def reverse(
        self,
        model: Model,
        t: Float[Array, ""],
        t_next: Float[Array, ""],
        x_t: Float[Array, " d"],
        key: PRNGKeyArray,
    ) -> Float[Array, " d"]:
        """One Euler step z + (t_next - t) v(t, z)."""
        return x_t + (t_next - t) * self.velocity(model, t, x_t)
