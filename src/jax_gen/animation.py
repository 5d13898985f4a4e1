"""Animations of sampling: numpy in, GIF out.

This module never imports JAX: callers hand it host numpy arrays, so drawing can neither
trigger a compilation nor hold device memory. Every file it writes goes through
:func:`jax_gen.files.atomic_output`, so a failure never leaves a half-written or clobbered output.

- :func:`save_trajectory_gif`: the sampling trajectory from noise (t=0) to data (t=1), drawn
  with :func:`rasterize` so that a decoded frame can be checked pixel by pixel.
- :func:`save_field_gif`: a learned vector field over a grid, one frame per time.
- :func:`save_image_trajectory_gif`: images denoising, one image grid per frame.
- :func:`save_path_gif`: one-dimensional points moving across the (t, x) plane, each frame
  adding the trajectories' next segments.
"""

from pathlib import Path

import numpy as np
from jaxtyping import Float, UInt8
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image, ImageDraw, ImageFont

from jax_gen.files import atomic_output
from jax_gen.geometry import Bounds, as_points, line_bounds, square_bounds
from jax_gen.plots import field_figure, images_to_grid

CAPTION_HEIGHT = 36
"""Height in pixels of the caption strip on top of every GIF frame.

A frame is ``CAPTION_HEIGHT + size`` rows by ``size`` columns; rows ``CAPTION_HEIGHT:`` hold
exactly ``rasterize(trajectory[k], bounds, size)``.
"""
_CAPTION_FONT_SIZE = 12
_CAPTION_PAD = 4


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
    return square_bounds(trajectory, margin)


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
    points = as_points(points, "points")
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
    points = as_points(points, "points")
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
# GIFs of vector fields and of images
# ----------------------------------------------------------------------------------------------


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
    """An animated GIF with one :func:`jax_gen.plots.draw_field` frame per time.

    Returns:
        The number of frames written.
    """
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


def save_image_trajectory_gif(
    path: Path,
    trajectory: Float[np.ndarray, "states n pixels"],
    image_shape: tuple[int, int],
    fps: float,
    max_frames: int = 120,
    rows: int | None = None,
    title: str = "",
) -> int:
    """A GIF of images denoising: one :func:`jax_gen.plots.images_to_grid` per state, noise first.

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
# GIF of one-dimensional trajectories in the (t, x) plane
# ----------------------------------------------------------------------------------------------

PATH_LINE_GREY = 170
"""Grey level of the trajectories' past in :func:`save_path_gif`; the current points are black."""


def save_path_gif(
    path: Path,
    frame_times: Float[np.ndarray, " states"],
    trajectory: Float[np.ndarray, "states n 1"],
    fps: float,
    max_frames: int = 120,
    size: int = 400,
    title: str = "",
) -> int:
    """Writes an animated GIF of one-dimensional points crossing the (t, x) plane.

    The plotting area is the window t in [0, 1] (left to right) by the points' span widened by
    10% (bottom to top), ``size`` pixels square. Frame k shows each point's path up to state k
    as grey line segments and its position at state k as a black 3 x 3 dot (:func:`rasterize`
    of the points (t_k, x_k)), under a caption strip ("state k/K  t = t_k", then ``title``).

    Args:
        path: the GIF to write (atomically).
        frame_times: the time of each state, shape (states,), in [0, 1].
        trajectory: states of the points, shape (states, n, 1) or (states, n).
        fps, max_frames, size, title: as for :func:`save_trajectory_gif`.

    Returns:
        The number of frames written, ``min(states, max_frames)``.
    """
    gif_frame_duration_ms(fps)
    if max_frames < 2:
        raise ValueError(f"max_frames={max_frames!r} must be at least 2")
    trajectory = np.asarray(trajectory, dtype=np.float64)
    if trajectory.ndim == 3 and trajectory.shape[-1] == 1:
        trajectory = trajectory[..., 0]
    frame_times = np.asarray(frame_times, dtype=np.float64)
    if trajectory.ndim != 2 or frame_times.shape != trajectory.shape[:1]:
        raise ValueError(
            f"trajectory of shape {trajectory.shape} and frame_times of shape "
            f"{frame_times.shape} must be (states, n, 1) and (states,)"
        )
    bounds = (0.0, 1.0, *line_bounds(trajectory, 0.1))
    font = ImageFont.load_default(size=_CAPTION_FONT_SIZE)
    num_states = trajectory.shape[0]

    def pixels(k: int) -> np.ndarray:
        points = np.stack([np.full(trajectory.shape[1], frame_times[k]), trajectory[k]], axis=1)
        points = np.where(np.isfinite(points), points, np.nan)
        rows, cols = point_to_pixel(np.nan_to_num(points), bounds, size)
        return np.stack([cols, rows], axis=1), np.isfinite(points).all(axis=1)

    canvas = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(canvas)
    shown = set(gif_frame_indices(num_states, max_frames).tolist())
    previous, previous_ok = pixels(0)
    frames = []
    for k in range(num_states):
        current, ok = pixels(k)
        if k > 0:
            both = ok & previous_ok
            for start, end in zip(previous[both], current[both], strict=True):
                draw.line((*start.tolist(), *end.tolist()), fill=PATH_LINE_GREY)
        previous, previous_ok = current, ok
        if k not in shown:
            continue
        dots = np.stack([np.full(trajectory.shape[1], frame_times[k]), trajectory[k]], axis=1)
        body = np.minimum(np.asarray(canvas), rasterize(dots, bounds, size))
        counter = f"state {k}/{num_states - 1}  t = {frame_times[k]:.3f}"
        caption = _caption((counter, title), size, font)
        frames.append(Image.fromarray(np.concatenate([caption, body]), mode="L"))
    return _write_gif(path, frames, fps)
