"""The Strategy protocol, and the Gaussian-path machinery every strategy shares.

A strategy combines a schedule (the path z_t = alpha x + sigma eps, t=0 noise, t=1 data), a
parameterization (what the network predicts), a loss and a reverse step. Everything acts on ONE
point; batches come from ``jax.vmap``.
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar

from jax_gen.parameterization import Parameterization, path_coefficients, velocity
from jax_gen.schedules import Schedule

Model = eqx.Module  # any callable model(t, x) on one point (model(t, x, label) if conditional)


def read_network(
    model: Model,
    times: Float[Array, "*times"],
    z: Float[Array, " d"],
    label: Int[Array, ""] | None = None,
) -> Float[Array, " d"]:
    """model(times, z), or model(times, z, label) with a label: one time t, or the vector of
    times a multi-time network reads (MeanFlow's (t, t_end - t), a shortcut's (t, d))."""
    return model(times, z) if label is None else model(times, z, label=label)


def source_point(
    key: PRNGKeyArray, x: Float[Array, " d"], eps: Float[Array, " d"] | None
) -> Float[Array, " d"]:
    """The partner ``eps`` a coupling gave the data point x, or else a fresh N(0, I) draw."""
    return jax.random.normal(key, x.shape, x.dtype) if eps is None else eps


class Strategy(eqx.Module):
    """A generative model moving points from a Gaussian source (t=0) to the data (t=1).

    Concrete strategies define the time distribution of training, the sampling grid and the
    reverse step; the forward process, the loss and the network's estimates (denoiser,
    velocity, score) are shared. Sampling (:func:`jax_gen.sampling.sample`) and the likelihood
    (:func:`jax_gen.likelihood.log_prob`) take a strategy and read it through these.
    """

    schedule: eqx.AbstractVar[Schedule]
    parameterization: eqx.AbstractVar[Parameterization]
    num_transport_steps: eqx.AbstractVar[int]
    loss_target: eqx.AbstractVar[str]
    """``"prediction"``: regress the network's output; ``"v"``: regress the velocity it implies."""

    @abc.abstractmethod
    def sample_time(self, key: PRNGKeyArray) -> Float[Array, ""]:
        """Draws one training time t in [0, 1]."""

    @abc.abstractmethod
    def reverse(
        self,
        model: Model,
        t: Float[Array, ""],
        t_next: Float[Array, ""],
        x_t: Float[Array, " d"],
        key: PRNGKeyArray,
    ) -> Float[Array, " d"]:
        """The strategy's own sampling step from time t to t_next > t, on one point.

        The sampler hands every step its interval; a discrete-time strategy is only asked for
        steps between its training levels (:meth:`training_levels`)."""

    def at_step(self, step: Int[Array, ""], total_steps: Int[Array, ""]) -> "Strategy":
        """The strategy as it trains at ``step`` of a run of ``total_steps`` (0: unknown).

        Training calls this inside the compiled step, with traced integers. A strategy with a
        curriculum (consistency training's growing number of discretisation steps) returns a
        copy set for the step; the others, whose loss never changes, return themselves.
        """
        return self

    def check_reverse_steps(self, num_steps: int) -> None:
        """Raises ``ValueError`` when the strategy's own step (:meth:`reverse`, the ``default``
        sampler) cannot cross [0, 1] in ``num_steps`` steps.

        The sampler asks before it runs. Most strategies take any count; a shortcut model only
        the step sizes it was trained for.
        """

    def training_levels(self) -> int | None:
        """L when the network is trained only at the times k / L (k = 0..L); None for any t.

        Samplers move their grid onto these times (:func:`jax_gen.sampling.snap_to_levels`):
        between them such a network answers for inputs it never saw.
        """
        return None

    def time_grid(self) -> Float[Array, " steps+1"]:
        """The sampling grid 0, 1/N, ..., 1 with N = ``num_transport_steps``."""
        return jnp.arange(self.num_transport_steps + 1, dtype=jnp.float32) / jnp.float32(
            self.num_transport_steps
        )

    def forward(
        self, t: Float[Array, ""], x: Float[Array, " d"], key: PRNGKeyArray
    ) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        """Noises a data point to time t: returns (z_t, the regression target).

        z_t = alpha(t) x + sigma(t) eps with eps ~ N(0, I); the target is x, eps or
        v = alpha'(t) x + sigma'(t) eps according to the parameterization (or v whatever the
        parameterization when ``loss_target`` is ``"v"``).
        """
        return self.noised(t, x, source_point(key, x, None))

    def noised(
        self, t: Float[Array, ""], x: Float[Array, " d"], eps: Float[Array, " d"]
    ) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        """``forward`` with a given source point eps: (z_t, the regression target)."""
        c = path_coefficients(self.schedule, t)
        z = c.alpha * x + c.sigma * eps
        if self.loss_target == "v":
            return z, velocity(x, eps, c)
        return z, self.parameterization.target(x, eps, c)

    def loss_fn(
        self,
        model: Model,
        x: Float[Array, " d"],
        key: PRNGKeyArray,
        label: Int[Array, ""] | None = None,
        eps: Float[Array, " d"] | None = None,
    ) -> Scalar:
        """Squared error of the network's prediction at a random time, for one data point.

        L = || output(t, z_t) - target ||^2 / d with t ~ ``sample_time`` and z_t, target from
        ``forward``; the output is model(t, z_t), or the velocity it implies when
        ``loss_target`` is ``"v"`` (x-prediction with a v-loss, for instance).

        With a ``label`` the output is model(t, z_t, label): the class-conditional loss, whose
        minimiser is the denoiser of the class's data, E[target | z_t, label]. ``label=None``
        calls model(t, z_t), so any model(t, x) works unchanged. The key is used the same way
        with or without a label.

        ``eps`` is the point's partner from :meth:`couple`; ``None`` draws it from the key
        (independent pairing), exactly as ``forward`` does.
        """
        time_key, noise_key = jax.random.split(key)
        t = self.sample_time(time_key)
        if eps is None:
            z, target = self.forward(t, x, noise_key)
        else:
            z, target = self.noised(t, x, eps)
        output = self.network_output(model, t, z, label)
        if self.loss_target == "v":
            output = self.parameterization.to_velocity(
                output, z, path_coefficients(self.schedule, t)
            )
        return jnp.mean((output - target) ** 2)

    def couple(self, key: PRNGKeyArray, x: Float[Array, "n d"]) -> Float[Array, "n d"] | None:
        """Source points paired with a data batch, or ``None`` for independent pairing.

        Independent pairing, the default, lets each ``loss_fn`` draw its own eps ~ N(0, I):
        the pair (x, eps) is then drawn from the product of the data and source distributions,
        which every denoiser, score and likelihood formula here assumes. A strategy may pair a
        batch differently (:class:`~jax_gen.strategies.FlowMatchingStrategy`'s optimal
        transport) as long as each marginal stays the same.
        """
        return None

    def has_velocity(self) -> bool:
        """Whether the network gives an instantaneous velocity (True for every Gaussian-path
        strategy with a denoiser; False for a consistency model, which gives only a jump to the
        data). The ODE samplers and the likelihood need it; the strategy's own step does not.
        """
        return True

    def has_score(self) -> bool:
        """Whether -E[eps | z_t] / sigma(t) is the score (True unless a coupling changed it).

        Stochastic samplers and :meth:`score` need it; the velocity, the ODE samplers and the
        likelihood do not.
        """
        return True

    def network_output(
        self,
        model: Model,
        t: Float[Array, ""],
        z: Float[Array, " d"],
        label: Int[Array, ""] | None = None,
    ) -> Float[Array, " d"]:
        """The network's prediction at time t (x, eps or v, as the parameterization says).

        model(t, z), or model(t, z, label) with a label. A strategy whose network reads more
        than one time (MeanFlow's interval, a shortcut's step size) reads it here at the
        setting where it predicts the instantaneous quantity, and the denoiser, velocity, score
        and loss all follow.
        """
        return read_network(model, t, z, label)

    def denoise(
        self, model: Model, t: Float[Array, ""], z: Float[Array, " d"]
    ) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        """The network's estimates (E[x | z_t], E[eps | z_t]) at one point."""
        return self.parameterization.to_x_eps(
            self.network_output(model, t, z), z, path_coefficients(self.schedule, t)
        )

    def velocity(
        self, model: Model, t: Float[Array, ""], z: Float[Array, " d"]
    ) -> Float[Array, " d"]:
        """The probability-flow velocity E[dz/dt | z_t = z] = alpha' x_hat + sigma' eps_hat.

        Integrating dz/dt = velocity from t=0 to t=1 carries the source onto the data for every
        Gaussian-path strategy (flow matching's learned field, DDPM's probability-flow ODE).
        """
        return self.parameterization.to_velocity(
            self.network_output(model, t, z), z, path_coefficients(self.schedule, t)
        )

    def score(self, model: Model, t: Float[Array, ""], z: Float[Array, " d"]) -> Float[Array, " d"]:
        """The score grad log p_t(z) = -E[eps | z_t = z] / sigma(t).

        Raises:
            ValueError: the strategy pairs data and noise dependently (``has_score`` False).
        """
        if not self.has_score():
            raise ValueError(
                "the score is not -E[eps | z_t] / sigma(t) under a coupled (optimal transport) "
                "training; use the velocity"
            )
        _, eps_hat = self.denoise(model, t, z)
        return -eps_hat / path_coefficients(self.schedule, t).sigma

    def sample_from_source_distribution(
        self, key: PRNGKeyArray, num_samples: int, data_dim: int
    ) -> Float[Array, "n d"]:
        """Standard normal points: the path's state at t=0."""
        return jax.random.normal(key, (num_samples, data_dim))

    def source_name(self) -> str:
        """What :meth:`sample_from_source_distribution` draws from, in words (``"N(0, I)"``):
        two strategies with the same name start from the same distribution."""
        return "N(0, I)"

    def has_source_density(self) -> bool:
        """Whether :meth:`source_log_prob` knows the source's density (the likelihood needs
        it): True for every Gaussian source."""
        return True

    def source_log_prob(self, z: Float[Array, " d"]) -> Float[Array, ""]:
        """log N(z; 0, I) = -(d log(2 pi) + |z|^2) / 2: the density of the source draw."""
        return -0.5 * (z.shape[-1] * math.log(2 * math.pi) + jnp.sum(z**2, axis=-1))
