"""scripts/benchmark_one_step.py runs end to end at a tiny size: its tables, targets, figures and
checkpoint cache; the seed aggregation and the noise test against hand-computed values."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jax_gen import config

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"

# Tiny and fast: the point is that every row is trained, sampled at its budgets and measured.
ARGV = ["--datasets", "moon", "--methods", "mean-flow", "shortcut", "flow-matching/ot"]
ARGV += ["--samplers", "euler", "midpoint", "--nfe", "1", "2", "--train-steps", "20"]
ARGV += ["--num-samples", "300"]
ARGV += ["--seeds", "0", "--hidden-dim", "32", "--depth", "2", "--batch-size", "64"]


@pytest.fixture(scope="module")
def benchmark():
    with pytest.MonkeyPatch.context() as mp:
        # The script imports its helpers from the other benchmark scripts beside it.
        mp.syspath_prepend(str(SCRIPTS))
        script = SCRIPTS / "benchmark_one_step.py"
        spec = importlib.util.spec_from_file_location("benchmark_one_step", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(benchmark, tmp_path_factory):
    """One run on moons; ``shortcut`` taken out of the registry, so it is skipped."""
    out = tmp_path_factory.mktemp("one_step")
    argv = [*ARGV, "--checkpoint-dir", str(out / "ckpt"), "--out", str(out / "bench")]
    strategies = {k: v for k, v in config.STRATEGIES.items() if k != "shortcut"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(config, "STRATEGIES", strategies)
        (results,) = benchmark.main(argv)
    return results, out, argv


def table(text: str) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """The header and the rows (method, sampler) -> cells of the one markdown table."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    split = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return split[0], {(cells[0], cells[1]): cells[2:] for cells in split[1:]}


def numbers(cell: str) -> list[float]:
    """``c2st ± se / precision / recall`` as [c2st, se, precision, recall]."""
    c2st, *rest = cell.split(" / ")
    return [*(float(v) for v in c2st.split(" ± ")), *(float(v) for v in rest)]


def test_tiny_run_writes_the_table_targets_and_figures(benchmark, tiny_run):
    results, out, _ = tiny_run
    text = (out / "bench.md").read_text()
    assert text.startswith("`scripts/benchmark_one_step.py --datasets moon")
    assert "Skipped shortcut: strategy 'shortcut' is not registered yet." in text
    header, rows = table(text)
    assert header == ["method", "sampler", "train s", "NFE 1", "NFE 2", "NFE 50"]
    assert list(rows) == [
        ("mean-flow", "default"),
        ("flow-matching/ot", "euler"),
        ("flow-matching/ot", "midpoint"),
        ("flow-matching", "default (euler 50)"),
    ]
    # The one-step strategy at every budget, nothing at 50; midpoint cannot hit 1 NFE; the
    # reference only at 50.
    assert rows[("mean-flow", "default")][-1] == "-"
    assert rows[("flow-matching/ot", "midpoint")][1] == "-"
    assert rows[("flow-matching", "default (euler 50)")][1:3] == ["-", "-"]
    measured = {
        ("mean-flow", "default"): (1, 2),
        ("flow-matching/ot", "euler"): (1, 2),
        ("flow-matching/ot", "midpoint"): (2,),
        ("flow-matching", "default (euler 50)"): (50,),
    }
    columns = {1: 1, 2: 2, 50: 3}
    for (method, sampler), nfes in measured.items():
        cells = rows[(method, sampler)]
        assert float(cells[0]) > 0  # train seconds
        row = benchmark.Row(method, sampler)
        for nfe in nfes:
            c2st, se, precision, recall = numbers(cells[columns[nfe]])
            assert 0 <= c2st <= 1 and 0 < se < 0.06
            assert 0 <= precision <= 1 and 0 <= recall <= 1
            # The table shows what was measured (one seed: the report's own values).
            (report,) = results.cells[row][nfe]
            assert c2st == pytest.approx(report["c2st"]["value"], abs=5e-4)
            assert se == pytest.approx(report["c2st"]["stderr"], abs=5e-4)
            assert precision == pytest.approx(report["precision"]["value"], abs=5e-4)
            assert recall == pytest.approx(report["recall"]["value"], abs=5e-4)
    (floor,) = [line for line in text.splitlines() if line.startswith("data (a second")]
    assert "inside" not in floor  # moons have no silhouette
    (target,) = [line for line in text.splitlines() if line.startswith("- mean-flow at 1 NFE")]
    assert "flow-matching/ot's best at 1 NFE (euler)" in target
    assert "against the 50-NFE default" in target

    for name in ("bench.png", "one_step_side_by_side.png"):
        with Image.open(out / name) as image:
            image.load()
            assert image.format == "PNG"
            size = image.size
            assert np.asarray(image.convert("L")).min() < 128  # something is drawn
    # Fresh data, mean-flow at 1 NFE, OT Euler at 1 NFE, the 50-NFE default: four panels of
    # 2.7 x 2.9 inches at 100 dpi.
    assert size == (4 * 270, 290)


def test_cached_checkpoints_are_reused_with_their_training_time(benchmark, tiny_run):
    results, out, argv = tiny_run
    args = benchmark.parse_args(argv)
    _, rows = table((out / "bench.md").read_text())
    for method in ("mean-flow", "flow-matching", "flow-matching/ot"):
        path = benchmark.checkpoint_path(out / "ckpt", "moon", method, 0)
        cfg = benchmark.experiment(method, "moon", 0, args, out / "ckpt")
        # The run's config is rebuilt from the flags, so a second run loads instead of training,
        # and reports the seconds the first one took.
        _, seconds, status = benchmark.trained(path, cfg, retrain=False)
        assert status == "cached"
        assert seconds == results.train_seconds[method][0] > 0
        sampler = "default (euler 50)" if method == "flow-matching" else rows_of(method)
        assert rows[(method, sampler)][0] == f"{seconds:.1f}"


def rows_of(method: str) -> str:
    return "default" if method == "mean-flow" else "euler"


def test_seed_means_their_standard_error_and_the_noise_test(benchmark):
    def report(c2st, stderr=0.01, data=0.5):
        return {"c2st": {"value": c2st, "stderr": stderr, "data": data, "data_stderr": 0.02}}

    three = [report(0.6), report(0.7), report(0.8)]
    got = benchmark.stat(three, "c2st")
    assert got.mean == pytest.approx(0.7)
    assert got.se == pytest.approx(0.1 / math.sqrt(3))  # SD (ddof 1) / sqrt(S)
    # One seed: the report's own standard error; the floor reads the data's entries.
    assert benchmark.stat([report(0.6, 0.013)], "c2st") == benchmark.Stat(0.6, 0.013)
    assert benchmark.stat([report(0.6, data=0.49)], "c2st", of="data") == benchmark.Stat(0.49, 0.02)
    # A seed with non-finite samples, or a figure not measured: NaN.
    assert math.isnan(benchmark.stat([report(0.6), None], "c2st").mean)
    assert math.isnan(benchmark.stat(three, "support_rate").mean)

    Stat = benchmark.Stat
    # 2 * sqrt(0.03^2 + 0.04^2) = 0.1
    assert benchmark.within_noise(Stat(0.70, 0.03), Stat(0.60 + 1e-9, 0.04))
    assert not benchmark.within_noise(Stat(0.70, 0.03), Stat(0.59, 0.04))
    assert not benchmark.within_noise(Stat(0.70, 0.03), Stat(math.nan, 0.04))


def test_a_silhouette_adds_the_inside_share_to_cells_and_floor(benchmark):
    def report(inside=None):
        entry = {"c2st": (0.6, 0.01, 0.5), "precision": (0.9, 0.003, 0.99)}
        entry["recall"] = (0.8, 0.004, 0.98)
        if inside is not None:
            entry["support_rate"] = (inside, 0.002, 0.991)
        keys = ("value", "stderr", "data", "data_stderr")
        return {name: dict(zip(keys, (*v, 0.001), strict=True)) for name, v in entry.items()}

    row = benchmark.Row("mean-flow", "default")
    cat = benchmark.Results("cat", cells={row: {1: [report(0.95)]}}, floors={0: report(0.95)})
    assert benchmark.format_cell(cat, row, 1) == "0.600 ± 0.010 / 0.900 / 0.800 / 0.950"
    assert benchmark.format_cell(cat, row, 2) == "-"
    line = benchmark.floor_line(cat, [0])
    assert line.endswith("C2ST 0.500 ± 0.001, precision 0.990, recall 0.980, inside 0.991")
    moon = benchmark.Results("moon", cells={row: {1: [report()]}}, floors={0: report()})
    assert benchmark.format_cell(moon, row, 1) == "0.600 ± 0.010 / 0.900 / 0.800"
    assert "inside" not in benchmark.floor_line(moon, [0])
    moon.cells[row][1] = [None]  # non-finite samples
    assert benchmark.format_cell(moon, row, 1) == "nan"


def test_methods_missing_from_the_library_are_named(benchmark):
    registered = {"mean-flow": object, "flow-matching": object}
    assert benchmark.unavailable("mean-flow", registered) is None
    assert "'consistency' is not registered" in benchmark.unavailable("consistency", registered)
    couplings = ("independent", "ot")
    assert benchmark.unavailable("flow-matching/ot", registered, couplings) is None
    assert "no coupling 'reflow'" in benchmark.unavailable(
        "flow-matching/reflow", registered, couplings
    )


def test_rejects_bad_arguments(benchmark):
    for argv in (["--nfe", "0"], ["--train-steps", "0"], ["--num-samples", "5"]):
        with pytest.raises(SystemExit):
            benchmark.parse_args(argv)
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--methods", "ddpm"])


def test_the_picture_shows_each_one_step_method_and_the_reference(benchmark):
    Row = benchmark.Row
    rows = [
        Row("mean-flow", "default"),
        Row("flow-matching/ot", "euler"),
        Row("flow-matching/ot", "midpoint"),
        Row("flow-matching/reflow", "euler"),
        Row("flow-matching/reflow", "dpm-solver"),
    ]
    assert benchmark.picture_cells(rows) == [
        (Row("mean-flow", "default"), 1),
        (Row("flow-matching/ot", "euler"), 1),
        (Row("flow-matching/reflow", "euler"), 1),
        (benchmark.REFERENCE_ROW, benchmark.REFERENCE_NFE),
    ]
    # Without the reflow rows (a library without reflow, or --methods), no reflow panel.
    assert (Row("flow-matching/reflow", "euler"), 1) not in benchmark.picture_cells(rows[:3])
