"""Pictures of training and sampling: numpy in, PNG / GIF / Rerun out.

This module never imports JAX: callers hand it host numpy arrays, so plotting can neither
trigger a compilation nor hold device memory. Every file it writes goes through
:func:`jax_gen.files.atomic_output`, so a failure never leaves a half-written or clobbered output.

- :func:`save_samples_png`: generated samples beside fresh data, same square limits.
- :func:`save_loss_curve`: per-step loss, raw and smoothed, on a log axis.
- :func:`save_density_png`: heat maps of log-densities on a :func:`density_grid`.
- :func:`save_field_png` / :func:`save_field_gif`: a learned vector field as arrows over a grid,
  beside the noisy marginal, at several times.
- :func:`save_trajectory_gif`: the sampling trajectory from noise (t=0) to data (t=1), drawn
  with :func:`rasterize` so that a decoded frame can be checked pixel by pixel.
- :class:`RerunLogger` and :func:`read_recording`: a Rerun ``.rrd`` recording of losses, sample
  snapshots and trajectories, and a reader that loads the logged values back.
"""

import contextlib
import os
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from jaxtyping import Float, Int, UInt8
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from jax_gen.files import atomic_output

Bounds = tuple[float, float, float, float]
"""(xmin, xmax, ymin, ymax) of a plotting window."""

DPI = 100
SAMPLES_FIGSIZE = (10.0, 5.0)
"""Inches; at :data:`DPI` the samples PNG is 1000 x 500 pixels."""
LOSS_FIGSIZE = (7.0, 4.0)
"""Inches; at :data:`DPI` the loss curve PNG is 700 x 400 pixels."""

CAPTION_HEIGHT = 36
"""Height in pixels of the caption strip on top of every GIF frame.

A frame is ``CAPTION_HEIGHT + size`` rows by ``size`` columns; rows ``CAPTION_HEIGHT:`` hold
exactly ``rasterize(trajectory[k], bounds, size)``.
"""
_CAPTION_FONT_SIZE = 12
_CAPTION_PAD = 4

LOSS_ENTITY = "train/loss"
STEP_TIMELINE = "step"
SAMPLING_TIMELINE = "sampling_step"
TRAJECTORY_ENTITY = "generate/trajectory"
VIEWER_PORT = 9876
"""Port of the Rerun viewer (Rerun's default, so an already open viewer is reused)."""

# Column names of the components in a recording, as rerun 0.41 writes them.
_SCALARS_COLUMN = "Scalars:scalars"
_POSITIONS_COLUMN = "Points2D:positions"
# Timelines rerun adds on its own to rows sent with `log`; not ours to report.
_BUILTIN_TIMELINES = frozenset({"log_time", "log_tick"})


# ----------------------------------------------------------------------------------------------
# Shared geometry
# ----------------------------------------------------------------------------------------------


def _as_points(points: Any, name: str) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {points.shape}")
    return points


def _square_bounds(points: np.ndarray, margin: float) -> Bounds:
    """A square window around the finite points, widened by ``margin`` of its span on each side.

    Non-finite points (a diverged sampler) are ignored so one NaN does not blank the picture.
    With no finite point, or all points equal, the span falls back to 1.
    """
    if not margin >= 0:
        raise ValueError(f"margin={margin!r} must be non-negative")
    flat = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    flat = flat[np.isfinite(flat).all(axis=1)]
    if flat.shape[0] == 0:
        lo, hi = np.zeros(2), np.zeros(2)
    else:
        lo, hi = flat.min(axis=0), flat.max(axis=0)
    centre = (lo + hi) / 2
    span = float((hi - lo).max())
    if span == 0.0:
        span = 1.0
    half = span * (0.5 + margin)
    return (
        float(centre[0] - half),
        float(centre[0] + half),
        float(centre[1] - half),
        float(centre[1] + half),
    )


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
    samples = _as_points(samples, "samples")
    data = _as_points(data, "data")
    xmin, xmax, ymin, ymax = _square_bounds(np.concatenate([samples, data]), margin=0.05)
    fig = Figure(figsize=SAMPLES_FIGSIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (
        (axes[0], data, f"fresh data (n={data.shape[0]})", "tab:gray"),
        (axes[1], samples, f"generated (n={samples.shape[0]})", "tab:blue"),
    )
    classes = {
        id(samples): None if labels is None else np.asarray(labels),
        id(data): None if data_labels is None else np.asarray(data_labels),
    }
    for ax, points, label, color in panels:
        point_labels = classes[id(points)]
        if point_labels is None:
            ax.scatter(points[:, 0], points[:, 1], s=2, linewidths=0, color=color)
        else:
            for k in np.unique(point_labels):
                chosen = points[point_labels == k]
                ax.scatter(
                    chosen[:, 0],
                    chosen[:, 1],
                    s=2,
                    linewidths=0,
                    color=f"C{int(k) % 10}",
                    label=f"class {int(k)}",
                )
            ax.legend(loc="center", markerscale=4, fontsize=8)
        ax.set_xlim(xmin, xmax)
        ax.set_ylim(ymin, ymax)
        ax.set_aspect("equal")
        ax.set_title(label)
    fig.suptitle(title)
    _save_figure(fig, path)


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
    bounds = _square_bounds(_as_points(points, "points"), margin)
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
    grid, marginal = _as_points(grid, "grid"), _as_points(marginal, "marginal")
    vectors = _as_points(vectors, "vectors")
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


def save_field_gif(
    path: Path,
    times: Float[np.ndarray, " T"],
    grid: Float[np.ndarray, "cells 2"],
    vectors: Float[np.ndarray, "T cells 2"],
    marginals: Float[np.ndarray, "T n 2"],
    bounds: Bounds,
    title: str,
    arrow_scale: float,
    fps: float,
) -> int:
    """An animated GIF with one :func:`draw_field` frame per time; returns the frame count."""
    frames = []
    for t, field, marginal in zip(times, vectors, marginals, strict=True):
        fig = field_figure(
            np.asarray([t]), grid, field[None], marginal[None], bounds, title, arrow_scale
        )
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        frames.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]))
    palette = [frame.convert("P", palette=Image.Palette.ADAPTIVE) for frame in frames]
    return _write_gif(path, palette, fps)


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


def save_image_trajectory_gif(
    path: Path,
    trajectory: Float[np.ndarray, "states n pixels"],
    image_shape: tuple[int, int],
    fps: float,
    max_frames: int = 120,
    rows: int | None = None,
    title: str = "",
) -> int:
    """A GIF of images denoising: one :func:`images_to_grid` per state shown, noise first.

    The states are ``gif_frame_indices(len(trajectory), max_frames)``, as in
    :func:`save_trajectory_gif`, each frame with a caption (state, t and ``title``) on top.

    Returns:
        The number of frames written.
    """
    trajectory = np.asarray(trajectory)
    if trajectory.ndim != 3:
        raise ValueError(f"trajectory must have shape (states, n, pixels), got {trajectory.shape}")
    indices = gif_frame_indices(trajectory.shape[0], max_frames)
    last = trajectory.shape[0] - 1
    font = ImageFont.load_default(_CAPTION_FONT_SIZE)
    frames = []
    for k in indices:
        grid = images_to_grid(trajectory[k], image_shape, rows)
        width = max(grid.shape[1], 240)
        body = np.full((grid.shape[0], width), 255, np.uint8)
        body[:, : grid.shape[1]] = grid
        caption = _caption((f"state {k}/{last}  t = {k / max(last, 1):.2f}", title), width, font)
        frames.append(Image.fromarray(np.concatenate([caption, body])))
    return _write_gif(path, frames, fps)


# ----------------------------------------------------------------------------------------------
# GIF of a trajectory
# ----------------------------------------------------------------------------------------------


def gif_frame_indices(num_states: int, max_frames: int) -> np.ndarray:
    """Evenly spaced states of a trajectory to show as frames.

    Args:
        num_states: length of the trajectory (noise at 0, final samples at ``num_states - 1``).
        max_frames: most frames wanted, at least 2 (the noise and the final samples).

    Returns:
        Strictly increasing integer indices, of length ``min(num_states, max_frames)``, starting
        at 0 and ending at ``num_states - 1``. Rounding ``linspace`` keeps them distinct: when
        frames are dropped the spacing exceeds 1, and rounding moves each by at most 1/2.
    """
    if num_states < 1:
        raise ValueError(f"num_states={num_states!r} must be at least 1")
    if max_frames < 2:
        raise ValueError(f"max_frames={max_frames!r} must be at least 2")
    if num_states <= max_frames:
        return np.arange(num_states)
    return np.round(np.linspace(0, num_states - 1, max_frames)).astype(np.int64)


def trajectory_bounds(trajectory: Float[np.ndarray, "states n 2"], margin: float = 0.1) -> Bounds:
    """A fixed square window that holds every point of every frame.

    One window for all frames keeps the picture still while the points move. The window is
    centred on the points' bounding box, its side is the larger of the box's width and height,
    widened by ``margin`` times that side on each side. Non-finite points are ignored.

    Args:
        trajectory: states of the points, shape (states, n, 2).
        margin: relative margin on each side (0.1 = 10% of the span).

    Returns:
        (xmin, xmax, ymin, ymax), with ``xmax - xmin == ymax - ymin``.
    """
    trajectory = np.asarray(trajectory)
    if trajectory.ndim != 3 or trajectory.shape[-1] != 2:
        raise ValueError(f"trajectory must have shape (states, n, 2), got {trajectory.shape}")
    return _square_bounds(trajectory, margin)


def point_to_pixel(
    points: Float[np.ndarray, "n 2"], bounds: Bounds, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (row, column) of each point in a ``size`` x ``size`` image of ``bounds``.

        col = floor((x - xmin) / (xmax - xmin) * size)
        row = floor((ymax - y) / (ymax - ymin) * size)      (y points up, rows go down)

    both clipped into [0, size - 1], so points outside the window stick to its border.

    Args:
        points: finite points, shape (n, 2).
        bounds: (xmin, xmax, ymin, ymax) of the image.
        size: side of the image in pixels.

    Returns:
        ``rows`` and ``cols``, integer arrays of shape (n,).
    """
    points = _as_points(points, "points")
    xmin, xmax, ymin, ymax = bounds
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"bounds={bounds!r} must have xmax > xmin and ymax > ymin")
    if size < 1:
        raise ValueError(f"size={size!r} must be positive")
    x = points[:, 0].astype(np.float64)
    y = points[:, 1].astype(np.float64)
    cols = np.floor((x - xmin) / (xmax - xmin) * size)
    rows = np.floor((ymax - y) / (ymax - ymin) * size)
    return (
        np.clip(rows, 0, size - 1).astype(np.int64),
        np.clip(cols, 0, size - 1).astype(np.int64),
    )


def rasterize(
    points: Float[np.ndarray, "n 2"], bounds: Bounds, size: int
) -> UInt8[np.ndarray, "size size"]:
    """Draws points as black 3 x 3 dots on a white square image.

    Each point darkens (to 0) the 3 x 3 block centred on its pixel from :func:`point_to_pixel`
    (cut at the image border); every other pixel stays white (255). Non-finite points are not
    drawn. Pure black and white, so a lossless format stores the image exactly.

    Args:
        points: shape (n, 2).
        bounds: (xmin, xmax, ymin, ymax) of the image.
        size: side of the image in pixels.

    Returns:
        A uint8 greyscale image, shape (size, size).
    """
    points = _as_points(points, "points")
    points = points[np.isfinite(points).all(axis=1)]
    rows, cols = point_to_pixel(points, bounds, size)
    image = np.full((size, size), 255, dtype=np.uint8)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            image[np.clip(rows + dr, 0, size - 1), np.clip(cols + dc, 0, size - 1)] = 0
    return image


def gif_frame_duration_ms(fps: float) -> int:
    """Display time of one GIF frame in milliseconds, as the file can store it.

    GIF stores delays in hundredths of a second, so ``1000 / fps`` is rounded to the nearest 10
    ms (Pillow would truncate: 33 ms would play as 30 ms, 67 as 60). Browsers replace delays
    under 20 ms by 100 ms, so the delay is at least 20 ms (at most 50 frames per second).
    """
    if not fps > 0:
        raise ValueError(f"fps={fps!r} must be positive")
    return 10 * max(2, round(100 / fps))


def _write_gif(path: Path, frames: list[Image.Image], fps: float) -> int:
    """Writes full frames as a looping GIF, atomically; returns the number of frames.

    ``disposal=1`` draws each frame over the previous one and ``optimize=False`` keeps the
    palette as given, so decoding gives every frame back whole.
    """
    with atomic_output(Path(path)) as tmp:
        frames[0].save(
            tmp,
            format="gif",
            save_all=True,
            append_images=frames[1:],
            duration=gif_frame_duration_ms(fps),
            loop=0,
            optimize=False,
            disposal=1,
        )
    return len(frames)


def _caption(lines: tuple[str, str], size: int, font: ImageFont.FreeTypeFont) -> np.ndarray:
    strip = Image.new("L", (size, CAPTION_HEIGHT), 255)
    draw = ImageDraw.Draw(strip)
    line_height = (CAPTION_HEIGHT - 2 * _CAPTION_PAD) // 2
    for i, text in enumerate(lines):
        draw.text((_CAPTION_PAD, _CAPTION_PAD + i * line_height), text, fill=0, font=font)
    return np.asarray(strip)


def save_trajectory_gif(
    path: Path,
    trajectory: Float[np.ndarray, "states n 2"],
    fps: float,
    max_frames: int = 120,
    size: int = 400,
    title: str = "",
) -> int:
    """Writes an animated GIF of the points moving from noise (state 0) to samples (last state).

    The states shown are ``gif_frame_indices(len(trajectory), max_frames)``, all drawn with
    :func:`rasterize` in the one window of :func:`trajectory_bounds`. Each frame is
    ``CAPTION_HEIGHT + size`` rows by ``size`` columns: a caption strip on top ("state k/K
    t = k/K" on the first line, ``title`` on the second), then exactly the rasterized image in
    rows ``CAPTION_HEIGHT:``. The GIF is greyscale, so decoding gives the pixels back exactly.

    Pillow merges identical consecutive frames into one; the state counter in the caption makes
    every frame differ (even when the points do not move), so the file holds exactly the
    returned number of frames. Frames are full pictures (``disposal=1``: each is drawn over the
    previous one, which Pillow may store as a cropped update, decoding to the full frame).

    Args:
        path: the GIF to write (atomically).
        trajectory: states of the points, shape (states, n, 2); state 0 is the noise.
        fps: frames per second; each frame lasts :func:`gif_frame_duration_ms` (``fps``).
        max_frames: most frames to write, at least 2.
        size: side of the plotting area in pixels.
        title: second caption line, e.g. the strategy.

    Returns:
        The number of frames written, ``min(len(trajectory), max_frames)``.
    """
    gif_frame_duration_ms(fps)  # refuses a bad fps before any drawing
    if max_frames < 2:
        raise ValueError(f"max_frames={max_frames!r} must be at least 2")
    trajectory = np.asarray(trajectory)
    bounds = trajectory_bounds(trajectory)
    num_states = trajectory.shape[0]
    last = max(num_states - 1, 1)
    font = ImageFont.load_default(size=_CAPTION_FONT_SIZE)
    widest = f"state {num_states - 1}/{num_states - 1}  t = 1.000"
    # A cut-off counter could make two frames identical, and Pillow would merge them.
    if font.getlength(widest) > size - 2 * _CAPTION_PAD:
        raise ValueError(f"size={size!r} is too small for the caption {widest!r}")

    frames = []
    for k in gif_frame_indices(num_states, max_frames):
        counter = f"state {k}/{num_states - 1}  t = {k / last:.3f}"
        pixels = np.concatenate(
            [_caption((counter, title), size, font), rasterize(trajectory[k], bounds, size)]
        )
        frames.append(Image.fromarray(pixels, mode="L"))
    return _write_gif(path, frames, fps)


# ----------------------------------------------------------------------------------------------
# Rerun
# ----------------------------------------------------------------------------------------------


def _display_missing() -> bool:
    # The viewer is a desktop window; on Linux without X11 or Wayland it exits at once, yet
    # rerun's spawn only logs that and returns after a few seconds of waiting for it.
    if not sys.platform.startswith("linux"):
        return False
    return not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET"))


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


class RerunLogger:
    """Logs losses, sample snapshots and trajectories to a Rerun recording.

    Each logger owns its recording stream (not rerun's global one), so several can coexist.
    Where the data goes:

    - ``spawn=True``: a Rerun viewer is started (or an open one on :data:`VIEWER_PORT`
      reused) and receives the data live. When that fails (no ``rerun`` executable, no
      display, the viewer does not answer) :attr:`warning` says why; nothing is printed.
    - ``recording_path``: the data is also saved there, to a temporary file beside it that
      :meth:`close` renames onto ``recording_path``. Until then an older file at that path
      stays intact; a logger left as a context manager by an exception discards its file.
    - neither (or a failed spawn without a path): nothing is recorded, :attr:`warning` says so.

    Call :meth:`close` (or use ``with``) so the ``.rrd`` gets its footer and is published.

    Example::

        with RerunLogger("jax_gen_train", recording_path=Path("run.rrd")) as logger:
            logger.log_losses(0, losses)
            logger.log_points("train/samples", 100, samples)
        read_recording("run.rrd")["losses"]
    """

    warning: str | None
    """Why the viewer could not be used or nothing is recorded, for the caller to show; or None."""

    def __init__(
        self, application_id: str, recording_path: Path | None = None, spawn: bool = False
    ):
        """Opens the recording.

        Args:
            application_id: the name the viewer groups recordings under.
            recording_path: where to save the ``.rrd``, or None.
            spawn: whether to show the data live in a Rerun viewer.
        """
        # Imported here: rerun takes ~0.4 s to import and most runs do not use it.
        import rerun as rr

        self.warning = None
        self.recording_path = None if recording_path is None else Path(recording_path)
        self._stream = rr.RecordingStream(application_id)
        self._files = contextlib.ExitStack()
        self._closed = False
        sinks = []
        if spawn:
            reason = self._spawn_viewer()
            if reason is None:
                sinks.append(rr.GrpcSink(f"rerun+http://127.0.0.1:{VIEWER_PORT}/proxy"))
            elif self.recording_path is not None:
                self.warning = f"{reason}; saving the recording to {self.recording_path} instead"
            else:
                self.warning = f"{reason}, and no recording path was given: nothing is recorded"
        if self.recording_path is not None:
            tmp = self._files.enter_context(atomic_output(self.recording_path))
            sinks.append(rr.FileSink(tmp))
        elif not spawn:
            self.warning = (
                "neither a viewer nor a recording path was asked for: nothing is recorded"
            )
        # Without a sink rerun would buffer everything in memory for a sink that never comes.
        self._enabled = bool(sinks)
        if sinks:
            self._stream.set_sinks(*sinks)

    def _spawn_viewer(self) -> str | None:
        """Starts the viewer; returns why it is unusable, or None when it listens."""
        import rerun as rr

        if _display_missing():
            return "cannot show the Rerun viewer: no display (DISPLAY / WAYLAND_DISPLAY unset)"
        try:
            # connect=False: the sinks are attached afterwards, so the file sink can be added.
            rr.spawn(port=VIEWER_PORT, connect=False, recording=self._stream)
        except Exception as e:  # rerun raises RuntimeError without a viewer executable
            return f"cannot spawn the Rerun viewer: {str(e).strip().splitlines()[0]}"
        if not _listening(VIEWER_PORT):
            return f"the Rerun viewer did not start listening on port {VIEWER_PORT}"
        return None

    def log_losses(self, start_step: int, losses: Float[np.ndarray, " steps"]) -> None:
        """Logs ``losses[i]`` as the scalar of ``train/loss`` at step ``start_step + 1 + i``.

        Args:
            start_step: the number of steps trained before these losses.
            losses: loss per step, shape (steps,).
        """
        import rerun as rr

        losses = np.asarray(losses, dtype=np.float64).reshape(-1)
        if not self._enabled or losses.size == 0:
            return
        steps = start_step + 1 + np.arange(losses.size, dtype=np.int64)
        # One columnar chunk per call instead of one log call (and one row of overhead) per step.
        self._stream.send_columns(
            LOSS_ENTITY,
            indexes=[rr.TimeColumn(STEP_TIMELINE, sequence=steps)],
            columns=rr.Scalars.columns(scalars=losses),
        )

    def log_points(
        self,
        entity: str,
        step: int,
        points: Float[np.ndarray, "n 2"],
        timeline: str = STEP_TIMELINE,
    ) -> None:
        """Logs points as ``Points2D`` under ``entity`` at time ``step`` of ``timeline``.

        Args:
            entity: entity path, e.g. ``"train/samples"``.
            step: the time on the sequence timeline.
            points: shape (n, 2).
            timeline: name of the sequence timeline.
        """
        self._log_states(entity, timeline, np.asarray([step]), _as_points(points, "points")[None])

    def log_trajectory(
        self, trajectory: Float[np.ndarray, "states n 2"], entity: str = TRAJECTORY_ENTITY
    ) -> None:
        """Logs state ``i`` of the trajectory as ``Points2D`` at ``sampling_step = i``.

        Args:
            trajectory: shape (states, n, 2); state 0 is the noise.
            entity: entity path.
        """
        trajectory = np.asarray(trajectory)
        if trajectory.ndim != 3 or trajectory.shape[-1] != 2:
            raise ValueError(f"trajectory must have shape (states, n, 2), got {trajectory.shape}")
        times = np.arange(trajectory.shape[0])
        self._log_states(entity, SAMPLING_TIMELINE, times, trajectory)

    def _log_states(self, entity: str, timeline: str, times: np.ndarray, states: np.ndarray):
        import rerun as rr

        if not self._enabled or states.shape[0] == 0:
            return
        # Sent as columns, each row with its own time: the stream's stateful `set_time` would
        # otherwise leak this time into everything logged afterwards.
        positions = rr.Points2D.columns(positions=states.reshape(-1, 2).astype(np.float32))
        self._stream.send_columns(
            entity,
            indexes=[rr.TimeColumn(timeline, sequence=times.astype(np.int64))],
            columns=positions.partition([states.shape[1]] * states.shape[0]),
        )

    def close(self) -> None:
        """Flushes and closes the recording, then publishes the ``.rrd`` at its path.

        Safe to call twice.
        """
        self._close(None, None, None)

    def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        self._closed = True
        self._stream.flush()
        # Closes the file sink, which writes the footer; only then is the file complete.
        self._stream.disconnect()
        # With an exception, atomic_output removes the temporary file instead of renaming it.
        self._files.__exit__(exc_type, exc, tb)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close(exc_type, exc, tb)


def read_recording(path: Path) -> dict[str, Any]:
    """Loads the values a :class:`RerunLogger` wrote to an ``.rrd`` file.

    Reads the first recording in the file with ``rerun.chunk.RrdReader`` (rerun 0.41 has no
    ``rerun.dataframe``; its DataFusion reader needs the ``datafusion`` package, which the
    chunk API does not).

    Args:
        path: the ``.rrd`` file.

    Returns:
        A dict with

        - ``"entities"``: sorted entity paths as logged (``"train/loss"``, without rerun's
          leading slash and without its internal ``__properties``);
        - ``"loss_steps"``, ``"losses"``: the steps (int64) and values (float64) of
          ``train/loss`` in step order (empty if none);
        - ``"points"``: ``points[entity][timeline][time]`` = the (n, 2) float32 positions of
          every ``Points2D`` logged.
    """
    import rerun as rr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no recording at {path}")
    entities: set[str] = set()
    loss_steps, losses = [], []
    points: dict[str, dict[str, dict[int, np.ndarray]]] = {}
    for chunk in rr.chunk.RrdReader(path).stream():
        entity = chunk.entity_path.lstrip("/")
        if entity.startswith("__"):
            continue
        entities.add(entity)
        batch = chunk.to_record_batch()
        timelines = [t for t in chunk.timeline_names if t not in _BUILTIN_TIMELINES]
        names = batch.schema.names
        if entity == LOSS_ENTITY and _SCALARS_COLUMN in names and STEP_TIMELINE in names:
            column = batch.column(_SCALARS_COLUMN)
            lengths = np.asarray(column.value_lengths().fill_null(0))
            # A row normally holds one scalar; read the first value of every non-empty row.
            starts = np.cumsum(lengths) - lengths
            keep = lengths > 0
            loss_steps.append(np.asarray(batch.column(STEP_TIMELINE))[keep])
            losses.append(np.asarray(column.flatten(), dtype=np.float64)[starts[keep]])
        if _POSITIONS_COLUMN in names:
            column = batch.column(_POSITIONS_COLUMN)
            lengths = np.asarray(column.value_lengths().fill_null(0))
            flat = np.asarray(column.flatten().flatten(), dtype=np.float32).reshape(-1, 2)
            rows = np.split(flat, np.cumsum(lengths)[:-1])
            valid = np.asarray(column.is_valid())
            for timeline in timelines:
                times = np.asarray(batch.column(timeline))
                series = points.setdefault(entity, {}).setdefault(timeline, {})
                for time, row, ok in zip(times, rows, valid, strict=True):
                    if ok:
                        series[int(time)] = row
    steps = np.concatenate(loss_steps).astype(np.int64) if loss_steps else np.zeros(0, np.int64)
    values = np.concatenate(losses) if losses else np.zeros(0)
    order = np.argsort(steps, kind="stable")
    return {
        "entities": sorted(entities),
        "loss_steps": steps[order],
        "losses": values[order],
        "points": points,
    }
