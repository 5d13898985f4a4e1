"""Flow matching on a path from any source to the data, sampled with Euler steps on the learned
velocity."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from jax_gen.config import name_of
from jax_gen.coupling import pair_by_entropic_plan, pair_by_optimal_transport
from jax_gen.data import data_dim, get_batch, has_log_density, log_density
from jax_gen.parameterization import T_CLIP, Parameterization, path_coefficients, velocity
from jax_gen.schedules import Schedule
from jax_gen.strategies.base import Model, Strategy, source_point

_PLAN_STREAM = 1  # fold_in index of the key that draws partners from the entropic plan


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

    ``"sb"`` (the Schrodinger bridge, Tong et al.'s SB-CFM) draws each data point's partner from
    the entropic optimal-transport plan of the batch with epsilon = 2 sigma^2
    (:func:`jax_gen.coupling.pair_by_entropic_plan`) and trains on the Brownian bridge between
    them (below).

    **Source.** The path starts (t=0) from N(0, I), or from any dataset given as ``source`` (a
    dataset config): then "eps" is a point of that dataset, and flow matching carries one
    distribution onto the other (8 Gaussians onto the moons). The linear path's conversions
    x = z + (1 - t) v, eps = z - t v hold whatever eps's law, so every prediction trains; the
    score, which needs a Gaussian eps, does not exist, and :meth:`source_log_prob` is the
    dataset's density where it is known.

    **Path noise.** With ``sigma`` > 0 the path is blurred around each pair's line,

        z_t = alpha x + sigma_t eps + s(t) xi,    xi ~ N(0, I),
        target v = alpha' x + sigma_t' eps + s'(t) xi,

    with s(t) = sigma for ``"independent"`` and ``"ot"`` (I-CFM and OT-CFM) and the Brownian
    bridge s(t) = sigma sqrt(t (1 - t)), s'(t) = sigma (1 - 2t) / (2 sqrt(t (1 - t))), for
    ``"sb"``. The network regresses the marginal velocity of the blurred path, so only
    v-prediction is meaningful (the config refuses the others). Sampling starts from the
    source itself.

    References: Lipman et al., "Flow Matching for Generative Modeling" (2023); Tong et al.,
    "Improving and generalizing flow-based generative models with minibatch optimal transport"
    (TMLR 2024); Tong et al., "Simulation-free Schrodinger bridges via score and flow matching"
    (AISTATS 2024); Liu et al., "Flow Straight and Fast: Learning to Generate and Transfer Data
    with Rectified Flow" (2022).
    """

    schedule: Schedule
    parameterization: Parameterization
    num_transport_steps: int = eqx.field(static=True)
    loss_target: str = eqx.field(static=True, default="prediction")
    coupling: str = eqx.field(static=True, default="independent")
    sigma: float = eqx.field(static=True, default=0.0)
    """The path's noise around each pair's line (0: none)."""
    source: Any = eqx.field(static=True, default=None)
    """A dataset config whose points start the path, or None for N(0, I)."""

    def __check_init__(self):
        if self.coupling not in ("independent", "ot", "sb", "reflow"):
            raise ValueError(
                f"coupling={self.coupling!r} must be one of independent, ot, sb, reflow"
            )
        if not self.sigma >= 0 or (self.coupling == "sb" and not self.sigma > 0):
            raise ValueError(f"sigma={self.sigma!r} must be >= 0, and > 0 for coupling='sb'")

    def couple(self, key: PRNGKeyArray, x: Float[Array, "n d"]) -> Float[Array, "n d"] | None:
        if self.coupling == "reflow":
            raise ValueError(
                "coupling='reflow' trains on the teacher's pairs, not on data batches: train "
                "with jax_gen.engine.fit, or pass pairs=jax_gen.engine.reflow_pairs(...)"
            )
        if self.coupling == "independent" and self.source is None:
            return None  # each loss_fn draws its own N(0, I)
        source = self.sample_from_source_distribution(key, x.shape[0], x.shape[1]).astype(x.dtype)
        match self.coupling:
            case "ot":
                return pair_by_optimal_transport(x, source)
            case "sb":
                plan_key = jax.random.fold_in(key, _PLAN_STREAM)
                return pair_by_entropic_plan(plan_key, x, source, 2 * self.sigma**2)
            case _:
                return source

    def has_score(self) -> bool:
        return self.coupling == "independent" and self.source is None and self.sigma == 0

    def sample_from_source_distribution(
        self, key: PRNGKeyArray, num_samples: int, data_dim: int
    ) -> Float[Array, "n d"]:
        """Points of the source: N(0, I), or a batch of the source dataset."""
        if self.source is None:
            return super().sample_from_source_distribution(key, num_samples, data_dim)
        check_source(self.source, data_dim)
        return get_batch(key, self.source, num_samples)

    def source_name(self) -> str:
        return super().source_name() if self.source is None else name_of(self.source)

    def has_source_density(self) -> bool:
        return self.source is None or has_log_density(self.source)

    def source_log_prob(self, z: Float[Array, " d"]) -> Float[Array, ""]:
        """log N(z; 0, I), or the source dataset's exact log-density (where it is known)."""
        if self.source is None:
            return super().source_log_prob(z)
        if not self.has_source_density():
            raise ValueError(
                f"the source {name_of(self.source)} has no density in closed form: the "
                "likelihood needs one (N(0, I), the Gaussian mixtures, eight-gaussians, images)"
            )
        return log_density(self.source, z.reshape(-1, z.shape[-1])).reshape(z.shape[:-1])

    def path_noise(self, t: Float[Array, ""]) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """(s(t), s'(t)): the path's noise level around each pair's line and its derivative.

        sigma and 0 for independent and OT pairs; the Brownian bridge sigma sqrt(t (1 - t))
        and sigma (1 - 2t) / (2 sqrt(t (1 - t))) for ``"sb"``, with t clipped into
        [T_CLIP, 1 - T_CLIP] as the path's coefficients are (s' is singular at the ends).
        """
        if self.coupling != "sb":
            return jnp.asarray(self.sigma, jnp.float32), jnp.zeros((), jnp.float32)
        t = jnp.clip(t, T_CLIP, 1 - T_CLIP)
        root = jnp.sqrt(t * (1 - t))
        return self.sigma * root, self.sigma * (1 - 2 * t) / (2 * root)

    def loss_fn(
        self,
        model: Model,
        x: Float[Array, " d"],
        key: PRNGKeyArray,
        label: Int[Array, ""] | None = None,
        eps: Float[Array, " d"] | None = None,
    ) -> Scalar:
        """The base loss, or with ``sigma`` > 0 the v-regression on the blurred path:
        || v(t, z_t) - (alpha' x + sigma_t' eps + s'(t) xi) ||^2 / d with z_t = alpha x +
        sigma_t eps + s(t) xi (:meth:`path_noise`)."""
        if self.sigma == 0:
            return super().loss_fn(model, x, key, label, eps)
        time_key, noise_key = jax.random.split(key)
        source_key, bridge_key = jax.random.split(noise_key)
        t = self.sample_time(time_key)
        eps = source_point(source_key, x, eps)
        xi = jax.random.normal(bridge_key, x.shape, x.dtype)
        z, target = self.noisy_path(t, x, eps, xi)
        return jnp.mean((self.network_output(model, t, z, label) - target) ** 2)

    def noisy_path(
        self,
        t: Float[Array, ""],
        x: Float[Array, " d"],
        eps: Float[Array, " d"],
        xi: Float[Array, " d"],
    ) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        """The point of the blurred path at t and its velocity there, for a pair (x, eps) and
        the noise xi: (alpha x + sigma_t eps + s(t) xi, alpha' x + sigma_t' eps + s'(t) xi)."""
        c = path_coefficients(self.schedule, t)
        s, d_s = self.path_noise(t)
        return c.alpha * x + c.sigma * eps + s * xi, velocity(x, eps, c) + d_s * xi

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


def check_source(source: Any, dim: int) -> None:
    """Raises ``ValueError`` (one line) unless the dataset ``source`` draws ``dim``-D points."""
    source_dim = data_dim(source)
    if source_dim != dim:
        raise ValueError(
            f"the source {name_of(source)} draws {source_dim}-dimensional points but the data "
            f"have {dim} dimensions"
        )
