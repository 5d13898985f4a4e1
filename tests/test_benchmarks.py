"""The training, time-to-quality, sampling and device benchmarks run end to end at tiny sizes."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jax_gen import engine
from jax_gen.config import (
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    MLPConfig,
    MoonConfig,
    TrainConfig,
)
from jax_gen.models import create_model

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_train():
    return load_script("benchmark_train")


@pytest.fixture(scope="module")
def bench_ttq():
    return load_script("benchmark_time_to_quality")


@pytest.fixture(scope="module")
def bench_sampling():
    return load_script("benchmark_sampling")


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of every row of the markdown tables whose first header cell is ``header``."""
    rows, inside = [], False
    for line in text.splitlines():
        if not line.startswith("|"):
            inside = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == header:
            inside = True
        elif inside and not set(cells[0]) <= {"-"}:
            rows.append(cells)
    return rows


def positive_finite(x: float) -> bool:
    return math.isfinite(x) and x > 0


# ----------------------------------------------------------------------------------------------
# benchmark_train
# ----------------------------------------------------------------------------------------------


def test_flop_counts_of_a_tiny_mlp_match_a_hand_count(bench_train):
    # data 2 + time embedding 2 -> 4 -> 2: weights 4x4 and 4x2, biases 4 and 2.
    cfg = MLPConfig(hidden_dim=4, depth=1, time_embed_dim=2, fourier_features=0)
    model = create_model(cfg, jax.random.key(0), 2)
    shapes = bench_train.linear_shapes(model)
    assert shapes == [(4, 4), (4, 2)]
    batch = 3
    matmuls = bench_train.step_matmuls(shapes, batch)
    # forward (B,4)@(4,4), (B,4)@(4,2); weight grads (4,B)@(B,4), (4,B)@(B,2); input grad of
    # the second layer only, (B,2)@(2,4).
    assert sorted(matmuls) == sorted([(3, 4, 4), (4, 3, 4), (3, 4, 2), (4, 3, 2), (3, 2, 4)])
    forward = 2 * batch * (4 * 4 + 4 * 2)
    weight_grads = 2 * batch * (4 * 4 + 4 * 2)
    input_grads = 2 * batch * (2 * 4)
    assert bench_train.matmul_flops(matmuls) == forward + weight_grads + input_grads == 336
    assert bench_train.count_params(model) == 16 + 4 + 8 + 2
    assert bench_train.flops_estimate(30, batch) == 6 * 3 * 30


def test_host_moons_are_centred_and_scaled_like_the_moon_dataset(bench_train):
    from jax_gen.config import MoonConfig
    from jax_gen.data import get_batch

    host = bench_train.host_moons(np.random.RandomState(0), MoonConfig(), 20000)
    device = np.asarray(get_batch(jax.random.key(0), MoonConfig(), 20000))
    assert host.dtype == np.float32 and host.shape == (20000, 2)
    np.testing.assert_allclose(host.mean(0), device.mean(0), atol=0.05)
    np.testing.assert_allclose(host.std(0), device.std(0), rtol=0.03)


def test_train_benchmark_tiny_run(bench_train, tmp_path, capsys):
    output = tmp_path / "train.md"
    argv = ["--steps", "4", "--repeats", "1", "--batch-size", "32"]
    argv += ["--widths", "16", "--depths", "1", "--output", str(output)]
    (result,) = bench_train.main(argv)

    assert result.model == "MLP 16x1"
    assert set(result.steps_per_s) == {
        *bench_train.LOOPS,
        bench_train.MATMUL,
        bench_train.EMPTY,
        bench_train.ASYNC,
    }
    assert all(positive_finite(v) for v in result.steps_per_s.values())
    # MLP (2 + 2 x 64 Fourier features + 32) -> 16 -> 2 at batch 32; the 64 x 2 frequencies
    # are not trained, so not counted.
    assert result.params == 162 * 16 + 16 + 16 * 2 + 2
    assert result.flops_estimate == 6 * 32 * result.params
    assert result.flops_exact == 2 * 32 * (3 * 162 * 16 + 3 * 16 * 2) - 2 * 32 * 162 * 16
    assert positive_finite(result.matmul_gflops)
    for loop in bench_train.LOOPS:
        achieved = result.steps_per_s[loop] * result.flops_estimate / 1e9
        assert result.gflops(loop) == pytest.approx(achieved)
        assert result.fraction(loop) == pytest.approx(achieved / result.matmul_gflops)
        ratio = result.steps_per_s["fused"] / result.steps_per_s[loop]
        assert positive_finite(result.speedup(loop)) and result.speedup(loop) == ratio
        overhead = 1e3 * (1 / result.steps_per_s[loop] - 1 / result.steps_per_s["fused"])
        assert result.overhead_ms(loop) == pytest.approx(overhead)

    text = output.read_text()
    assert text.startswith("`scripts/benchmark_train.py --steps 4")
    (model_row,) = table_rows(text, "model")[:1]
    assert model_row[:2] == ["MLP 16x1", f"{result.params:,}"]
    loop_rows = [row for row in table_rows(text, "model") if len(row) == 8]
    assert [row[1] for row in loop_rows] == list(bench_train.LOOPS)
    fused = loop_rows[-1]
    assert fused[5] == f"{100 * result.fraction('fused'):.0f}%" and fused[6] == "1.00x"
    (where,) = [row for row in table_rows(text, "model") if len(row) == 7]
    assert where[0] == "MLP 16x1"
    assert where[4] == f"{result.empty_step_ms:.2f}" and positive_finite(result.empty_step_ms)
    assert where[5] == f"{result.overhead_ms('per-step'):.2f}"
    assert "Targets" not in text  # neither target model was measured
    assert "make_moons(32)" in text and "eager fold_in" in text
    out = capsys.readouterr().out
    assert all(line in out for line in text.splitlines() if line.startswith("| "))


def test_train_benchmark_rejects_mismatched_models(bench_train):
    with pytest.raises(SystemExit):
        bench_train.parse_args(["--widths", "16", "32", "--depths", "1"])


# ----------------------------------------------------------------------------------------------
# benchmark_time_to_quality
# ----------------------------------------------------------------------------------------------


def test_chunk_lengths_follow_train_chunks(bench_ttq):
    assert bench_ttq.chunk_lengths(TrainConfig(train_steps=25, log_interval=10)) == [10, 10, 5]
    assert bench_ttq.chunk_lengths(TrainConfig(train_steps=20, log_interval=10)) == [10, 10]


def test_time_to_quality_tiny_run(bench_ttq, tmp_path, capsys):
    output, figure = tmp_path / "ttq.md", tmp_path / "ttq.png"
    argv = ["--strategies", "flow-matching", "--steps", "25", "--log-interval", "10"]
    argv += ["--num-samples", "64", "--threshold", "1e6", "--output", str(output)]
    argv += ["--figure", str(figure), "--sampler", "euler", "--num-sampling-steps", "4"]
    (run,) = bench_ttq.main(argv)

    assert (run.strategy, run.sampler, run.nfe) == ("flow-matching", "euler", 4)
    assert [c.step for c in run.checkpoints] == [10, 20, 25]  # --steps is respected
    seconds = [c.train_seconds for c in run.checkpoints]
    assert all(positive_finite(s) for s in seconds) and seconds == sorted(seconds)
    assert all(positive_finite(c.ratio) for c in run.checkpoints)
    assert positive_finite(run.floor)
    assert positive_finite(run.eval_seconds) and positive_finite(run.warmup_seconds)
    assert run.reached(1e6) == run.checkpoints[0]
    assert run.reached(0.0) is None
    assert run.best_ratio == min(c.ratio for c in run.checkpoints)

    text = output.read_text()
    assert text.startswith("`scripts/benchmark_time_to_quality.py --strategies flow-matching")
    (row,) = table_rows(text, "strategy")
    assert row[:5] == ["flow-matching", "euler", "4", "10", f"{seconds[0]:.1f}"]
    assert row[5] == f"{run.checkpoints[-1].ratio:.2f}"
    out = capsys.readouterr().out
    assert all(line in out for line in text.splitlines()[2:] if line)
    with Image.open(figure) as image:
        image.load()
        assert image.format == "PNG"
        assert np.asarray(image.convert("L")).min() < 128


def test_time_to_quality_reports_a_threshold_not_reached(bench_ttq):
    run = bench_ttq.Run("ddpm", "default", 100, 1.0, 0.0)
    run.checkpoints = [bench_ttq.Checkpoint(10, 1.0, 3.0), bench_ttq.Checkpoint(20, 2.0, 2.0)]
    (row,) = table_rows("\n".join(bench_ttq.table([run], 1.5)), "strategy")
    assert row[3:7] == ["not reached", "-", "2.00", "2.00"]


def test_time_to_quality_rejects_bad_arguments(bench_ttq):
    for argv in (["--steps", "0"], ["--threshold", "0"], ["--num-sampling-steps", "0"]):
        with pytest.raises(SystemExit):
            bench_ttq.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# benchmark_sampling
# ----------------------------------------------------------------------------------------------


def test_sampling_benchmark_tiny_run(bench_sampling, tmp_path, capsys):
    output = tmp_path / "sampling.md"
    argv = ["--strategies", "score-matching", "--nfe", "2", "20", "--batch-sizes", "16"]
    argv += ["--repeats", "1", "--output", str(output)]
    rows = bench_sampling.main(argv)

    # Euler at 2 and 20 steps; annealed Langevin spends 20 evaluations per level: NFE 20 only.
    assert [(r.sampler, r.steps, r.nfe) for r in rows] == [
        ("euler", 2, 2),
        ("euler", 20, 20),
        ("default", 1, 20),
    ]
    for r in rows:
        assert r.batch == 16 and positive_finite(r.seconds)
        assert r.samples_per_s == pytest.approx(16 / r.seconds)
        assert r.evals_per_s == pytest.approx(16 * r.nfe / r.seconds)
        assert positive_finite(r.gflops)

    text = output.read_text()
    assert text.startswith("`scripts/benchmark_sampling.py --strategies score-matching")
    table = table_rows(text, "strategy")
    assert [row[:5] for row in table] == [
        ["score-matching", "euler", "2", "2", "16"],
        ["score-matching", "euler", "20", "20", "16"],
        ["score-matching", "default", "1", "20", "16"],
    ]
    assert "Out of reach: score-matching / default at NFE 2 (20 evaluations per step)." in text
    out = capsys.readouterr().out
    assert all(line in out for line in text.splitlines() if line.startswith("| "))


def test_generate_benchmark_runs_the_command_at_each_size(bench_sampling, tmp_path, capsys):
    # An untrained checkpoint: the command's cost does not depend on the weights.
    model_path = tmp_path / "tiny.eqx"
    config = ExperimentConfig(
        strategy=FlowMatchingStrategyConfig(num_transport_steps=4),
        model=MLPConfig(hidden_dim=16, depth=2),
        dataset=MoonConfig(),
    )
    engine.init_state(config).save(model_path)
    output = tmp_path / "generate.md"
    argv = ["--generate-sizes", "300", "--model-path", str(model_path)]
    (row,) = bench_sampling.main([*argv, "--generate-output", str(output)])
    assert row.n == 300 and 0 < row.sampling < row.wall and row.peak_mb > 50
    text = output.read_text()
    (cells,) = table_rows(text, "n")
    assert cells[0] == "300" and cells[5] == "1x" and float(cells[1]) == round(row.wall, 1)
    out = capsys.readouterr().out
    assert all(line in out for line in text.splitlines() if line.startswith("| "))
    # Ratios are against the first size.
    bigger = bench_sampling.GenerateRow(1200, 2 * row.wall, 4 * row.sampling, row.peak_mb)
    assert "| 4x | 4.0x | 2.0x |" in bench_sampling.format_generate_row(bigger, row)
    with pytest.raises(SystemExit):
        bench_sampling.parse_args(["--generate-sizes", "10", "--model-path", "missing.eqx"])


def test_sampling_benchmark_rejects_adaptive(bench_sampling):
    with pytest.raises(SystemExit):
        bench_sampling.parse_args(["--samplers", "adaptive"])


def test_train_report_checks_the_targets(bench_train):
    rates = {"per-step, host data": 100.0, "per-step": 200.0, "fused": 500.0}
    small = bench_train.Result(
        bench_train.SMALL_MLP,
        10,
        600,
        500,
        {**rates, "matmul": 800.0, "empty step": 1e4, "per-step, no read back": 400.0},
    )
    default = bench_train.Result(
        bench_train.DEFAULT_MLP,
        10,
        600,
        500,
        {**rates, "matmul": 400.0, "empty step": 1e4, "per-step, no read back": 400.0},
    )
    # default: fused 500 steps/s x 600 FLOPs vs the matmul rate 400 x 500 FLOPs: 150%.
    assert default.fraction("fused") == pytest.approx(1.5)
    text = "\n".join(bench_train.report([small, default], {}, "header"))
    assert "on MLP 128x4: 150% (met)" in text
    assert "on MLP 128x3: 2.50x (not met; 5.00x against host data)" in text
    (where,) = [row for row in table_rows(text, "model") if row[0] == "MLP 128x3" and len(row) == 7]
    assert where == ["MLP 128x3", "2.00", "1.25", "2.50", "0.10", "3.00", "8.00"]


# ----------------------------------------------------------------------------------------------
# benchmark_devices
# ----------------------------------------------------------------------------------------------


def test_device_benchmark_times_every_mesh_and_both_couplings(tmp_path):
    """Runs in a child process: the script asks XLA for 4 CPU devices before JAX starts."""
    output = tmp_path / "devices.md"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark_devices.py"), "--steps", "5"]
        + ["--repeats", "1", "--batch-size", "32", "--hidden-dim", "16", "--depth", "1"]
        + ["--ot-batch-sizes", "16", "--output", str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = output.read_text()
    assert "4 CPU devices" in text
    devices = table_rows(text, "devices")
    assert [(row[0], row[1]) for row in devices] == [("1", "32"), ("2", "16"), ("4", "8")]
    assert devices[0][4] == "1.00x"
    assert all(float(row[2]) > 0 for row in devices)
    (coupling,) = table_rows(text, "batch")
    assert coupling[0] == "16" and float(coupling[1]) > 0 and float(coupling[2]) > 0


def test_yardsticks_benchmark_tiny_run(tmp_path, capsys):
    """Two couplings of one task, one seed, a few steps: every figure is measured and finite,
    the table puts the published values beside the torchcfm recipe's, and a second run for
    another coupling adds its rows to the same files."""
    bench = load_script("benchmark_yardsticks")
    out = tmp_path / "yardsticks"
    task = ["--recipes", "torchcfm", "--tasks", "8 Gaussians -> moons", "--steps", "20"]
    common = [*task, "--num-points", "200", "--out", str(out)]
    bench.main([*common, "--seeds", "0", "--couplings", "independent"])
    bench.main([*common, "--seeds", "0", "--couplings", "ot"])
    bench.main([*common, "--seeds", "1", "--couplings", "ot"])  # adds a seed to the OT row
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert set(runs) == {f"torchcfm/8 Gaussians -> moons/{c}" for c in ("independent", "ot")}
    assert [r["seed"] for r in runs["torchcfm/8 Gaussians -> moons/ot"]] == [0, 1]
    for figures in [figures for seeds in runs.values() for figures in seeds]:
        for name in ("w2_adaptive", "w2_euler1", "npe", "w2_floor", "w2_source_target"):
            assert math.isfinite(figures[name]) and figures[name] >= 0, (name, figures)
        assert figures["w2_source_target"] > 5 * figures["w2_floor"]
    table = out.with_suffix(".md").read_text()
    assert "| 8 Gaussians -> moons | OT-CFM | 20 | 2 |" in table and "(published 0.07)" in table
    assert "(published 6.2)" in table and "(published 2.74)" in table
    out.with_suffix(".md").unlink()
    bench.main(["--table-only", "--out", str(out)])
    assert out.with_suffix(".md").read_text() == table
    with pytest.raises(SystemExit) as exit_info:  # W2s on another number of points: refused
        bench.main([*task, "--num-points", "300", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "holds W2s on 200 points, not 300" in capsys.readouterr().err


def test_yardsticks_keep_every_seed_and_drop_another_configs(tmp_path):
    """record(): each seed is written as soon as it is measured and merged with what the file
    holds; a seed measured again replaces its figures; a new config drops the old seeds."""
    bench = load_script("benchmark_yardsticks")
    path = tmp_path / "y.json"
    steps = {"train": {"train_steps": 20}}
    bench.record(path, "a", steps, {"seed": 0, "w2": 1.0}, 100)
    bench.record(path, "b", steps, {"seed": 0, "w2": 5.0}, 100)
    bench.record(path, "a", steps, {"seed": 2, "w2": 3.0}, 100)
    runs, _ = bench.record(path, "a", steps, {"seed": 0, "w2": 2.0}, 100)
    assert runs["a"] == [{"seed": 0, "w2": 2.0}, {"seed": 2, "w2": 3.0}]
    assert runs["b"] == [{"seed": 0, "w2": 5.0}]
    longer = {"train": {"train_steps": 40}}
    runs, configs = bench.record(path, "a", longer, {"seed": 1, "w2": 0.5}, 100)
    assert runs["a"] == [{"seed": 1, "w2": 0.5}] and configs["a"] == longer
    assert json.loads(path.read_text())["runs"] == runs
    assert not path.with_suffix(".json.partial").exists()
