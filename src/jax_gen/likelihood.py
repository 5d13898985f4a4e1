"""Exact log-likelihood of a trained strategy through its probability-flow ODE.

Every strategy carries its source density (t=0) to its model of the data (t=1) along the
probability-flow ODE dz/dt = v(t, z) (:meth:`Strategy.velocity`). The density along a solution
z_t of an ODE obeys the instantaneous change of variables

    d log p_t(z_t) / dt = -div v(t, z_t),

so the model's log-density of a point x is read off by solving the ODE backwards from z_1 = x to
z_0 while accumulating the divergence:

    log p_1(x) = log p_0(z_0) - int_0^1 div v(t, z_t) dt,

with log p_0 the strategy's :meth:`Strategy.source_log_prob`. This is the density of the samples
the ODE (``adaptive`` and the Runge-Kutta samplers, in the limit of small steps) draws, which for
DDPM and score matching is not the density of the strategy's own stochastic sampler.

References: Chen et al., "Neural Ordinary Differential Equations" (2018), theorem 1;
Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
Models" (2019), the Hutchinson estimator with probes fixed over the solve; Song et al.,
"Score-Based Generative Modeling through Stochastic Differential Equations" (2021), appendix D.2.
"""

from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from jax_gen.strategies.base import Model, Strategy

Estimator = Literal["exact", "hutchinson"]
ESTIMATORS = ("exact", "hutchinson")


def log_prob(
    strategy: Strategy,
    model: Model,
    x: Float[ArrayLike, "n d"],
    *,
    time: float | Float[ArrayLike, ""] = 1.0,
    key: PRNGKeyArray | None = None,
    estimator: Estimator = "exact",
    num_probes: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
) -> Float[Array, " n"]:
    """The model's log-density log p_1(x) of each point (log p_t(x) at ``time`` t), in nats.

    Each point is carried back to t=0 by an adaptive solve (Tsit5 with a PID step-size
    controller, ``rtol``, ``atol``) of the augmented ODE

        dz/dt = v(t, z),   d delta/dt = div v(t, z),   from (z, delta) = (x, 0) at t=1 to t=0,

    so that delta_0 = -int_0^1 div v(t, z_t) dt and

        log p_1(x) = source_log_prob(z_0) + delta_0.

    With ``time`` t < 1 the solve starts at t instead: log p_t(x) is the density of the
    marginal the probability-flow ODE carries the source to at time t (t = 0 gives the source's
    own density); ``plot-path`` draws it over the (t, x) plane.

    Points are solved independently (``vmap`` of the solve: each point has its own steps). The
    strategy reads the path at t clipped into [T_CLIP, 1 - T_CLIP], as the samplers do, so on
    [0, T_CLIP] and [1 - T_CLIP, 1] the velocity is frozen at the clipped time; the ODE is still
    the one the ODE samplers integrate, and this is the density of their samples.

    The divergence div v = tr(dv/dz) is

    - ``"exact"``: the trace of the Jacobian, from d forward-mode products (cheap in low d);
    - ``"hutchinson"``: (1 / K) sum_k e_k^T (dv/dz) e_k with K = ``num_probes`` Rademacher probes
      e_k per point, each term one Jacobian-vector product. The probes are drawn once per point
      and held fixed over the whole solve, so the integral of the estimate is an unbiased
      estimate of the integral of the divergence, and the log-density estimate is unbiased
      (z_0 does not depend on the probes). Its variance is that of
      int_0^1 e^T (dv/dz) e dt, which vanishes where the Jacobian is diagonal.

    Args:
        strategy: any :class:`~jax_gen.strategies.Strategy` (its ``velocity`` and
            ``source_log_prob`` are all that is used).
        model: the network, ``model(t, x)`` on one point.
        x: the points, shape (n, d).
        time: the time t in [0, 1] of the marginal whose density is read (a traced scalar: a
            new time does not recompile).
        key: the key of the Hutchinson probes; required for ``"hutchinson"``, unused otherwise.
        estimator: ``"exact"`` or ``"hutchinson"``.
        num_probes: probes per point of the Hutchinson estimator, a positive int.
        rtol, atol: tolerances of the step-size controller, on z and delta together.
        max_steps: the most steps a point's solve may take.

    Returns:
        log p_1(x), shape (n,), in nats. A point whose solve does not finish in ``max_steps``
        steps gets NaN.

    Raises:
        ValueError: a strategy without a velocity (``has_velocity`` False), an unknown
            estimator, a missing key for ``"hutchinson"``, a non-positive
            ``num_probes``, ``rtol``, ``atol`` or ``max_steps``, or ``x`` not of shape (n, d).
    """
    if not strategy.has_velocity():
        raise ValueError(
            f"the likelihood integrates the velocity, which a {type(strategy).__name__} does "
            f"not give"
        )
    if estimator not in ESTIMATORS:
        raise ValueError(f"{estimator=} must be one of {ESTIMATORS}")
    if estimator == "hutchinson" and key is None:
        raise ValueError("estimator='hutchinson' needs a key to draw its probes")
    if not (isinstance(num_probes, int) and num_probes > 0):
        raise ValueError(f"{num_probes=} must be a positive int")
    if not (isinstance(max_steps, int) and max_steps > 0):
        raise ValueError(f"{max_steps=} must be a positive int")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"{rtol=} and {atol=} must be positive")
    if isinstance(time, int | float) and not 0.0 <= time <= 1.0:
        raise ValueError(f"{time=} must lie in [0, 1]")
    x = jnp.asarray(x)
    x = x.astype(jnp.result_type(x, float))
    if x.ndim != 2:
        raise ValueError(f"x of shape {x.shape} must be a batch of points, shape (n, d)")
    log_p, _ = _log_prob(
        strategy,
        model,
        x,
        jnp.asarray(time, x.dtype),
        key if estimator == "hutchinson" else None,
        num_probes,
        jnp.asarray(rtol, x.dtype),  # arrays, so that a new tolerance does not recompile
        jnp.asarray(atol, x.dtype),
        max_steps,
    )
    return log_p


def nats_per_dim(log_p: Float[ArrayLike, " n"], data_dim: int) -> float:
    """The mean negative log-likelihood per dimension, -mean(log p) / d, in nats."""
    return float(-jnp.mean(jnp.asarray(log_p)) / data_dim)


@eqx.filter_jit
def _log_prob(
    strategy: Strategy, model: Model, x, time, key, num_probes, rtol, atol, max_steps
) -> tuple[Float[Array, " n"], Int[Array, " n"]]:
    """log p_time of each point and the number of solver steps it took."""
    if key is None:
        probes = None
    else:
        probes = jax.random.rademacher(key, (x.shape[0], num_probes, x.shape[1]), dtype=x.dtype)

    def one_point(point, point_probes):
        return _log_prob_one(strategy, model, point, time, point_probes, rtol, atol, max_steps)

    return jax.vmap(one_point)(x, probes)


def _divergence(velocity_at_t, z, probes) -> tuple[Float[Array, " d"], Float[Array, ""]]:
    """v(z) and the exact (``probes is None``) or Hutchinson estimate of div v(z)."""
    v, jvp = jax.linearize(velocity_at_t, z)
    if probes is None:
        basis = jnp.eye(z.shape[0], dtype=z.dtype)
        return v, jnp.trace(jax.vmap(jvp)(basis))
    return v, jnp.mean(jnp.sum(probes * jax.vmap(jvp)(probes), axis=-1))


def _log_prob_one(
    strategy: Strategy, model: Model, x, time, probes, rtol, atol, max_steps
) -> tuple[Float[Array, ""], Int[Array, ""]]:
    """log p_time(x) of one point by the backward solve of (z, delta), and its number of steps."""

    def augmented(t, state, args):
        z, _ = state
        v, div = _divergence(lambda z: strategy.velocity(model, t, z), z, probes)
        return v, div

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(augmented),
        diffrax.Tsit5(),
        t0=time,
        t1=0.0,
        dt0=None,
        y0=(x, jnp.zeros((), x.dtype)),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
        throw=False,
    )
    z0, delta0 = solution.ys
    log_p = strategy.source_log_prob(z0[0]) + delta0[0]
    ok = solution.result == diffrax.RESULTS.successful
    return jnp.where(ok, log_p, jnp.nan), solution.stats["num_steps"]
