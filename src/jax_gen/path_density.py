"""The marginal density p_t(x) of one-dimensional data over the (t, x) plane.

A generative flow carries the source (t = 0) to the data (t = 1) through marginals p_t; in one
dimension the whole story fits in one picture, p_t(x) as a heat map over (t, x) with sampled
trajectories on top (``plot-path``). Three ways to read p_t on a grid of times and points:

- :func:`model_density`: the model's own marginal, exactly, through its probability-flow ODE
  (:func:`jax_gen.likelihood.log_prob` at ``time`` t), for every strategy with a velocity;
- :func:`true_density`: the path the model was trained to follow, z_t = alpha(t) x + sigma(t)
  eps with x ~ data and eps ~ N(0, 1) independent, where the data's density is known:

      p_t(z) = int p_data(x) N(z; alpha(t) x, sigma(t)^2) dx,

  integrated exactly over a fine piecewise-linear interpolation of p_data;
- :func:`histogram_density`: a histogram of sampled points at each time, for a strategy without
  a velocity (consistency models), whose marginals are known only through samples.

Each returns a (times, points) array of densities per unit of x, so each row integrates to 1
over a window that holds the marginal's mass.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float
from scipy import special

from jax_gen.data import data_dim, has_log_density, log_density
from jax_gen.geometry import line_bounds
from jax_gen.likelihood import log_prob
from jax_gen.parameterization import path_coefficients
from jax_gen.strategies.base import Model, Strategy

QUADRATURE_POINTS = 4096
"""Cells of the data grid :func:`true_density` integrates over."""


def _check_grid(times: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(times, dtype=np.float64)
    xs = np.asarray(xs, dtype=np.float64)
    if times.ndim != 1 or times.size == 0 or not np.all((times >= 0) & (times <= 1)):
        raise ValueError(f"times must be a non-empty 1-D array in [0, 1], got {times!r}")
    if xs.ndim != 1 or xs.size < 2 or not np.all(np.diff(xs) > 0):
        raise ValueError(f"xs must be an increasing 1-D array of at least 2 points, got {xs!r}")
    return times, xs


def model_density(
    strategy: Strategy,
    model: Model,
    times: Float[np.ndarray, " t"],
    xs: Float[np.ndarray, " x"],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Float[np.ndarray, "t x"]:
    """The model's marginal density p_t(x) at every (time, point), through its ODE.

    Row i is exp(log_prob(strategy, model, xs, time=times[i])): each point carried back from
    time t to the source along the probability-flow ODE, with the change of variables (one
    compiled solve for every row; the time is traced).

    Args:
        strategy: a strategy with a velocity (``has_velocity``).
        model: its network, on one-dimensional points.
        times: the times t, shape (t,), in [0, 1].
        xs: the points x, increasing, shape (x,).
        rtol, atol: the ODE solver's tolerances.

    Returns:
        The densities, float64, shape (t, x).
    """
    times, xs = _check_grid(times, xs)
    points = jnp.asarray(xs[:, None], jnp.float32)
    rows = [
        np.asarray(log_prob(strategy, model, points, time=float(t), rtol=rtol, atol=atol))
        for t in times
    ]
    return np.exp(np.stack(rows).astype(np.float64))


def has_true_density(strategy: Strategy, dataset) -> bool:
    """Whether :func:`true_density` applies: one-dimensional data of known density, and a
    strategy trained on the independent Gaussian path (``has_score``; a coupling such as
    optimal transport changes the path's marginals)."""
    return data_dim(dataset) == 1 and has_log_density(dataset) and strategy.has_score()


def true_density(
    strategy: Strategy, dataset, times: Float[np.ndarray, " t"], xs: Float[np.ndarray, " x"]
) -> Float[np.ndarray, "t x"]:
    """The density p_t(z) of z_t = alpha(t) x + sigma(t) eps at every (time, point).

    The data's density is interpolated linearly between the points of a grid u_1 < ... < u_M
    (M = :data:`QUADRATURE_POINTS`, spacing h) spanning ``xs`` and a tenth of its width on each
    side, and each cell [u_j, u_j+1], where p_data(u) = c0 + c1 u, is integrated exactly: with
    A, B = (alpha u_j - z) / sigma, (alpha u_j+1 - z) / sigma,

        int (c0 + c1 u) N(z; alpha u, sigma^2) du
            = ((c0 + c1 z / alpha) (Phi(B) - Phi(A)) + c1 sigma / alpha (phi(A) - phi(B))) / alpha,

    Phi and phi the standard normal CDF and density. The sum stays smooth as sigma -> 0 at the
    data end, where it tends to p_data(z / alpha) / alpha; its error is O(h^2 p_data''). alpha
    and sigma are read on the clipped path
    (:func:`~jax_gen.parameterization.path_coefficients`), as training reads them.

    Args:
        strategy: the strategy whose schedule gives alpha(t), sigma(t).
        dataset: a one-dimensional dataset config with a known density.
        times: the times, shape (t,), in [0, 1].
        xs: the points, increasing, shape (x,).

    Returns:
        The densities, float64, shape (t, x).

    Raises:
        ValueError: :func:`has_true_density` is False.
    """
    if not has_true_density(strategy, dataset):
        raise ValueError(
            "the true path's density needs 1-D data of known density and a strategy on the "
            "independent Gaussian path"
        )
    times, xs = _check_grid(times, xs)
    width = xs[-1] - xs[0]
    u = np.linspace(xs[0] - width / 10, xs[-1] + width / 10, QUADRATURE_POINTS)
    p = np.exp(np.asarray(log_density(dataset, jnp.asarray(u[:, None])), np.float64))
    slope = np.diff(p) / np.diff(u)  # c1 of each cell
    offset = p[:-1] - slope * u[:-1]  # c0
    coefficients = jax.vmap(lambda t: path_coefficients(strategy.schedule, t))(
        jnp.asarray(times, jnp.float32)
    )
    rows = []
    for alpha, sigma in zip(
        np.asarray(coefficients.alpha, np.float64),
        np.asarray(coefficients.sigma, np.float64),
        strict=True,
    ):
        z = xs[:, None]
        a = (alpha * u[None, :-1] - z) / sigma
        b = (alpha * u[None, 1:] - z) / sigma
        # Phi(b) - Phi(a), from the tail both ends lie in, so nothing cancels.
        mass = np.where(
            a > 0, special.ndtr(-a) - special.ndtr(-b), special.ndtr(b) - special.ndtr(a)
        )
        bump = (np.exp(-(a**2) / 2) - np.exp(-(b**2) / 2)) / np.sqrt(2 * np.pi)
        cells = (offset + slope * z / alpha) * mass + slope * sigma / alpha * bump
        rows.append(cells.sum(axis=1) / alpha)
    return np.stack(rows)


def histogram_density(
    points: Float[np.ndarray, "t n"], xs: Float[np.ndarray, " x"]
) -> Float[np.ndarray, "t x"]:
    """Histograms of sampled points, one row per time, on cells centred at ``xs``.

    Each row is (points of the row in cell j) / (n * cell width), the cells being the midpoints'
    partition of the window [xs_0 - h/2, xs_-1 + h/2] with h the grid's mean spacing; so a row
    integrates to the share of its points inside the window.

    Args:
        points: sampled points at each time, shape (t, n).
        xs: the cell centres, increasing and evenly spaced, shape (x,).

    Returns:
        The densities, float64, shape (t, x).
    """
    points = np.asarray(points, dtype=np.float64)
    xs = np.asarray(xs, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"points must have shape (times, n), got {points.shape}")
    h = (xs[-1] - xs[0]) / (xs.size - 1)
    edges = np.concatenate([xs - h / 2, [xs[-1] + h / 2]])
    counts = np.stack([np.histogram(row, bins=edges)[0] for row in points])
    return counts / (points.shape[1] * h)


def window(points: Float[np.ndarray, "..."], size: int, margin: float = 0.1) -> np.ndarray:
    """``size`` evenly spaced points spanning the finite ``points``, widened by ``margin`` of
    their span on each side (a span of 1 if they are all equal)."""
    if size < 2:
        raise ValueError(f"size={size!r} must be at least 2")
    return np.linspace(*line_bounds(points, margin), size)
