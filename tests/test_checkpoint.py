import json
import os

import equinox as eqx
import jax
import numpy as np
import pytest

from jax_gen import checkpoint
from jax_gen.checkpoint import CheckpointError
from jax_gen.config import (
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    MoonConfig,
    ResNetConfig,
    TrainConfig,
)
from jax_gen.strategies import create_strategy
from jax_gen.train import init_train_state, make_optimizer, train_chunk

CONFIG = ExperimentConfig(
    strategy=FlowMatchingStrategyConfig(num_transport_steps=8, prediction="x"),
    model=ResNetConfig(hidden_dim=16, num_blocks=2),
    dataset=MoonConfig(),
    train=TrainConfig(batch_size=32, train_steps=10, log_interval=5),
)


def trained_state():
    state = checkpoint.skeleton(CONFIG, data_dim=2)
    optimizer = make_optimizer(CONFIG.optimizer, CONFIG.train.train_steps)
    state = init_train_state(state.model, optimizer)
    chunk = train_chunk(
        state,
        jax.random.key(0),
        5,
        create_strategy(CONFIG.strategy),
        optimizer,
        CONFIG.dataset,
        32,
        0.9,
    )
    return chunk.state, np.asarray(chunk.losses)


def arrays(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_array))


def test_round_trip_restores_everything(tmp_path):
    state, losses = trained_state()
    path = tmp_path / "run.eqx"
    checkpoint.save(path, CONFIG, state, losses, data_dim=2)
    loaded = checkpoint.load(path)
    assert loaded.config == CONFIG and loaded.data_dim == 2 and loaded.step == 5
    np.testing.assert_array_equal(loaded.losses, losses)
    for a, b in zip(arrays(state), arrays(loaded.state), strict=True):
        np.testing.assert_array_equal(a, b)
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    assert header["config"]["model"]["type"] == "ResNetConfig" and header["version"] == 1


def test_failed_save_leaves_the_old_file_untouched(tmp_path, monkeypatch):
    state, losses = trained_state()
    path = tmp_path / "run.eqx"
    checkpoint.save(path, CONFIG, state, losses, data_dim=2)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(eqx, "tree_serialise_leaves", broken)
    with pytest.raises(RuntimeError):
        checkpoint.save(path, CONFIG, state, losses, data_dim=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.eqx"]


def test_bad_checkpoints_raise_one_clear_error(tmp_path):
    state, losses = trained_state()
    good = tmp_path / "good.eqx"
    checkpoint.save(good, CONFIG, state, losses, data_dim=2)
    header, weights = good.read_bytes().split(b"\n", 1)

    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "missing.eqx")
    (tmp_path / "garbage.eqx").write_bytes(b"\x00\x01 not json")
    with pytest.raises(CheckpointError, match="not a jax_gen checkpoint"):
        checkpoint.load(tmp_path / "garbage.eqx")
    other = json.loads(header)
    other["version"] = 99
    (tmp_path / "v99.eqx").write_bytes(json.dumps(other).encode() + b"\n" + weights)
    with pytest.raises(CheckpointError, match="version 99"):
        checkpoint.load(tmp_path / "v99.eqx")
    (tmp_path / "short.eqx").write_bytes(header + b"\n" + weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        checkpoint.load(tmp_path / "short.eqx")
    bad_config = json.loads(header)
    bad_config["config"]["model"]["hidden_dim"] = 0
    (tmp_path / "bad.eqx").write_bytes(json.dumps(bad_config).encode() + b"\n" + weights)
    with pytest.raises(CheckpointError, match="hidden_dim=0"):
        checkpoint.load(tmp_path / "bad.eqx")


def test_written_files_get_ordinary_permissions(tmp_path):
    state, losses = trained_state()
    path = tmp_path / "run.eqx"
    checkpoint.save(path, CONFIG, state, losses, data_dim=2)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
