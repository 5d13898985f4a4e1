"""Reflow: flow matching on a teacher's (source point, ODE end point) pairs, made once up front."""

import dataclasses
import re
import shutil

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FAST
from helpers import run_cli as run

from jax_gen import checkpoint, engine
from jax_gen.config import (
    DDPMStrategyConfig,
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    MLPConfig,
    MoonConfig,
    SamplerConfig,
    ScoreMatchingStrategyConfig,
    TrainConfig,
)
from jax_gen.coupling import Pairs, draw_pairs
from jax_gen.engine import fit, init_state, key_stream, reflow_pairs, run_keys, training_pairs
from jax_gen.sampling import sample
from jax_gen.strategies import DDPMStrategy, create_strategy

TINY = MLPConfig(hidden_dim=48, depth=2, fourier_features=0)
TEACHER_STEPS = 20


def teacher_config(strategy=None, dataset=None) -> ExperimentConfig:
    return ExperimentConfig(
        strategy=strategy or FlowMatchingStrategyConfig(num_transport_steps=TEACHER_STEPS),
        model=TINY,
        dataset=dataset or MoonConfig(),
        train=TrainConfig(batch_size=128, train_steps=400, log_interval=200, ema_decay=0.99),
    )


def student_config(teacher_path, **strategy) -> ExperimentConfig:
    fields = {
        "num_transport_steps": TEACHER_STEPS,
        "coupling": "reflow",
        "teacher_path": str(teacher_path),
        "reflow_pairs": 4000,
    }
    return dataclasses.replace(
        teacher_config(), strategy=FlowMatchingStrategyConfig(**{**fields, **strategy})
    )


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A small flow-matching model of the moons (400 steps), saved: (path, fitted state)."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.eqx"
    fitted = fit(teacher_config(), checkpoint_path=path)
    return path, fitted


def untrained_checkpoint(path, config: ExperimentConfig):
    """A checkpoint of ``config`` at step 0: enough for the teacher's checks."""
    init_state(config).save(path)
    return path


@eqx.filter_jit
def euler_end_points(strategy, model, eps, steps):
    """The flow's ODE dz/dt = v(t, z) from each source point, by Euler steps (written here,
    apart from the samplers)."""
    z = eps
    for i in range(steps):
        t = jnp.float32(i / steps)
        z = z + jax.vmap(strategy.velocity, in_axes=(None, None, 0))(model, t, z) / steps
    return z


# ----------------------------------------------------------------------------------------------
# The pairs
# ----------------------------------------------------------------------------------------------


def test_pairs_keep_both_marginals(teacher, monkeypatch):
    """eps ~ N(0, I) (mean and covariance within 4 standard errors at M = 10,000), and x is,
    chunk by chunk, exactly what the teacher samples with the same sampler from the same key."""
    path, fitted = teacher
    monkeypatch.setattr(engine, "REFLOW_CHUNK", 4000)  # three chunks, the last one cut short
    strategy, key, m = create_strategy(fitted.config.strategy), jax.random.key(3), 10_000
    sampler = SamplerConfig(sampler="heun", num_sampling_steps=8)
    pairs = reflow_pairs(strategy, fitted.ema_model, key, m, 2, sampler)
    assert pairs.x.shape == pairs.eps.shape == (m, 2)

    eps = np.asarray(pairs.eps, np.float64)
    assert np.all(np.abs(eps.mean(0)) < 4 / np.sqrt(m))
    cov = np.cov(eps.T)
    # Standard errors of a sample covariance of N(0, I): sqrt(2 / m) on the diagonal, 1 / sqrt(m)
    # off it.
    np.testing.assert_array_less(np.abs(np.diag(cov) - 1), 4 * np.sqrt(2 / m))
    assert abs(cov[0, 1]) < 4 / np.sqrt(m)

    for c, start in enumerate(range(0, m, 4000)):
        own = sample(
            strategy,
            fitted.ema_model,
            jax.random.fold_in(key, c),
            4000,
            2,
            sampler,
            keep_trajectory=True,
        )
        rows = slice(start, min(start + 4000, m))
        n = rows.stop - rows.start
        np.testing.assert_array_equal(pairs.x[rows], own.samples[:n])
        np.testing.assert_array_equal(pairs.eps[rows], own.trajectory[0, :n])


def test_each_target_is_the_ode_end_point_of_its_own_source(teacher):
    """Per point: x_i is the teacher's Euler ODE solution from eps_i (integrated separately),
    not merely a point of the right distribution."""
    path, fitted = teacher
    config = student_config(path, reflow_pairs=2000)
    pairs = training_pairs(config, run_keys(0))
    strategy = create_strategy(fitted.config.strategy)
    expected = euler_end_points(strategy, fitted.ema_model, pairs.eps, TEACHER_STEPS)
    np.testing.assert_allclose(pairs.x, expected, atol=2e-5)
    # The pairing matters: the same targets matched to other sources are far off.
    shuffled = euler_end_points(strategy, fitted.ema_model, pairs.eps[::-1], TEACHER_STEPS)
    assert float(jnp.mean(jnp.linalg.norm(pairs.x - shuffled, axis=-1))) > 0.5


def test_pairs_are_deterministic_for_a_seed_and_change_with_it(teacher):
    config = student_config(teacher[0], reflow_pairs=500)
    first, again = training_pairs(config, run_keys(0)), training_pairs(config, run_keys(0))
    other = training_pairs(config, run_keys(1))
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.eps, again.eps)
    assert not np.any(np.all(np.asarray(first.eps) == np.asarray(other.eps), axis=-1))
    # No pairs for a config that is not a reflow.
    assert training_pairs(teacher_config(), run_keys(0)) is None


def test_teacher_steps_and_sampler_are_those_of_the_config(teacher):
    path, fitted = teacher
    config = student_config(path, reflow_pairs=300, teacher_sampler="midpoint", teacher_steps=3)
    pairs = training_pairs(config, run_keys(0))
    strategy = create_strategy(fitted.config.strategy)
    sampler = SamplerConfig(sampler="midpoint", num_sampling_steps=3)
    key = jax.random.fold_in(key_stream(run_keys(0).train, "reflow"), 0)
    own = sample(strategy, fitted.ema_model, key, 300, 2, sampler)
    np.testing.assert_array_equal(pairs.x, own.samples)


def test_draw_pairs_keeps_rows_whole():
    x = jnp.arange(20.0).reshape(10, 2)
    pairs = Pairs(x, -x)
    bx, beps = draw_pairs(jax.random.key(0), pairs, 64)
    np.testing.assert_array_equal(beps, -bx)
    # Uniform rows with replacement: every row of 10 turns up in 64 draws (P(miss) < 1e-2).
    assert len(np.unique(np.asarray(bx[:, 0]))) == 10


def test_a_ddpm_teacher_is_integrated_by_its_probability_flow(tmp_path):
    """A DDPM teacher's default sampler is stochastic; reflow integrates its ODE instead."""
    ddpm = teacher_config(DDPMStrategyConfig(num_transport_steps=50))
    path = untrained_checkpoint(tmp_path / "ddpm.eqx", ddpm)
    pairs = training_pairs(student_config(path, reflow_pairs=200), run_keys(0))
    saved = checkpoint.load(path)
    strategy = create_strategy(ddpm.strategy)
    expected = euler_end_points(strategy, saved.state.ema_model, pairs.eps, 50)
    # An untrained eps-network's ODE ends far out (|x| in the hundreds): float32's relative error.
    np.testing.assert_allclose(pairs.x, expected, rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def test_reflow_straightens_the_flow(teacher, tmp_path):
    """One Euler step of the reflowed flow lands nearer the teacher's ODE end point than one
    Euler step of the teacher does, from the same source points; and a second reflow, with the
    first as its teacher, makes pairs from it."""
    path, fitted = teacher
    student_path = tmp_path / "student.eqx"
    student = fit(student_config(path), checkpoint_path=student_path)
    assert student.config.strategy.teacher_path == str(path)
    teacher_strategy = create_strategy(fitted.config.strategy)
    student_strategy = create_strategy(student.config.strategy)
    assert not student_strategy.has_score()

    eps = jax.random.normal(jax.random.key(11), (2000, 2))
    target = euler_end_points(teacher_strategy, fitted.ema_model, eps, TEACHER_STEPS)

    def miss(strategy, model):
        one_step = euler_end_points(strategy, model, eps, 1)
        return float(jnp.mean(jnp.linalg.norm(one_step - target, axis=-1)))

    teacher_miss, student_miss = (
        miss(teacher_strategy, fitted.ema_model),
        miss(student_strategy, student.ema_model),
    )
    assert student_miss < 0.25 * teacher_miss, (student_miss, teacher_miss)

    second = student_config(student_path, reflow_pairs=300)
    pairs = training_pairs(second, run_keys(0))
    own = euler_end_points(student_strategy, student.ema_model, pairs.eps, TEACHER_STEPS)
    np.testing.assert_allclose(pairs.x, own, atol=2e-5)


def test_a_reflow_strategy_refuses_to_pair_data_batches():
    strategy = create_strategy(FlowMatchingStrategyConfig(coupling="reflow", teacher_path="t"))
    with pytest.raises(ValueError, match="teacher's pairs"):
        strategy.couple(jax.random.key(0), jnp.zeros((4, 2)))


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def test_config_needs_a_teacher_exactly_for_reflow():
    with pytest.raises(ValueError, match="needs a teacher"):
        FlowMatchingStrategyConfig(coupling="reflow")
    with pytest.raises(ValueError, match="is for coupling='reflow'"):
        FlowMatchingStrategyConfig(coupling="ot", teacher_path="t.eqx")
    with pytest.raises(ValueError, match="reflow_pairs=0"):
        FlowMatchingStrategyConfig(coupling="reflow", teacher_path="t.eqx", reflow_pairs=0)
    with pytest.raises(ValueError, match="teacher_sampler='pc'"):
        FlowMatchingStrategyConfig(coupling="reflow", teacher_path="t.eqx", teacher_sampler="pc")


def test_teachers_that_cannot_teach(tmp_path, monkeypatch):
    def refused(teacher_path, fragment, **overrides):
        config = student_config(teacher_path)
        if overrides:
            config = dataclasses.replace(config, **overrides)
        with pytest.raises(ValueError, match=fragment) as info:
            training_pairs(config, run_keys(0))
        assert "\n" not in str(info.value)

    refused(tmp_path / "missing.eqx", "reflow teacher: checkpoint not found")
    (tmp_path / "junk.eqx").write_bytes(b"not a checkpoint\n")
    refused(tmp_path / "junk.eqx", "reflow teacher: .* is not a jax_gen checkpoint")

    moons_3d = teacher_config(dataset=MoonConfig(ambient_dim=3))
    refused(untrained_checkpoint(tmp_path / "3d.eqx", moons_3d), "3-dimensional points")

    score = teacher_config(ScoreMatchingStrategyConfig())
    refused(
        untrained_checkpoint(tmp_path / "sm.eqx", score),
        re.escape("starts from N(m, sigma_max^2 I), the flow from N(0, I)"),
    )

    ddpm = untrained_checkpoint(tmp_path / "ddpm.eqx", teacher_config(DDPMStrategyConfig()))
    monkeypatch.setattr(DDPMStrategy, "has_velocity", lambda self: False)
    refused(ddpm, "has no velocity")
    monkeypatch.undo()

    conditional = TrainConfig(batch_size=128, train_steps=10, conditional=True)
    flow = untrained_checkpoint(tmp_path / "flow.eqx", teacher_config())
    refused(flow, "unconditional", train=conditional)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def test_command_line_reflow_end_to_end(teacher, tmp_path, capsys):
    """Trains a reflow from a teacher's checkpoint (written by the fit that `train` runs), samples
    it in one step and evaluates it after the teacher is gone."""
    tiny = ["--model.hidden-dim", "32", "--model.depth", "2", "--model.fourier-features", "0"]
    base = ["train", "strategy:flow-matching", "dataset:moon", *FAST, *tiny]
    teacher_path, student_path = tmp_path / "teacher.eqx", tmp_path / "student.eqx"
    shutil.copy(teacher[0], teacher_path)
    reflow = ["--strategy.coupling", "reflow", "--strategy.reflow-pairs", "500"]
    code, out, err = run(
        [*base, *reflow, "--strategy.teacher-path", teacher_path, "--model-path", student_path],
        capsys,
    )
    assert code == 0, err
    assert checkpoint.load(student_path).config.strategy.teacher_path == str(teacher_path)

    # Sampling and evaluating need no teacher.
    teacher_path.unlink()
    image = tmp_path / "one.png"
    argv = ["generate", "--model-path", student_path, "--num-sampling-steps", "1"]
    code, out, err = run([*argv, "--output-image-path", image], capsys)
    assert code == 0, err
    assert "NFE 1" in out and image.exists()
    evaluate = ["evaluate", "--model-path", student_path, "--steps", "1", "--repeats", "2"]
    fast = ["--num-samples", "200", "--nll-points", "16", "--density-resolution", "16"]
    code, out, err = run([*evaluate, *fast], capsys)
    assert code == 0, err

    # Without its teacher, a reflow cannot train: one line, exit 2, nothing written.
    other = tmp_path / "other.eqx"
    code, out, err = run(
        [*base, *reflow, "--strategy.teacher-path", teacher_path, "--model-path", other], capsys
    )
    assert code == 2 and "checkpoint not found" in err and len(err.strip().splitlines()) == 1
    assert not other.exists()
    code, out, err = run(
        [*base, *reflow, "--strategy.teacher-path", student_path, "--model-path", student_path],
        capsys,
    )
    assert code == 2 and "is the reflow teacher's checkpoint" in err
