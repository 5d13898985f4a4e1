"""Writing files so that a failure never leaves a half-written or clobbered output."""

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


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
