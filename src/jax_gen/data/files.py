"""Users' points: the rows of an N x D array in a ``.npy`` or ``.csv`` file, read, checked and
normalised like the built-in datasets, and drawn uniformly with replacement."""

import csv
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from jax_gen.config import POINTS_SUFFIXES, PointsConfig
from jax_gen.data.registry import Dataset, _user_file, register


def _read_csv(path: str) -> tuple[np.ndarray, list[int]]:
    """The numbers of a comma-separated file, and the line number of each row.

    Blank lines are skipped; the first non-blank line may be a header (it is skipped when any
    of its cells is not a number). Every other line must hold the same number of numbers.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark
            reader = csv.reader(f)
            lines = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as err:
        raise ValueError(f"cannot read points file {path}: it is not UTF-8 text") from err
    except csv.Error as err:
        raise ValueError(f"cannot read points file {path}: {err}") from err
    if lines and not all(_is_number(cell) for cell in lines[0][1]):
        lines = lines[1:]  # a header line
    if not lines:
        raise ValueError(f"points file {path} holds no points (no numeric lines)")
    first_line, first = lines[0]
    values = np.empty((len(lines), len(first)), dtype=np.float64)
    for i, (line, row) in enumerate(lines):
        if len(row) != len(first):
            raise ValueError(
                f"points file {path} is ragged: line {line} has {len(row)} value(s), line "
                f"{first_line} has {len(first)}"
            )
        try:
            values[i] = [float(cell) for cell in row]
        except ValueError:
            bad = next(cell for cell in row if not _is_number(cell))
            raise ValueError(
                f"points file {path}, line {line}: {bad!r} is not a number (expected "
                "comma-separated numbers)"
            ) from None
    return values, [line for line, _ in lines]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=8)
def _read_points(path: str) -> np.ndarray:
    """The raw float64 (N, D) array of a points file, checked: N >= 1, D >= 1, all finite.

    A .npy array of shape (N,) is N points of one coordinate, as one of shape (N, 1).

    Cached on the resolved path: the file is read once per process, so edits to it after the
    first read are not seen.
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"points file not found: {path}")
    if file.is_dir():
        raise ValueError(f"points file {path} is a directory, not a file")
    suffix = file.suffix.lower()
    if suffix not in POINTS_SUFFIXES:
        raise ValueError(
            f"points file {path}: unsupported type {suffix or '(no extension)'!r}; "
            f"use {' or '.join(POINTS_SUFFIXES)}"
        )
    if file.stat().st_size == 0:
        raise ValueError(f"points file {path} is empty")
    rows = None
    if suffix == ".csv":
        values, rows = _read_csv(path)
    else:
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"cannot read points file {path} as a .npy array: {message}") from err
        if not isinstance(values, np.ndarray):
            raise ValueError(f"points file {path} is not a .npy array")
        if values.dtype.kind not in "biuf":
            raise ValueError(f"points file {path} holds {values.dtype} values, not real numbers")
    if values.ndim == 1:
        values = values[:, None]  # N numbers: N points on the line
    if values.ndim != 2:
        raise ValueError(
            f"points file {path} holds an array of shape {values.shape}; expected N x D "
            "(one point per row, D >= 1 columns)"
        )
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"points file {path} holds no points (shape {values.shape})")
    values = values.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        where = f"line {rows[row]}" if rows is not None else f"row {row} (counting from 0)"
        raise ValueError(
            f"points file {path} has {int(bad.sum())} NaN or infinite value(s), the first "
            f"on {where}"
        )
    values.flags.writeable = False  # shared by every caller through the cache
    return values


@functools.lru_cache(maxsize=8)
def _normalised_points(path: str, scale: float) -> np.ndarray:
    """The points of :func:`load_points`, computed in float64 and rounded once to float32."""
    values = _read_points(path)
    low, high = values.min(axis=0), values.max(axis=0)
    half_extent = float(np.max(high - low)) / 2
    if not half_extent > 0:
        raise ValueError(
            f"points file {path}: all {values.shape[0]} points are the same point, so there is "
            "no extent to normalise"
        )
    points = ((values - (low + high) / 2) / half_extent * scale).astype(np.float32)
    points.flags.writeable = False  # shared by every caller through the cache
    return points


def load_points(cfg: PointsConfig) -> np.ndarray:
    """The normalised points of a points file: the support of the dataset's distribution.

    With lo and hi the per-coordinate minimum and maximum over the N rows,

        x = scale * (row - (lo + hi) / 2) / h,    h = max_j (hi_j - lo_j) / 2,

    so the bounding box is centred at the origin, its longer side spans [-scale, scale] and the
    aspect ratio is kept (one factor for every coordinate), as for the cat image.

    Args:
        cfg: a points config; its ``path`` names a ``.npy`` file holding an (N, D) numeric
            array or a ``.csv`` file of N lines of D comma-separated numbers (one non-numeric
            header line allowed), N >= 1, D >= 1 (a .npy of shape (N,) is one column).

    Returns:
        A new float32 array of shape (N, D).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: no path was given, or the file is empty, unreadable, of another type, not
            N x D (or a ragged CSV), holds NaN or infinities, or holds one point only
            (repeated or not).
    """
    return _normalised_points(_user_file(cfg), float(cfg.scale)).copy()


def _points_dim(cfg: PointsConfig) -> int | None:
    dim = _read_points(_user_file(cfg)).shape[1]
    return None if dim == 2 else dim  # 2-D files are planar data, like the moons


def _sample_points(
    key: PRNGKeyArray, cfg: PointsConfig, batch_size: int
) -> Float[Array, "batch dim"]:
    """Rows of :func:`load_points` drawn uniformly with replacement: the empirical distribution.

    Each of the N points has probability 1 / N, as for the digits.
    """
    # Host work happens here, at trace time; the points become a constant of the sampler.
    points = _normalised_points(_user_file(cfg), float(cfg.scale))
    index = jax.random.randint(key, (batch_size,), 0, points.shape[0])
    return jnp.asarray(points)[index]


register(
    PointsConfig,
    Dataset(
        sample=_sample_points,
        native_dim=_points_dim,
        file_kind="a .npy or .csv file of N x D points",
    ),
)
