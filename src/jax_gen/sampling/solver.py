"""What a solver is: the declarations the loop reads, and the network as a solver sees it.

A solver is a small final class (an ``eqx.Module``) whose fields are its options. The loop
(:func:`jax_gen.sampling.sample`) owns the grid, the keys and the ``lax.scan``; a solver only
says what it needs and how one step goes:

- ``init(network, grid, z)`` returns whatever it carries from step to step (``None`` for
  one-step methods, the previous estimate for a multistep one);
- ``step(network, interval, z, key, carry)`` returns ``(z_next, carry)`` for one interval of
  the grid, on the whole batch; its fresh noise is ``network.noise(key, z)``, drawn point by
  point, so a point's samples do not depend on the batch it is sampled in.

A solver that picks its own steps (:class:`AbstractAdaptiveSolver`) implements ``solve``
over the whole time span instead.
"""

import abc
from typing import Any, ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from jax_gen.sampling.guidance import Guided
from jax_gen.strategies.base import Model, Strategy

GridKind = Literal["uniform", "logsnr"]


class Interval(NamedTuple):
    """One step of the grid, as the loop hands it to ``step``."""

    t: Float[Array, ""]
    """Start of the step."""
    t_next: Float[Array, ""]
    """End of the step: the next grid time."""
    dt: Float[Array, ""]
    """Length of the step: exactly 1 / N on the uniform grid, else t_next - t."""
    index: Int[Array, ""]
    """i for the step from t_i to t_{i+1}."""


def point_keys(key: PRNGKeyArray, index: Int[Array, " n"]) -> PRNGKeyArray:
    """The keys of the points numbered ``index`` in a draw with ``key``: ``fold_in(key, i)``."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index)


class Network:
    """The trained model as the solvers see it: the strategy's estimates on a batch of points.

    Each method takes a time and a batch (n, d) and applies the strategy's one-point method to
    every point; with class labels, point i is read through the guided model of its own label
    (:class:`~jax_gen.sampling.guidance.Guided`), so every network call of a solver is the guided
    prediction.

    The batch's points carry their numbers in the whole draw (``index``): a step's random draws
    for point i come from ``fold_in(key, index[i])``, so the same point gets the same noise
    whether it is sampled alone, in one batch or in many (:func:`jax_gen.sampling.sample`'s
    ``batch_size``).
    """

    def __init__(
        self,
        strategy: Strategy,
        model: Model,
        labels: Int[Array, " n"] | None,
        guidance_scale: float,
        index: Int[Array, " n"] | None = None,
    ):
        self.strategy = strategy
        self.model = model
        self.labels = labels
        self.guidance_scale = guidance_scale
        self.index = index

    def point_keys(self, key: PRNGKeyArray, z: Float[Array, "n d"]) -> PRNGKeyArray:
        """One key per point: ``fold_in(key, index[i])`` (``index`` default: 0 .. n - 1, when
        ``fold_in(key, i)`` is ``split(key, n)[i]``)."""
        index = jnp.arange(z.shape[0]) if self.index is None else self.index
        return point_keys(key, index)

    def noise(self, key: PRNGKeyArray, z: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """Standard normal noise shaped like ``z``, point i's drawn with its own key
        (:meth:`point_keys`)."""
        keys = self.point_keys(key, z)
        return jax.vmap(lambda k: jax.random.normal(k, z.shape[1:], z.dtype))(keys)

    @property
    def schedule(self):
        """The strategy's path: alpha(t), sigma(t) and their derivatives."""
        return self.strategy.schedule

    def per_point(self, fn):
        """``fn(model, t, *point_args)`` on one point, applied to every point of the batch."""
        model = self.model
        if self.labels is None:
            return lambda t, *args: jax.vmap(lambda *a: fn(model, t, *a))(*args)
        scale = self.guidance_scale
        return lambda t, *args: jax.vmap(lambda y, *a: fn(Guided(model, y, scale), t, *a))(
            self.labels, *args
        )

    def velocity(self, t: Float[ArrayLike, ""], z: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """The probability-flow velocity v(t, z) of every point."""
        return self.per_point(self.strategy.velocity)(t, z)

    def denoise(
        self, t: Float[ArrayLike, ""], z: Float[Array, "n d"]
    ) -> tuple[Float[Array, "n d"], Float[Array, "n d"]]:
        """The estimates (E[x | z_t], E[eps | z_t]) of every point."""
        return self.per_point(self.strategy.denoise)(t, z)

    def score(self, t: Float[ArrayLike, ""], z: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """The score grad log p_t(z) of every point."""
        return self.per_point(self.strategy.score)(t, z)

    def reverse(
        self,
        t: Float[ArrayLike, ""],
        t_next: Float[ArrayLike, ""],
        z: Float[Array, "n d"],
        key: PRNGKeyArray,
    ) -> Float[Array, "n d"]:
        """The strategy's own step from t to t_next, each point with its own key
        (:meth:`point_keys`)."""
        strategy = self.strategy
        keys = self.point_keys(key, z)
        return self.per_point(lambda m, t, x, k: strategy.reverse(m, t, t_next, x, k))(t, z, keys)


class AbstractSolver(eqx.Module):
    """A way of carrying the source (t=0) to the data (t=1), and what it needs to run.

    Concrete solvers are final. They declare, as class variables (or as properties where an
    option decides), what the loop checks before it runs them.
    """

    needs_score: eqx.AbstractVar[bool]
    """Whether it reads the score (-E[eps | z_t] / sigma), which a coupled flow does not give."""
    stochastic: eqx.AbstractVar[bool]
    """Whether it may draw fresh noise along the way (then the key decides its samples)."""
    time_grids: eqx.AbstractClassVar[tuple[GridKind, ...]]
    """The grids it runs on, the first one under ``time_grid="auto"`` (a solver that picks its
    own steps saves its trajectory on this grid)."""
    only_strategy_step: ClassVar[bool] = False
    """Whether it reads the network through the strategy's own ``reverse`` alone (then it
    runs for a strategy without an instantaneous velocity, a consistency model)."""
    leaves_levels: eqx.AbstractClassVar[bool]
    """Whether it may step between the times a discrete-time strategy was trained at. False: it
    always runs on them, so it takes at most that many steps."""

    @abc.abstractmethod
    def evals_per_step(self, strategy: Strategy) -> int | None:
        """Model calls per step (``None`` when the solver picks its own steps)."""


class AbstractFixedStepSolver(AbstractSolver):
    """A solver stepping over the grid the loop gives it, one ``lax.scan`` iteration a step."""

    def init(self, network: Network, grid: Float[Array, " steps+1"], z: Float[Array, "n d"]) -> Any:
        """What the first step carries (``None``: nothing, a one-step method)."""
        return None

    @abc.abstractmethod
    def step(
        self,
        network: Network,
        interval: Interval,
        z: Float[Array, "n d"],
        key: PRNGKeyArray,
        carry: Any,
    ) -> tuple[Float[Array, "n d"], Any]:
        """One step over ``interval``: the batch at its end, and the carry of the next step."""


class AbstractAdaptiveSolver(AbstractSolver):
    """A solver that picks its own steps over [0, 1]."""

    @abc.abstractmethod
    def solve(
        self, network: Network, z: Float[Array, "n d"], num_steps: int, keep_trajectory: bool
    ) -> tuple[Float[Array, "frames n d"], Int[Array, ""]]:
        """The points from t=0 to t=1 saved at i / N (``keep_trajectory``; else at t=1 only:
        one frame), and the model calls per point."""
