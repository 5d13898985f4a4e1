"""Writing files so that a failure never leaves a half-written or clobbered output."""

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np


def check_output_path(path: Path, flag: str) -> None:
    """Raises ``ValueError`` if ``path`` cannot be written as a file (before any work is done).

    Args:
        path: where a command will write.
        flag: the command-line option that named it, for the message.
    """
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a directory, not a file")
    parent = path.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {existing} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path} is not writable")


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it is renamed onto ``path``.

    The rename is atomic on POSIX file systems, so readers see either the old file or the whole
    new one. On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # Created like any new file (mode 0o666 less the umask), unlike mkstemp's private 0o600.
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


PointsWriter = Callable[[np.ndarray], None]
"""``write(rows)``: appends rows of shape (m, d) to the points being written."""


@contextlib.contextmanager
def points_writer(path: Path, num_points: int, dim: int) -> Iterator[PointsWriter]:
    """Streams ``num_points`` points of dimension ``dim`` to ``path`` (.npy or .csv) in pieces.

    Yields ``write(rows)``, which appends rows as they come: nothing but the rows handed to it
    is held in memory. The file is written atomically (:func:`atomic_output`): it appears whole
    once every point has been written, and a failure (or fewer points than announced) leaves
    ``path`` untouched.

    Formats: ``.npy``, float32 of shape (num_points, dim), written through a memory map;
    ``.csv``, a header line (``x,y`` for 2-D points, else ``x0,x1,...``) and one row a point.

    Raises:
        ValueError: a suffix other than .npy or .csv, or not ``num_points`` points written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise ValueError(f"{path} must end in .npy or .csv")
    written = 0
    with atomic_output(path) as tmp:
        if suffix == ".npy":
            array = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.float32, shape=(num_points, dim)
            )

            def write(rows: np.ndarray) -> None:
                nonlocal written
                array[written : written + len(rows)] = rows
                written += len(rows)

            yield write
            array.flush()
            del array
        else:
            header = "x,y" if dim == 2 else ",".join(f"x{i}" for i in range(dim))
            with open(tmp, "w") as f:
                f.write(header + "\n")

                def write(rows: np.ndarray) -> None:
                    nonlocal written
                    np.savetxt(f, np.asarray(rows), delimiter=",")
                    written += len(rows)

                yield write
        if written != num_points:
            raise ValueError(f"wrote {written} of {num_points} points to {path}")
