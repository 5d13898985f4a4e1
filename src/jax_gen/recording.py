"""Rerun recordings of training and sampling: numpy in, ``.rrd`` out.

This module never imports JAX, and imports rerun only when a recording is opened or read
(rerun takes ~0.4 s to import and most runs do not use it). A saved recording goes through
:func:`jax_gen.files.atomic_output`, so a failure never leaves a half-written or clobbered file.

- :class:`RerunLogger`: losses, sample snapshots and trajectories, to a viewer and/or a file.
- :func:`read_recording`: loads the logged values back into numpy.
"""

import contextlib
import os
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from jaxtyping import Float

from jax_gen.files import atomic_output
from jax_gen.geometry import as_points

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
        self._log_states(entity, timeline, np.asarray([step]), as_points(points, "points")[None])

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
