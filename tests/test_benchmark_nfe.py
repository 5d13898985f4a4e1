"""scripts/benchmark_nfe.py runs end to end at a tiny size and writes its table and figure."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jax_gen.config import ExperimentConfig, FlowMatchingStrategyConfig, MLPConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark_nfe.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_nfe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(text: str, title: str = "C2ST") -> dict[str, list[str]]:
    """Sampler name -> its cells, for the rows of every table whose title starts with ``title``."""
    rows, current = {}, None
    for line in text.splitlines():
        if line and not line.startswith("|"):
            current = line
        fields = [f.strip() for f in line.strip().strip("|").split("|")]
        if line.startswith("| ") and fields[0] != "sampler" and current.startswith(title):
            rows[fields[0]] = fields[1:]
    return rows


def test_tiny_run_writes_a_table_per_sampler_and_a_figure(benchmark, tmp_path, capsys):
    table, figure = tmp_path / "nfe.md", tmp_path / "nfe.png"
    # Tiny and fast: the point is that every sampler runs and is measured, not its quality.
    argv = ["--datasets", "moon", "--strategies", "flow-matching", "--train-steps", "30"]
    argv += ["--nfe", "1", "2", "4", "--num-samples", "64", "--hidden-dim", "16", "--depth", "2"]
    argv += ["--tolerances", "0.1", "--checkpoint-dir", str(tmp_path / "ckpt")]
    argv += ["--output", str(table), "--figure", str(figure), "--repeats", "2"]
    panels = benchmark.main(argv)

    assert [(p.dataset, p.strategy) for p in panels] == [("moon", "flow-matching")]
    assert (tmp_path / "ckpt" / "moon_flow-matching.eqx").exists()
    text = table.read_text()
    assert text.startswith("`scripts/benchmark_nfe.py --datasets moon")
    rows = table_rows(text)
    assert set(rows) == set(benchmark.SAMPLERS)
    assert all(len(cells) == 3 for cells in rows.values())
    accuracy, se = (float(v) for v in rows["euler"][2].split(" ± "))
    assert 0 <= accuracy <= 1 and se >= 0
    assert rows["rk4"][:2] == ["-", "-"]  # four evaluations per step: 1 and 2 are out of reach
    (adaptive,) = [cell for cell in rows["adaptive"] if cell != "-"]
    value, nfe = adaptive.split("@")
    assert 0 <= float(value.split(" ± ")[0]) <= 1
    assert int(nfe) >= 7  # Tsit5: at least one step of 6 + 1
    for title in ("precision", "recall"):
        cells = table_rows(text, title)
        assert set(cells) == set(benchmark.SAMPLERS)
        assert 0 <= float(cells["euler"][2]) <= 1
    floor = panels[0].floor
    assert 0 <= floor.c2st <= 1 and 0 <= floor.precision <= 1 and 0 <= floor.recall <= 1
    assert text.count("data (a second fresh draw") == 1
    out = capsys.readouterr().out
    assert all(line in out for line in text.splitlines() if line.startswith("| "))

    with Image.open(figure) as image:
        image.load()
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"))
    assert pixels.min() < 128  # something is drawn


def test_cached_checkpoint_is_reused_only_while_its_config_matches(benchmark, tmp_path):
    path = tmp_path / "moon_flow-matching.eqx"
    cfg = ExperimentConfig(
        strategy=FlowMatchingStrategyConfig(),
        model=MLPConfig(hidden_dim=8, depth=1),
        dataset=benchmark.DATASETS["moon"],
        train=TrainConfig(train_steps=5),
    )
    _, status, _ = benchmark.load_or_train(path, cfg, retrain=False)
    assert status == "trained"
    assert benchmark.load_or_train(path, cfg, retrain=False)[1] == "cached"
    assert benchmark.load_or_train(path, cfg, retrain=True)[1] == "trained"
    other = ExperimentConfig(
        strategy=cfg.strategy,
        model=cfg.model,
        dataset=cfg.dataset,
        train=TrainConfig(train_steps=5, seed=1),
    )
    assert benchmark.load_or_train(path, other, retrain=False)[1] == "trained"


def test_rejects_bad_budgets(benchmark):
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--nfe", "0"])


def test_every_prediction_gets_its_own_column(benchmark):
    args = benchmark.parse_args(["--strategies", "ddpm", "flow-matching"])
    assert [label for _, _, label in benchmark.strategy_variants(args)] == [
        "ddpm",
        "flow-matching",
    ]
    args = benchmark.parse_args(["--strategies", "ddpm", "--predictions", "default", "eps", "x"])
    variants = benchmark.strategy_variants(args)
    # DDPM's default is eps: asking for it again adds nothing.
    assert [label for _, _, label in variants] == ["ddpm", "ddpm/x"]
    assert [cfg.prediction for _, cfg, _ in variants] == ["eps", "x"]


def test_couplings_train_flow_matching_twice_and_compare_them(benchmark, tmp_path):
    args = benchmark.parse_args(
        ["--strategies", "ddpm", "flow-matching", "--couplings", "independent", "ot"]
    )
    variants = benchmark.strategy_variants(args)
    # DDPM has no coupling; flow matching gets one model per coupling.
    assert [label for _, _, label in variants] == ["ddpm", "flow-matching", "flow-matching/ot"]
    assert [getattr(cfg, "coupling", None) for _, cfg, _ in variants] == [
        None,
        "independent",
        "ot",
    ]

    table = tmp_path / "nfe.md"
    argv = ["--datasets", "moon", "--strategies", "flow-matching", "--train-steps", "20"]
    argv += ["--couplings", "independent", "ot", "--batch-size", "32", "--nfe", "1", "2"]
    argv += ["--samplers", "euler", "euler-maruyama", "--num-samples", "64"]
    argv += ["--hidden-dim", "16", "--depth", "1", "--checkpoint-dir", str(tmp_path / "ckpt")]
    argv += ["--output", str(table), "--figure", str(tmp_path / "nfe.png"), "--repeats", "1"]
    panels = benchmark.main(argv)

    assert [p.strategy for p in panels] == ["flow-matching", "flow-matching/ot"]
    # The coupled flow has no score: the stochastic sampler is skipped, not run.
    assert {p.sampler for p in panels[1].points} == {"euler"}
    text = table.read_text()
    assert "### Independent -> optimal-transport coupling" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| moon | flow-matching |")]
    cells = [c.strip() for c in row.strip("|").split("|")][3:]
    for cell, budget in zip(cells, (1, 2), strict=True):
        before, after = (float(v) for v in cell.split(" -> "))
        expected = [
            q.figures.c2st
            for p in panels
            for q in p.points
            if (q.sampler, q.nfe) == ("euler", budget)
        ]
        assert [before, after] == pytest.approx([round(r, 3) for r in expected], abs=6e-4)
