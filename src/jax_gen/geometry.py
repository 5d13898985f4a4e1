"""Point arrays and plotting windows (a square in the plane, an interval on the line), shared by
the figures, animations and recordings.

Numpy only: callers hand over host arrays, so nothing here can trigger a compilation.
"""

from typing import Any

import numpy as np

Bounds = tuple[float, float, float, float]
"""(xmin, xmax, ymin, ymax) of a plotting window."""


def as_points(points: Any, name: str) -> np.ndarray:
    """``points`` as an array, checked to have shape (n, 2); ``name`` names it in the error."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {points.shape}")
    return points


def line_bounds(values: Any, margin: float) -> tuple[float, float]:
    """(lo, hi): the least and greatest finite values, each moved out by ``margin`` times
    hi - lo (times 1 when they are equal; both 0 when no value is finite). For one-dimensional
    data, as :func:`square_bounds` is for the plane."""
    if not margin >= 0:
        raise ValueError(f"margin={margin!r} must be non-negative")
    flat = np.asarray(values, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    lo, hi = (float(flat.min()), float(flat.max())) if flat.size else (0.0, 0.0)
    span = hi - lo if hi > lo else 1.0
    return lo - margin * span, hi + margin * span


def square_bounds(points: np.ndarray, margin: float) -> Bounds:
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
