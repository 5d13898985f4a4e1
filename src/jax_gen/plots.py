"""Figures of training and sampling: numpy in, PNG out.

This module never imports JAX: callers hand it host numpy arrays, so plotting can neither
trigger a compilation nor hold device memory. Every file it writes goes through
:func:`jax_gen.files.atomic_output`, so a failure never leaves a half-written or clobbered output.

- :func:`save_samples_png`: generated samples beside fresh data, same square limits; each
  panel drawn by :func:`draw_points`, which other figures reuse.
- :func:`save_loss_curve`: per-step loss, raw and smoothed, on a log axis.
- :func:`save_density_png`: heat maps of log-densities on a :func:`density_grid`.
- :func:`field_figure` / :func:`save_field_png`: a learned vector field as arrows over a grid,
  beside the noisy marginal, at several times.
- :func:`images_to_grid` / :func:`save_image_grid`: flat images (the digits) on a grey grid.
- :func:`save_histogram_png`: one-dimensional samples as a histogram beside fresh data's and
  the data's density.
- :func:`save_path_png`: the density p_t(x) of one-dimensional data over the (t, x) plane as
  heat maps, with sampled trajectories on top.
"""

from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float, Int, UInt8
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jax_gen.files import atomic_output
from jax_gen.geometry import Bounds, as_points, line_bounds, square_bounds

DPI = 100
SAMPLES_FIGSIZE = (10.0, 5.0)
"""Inches; at :data:`DPI` the samples PNG is 1000 x 500 pixels."""
LOSS_FIGSIZE = (7.0, 4.0)
"""Inches; at :data:`DPI` the loss curve PNG is 700 x 400 pixels."""


# ----------------------------------------------------------------------------------------------
# PNG figures
# ----------------------------------------------------------------------------------------------


def _save_figure(fig: Figure, path: Path) -> None:
    # A bare Figure with its own Agg canvas is not registered with pyplot, so it is freed like
    # any object: nothing to close, no leak over many calls, no GUI backend needed.
    FigureCanvasAgg(fig)
    with atomic_output(Path(path)) as tmp:
        # The temporary file ends in .tmp, from which matplotlib could not guess the format.
        fig.savefig(tmp, format="png", dpi=DPI)


def save_samples_png(
    path: Path,
    samples: Float[np.ndarray, "n 2"],
    data: Float[np.ndarray, "m 2"],
    title: str,
    labels: Int[np.ndarray, " n"] | None = None,
    data_labels: Int[np.ndarray, " m"] | None = None,
) -> None:
    """Plots fresh data (left) and generated samples (right) side by side; writes a PNG.

    Both panels share the same square limits, computed from both point sets with a 5% margin,
    and an equal aspect, so shapes and scales compare at a glance. The image is 1000 x 500
    pixels (:data:`SAMPLES_FIGSIZE` at :data:`DPI`).

    Args:
        path: the PNG to write (atomically).
        samples: generated points, shape (n, 2).
        data: fresh points of the dataset, shape (m, 2).
        title: the figure's title, e.g. the strategy.
        labels, data_labels: optional int class of each point; points are then coloured one
            colour per class (tab10), with a legend.
    """
    samples = as_points(samples, "samples")
    data = as_points(data, "data")
    bounds = square_bounds(np.concatenate([samples, data]), margin=0.05)
    fig = Figure(figsize=SAMPLES_FIGSIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    draw_points(axes[0], data, bounds, f"fresh data (n={data.shape[0]})", "tab:gray", data_labels)
    draw_points(axes[1], samples, bounds, f"generated (n={samples.shape[0]})", "tab:blue", labels)
    fig.suptitle(title)
    _save_figure(fig, path)


def draw_points(
    ax: Any,
    points: Float[np.ndarray, "n 2"],
    bounds: Bounds,
    title: str,
    color: str = "tab:blue",
    labels: Int[np.ndarray, " n"] | None = None,
) -> None:
    """One panel of :func:`save_samples_png` on the axes ``ax``: the points as 2-pixel dots in
    ``color`` (or one tab10 colour per class of ``labels``, with a legend), in the square
    window ``bounds`` (:func:`~jax_gen.geometry.square_bounds`) at an equal aspect."""
    points = as_points(points, "points")
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=2, linewidths=0, color=color)
    else:
        labels = np.asarray(labels)
        for k in np.unique(labels):
            chosen = points[labels == k]
            ax.scatter(
                chosen[:, 0],
                chosen[:, 1],
                s=2,
                linewidths=0,
                color=f"C{int(k) % 10}",
                label=f"class {int(k)}",
            )
        ax.legend(loc="center", markerscale=4, fontsize=8)
    xmin, xmax, ymin, ymax = bounds
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.set_title(title)


def save_loss_curve(
    path: Path, losses: Float[np.ndarray, " steps"], title: str = "training loss"
) -> None:
    """Plots the loss of every training step and its moving average; writes a PNG.

    Steps are numbered from 1. The raw curve is drawn faint and a trailing moving average over
    ``max(1, len(losses) // 50)`` steps bold, so the trend reads through minibatch noise. The y
    axis is logarithmic when every finite loss is positive (a log axis cannot show the rest),
    linear otherwise. The image is 700 x 400 pixels (:data:`LOSS_FIGSIZE` at :data:`DPI`).

    Args:
        path: the PNG to write (atomically).
        losses: loss per step, shape (steps,); may be empty (an empty plot is written).
        title: the figure's title.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1:
        raise ValueError(f"losses must be one-dimensional, got shape {losses.shape}")
    fig = Figure(figsize=LOSS_FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    if losses.size:
        steps = np.arange(1, losses.size + 1)
        window = max(1, losses.size // 50)
        # Cumulative sums give every window's mean in O(n) instead of O(n * window).
        cumsum = np.concatenate([[0.0], np.cumsum(losses)])
        smooth = (cumsum[window:] - cumsum[:-window]) / window
        ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="per step")
        ax.plot(
            steps[window - 1 :],
            smooth,
            color="tab:blue",
            linewidth=2.0,
            label=f"moving average ({window} steps)",
        )
        ax.legend(loc="upper right")
        finite = losses[np.isfinite(losses)]
        if finite.size and (finite > 0).all():
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no losses", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    _save_figure(fig, path)


def density_grid(
    points: Float[np.ndarray, "n 2"], resolution: int, margin: float = 0.1
) -> tuple[Float[np.ndarray, "cells 2"], Bounds]:
    """Cell centres of a square ``resolution`` x ``resolution`` grid around ``points``.

    The window is the points' square bounds widened by ``margin`` of their span on each side.
    Row r (bottom to top) and column c (left to right) is cell ``r * resolution + c``, the
    layout :func:`save_density_png` reads back.

    Returns:
        The (resolution**2, 2) cell centres and the window (xmin, xmax, ymin, ymax).
    """
    if not resolution > 0:
        raise ValueError(f"resolution={resolution!r} must be positive")
    bounds = square_bounds(as_points(points, "points"), margin)
    xmin, xmax, ymin, ymax = bounds
    xs = xmin + (np.arange(resolution) + 0.5) * (xmax - xmin) / resolution
    ys = ymin + (np.arange(resolution) + 0.5) * (ymax - ymin) / resolution
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1), bounds


def save_density_png(
    path: Path,
    panels: list[tuple[str, Float[np.ndarray, " cells"]]],
    bounds: Bounds,
    title: str,
) -> None:
    """Heat maps of densities on the grid of :func:`density_grid`, side by side; writes a PNG.

    Each panel is (label, log-density at the grid's points). The colour is the density
    exp(log p), on one colour scale shared by all panels so a model and the data compare
    directly; non-finite values (outside the data's support) are drawn as zero density.

    Args:
        path: the PNG to write (atomically).
        panels: (label, log p) pairs; each log p has resolution**2 values.
        bounds: (xmin, xmax, ymin, ymax) of the grid.
        title: the figure's title.
    """
    images = []
    for label, log_p in panels:
        log_p = np.asarray(log_p, dtype=np.float64)
        resolution = int(round(np.sqrt(log_p.size)))
        if log_p.ndim != 1 or resolution**2 != log_p.size:
            raise ValueError(f"{label}: expected resolution**2 values, got shape {log_p.shape}")
        density = np.where(np.isfinite(log_p), np.exp(np.minimum(log_p, 50.0)), 0.0)
        images.append((label, density.reshape(resolution, resolution)))
    vmax = max(float(image.max()) for _, image in images) or 1.0
    fig = Figure(figsize=(5.0 * len(images) + 1.0, 5.0), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(images)))
    for ax, (label, image) in zip(axes, images, strict=True):
        shown = ax.imshow(image, origin="lower", extent=bounds, cmap="magma", vmin=0.0, vmax=vmax)
        ax.set_title(label)
        ax.set_aspect("equal")
    fig.colorbar(shown, ax=list(axes), label="density", shrink=0.8)
    fig.suptitle(title)
    _save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# Vector-field views
# ----------------------------------------------------------------------------------------------

FIELD_PANEL_INCHES = 4.0


def field_arrow_scale(vectors: Float[np.ndarray, "... 2"], cell: float) -> float:
    """Arrow lengths per unit of field: the 95th percentile of the norms draws one grid cell.

    One scale for every time, so arrows compare across panels and frames; a percentile, not
    the maximum, so a few huge vectors (near a singular end) do not shrink the rest to dots.
    """
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64).reshape(-1, 2), axis=1)
    norms = norms[np.isfinite(norms)]
    reference = float(np.percentile(norms, 95)) if norms.size else 0.0
    return cell / reference if reference > 0 else 1.0


def draw_field(
    ax: Any,
    grid: Float[np.ndarray, "cells 2"],
    vectors: Float[np.ndarray, "cells 2"],
    marginal: Float[np.ndarray, "n 2"],
    bounds: Bounds,
    arrow_scale: float,
    label: str,
) -> None:
    """One panel: the noisy marginal as grey dots, the field as arrows from the grid points.

    An arrow from point p ends at p + arrow_scale * vector (``angles="xy"``, in data units).
    """
    grid, marginal = as_points(grid, "grid"), as_points(marginal, "marginal")
    vectors = as_points(vectors, "vectors")
    ax.scatter(marginal[:, 0], marginal[:, 1], s=2, linewidths=0, color="tab:gray", alpha=0.5)
    ax.quiver(
        grid[:, 0],
        grid[:, 1],
        vectors[:, 0],
        vectors[:, 1],
        angles="xy",
        scale_units="xy",
        scale=1.0 / arrow_scale,
        color="tab:blue",
        width=0.004,
    )
    xmin, xmax, ymin, ymax = bounds
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.set_title(label)


def field_figure(
    times: Float[np.ndarray, " T"],
    grid: Float[np.ndarray, "cells 2"],
    vectors: Float[np.ndarray, "T cells 2"],
    marginals: Float[np.ndarray, "T n 2"],
    bounds: Bounds,
    title: str,
    arrow_scale: float,
) -> Figure:
    """A row of :func:`draw_field` panels, one per time, on the same window and arrow scale."""
    fig = Figure(
        figsize=(FIELD_PANEL_INCHES * len(times), FIELD_PANEL_INCHES + 0.6),
        dpi=DPI,
        layout="constrained",
    )
    axes = np.atleast_1d(fig.subplots(1, len(times)))
    for ax, t, field, marginal in zip(axes, times, vectors, marginals, strict=True):
        draw_field(ax, grid, field, marginal, bounds, arrow_scale, f"t = {float(t):.2f}")
    fig.suptitle(title)
    return fig


def save_field_png(path: Path, *args: Any, **kwargs: Any) -> None:
    """Writes :func:`field_figure` (same arguments) as a PNG."""
    _save_figure(field_figure(*args, **kwargs), path)


# ----------------------------------------------------------------------------------------------
# Images (the digits)
# ----------------------------------------------------------------------------------------------

IMAGE_SCALE = 4
"""Screen pixels per image pixel in image grids."""


def images_to_grid(
    images: Float[np.ndarray, "n pixels"],
    image_shape: tuple[int, int],
    rows: int | None = None,
    scale: int = IMAGE_SCALE,
) -> UInt8[np.ndarray, "height width"]:
    """Lays flat images out on a grey grid, row-major, each upscaled by ``scale``.

    Values in [-1, 1] (clipped) map to grey levels as ink on paper: -1 white (255), 1 black (0),
    ``round(255 (1 - v) / 2)``. Image i sits in grid row i // columns, column i % columns, its
    pixel (r, c) covering rows 1 + (i // columns) (h scale + 1) + r scale + [0, scale) of the
    grid (a 1-pixel mid-grey separator before every cell), and likewise for columns.

    Args:
        images: (n, h * w) flat images.
        image_shape: (h, w).
        rows: grid rows (default: a near-square grid).
        scale: upscaling factor (nearest neighbour).
    """
    images = np.asarray(images, dtype=np.float64)
    h, w = image_shape
    if images.ndim != 2 or images.shape[1] != h * w:
        raise ValueError(f"images must have shape (n, {h * w}), got {images.shape}")
    n = images.shape[0]
    rows = rows or max(1, int(np.floor(np.sqrt(n))))
    columns = max(1, int(np.ceil(n / rows)))
    grey = np.round(255 * (1 - np.clip(images, -1, 1)) / 2).astype(np.uint8)
    grid = np.full((rows * (h * scale + 1) + 1, columns * (w * scale + 1) + 1), 128, np.uint8)
    for i in range(min(n, rows * columns)):
        cell = np.kron(grey[i].reshape(h, w), np.ones((scale, scale), np.uint8))
        top, left = 1 + (i // columns) * (h * scale + 1), 1 + (i % columns) * (w * scale + 1)
        grid[top : top + h * scale, left : left + w * scale] = cell
    return grid


def save_image_grid(
    path: Path,
    images: Float[np.ndarray, "n pixels"],
    image_shape: tuple[int, int],
    rows: int | None,
    title: str,
    row_labels: list[str] | None = None,
    scale: int = IMAGE_SCALE,
) -> None:
    """Writes :func:`images_to_grid` as a PNG with a title and optional row labels on the left."""
    grid = images_to_grid(images, image_shape, rows, scale)
    fig = Figure(
        figsize=(grid.shape[1] / DPI + 1.2, grid.shape[0] / DPI + 0.6),
        dpi=DPI,
        layout="constrained",
    )
    ax = fig.subplots()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        cell = image_shape[0] * scale + 1
        ax.set_yticks([1 + cell * (r + 0.5) for r in range(len(row_labels))], row_labels)
    else:
        ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    _save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# One-dimensional data
# ----------------------------------------------------------------------------------------------

HISTOGRAM_BINS = 80
"""Bins of :func:`save_histogram_png` over the window both point sets span."""


def _as_line(points: Any, name: str) -> np.ndarray:
    """``points`` of shape (n,) or (n, 1) as a flat array; ``name`` names it in the error."""
    points = np.asarray(points)
    if points.ndim == 2 and points.shape[1] == 1:
        points = points[:, 0]
    if points.ndim != 1:
        raise ValueError(f"{name} must have shape (n,) or (n, 1), got {points.shape}")
    return points


def save_histogram_png(
    path: Path,
    samples: Float[np.ndarray, "n 1"],
    data: Float[np.ndarray, "m 1"],
    title: str,
    density: tuple[Float[np.ndarray, " k"], Float[np.ndarray, " k"]] | None = None,
) -> None:
    """Histograms of fresh data (left) and of generated samples (right), as densities on the same
    bins, each with the data's density drawn over it where it is known; writes a PNG.

    Args:
        path: the PNG to write (atomically).
        samples: generated points, shape (n, 1) or (n,).
        data: fresh points of the dataset, shape (m, 1) or (m,).
        title: the figure's title.
        density: (x, p_data(x)), the data's density on a grid, or None.
    """
    samples, data = _as_line(samples, "samples"), _as_line(data, "data")
    lo, hi = line_bounds(np.concatenate([samples, data]), 0.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, HISTOGRAM_BINS + 1)
    fig = Figure(figsize=SAMPLES_FIGSIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    panels = ((data, "tab:gray", "fresh data"), (samples, "tab:blue", "generated"))
    for ax, (points, color, label) in zip(axes, panels, strict=True):
        finite = points[np.isfinite(points)]
        ax.hist(finite, bins=edges, density=True, color=color, alpha=0.7)
        if density is not None:
            ax.plot(*density, color="black", linewidth=1.2, label="data density")
            ax.legend(loc="upper left", fontsize=8)
        ax.set_title(f"{label} (n={points.shape[0]})")
        ax.set_xlabel("x")
    axes[0].set_ylabel("density")
    fig.suptitle(title)
    _save_figure(fig, path)


PATH_PANEL_SIZE = (6.0, 4.5)
"""Inches of one (t, x) panel of :func:`save_path_png`."""


def save_path_png(
    path: Path,
    times: Float[np.ndarray, " t"],
    xs: Float[np.ndarray, " x"],
    panels: list[tuple[str, Float[np.ndarray, "t x"]]],
    trajectories: tuple[Float[np.ndarray, " s"], Float[np.ndarray, "s n"]] | None,
    title: str,
) -> None:
    """The density p_t(x) over the (t, x) plane, one heat map per panel, side by side; the
    trajectories are drawn on the first panel; writes a PNG.

    Time runs left (t = 0, the source) to right (t = 1, the data) and x upwards. Every panel
    shares one colour scale, so a model and the true path compare directly; the density at
    (times[i], xs[j]) is the colour at that point, interpolated between grid points.

    Args:
        path: the PNG to write (atomically).
        times: the times of the grid's columns, increasing, shape (t,).
        xs: the points of its rows, increasing, shape (x,).
        panels: (label, densities of shape (t, x)) pairs.
        trajectories: (frame times of shape (s,), points of shape (s, n)), or None.
        title: the figure's title.
    """
    times, xs = np.asarray(times, np.float64), np.asarray(xs, np.float64)
    images = []
    for label, density in panels:
        density = np.asarray(density, dtype=np.float64)
        if density.shape != (times.size, xs.size):
            raise ValueError(
                f"{label}: expected shape {(times.size, xs.size)}, got {density.shape}"
            )
        images.append((label, np.where(np.isfinite(density), density, 0.0)))
    vmax = max(float(image.max()) for _, image in images) or 1.0
    width, height = PATH_PANEL_SIZE
    fig = Figure(figsize=(width * len(images) + 1.0, height), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(images), sharey=True))
    for ax, (label, image) in zip(axes, images, strict=True):
        shown = ax.pcolormesh(
            times, xs, image.T, shading="gouraud", cmap="magma", vmin=0.0, vmax=vmax
        )
        ax.set_title(label)
        ax.set_xlabel("t  (0: source, 1: data)")
        ax.set_xlim(times[0], times[-1])
        ax.set_ylim(xs[0], xs[-1])
    if trajectories is not None:
        frame_times, points = (np.asarray(a, np.float64) for a in trajectories)
        axes[0].plot(frame_times, points, color="white", linewidth=0.5, alpha=0.45)
    axes[0].set_ylabel("x")
    fig.colorbar(shown, ax=list(axes), label="density p_t(x)", shrink=0.9)
    fig.suptitle(title)
    _save_figure(fig, path)
