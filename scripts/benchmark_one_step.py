"""Few-step generation: quality at 1, 2 and 4 NFE of the one-step strategies beside flow matching.

For every 2-D dataset and seed, trains the default recipe (``scripts/main.py train``'s config
for that dataset and strategy, :func:`benchmark_quality.default_config`) of:

- each one-step strategy of ``jax_gen.config.STRATEGIES`` (``mean-flow``, ``shortcut``,
  ``consistency``; one not registered is skipped with a note), sampled with its own step at
  K = 1, 2, 4 steps, one network evaluation (NFE) each;
- flow matching with independent pairs (``flow-matching``), with minibatch optimal-transport
  pairs (``flow-matching/ot``) and, where the library has it, rectified by reflow
  (``flow-matching/reflow``, taught by the independent model of the same dataset and seed),
  each sampled with ``euler``, ``midpoint`` (two evaluations per step: NFE 2 and 4 only) and
  ``dpm-solver`` at every budget they hit exactly (``jax_gen.sampling.nfe_schedule``);
- the reference: flow matching's default sampler, Euler at its 50 default steps (NFE 50).

Every model is cached as a checkpoint under ``--checkpoint-dir`` and reused while its config
matches (:func:`benchmark_nfe.load_or_train`); its training time (including compilation) is
kept beside it, so a cached model still reports the seconds it took.

Each cell is measured as ``train`` measures after training (and as ``benchmark_quality`` does):
``--num-samples`` points drawn with the EMA weights and the seed's ``sample`` key, against as
many fresh data points from its ``evaluate`` key (never a training batch), with the support
figures of ``jax_gen.evaluation.support_report``: the classifier two-sample test's accuracy
(C2ST, 0.5 when a classifier cannot tell samples from data), k-NN precision and recall (k = 5)
and, on a silhouette (the cat), the share of samples inside it. Every cell of a seed uses the
same keys (common random numbers): the rows differ only by model and sampler, and the data's
own values (a second fresh draw, the floor) are the same for the whole dataset. The train seed
is the sampling seed; a cell is the mean over ``--seeds`` with the standard error of that mean
(SD / sqrt(S); for a single seed the binomial SE of its one measurement). With the same recipe,
the reference cell of a seed is, bit for bit, ``benchmark_quality``'s flow-matching
measurement of that seed.

Writes ``<out>.md`` (a table per dataset, rows method / sampler, columns NFE 1, 2, 4 and 50,
cells ``C2ST ± SE / precision / recall`` (``/ inside`` on the cat), and the targets: whether
each one-step strategy at 1 NFE beats optimal-transport flow matching's best 1-NFE sampler on
C2ST, and whether it is within noise (2 combined SE) of the 50-NFE default on C2ST, precision
and recall), ``<out>.json`` (every seed's report), ``<out>.png`` (C2ST against NFE, a panel
per dataset, a line per row) and ``one_step_side_by_side.png`` in the same directory (per
dataset, fresh data, each one-step strategy at 1 NFE, optimal-transport and reflow Euler at 1
NFE and the 50-NFE default, first seed).

    uv run scripts/benchmark_one_step.py     # every dataset and method, seeds 0 1 2
    uv run scripts/benchmark_one_step.py --datasets moon --train-steps 300 --seeds 0
"""

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from benchmark_nfe import DATA_DIM, format_value, load_or_train, save_with_legend
from benchmark_quality import DATASETS, default_config, describe_model, spread
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from jax_gen import config
from jax_gen.config import ExperimentConfig, FlowMatchingStrategyConfig, SamplerConfig
from jax_gen.data import get_batch
from jax_gen.engine import key_stream, run_keys
from jax_gen.evaluation import support_report
from jax_gen.geometry import square_bounds
from jax_gen.plots import draw_points
from jax_gen.sampling import nfe_schedule, sample
from jax_gen.strategies import create_strategy

ONE_STEP = ("mean-flow", "shortcut", "consistency")
"""The one-step strategies, by their names in ``jax_gen.config.STRATEGIES``."""
FLOW_MATCHING = {
    "flow-matching/ot": "ot",
    "flow-matching": "independent",
    "flow-matching/reflow": "reflow",
}
"""Flow-matching rows by label, and the coupling each is trained with."""
METHODS = (*ONE_STEP, *FLOW_MATCHING)
FM_SAMPLERS = ("euler", "midpoint", "dpm-solver")
NFE_BUDGETS = (1, 2, 4)
REFERENCE = "flow-matching"
"""The model whose default sampler is the reference row."""
REFERENCE_NFE = FlowMatchingStrategyConfig().num_transport_steps
FIGURES = ("c2st", "precision", "recall", "support_rate")
"""The support_report entries of a cell (``support_rate`` on a silhouette only)."""
NOISE = 2.0
"""Two values are within noise when they differ by at most this many combined SEs."""


# ----------------------------------------------------------------------------------------------
# Which methods run
# ----------------------------------------------------------------------------------------------


def unavailable(
    method: str,
    strategies: typing.Mapping[str, type] | None = None,
    couplings: Sequence[str] | None = None,
) -> str | None:
    """Why ``method`` cannot run with this library (``None`` if it can).

    Args:
        method: a name of :data:`METHODS`.
        strategies: the registered strategies (default: ``jax_gen.config.STRATEGIES``).
        couplings: flow matching's couplings (default: ``jax_gen.config.Coupling``'s values).
    """
    strategies = config.STRATEGIES if strategies is None else strategies
    couplings = typing.get_args(config.Coupling) if couplings is None else couplings
    if method in ONE_STEP:
        return None if method in strategies else f"strategy {method!r} is not registered yet"
    coupling = FLOW_MATCHING[method]
    if coupling not in couplings:
        return f"flow matching has no coupling {coupling!r} yet"
    fields = {f.name for f in dataclasses.fields(config.FlowMatchingStrategyConfig)}
    if coupling == "reflow" and "teacher_path" not in fields:
        return "FlowMatchingStrategyConfig has no teacher_path yet"
    return None


@dataclasses.dataclass(frozen=True)
class Row:
    """A row of the tables: a model (method label) sampled by one sampler."""

    method: str
    sampler: str

    @property
    def name(self) -> str:
        return f"{self.method} / {self.sampler}"


def rows_of(method: str, samplers: Sequence[str] = FM_SAMPLERS) -> list[Row]:
    """The rows of a method: a one-step strategy's own step, or flow matching's ``samplers``."""
    if method in ONE_STEP:
        return [Row(method, "default")]
    return [Row(method, sampler) for sampler in samplers]


REFERENCE_ROW = Row(REFERENCE, f"default (euler {REFERENCE_NFE})")


# ----------------------------------------------------------------------------------------------
# Configs, training and measuring
# ----------------------------------------------------------------------------------------------


def experiment(
    method: str, dataset: str, seed: int, args: argparse.Namespace, checkpoint_dir: Path
) -> ExperimentConfig:
    """The default recipe of ``method`` on ``dataset`` with this seed and the flags' overrides;
    reflow's teacher is the independent flow-matching checkpoint of the same dataset and seed."""
    name = method if method in ONE_STEP else "flow-matching"
    cfg = default_config(dataset, name, args.train_steps, seed)
    batch_size = args.ot_batch_size if method == "flow-matching/ot" else None
    batch_size = batch_size or args.batch_size
    if batch_size is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=batch_size))
    model = {"hidden_dim": args.hidden_dim, "depth": args.depth}
    model = {key: value for key, value in model.items() if value is not None}
    if model:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model))
    if method in FLOW_MATCHING and FLOW_MATCHING[method] != "independent":
        extra = {}
        if FLOW_MATCHING[method] == "reflow":
            extra["teacher_path"] = str(checkpoint_path(checkpoint_dir, dataset, REFERENCE, seed))
        strategy = dataclasses.replace(cfg.strategy, coupling=FLOW_MATCHING[method], **extra)
        cfg = dataclasses.replace(cfg, strategy=strategy)
    return cfg


def checkpoint_path(checkpoint_dir: Path, dataset: str, method: str, seed: int) -> Path:
    return checkpoint_dir / f"{dataset}_{method.replace('/', '_')}_seed{seed}.eqx"


def trained(path: Path, cfg: ExperimentConfig, retrain: bool) -> tuple[object, float | None, str]:
    """The EMA model of ``cfg`` (cached at ``path`` while its config matches, else trained and
    saved there), its training seconds (kept in ``<path>.seconds.json`` beside the checkpoint;
    ``None`` for a cached model without it) and ``"cached"`` or ``"trained"``."""
    model, status, seconds = load_or_train(path, cfg, retrain)
    record = path.with_suffix(".seconds.json")
    if status == "trained":
        record.write_text(json.dumps({"train_seconds": seconds}) + "\n")
    elif record.exists():
        seconds = json.loads(record.read_text())["train_seconds"]
    return model, seconds, status


def measure(
    strategy, model, sampler_cfg: SamplerConfig, dataset: str, seed: int, num_samples: int
) -> tuple[np.ndarray, dict | None, int]:
    """Samples with the seed's ``sample`` key and measures them against fresh data with its
    ``evaluate`` key, as ``train`` does after training (``summarize_fit``'s support figures).

    Returns:
        The samples, their :func:`~jax_gen.evaluation.support_report` (``None`` if any sample
        is not finite) and the NFE the sampler used.
    """
    keys = run_keys(seed)
    result = sample(strategy, model, keys.sample, num_samples, DATA_DIM, sampler_cfg)
    samples = np.asarray(result.samples)
    if not np.isfinite(samples).all():
        return samples, None, int(result.nfe)
    metric_key = key_stream(keys.evaluate, "metrics")
    report = support_report(samples, DATASETS[dataset], key_stream(metric_key, "support"))
    return samples, report, int(result.nfe)


def schedule(strategy, row: Row, budgets: Sequence[int]) -> dict[int, SamplerConfig]:
    """The sampler config of ``row`` at every budget it hits exactly (the reference: NFE 50)."""
    if row == REFERENCE_ROW:
        return {REFERENCE_NFE: SamplerConfig()}
    sampler = SamplerConfig(sampler=row.sampler)
    return {
        nfe: SamplerConfig(sampler=row.sampler, num_sampling_steps=steps)
        for nfe, steps in nfe_schedule(strategy, sampler, budgets).items()
    }


# ----------------------------------------------------------------------------------------------
# Aggregating over seeds
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stat:
    """A figure's mean over the seeds and the standard error of that mean."""

    mean: float
    se: float


NAN = Stat(math.nan, math.nan)


def stat(reports: Sequence[dict | None], name: str, of: str = "value") -> Stat:
    """Mean of the reports' ``name`` (``of`` = ``"value"``, or ``"data"`` for the floor) and its
    SE: SD / sqrt(S) over S > 1 seeds, the report's own binomial SE for one; NaN if any seed's
    samples were not finite or a report lacks the figure."""
    if not reports or any(r is None or name not in r for r in reports):
        return NAN
    values = np.array([r[name][of] for r in reports], dtype=np.float64)
    if values.size == 1:
        return Stat(
            float(values[0]), float(reports[0][name]["stderr" if of == "value" else "data_stderr"])
        )
    return Stat(float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size)))


def within_noise(a: Stat, b: Stat, noise: float = NOISE) -> bool:
    """|a - b| <= noise * sqrt(SE_a^2 + SE_b^2) (False if either is NaN)."""
    return abs(a.mean - b.mean) <= noise * math.hypot(a.se, b.se)


@dataclasses.dataclass
class Results:
    """Everything measured on one dataset."""

    dataset: str
    cells: dict[Row, dict[int, list[dict | None]]] = dataclasses.field(default_factory=dict)
    """Per row and NFE, every seed's report (``None``: samples not finite)."""
    train_seconds: dict[str, list[float | None]] = dataclasses.field(default_factory=dict)
    """Per method, every seed's training seconds (``None``: cached without a record)."""
    floors: dict[int, dict] = dataclasses.field(default_factory=dict)
    """A report of each seed, by seed: its ``data`` entries are the seed's floor (the same in
    every report of the seed, whose keys are the same)."""
    pictures: dict[tuple[Row, int], np.ndarray] = dataclasses.field(default_factory=dict)
    """The first seed's samples of the side-by-side picture's cells."""

    def figure(self, row: Row, nfe: int, name: str) -> Stat:
        return stat(self.cells.get(row, {}).get(nfe, []), name)

    def floor(self, name: str) -> Stat:
        return stat(list(self.floors.values()), name, of="data")

    def has_support(self) -> bool:
        return any("support_rate" in r for r in self.floors.values())


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def format_cell(results: Results, row: Row, nfe: int) -> str:
    """``C2ST ± SE / precision / recall`` (``/ inside`` on a silhouette); ``-`` if not measured,
    ``nan`` if a seed's samples were not finite."""
    if nfe not in results.cells.get(row, {}):
        return "-"
    c2st = results.figure(row, nfe, "c2st")
    if not math.isfinite(c2st.mean):
        return "nan"
    parts = [format_value(c2st.mean, c2st.se)]
    names = ("precision", "recall", "support_rate") if results.has_support() else FIGURES[1:3]
    parts += [format_value(results.figure(row, nfe, name).mean) for name in names]
    return " / ".join(parts)


def train_cell(results: Results, method: str) -> str:
    seconds = results.train_seconds.get(method, [])
    if not seconds or any(s is None for s in seconds):
        return "cached" if seconds else "-"
    return spread(seconds, digits=1)


def floor_line(results: Results, seeds: Sequence[int]) -> str:
    names = {"c2st": "C2ST", "precision": "precision", "recall": "recall"}
    if results.has_support():
        names["support_rate"] = "inside"
    parts = []
    for name, title in names.items():
        floor = results.floor(name)
        parts.append(f"{title} {format_value(floor.mean, floor.se if name == 'c2st' else None)}")
    seeds_text = ", ".join(str(s) for s in seeds)
    return f"data (a second fresh draw, mean over seeds {seeds_text}): " + ", ".join(parts)


def table(results: Results, rows: Sequence[Row], budgets: Sequence[int]) -> list[str]:
    columns = [*budgets, REFERENCE_NFE]
    lines = [
        "| method | sampler | train s | " + " | ".join(f"NFE {b}" for b in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for row in [*rows, REFERENCE_ROW]:
        if row not in results.cells:
            continue
        cells = [format_cell(results, row, nfe) for nfe in columns]
        lines.append(
            f"| {row.method} | {row.sampler} | {train_cell(results, row.method)} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def targets(results: Results, methods: Sequence[str]) -> list[str]:
    """Per one-step strategy at 1 NFE: against optimal-transport flow matching's best 1-NFE
    sampler (lower C2ST) and against the 50-NFE default (within noise on C2ST, precision and
    recall)."""
    lines = []
    reference = {name: results.figure(REFERENCE_ROW, REFERENCE_NFE, name) for name in FIGURES[:3]}
    ot_rows = [r for r in results.cells if r.method == "flow-matching/ot" and 1 in results.cells[r]]
    ot = min(
        ((r, results.figure(r, 1, "c2st")) for r in ot_rows),
        key=lambda pair: pair[1].mean if math.isfinite(pair[1].mean) else math.inf,
        default=None,
    )
    for method in methods:
        row = Row(method, "default")
        if method not in ONE_STEP or 1 not in results.cells.get(row, {}):
            continue
        c2st = results.figure(row, 1, "c2st")
        text = f"- {method} at 1 NFE: C2ST {format_value(c2st.mean, c2st.se)}"
        if ot is not None:
            ot_row, ot_c2st = ot
            gap = NOISE * math.hypot(c2st.se, ot_c2st.se)
            verdict = (
                "beats it"
                if c2st.mean < ot_c2st.mean - gap
                else ("lower, within noise" if c2st.mean < ot_c2st.mean else "does not beat it")
            )
            text += (
                f"; flow-matching/ot's best at 1 NFE ({ot_row.sampler}) "
                f"{format_value(ot_c2st.mean, ot_c2st.se)}: {verdict}"
            )
        if REFERENCE_ROW in results.cells:
            verdicts = []
            for name, ref in reference.items():
                own = results.figure(row, 1, name)
                delta = own.mean - ref.mean
                near = "within noise" if within_noise(own, ref) else "outside noise"
                verdicts.append(
                    f"{name} {delta:+.3f} (2 SE {NOISE * math.hypot(own.se, ref.se):.3f}, {near})"
                )
            count = sum(within_noise(results.figure(row, 1, n), r) for n, r in reference.items())
            text += (
                f"; against the {REFERENCE_NFE}-NFE default: "
                + ", ".join(verdicts)
                + f": within noise on {count} of 3"
            )
        lines.append(text + ".")
    return lines


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def style(row: Row, index: int) -> dict:
    """One-step strategies: thick, a colour each; flow matching: a colour per coupling and a
    line and marker per sampler."""
    if row.method in ONE_STEP:
        colour = ("C3", "C4", "C2", "C6")[index % 4]
        return {"color": colour, "marker": "D", "linewidth": 2.2, "linestyle": "-"}
    colour = {"flow-matching": "C0", "flow-matching/ot": "C1", "flow-matching/reflow": "C5"}
    line, marker = {"euler": ("-", "o"), "midpoint": ("--", "s"), "dpm-solver": (":", "^")}.get(
        row.sampler, ("-", "o")
    )
    return {
        "color": colour.get(row.method, "C7"),
        "marker": marker,
        "linewidth": 1.2,
        "linestyle": line,
    }


def plot(datasets: Sequence[Results], rows: Sequence[Row], budgets: Sequence[int], path: Path):
    """A panel per dataset: C2ST accuracy against NFE (log2 axis), a line per row, beside 0.5
    (indistinguishable), the data's own value and the 50-NFE default."""
    cols = min(len(datasets), 2)
    nrows = math.ceil(len(datasets) / cols)
    fig = Figure(figsize=(4.6 * cols + 2.6, 3.4 * nrows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, cols, squeeze=False, sharex=True, sharey=True)
    one_step = [r for r in rows if r.method in ONE_STEP]
    for ax, results in zip(axes.flat, datasets, strict=False):
        for row in rows:
            nfes = sorted(results.cells.get(row, {}))
            if not nfes:
                continue
            c2st = [results.figure(row, nfe, "c2st").mean for nfe in nfes]  # NaN breaks the line
            index = one_step.index(row) if row in one_step else 0
            ax.plot(nfes, c2st, markersize=4, label=row.name, **style(row, index))
        reference = results.figure(REFERENCE_ROW, REFERENCE_NFE, "c2st")
        if math.isfinite(reference.mean):
            ax.axhline(
                reference.mean,
                color="k",
                linestyle="-.",
                linewidth=1.2,
                label=f"{REFERENCE} {REFERENCE_ROW.sampler}",
            )
        ax.axhline(0.5, color="k", linestyle="--", linewidth=1, label="0.5: indistinguishable")
        floor = results.floor("c2st")
        if math.isfinite(floor.mean):
            ax.axhline(floor.mean, color="0.5", linestyle=":", linewidth=1.5, label="data's own")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(budgets), [str(b) for b in budgets])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_ylim(0.48, 1.01)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(results.dataset, fontsize=11)
        ax.set_xlabel("NFE")
        ax.set_ylabel("C2ST accuracy")
    for ax in list(axes.flat)[len(datasets) :]:
        ax.set_visible(False)
    save_with_legend(fig, axes, path, fontsize=8)


def picture_cells(rows: Sequence[Row]) -> list[tuple[Row, int]]:
    """The side-by-side picture's columns: each one-step strategy at 1 NFE, optimal-transport
    and reflow flow matching's Euler at 1 NFE (where measured), the 50-NFE default."""
    cells = [(r, 1) for r in rows if r.method in ONE_STEP]
    for method in ("flow-matching/ot", "flow-matching/reflow"):
        if Row(method, "euler") in rows:
            cells.append((Row(method, "euler"), 1))
    return [*cells, (REFERENCE_ROW, REFERENCE_NFE)]


def side_by_side(datasets: Sequence[Results], rows: Sequence[Row], path: Path, seed: int):
    """Per dataset a row of panels, drawn like ``generate``'s samples figure: fresh data, then
    each cell of :func:`picture_cells` (the first seed's samples), all in the data's square
    window widened by 15% on each side, titled with the cell's C2ST."""
    cells = picture_cells(rows)
    fig = Figure(
        figsize=(2.7 * (len(cells) + 1), 2.9 * len(datasets)), dpi=100, layout="constrained"
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(datasets), len(cells) + 1, squeeze=False)
    for ax_row, results in zip(axes, datasets, strict=True):
        n = next(iter(results.pictures.values())).shape[0] if results.pictures else 1000
        key = key_stream(run_keys(seed).evaluate, "picture")
        data = np.asarray(get_batch(key, DATASETS[results.dataset], n))
        bounds = square_bounds(data, margin=0.15)
        draw_points(ax_row[0], data, bounds, f"{results.dataset}: fresh data", "tab:gray")
        for ax, (row, nfe) in zip(ax_row[1:], cells, strict=True):
            samples = results.pictures.get((row, nfe))
            if samples is None:
                ax.set_visible(False)
                continue
            report = results.cells[row][nfe][0]
            c2st = "nan" if report is None else f"{report['c2st']['value']:.3f}"
            title = f"{row.method}\n{row.sampler.split(' ')[0]}, NFE {nfe}: C2ST {c2st}"
            draw_points(ax, samples, bounds, title, "tab:blue")
        for ax in ax_row:
            ax.title.set_fontsize(9)
            ax.tick_params(labelsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=METHODS,
        help="one-step strategies and flow-matching couplings (the 50-NFE flow-matching "
        "default is always measured: it is the reference)",
    )
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=list(FM_SAMPLERS),
        choices=FM_SAMPLERS,
        help="samplers of the flow-matching models",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--nfe", type=int, nargs="+", default=list(NFE_BUDGETS))
    parser.add_argument(
        "--num-samples", type=int, default=10_000, help="samples (and fresh data points) a cell"
    )
    parser.add_argument(
        "--train-steps", type=int, default=config.TrainConfig().train_steps, help="every model"
    )
    parser.add_argument("--batch-size", type=int, help="every model (default: the recipe's)")
    parser.add_argument(
        "--ot-batch-size",
        type=int,
        help="flow-matching/ot only (default: --batch-size): its exact assignment costs "
        "O(batch^3) a step, 310 ms at 1024 against 8 ms at 256 on 2 CPU cores",
    )
    parser.add_argument("--hidden-dim", type=int, help="MLP width (default: the recipe's)")
    parser.add_argument("--depth", type=int, help="MLP depth (default: the recipe's)")
    parser.add_argument("--retrain", action="store_true", help="ignore cached checkpoints")
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("outputs/benchmark_one_step"))
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/benchmark_one_step"),
        help="writes <out>.md, <out>.json, <out>.png and one_step_side_by_side.png beside them",
    )
    args = parser.parse_args(argv)
    for flag in ("train_steps", "batch_size", "ot_batch_size", "hidden_dim", "depth"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')}={value}: must be >= 1")
    if any(n < 1 for n in args.nfe):
        parser.error(f"--nfe {args.nfe}: every budget must be >= 1")
    if args.num_samples <= 5:
        parser.error(f"--num-samples={args.num_samples}: must be > 5 (the k-NN radii)")
    args.nfe = sorted(set(args.nfe))
    args.seeds = list(dict.fromkeys(args.seeds))
    return args


def header(args: argparse.Namespace, command: str) -> str:
    cfg = experiment(REFERENCE, args.datasets[0], args.seeds[0], args, args.checkpoint_dir)
    seeds = ", ".join(str(s) for s in args.seeds)
    ot_batch = f"; flow-matching/ot at batch {args.ot_batch_size}" if args.ot_batch_size else ""
    return (
        f"`{command}`: default recipe of every method ({cfg.train.train_steps} steps, batch "
        f"{cfg.train.batch_size}, {describe_model(cfg.model)}, lr "
        f"{cfg.optimizer.learning_rate:g}{ot_batch}; EMA samples), {args.num_samples} samples "
        f"per cell against as many fresh data points, seeds {seeds} (train seed = sampling "
        "seed). A cell "
        "is `C2ST ± SE / precision / recall` (`/ inside` on the cat: the share of samples "
        "inside the silhouette), means over the seeds, the SE that of the C2ST's mean (SD / "
        "sqrt(S), or the binomial SE for one seed); C2ST 0.5 = indistinguishable; precision "
        "and recall with k = 5; `data` is a second fresh draw measured in the same way (the "
        "floor); `-` budget out of reach, `nan` non-finite samples. Train s (mean [min, max] "
        "over the seeds) includes compilation. Within noise: at most 2 combined SE apart."
    )


def main(argv: Sequence[str] | None = None) -> list[Results]:
    """Trains (or loads) every model, measures every row, writes the tables and figures."""
    args = parse_args(argv)
    command = shlex.join(
        ["scripts/benchmark_one_step.py", *(sys.argv[1:] if argv is None else argv)]
    )
    lines = [header(args, command)]
    print(lines[0], flush=True)
    methods = []
    for method in args.methods:
        reason = unavailable(method)
        if reason is None:
            methods.append(method)
        else:
            lines += ["", f"Skipped {method}: {reason}."]
            print(lines[-1], flush=True)
    # The reference (independent flow matching) trains first: reflow's teacher.
    models = [REFERENCE, *(m for m in methods if m != REFERENCE)]
    # Rows in the order of METHODS and FM_SAMPLERS, whatever the flags' order.
    samplers = [s for s in FM_SAMPLERS if s in args.samplers]
    rows = [row for method in METHODS if method in methods for row in rows_of(method, samplers)]
    wanted_pictures = set(picture_cells(rows))
    done: list[Results] = []
    start = time.perf_counter()
    for dataset in args.datasets:
        results = Results(dataset)
        print(f"\n### {dataset}", flush=True)
        for method in models:
            measured_rows = [r for r in rows if r.method == method]
            if method == REFERENCE:
                measured_rows.append(REFERENCE_ROW)
            results.train_seconds[method] = []
            for seed in args.seeds:
                cfg = experiment(method, dataset, seed, args, args.checkpoint_dir)
                path = checkpoint_path(args.checkpoint_dir, dataset, method, seed)
                model, seconds, status = trained(path, cfg, args.retrain)
                results.train_seconds[method].append(seconds)
                strategy = create_strategy(cfg.strategy)
                report_line = []
                for row in measured_rows:
                    for nfe, sampler_cfg in schedule(strategy, row, args.nfe).items():
                        samples, report, used = measure(
                            strategy, model, sampler_cfg, dataset, seed, args.num_samples
                        )
                        if used != nfe:
                            raise AssertionError(f"{row.name} at NFE {nfe} used {used}")
                        results.cells.setdefault(row, {}).setdefault(nfe, []).append(report)
                        if report is not None:
                            results.floors.setdefault(seed, report)
                        if seed == args.seeds[0] and (row, nfe) in wanted_pictures:
                            results.pictures[(row, nfe)] = samples
                        c2st = "nan" if report is None else f"{report['c2st']['value']:.3f}"
                        report_line.append(f"{row.sampler.split(' ')[0]}@{nfe} {c2st}")
                how = f"trained in {seconds:.0f} s" if status == "trained" else "cached"
                print(
                    f"  {dataset} / {method} seed {seed} ({how}): C2ST "
                    + ", ".join(report_line)
                    + f" [{time.perf_counter() - start:.0f} s]",
                    flush=True,
                )
        done.append(results)
        section = [
            "",
            f"### {dataset}",
            "",
            floor_line(results, args.seeds),
            "",
            *table(results, rows, args.nfe),
        ]
        goals = targets(results, methods)
        if goals:
            section += ["", "Targets:", "", *goals]
        print("\n".join(section), flush=True)
        lines += section
        # What is measured so far, in case the run is stopped before the end.
        write(args, lines, done, rows, command)
    lines += ["", f"Wall time {time.perf_counter() - start:.0f} s."]
    print(lines[-1], flush=True)
    write(args, lines, done, rows, command)
    print(f"wrote {args.out}.md, .json, .png and {picture_path(args)}")
    return done


def picture_path(args: argparse.Namespace) -> Path:
    return args.out.parent / "one_step_side_by_side.png"


def write(args, lines: Sequence[str], done: Sequence[Results], rows, command: str) -> None:
    """The tables, every seed's reports, the C2ST figure and the side-by-side picture."""
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    details = {
        "command": command,
        "datasets": [
            {
                "dataset": r.dataset,
                "train_seconds": r.train_seconds,
                "cells": [
                    {
                        "method": row.method,
                        "sampler": row.sampler,
                        "nfe": nfe,
                        "seeds": args.seeds,
                        "reports": reports,
                    }
                    for row, by_nfe in r.cells.items()
                    for nfe, reports in by_nfe.items()
                ],
            }
            for r in done
        ],
    }
    Path(f"{out}.json").write_text(json.dumps(details, indent=1) + "\n")
    plot(done, rows, args.nfe, Path(f"{out}.png"))
    side_by_side(done, rows, picture_path(args), args.seeds[0])


if __name__ == "__main__":
    main()
