"""engine.fit: the one training loop, its keys, its checkpoints and how it stops."""

import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from helpers import FAST
from helpers import run_cli as run

import jax_gen.train as train_module
from jax_gen import checkpoint, engine
from jax_gen.config import (
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    GaussianMixtureConfig,
    MLPConfig,
    OptimizerConfig,
    ScoreMatchingStrategyConfig,
    TrainConfig,
)

REFERENCE = Path(__file__).parent / "data" / "engine_reference.npz"
TINY = ["model:mlp", "--model.hidden-dim", "16", "--model.depth", "2"]


def config(**train) -> ExperimentConfig:
    """A tiny flow-matching run on the Gaussian mixture: 40 steps in chunks of 10 by default."""
    train = {"batch_size": 64, "train_steps": 40, "log_interval": 10} | train
    return ExperimentConfig(
        strategy=FlowMatchingStrategyConfig(),
        model=MLPConfig(hidden_dim=16, depth=2),
        dataset=GaussianMixtureConfig(),
        train=TrainConfig(**train),
    )


def arrays(state) -> list[np.ndarray]:
    """Every array of a state (model, EMA model, optimizer state, step)."""
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(state, eqx.is_array))]


def assert_same_bits(a, b) -> None:
    """Two runs' states and losses are identical, bit for bit."""
    np.testing.assert_array_equal(a.losses, b.losses)
    for x, y in zip(arrays(a.state), arrays(b.state), strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_command_line_trains_the_model_fit_trains(tmp_path, capsys):
    path = tmp_path / "model.eqx"
    argv = ["train", "strategy:flow-matching", *TINY, "dataset:gaussian-mixture", *FAST]
    code, _, err = run([*argv, "--seed", "5", "--model-path", path], capsys)
    assert code == 0, err
    saved = checkpoint.load(path)
    fitted = engine.fit(saved.config)
    assert fitted.config == saved.config and fitted.data_dim == saved.data_dim == 2
    assert fitted.step == saved.step == 20
    assert_same_bits(fitted, saved)


def test_resuming_a_mid_run_checkpoint_gives_the_uninterrupted_run(tmp_path):
    cfg = config()
    full = engine.fit(cfg)
    path = tmp_path / "run.eqx"

    def stop_at_20(progress):
        if progress.step == 20:
            raise KeyboardInterrupt

    with pytest.raises(engine.Interrupted) as interrupted:
        engine.fit(cfg, checkpoint_path=path, checkpoint_every=20, on_chunk=stop_at_20)
    assert isinstance(interrupted.value, KeyboardInterrupt)
    assert interrupted.value.state.step == 20
    saved = checkpoint.load(path)  # the periodic save at step 20
    assert saved.step == 20
    assert_same_bits(interrupted.value.state, saved)
    resumed = engine.fit(cfg, state=saved, checkpoint_path=path)
    assert resumed.step == 40
    assert_same_bits(resumed, full)
    assert_same_bits(checkpoint.load(path), full)


def test_fit_reproduces_the_stored_reference():
    """The weights, EMA, optimizer state and losses of a 30-step run, stored when it was written.

    Exact on the machine that recorded it; rtol 1e-5 only allows another CPU's different order
    of float additions (XLA's vectorisation and fusion), not a change of keys or of the loop.
    The model and learning rate are spelled out, so a change of their defaults keeps it valid.
    """
    cfg = ExperimentConfig(
        strategy=FlowMatchingStrategyConfig(),
        model=MLPConfig(hidden_dim=8, depth=2, time_embed_dim=4, fourier_features=0),
        dataset=GaussianMixtureConfig(),
        optimizer=OptimizerConfig(learning_rate=2e-3),
        train=TrainConfig(batch_size=64, train_steps=30, log_interval=10, seed=7),
    )
    fitted = engine.fit(cfg)
    stored = np.load(REFERENCE)
    leaves = arrays(fitted.state)
    assert sorted(stored.files) == sorted(["losses", *(f"leaf{i:02d}" for i in range(len(leaves)))])
    np.testing.assert_allclose(fitted.losses, stored["losses"], rtol=1e-5)
    for i, leaf in enumerate(leaves):
        np.testing.assert_allclose(leaf, stored[f"leaf{i:02d}"], rtol=1e-5, atol=1e-8)


def test_the_seed_picks_the_run_and_is_recorded():
    cfg = config(train_steps=10)
    a, b = engine.fit(cfg, seed=3), engine.fit(config(train_steps=10, seed=3))
    assert a.config.train.seed == 3
    assert_same_bits(a, b)
    assert not np.array_equal(a.losses, engine.fit(cfg).losses)
    root = jax.random.key(3)
    assert_same_bits(engine.fit(cfg, key=root), a)
    with pytest.raises(ValueError, match="seed or a key"):
        engine.fit(cfg, seed=1, key=root)


def test_on_chunk_sees_every_chunk_and_the_state_is_complete():
    seen = []
    fitted = engine.fit(
        config(train_steps=25),
        on_chunk=lambda p: seen.append((p.step, p.losses.size, int(p.state.step))),
    )
    assert seen == [(10, 10, 10), (20, 10, 20), (25, 5, 25)]
    assert fitted.losses.shape == (25,) and fitted.losses.dtype == np.float32
    assert fitted.model is fitted.state.model and fitted.ema_model is fitted.state.ema_model
    assert fitted.opt_state is fitted.state.opt_state and fitted.step == 25


def test_periodic_and_final_checkpoints(tmp_path, monkeypatch):
    saved, original = [], checkpoint.save

    def spy(path, cfg, state, losses, data_dim):
        saved.append((int(state.step), len(losses)))
        return original(path, cfg, state, losses, data_dim)

    monkeypatch.setattr(checkpoint, "save", spy)
    engine.fit(config(), checkpoint_path=tmp_path / "m.eqx", checkpoint_every=15)
    assert saved == [(20, 20), (30, 30), (40, 40)]  # after the chunks crossing 15, 30; the end
    with pytest.raises(ValueError, match="checkpoint_every=-1"):
        engine.fit(config(), checkpoint_every=-1)


def test_a_state_of_another_config_is_refused():
    state = engine.init_state(config())
    with pytest.raises(ValueError, match="another config"):
        engine.fit(config(train_steps=20), state=state)


def test_divergence_stops_before_anything_non_finite_is_kept(tmp_path):
    path = tmp_path / "m.eqx"
    huge = OptimizerConfig(learning_rate=1e30, max_grad_norm=1e30)
    cfg = ExperimentConfig(
        model=MLPConfig(16, 2),
        dataset=GaussianMixtureConfig(),
        optimizer=huge,
        train=TrainConfig(batch_size=64, train_steps=20, log_interval=10),
    )
    with pytest.raises(engine.TrainingDiverged, match="nothing was written") as diverged:
        engine.fit(cfg, checkpoint_path=path)
    assert isinstance(diverged.value, ValueError)
    assert "training diverged" in str(diverged.value)
    assert "--optimizer.learning-rate than 1e+30" in str(diverged.value)
    kept = diverged.value.state
    assert train_module.is_finite(kept.state) and np.all(np.isfinite(kept.losses))
    assert kept.losses.shape == (kept.step,)
    assert not path.exists()
    # Unchecked, the same run trains on to the end.
    assert engine.fit(cfg, check_finite=False).step == 20


def test_a_second_fit_of_a_config_reuses_the_compiled_chunk(monkeypatch):
    traces = []
    original = train_module.train_step

    def counting_step(*args, **kwargs):
        traces.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", counting_step)
    cfg = config(batch_size=56, train_steps=20)  # a batch size no other test uses
    engine.fit(cfg)
    engine.fit(cfg, seed=1)
    assert len(traces) == 1


def test_warm_up_compiles_every_chunk_length(monkeypatch):
    traces = []
    original = train_module.train_step

    def counting_step(*args, **kwargs):
        traces.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", counting_step)
    cfg = config(batch_size=40, train_steps=25)  # chunks of 10, 10 and 5
    initial = engine.init_state(cfg)
    engine.warm_up(initial)
    assert len(traces) == 2
    engine.fit(cfg, state=initial)
    assert len(traces) == 2


def test_run_keys_are_named_streams_of_the_seed():
    keys = engine.run_keys(4)
    root = jax.random.key(4)
    init, train, _ = jax.random.split(root, 3)
    same = [
        (keys.init, init),
        (keys.train, train),
        (keys.sample, engine.key_stream(root, "sample")),
        (keys.evaluate, engine.key_stream(root, "evaluate")),
    ]
    for a, b in same:
        np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))
    data = [jax.random.key_data(k) for k in keys]
    assert len({d.tobytes() for d in data}) == 4


def test_a_strategy_that_measures_the_data_trains_as_measured():
    cfg = dataclasses.replace(config(train_steps=10), strategy=ScoreMatchingStrategyConfig())
    initial = engine.init_state(cfg)
    assert initial.config.strategy.source_mean is not None
    assert initial.config == engine.measured_config(cfg)
    assert engine.measured_config(initial.config) == initial.config
    strategies = []
    fitted = engine.fit(cfg, state=initial, on_chunk=lambda p: strategies.append(p.strategy))
    assert fitted.config == initial.config
    assert strategies[0].source_mean is not None
    assert_same_bits(fitted, engine.fit(cfg))
