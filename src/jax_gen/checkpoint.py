"""Self-describing checkpoints: a JSON header with the full config, then the weights.

File layout (one file, written atomically)::

    {"format": "jax_gen-checkpoint", "version": 1, "config": {...}, "data_dim": 2, "step": ...,
     "losses": [...]}\\n
    <eqx.tree_serialise_leaves of TrainState: model, EMA model, optimizer state, step>

Loading rebuilds the skeleton of the state from the header's config (the model from its config,
the optimizer state from the optimizer config), then fills in the leaves. No pickle.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from jax_gen.config import ExperimentConfig, from_dict, time_inputs, to_dict
from jax_gen.files import atomic_output
from jax_gen.models import create_model
from jax_gen.train import TrainState, init_train_state, make_optimizer, model_num_classes

FORMAT = "jax_gen-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, corrupt or of another format version."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint."""

    config: ExperimentConfig
    state: TrainState
    data_dim: int
    losses: np.ndarray
    """Loss of every step trained so far, shape (step,)."""

    @property
    def step(self) -> int:
        return int(self.state.step)


def skeleton(config: ExperimentConfig, data_dim: int) -> TrainState:
    """A state with the right structure, shapes and dtypes for ``config`` (values arbitrary)."""
    num_classes = model_num_classes(config.dataset, config.train)
    num_times = time_inputs(config.strategy)
    model = create_model(config.model, jax.random.key(0), data_dim, num_classes, num_times)
    return init_train_state(model, make_optimizer(config.optimizer, config.train.train_steps))


def save(path: Path, config: ExperimentConfig, state: TrainState, losses: Any, data_dim: int):
    """Writes a checkpoint atomically: ``path`` holds the old file or the whole new one."""
    losses = np.asarray(losses, dtype=np.float64)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "config": to_dict(config),
        "data_dim": data_dim,
        "step": int(state.step),
        "losses": losses.tolist(),
    }
    with atomic_output(Path(path)) as tmp, open(tmp, "wb") as f:
        f.write(json.dumps(header).encode() + b"\n")
        eqx.tree_serialise_leaves(f, state)


def read_header(path: Path) -> dict[str, Any]:
    """The checkpoint's JSON header, validated. Raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    try:
        with open(path, "rb") as f:
            line = f.readline(64 * 1024 * 1024)
        header = json.loads(line)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a jax_gen checkpoint (unreadable header)") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a jax_gen checkpoint")
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {header.get('version')!r}; "
            f"this jax_gen reads version {VERSION}"
        )
    return header


def load(path: Path) -> Checkpoint:
    """Reads a checkpoint written by :func:`save`. Raises :class:`CheckpointError`."""
    path = Path(path)
    header = read_header(path)
    try:
        config = from_dict(header["config"])
        data_dim = int(header["data_dim"])
        losses = np.asarray(header["losses"], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {err}") from err
    if not isinstance(config, ExperimentConfig):
        raise CheckpointError(f"checkpoint {path} has an invalid config")
    try:
        with open(path, "rb") as f:
            f.readline(64 * 1024 * 1024)
            state = eqx.tree_deserialise_leaves(f, skeleton(config, data_dim))
            trailing = f.read(1)
    except Exception as err:  # equinox/numpy raise various errors on truncated or foreign data
        raise CheckpointError(f"checkpoint {path} is corrupt: cannot read its weights") from err
    if trailing:
        raise CheckpointError(f"checkpoint {path} is corrupt: unexpected data after the weights")
    if int(state.step) != header.get("step") or losses.shape != (int(state.step),):
        raise CheckpointError(f"checkpoint {path} is corrupt: its step count is inconsistent")
    return Checkpoint(config=config, state=state, data_dim=data_dim, losses=losses)
