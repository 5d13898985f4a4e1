"""Sample quality versus the number of network evaluations (NFE), for every sampler.

For every dataset and strategy, trains the default recipe once (cached as a checkpoint under
``--checkpoint-dir`` and reused while its config matches), then, with the EMA weights, samples
with every sampler of ``jax_gen.sampling`` at every NFE budget it can hit exactly
(``nfe_schedule``: RK4 spends 4 evaluations per step, so it cannot hit 1 or 2) and measures the
samples against fresh data with the support-aware figures of ``jax_gen.metrics``: the accuracy
of a classifier telling samples from data (C2ST, 0.5 when it cannot), and k-NN precision and
recall (k = 5). Each cell is the mean over ``--repeats`` sampling seeds (the C2ST with the
standard error of that mean), and each table gives the data's own values once (the floor: a
second fresh draw measured in the same way). ``ddim`` is deterministic (eta = 0),
``ancestral`` is DDIM with eta = 1; ``adaptive`` (Tsit5) picks its own steps, so it runs at
rtol = atol in ``--tolerances`` and is reported at the NFE it used (mean over the seeds). Cells
are ``nan`` where a sampler produced NaN or Inf, ``-`` where the budget is out of reach.

Sampling seed r of every cell of a (dataset, strategy) pair draws its source with the same key
(``split(run_keys(seed).sample, repeats)[r]``) and is measured against the same fresh data
(from ``split(run_keys(seed).evaluate, repeats)[r]``, never a training batch), so the rows
differ only by the sampler (common random numbers), and the floor is the same across the tables
of a dataset.

    uv run scripts/benchmark_nfe.py     # writes outputs/benchmark_nfe.md and .png
    uv run scripts/benchmark_nfe.py --datasets moon --strategies flow-matching --nfe 1 2 4 8
    uv run scripts/benchmark_nfe.py --predictions eps x v     # every prediction of each strategy
    uv run scripts/benchmark_nfe.py --strategies flow-matching --couplings independent ot \
        --batch-size 256 --nfe 1 2 4 8      # optimal-transport coupling against independent pairs

With ``--couplings independent ot`` each flow-matching model is trained twice, with independent
and with optimal-transport pairs (labelled ``flow-matching/ot``), and a last table puts the two
C2STs side by side for every deterministic sampler at the budgets up to 8 NFE. Samplers that
need the score (``ancestral``, ``euler-maruyama``, ``pc``) have none under a coupling: ``-``.
"""

import argparse
import dataclasses
import math
import shlex
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from jax_gen import checkpoint, config
from jax_gen.config import (
    ExperimentConfig,
    MLPConfig,
    OptimizerConfig,
    SamplerConfig,
    TrainConfig,
)
from jax_gen.data import get_batch, is_planar
from jax_gen.engine import fit, measured_config, run_keys
from jax_gen.metrics import classifier_two_sample_test, precision_recall
from jax_gen.sampling import STOCHASTIC, nfe_schedule, sample
from jax_gen.strategies import create_strategy

# The 2-D datasets: digits are 64-D images, with no plane to plot or compare in.
DATASETS = {name: cls() for name, cls in config.DATASETS.items() if is_planar(cls())}
STRATEGIES = {name: cls() for name, cls in config.STRATEGIES.items()}
SAMPLERS = typing.get_args(config.SamplerName)
PREDICTIONS = ("eps", "x", "v")
COUPLINGS = typing.get_args(config.Coupling)
NFE_BUDGETS = (1, 2, 4, 8, 16, 32, 64)
TOLERANCES = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)
DATA_DIM = 2
K = 5
"""The neighbour of the k-NN radii of precision and recall (quality_report's default)."""
FIGURES = ("c2st", "precision", "recall")

# One compiled data sampler per (dataset, size).
draw_batch = jax.jit(get_batch, static_argnums=(1, 2))


@dataclasses.dataclass(frozen=True)
class Figures:
    """C2ST accuracy, precision and recall: means over the sampling seeds (NaN if any seed's
    samples were not finite), and the standard error of the C2ST's mean."""

    c2st: float
    c2st_se: float
    precision: float
    recall: float

    @classmethod
    def mean(cls, draws: Sequence[dict[str, float]]) -> "Figures":
        """Means over the draws; the SE of the C2ST's mean is its spread over the draws,
        SD / sqrt(R), or the binomial SE for a single draw."""
        c2st = np.array([d["c2st"] for d in draws])
        se = c2st.std(ddof=1) / math.sqrt(c2st.size) if c2st.size > 1 else draws[0]["c2st_se"]
        return cls(
            float(c2st.mean()),
            float(se),
            *(float(np.mean([d[name] for d in draws])) for name in ("precision", "recall")),
        )


NOT_FINITE = Figures(math.nan, math.nan, math.nan, math.nan)


@dataclasses.dataclass(frozen=True)
class Point:
    """One measurement: a sampler at one NFE."""

    sampler: str
    nfe: int
    figures: Figures
    rtol: float | None = None
    """The adaptive solver's rtol = atol; ``None`` for fixed-step samplers."""


@dataclasses.dataclass(frozen=True)
class Draw:
    """One sampling seed's fresh data, the key of its classifier, and the data's own figures."""

    data: np.ndarray
    c2st_key: jax.Array
    floor: dict[str, float]


@dataclasses.dataclass
class Panel:
    """Everything measured for one (dataset, strategy) pair."""

    dataset: str
    strategy: str
    floor: Figures = NOT_FINITE
    points: list[Point] = dataclasses.field(default_factory=list)


def figures(samples: np.ndarray, data: np.ndarray, c2st_key) -> dict[str, float]:
    """C2ST accuracy (and its binomial SE), precision and recall of samples against data."""
    support = precision_recall(samples, data, k=K)
    accuracy, se = classifier_two_sample_test(samples, data, c2st_key)
    return {
        "c2st": accuracy,
        "c2st_se": se,
        "precision": support["precision"][0],
        "recall": support["recall"][0],
    }


def reference_draws(dataset_cfg, num_samples: int, eval_key, repeats: int) -> list[Draw]:
    """Per sampling seed r, with ``split(eval_key, repeats)[r]`` split in four: the fresh data D
    the samples are measured against, a second draw D' (the floor: D' against D), and the keys of
    the samples' and the floor's classifiers (as ``quality_report`` splits its key)."""
    draws = []
    for key in jax.random.split(eval_key, repeats):
        data_key, second_key, c2st_key, floor_key = jax.random.split(key, 4)
        data = np.asarray(draw_batch(data_key, dataset_cfg, num_samples))
        second = np.asarray(draw_batch(second_key, dataset_cfg, num_samples))
        draws.append(Draw(data, c2st_key, figures(second, data, floor_key)))
    return draws


def sampler_config(name: str, steps: int | None = None, tol: float | None = None) -> SamplerConfig:
    """The sampler ``name`` at ``steps`` steps: DDIM deterministic; adaptive at rtol = atol."""
    if name == "adaptive":
        return SamplerConfig(sampler=name, rtol=tol, atol=tol)
    return SamplerConfig(sampler=name, num_sampling_steps=steps, eta=0.0)


def load_or_train(
    path: Path, cfg: ExperimentConfig, retrain: bool
) -> tuple[object, str, float | None]:
    """The EMA model of ``cfg``: from the checkpoint at ``path`` if it matches, else trained.

    A checkpoint matches when its whole config (strategy with what it measures on the data,
    model, dataset, optimizer, training including the seed, which fixes every key of training)
    and its step count agree.

    Returns:
        The EMA model, ``"cached"`` or ``"trained"``, and the training time in seconds (``None``
        if cached).
    """
    cfg = measured_config(cfg)
    if not retrain and path.exists():
        try:
            saved = checkpoint.load(path)
        except checkpoint.CheckpointError as err:
            print(f"  ignoring {path}: {err}", file=sys.stderr)
        else:
            if (
                saved.config == cfg
                and saved.data_dim == DATA_DIM
                and saved.step == cfg.train.train_steps
            ):
                return saved.state.ema_model, "cached", None
            print(f"  {path} has another config: retraining", file=sys.stderr)

    # The command line's `train` runs the same fit: for one config the checkpoints agree bit
    # for bit. A diverging run is kept, and its cells read nan.
    start = time.perf_counter()
    fitted = fit(cfg, checkpoint_path=path, check_finite=False)
    return fitted.ema_model, "trained", time.perf_counter() - start


def measure(
    strategy, model, sampler_cfg, num_samples, sample_keys, draws: Sequence[Draw]
) -> tuple[Figures, int]:
    """The figures of one sampler config over the sampling seeds, and its NFE (the mean over
    the seeds, -1 if sampling failed); all NaN if any seed's samples are not finite."""
    measured, nfes = [], []
    for sample_key, draw in zip(sample_keys, draws, strict=True):
        try:
            result = sample(strategy, model, sample_key, num_samples, DATA_DIM, sampler_cfg)
            samples = np.asarray(result.samples)
        except RuntimeError as err:  # diffrax raises on non-finite states or too many steps
            print(f"  {sampler_cfg.sampler} failed: {str(err).splitlines()[0]}", file=sys.stderr)
            return NOT_FINITE, -1
        nfes.append(int(result.nfe))
        if not np.isfinite(samples).all():
            measured = None
            continue
        if measured is not None:
            measured.append(figures(samples, draw.data, draw.c2st_key))
    nfe = round(float(np.mean(nfes)))
    return (Figures.mean(measured) if measured else NOT_FINITE), nfe


def format_value(value: float, se: float | None = None) -> str:
    if not math.isfinite(value):
        return "nan"
    return f"{value:.3f}" if se is None else f"{value:.3f} ± {se:.3f}"


def format_cell(p: Point, name: str) -> str:
    """The C2ST as mean ± SE, precision and recall as their means."""
    if name == "c2st":
        return format_value(p.figures.c2st, p.figures.c2st_se)
    return format_value(getattr(p.figures, name))


def nearest_budget(nfe: int, budgets: Sequence[int]) -> int:
    """The budget closest to ``nfe`` on a log scale (where the adaptive solver's pairs go)."""
    return min(budgets, key=lambda b: abs(math.log2(max(nfe, 1)) - math.log2(b)))


def table_row(sampler: str, points: Sequence[Point], budgets: Sequence[int], name: str) -> str:
    """A markdown row of figure ``name`` at each budget; adaptive's value@NFE pairs at the
    nearest one."""
    cells: dict[int, list[str]] = {b: [] for b in budgets}
    for p in points:
        if p.rtol is None:
            cells[p.nfe].append(format_cell(p, name))
        else:
            at = "?" if p.nfe < 0 else str(p.nfe)
            cells[nearest_budget(p.nfe, budgets)].append(f"{format_cell(p, name)}@{at}")
    return f"| {sampler} | " + " | ".join("; ".join(cells[b]) or "-" for b in budgets) + " |"


TITLES = {
    "c2st": "C2ST accuracy (0.5 = indistinguishable), mean ± SE over the sampling seeds",
    "precision": "precision (share of samples on the data's support), mean over the seeds",
    "recall": "recall (share of the data's support the samples reach), mean over the seeds",
}


def table_header(budgets: Sequence[int]) -> list[str]:
    return [
        "| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]


def floor_line(floor: Figures, repeats: int) -> str:
    return (
        f"data (a second fresh draw, mean over {repeats}): C2ST "
        f"{format_value(floor.c2st, floor.c2st_se)}, precision {format_value(floor.precision)}, "
        f"recall {format_value(floor.recall)}"
    )


def run_panel(
    dataset: str,
    strategy_name: str,
    model,
    strategy,
    args: argparse.Namespace,
    sample_keys,
    draws: Sequence[Draw],
) -> tuple[Panel, list[str]]:
    """Measures every sampler at every budget; prints each C2ST row as soon as it is complete,
    then the precision and recall tables."""
    panel = Panel(dataset, strategy_name, Figures.mean([d.floor for d in draws]))
    floor = floor_line(panel.floor, len(draws))
    lines = [floor, "", f"{TITLES['c2st']}:", "", *table_header(args.nfe)]
    print("\n".join(lines), flush=True)
    rows: dict[str, list[Point]] = {}
    for name in args.samplers:
        if name in STOCHASTIC and not strategy.has_score():
            continue
        if name == "adaptive":
            configs = [(None, sampler_config(name, tol=tol), tol) for tol in args.tolerances]
        else:
            schedule = nfe_schedule(strategy, sampler_config(name), args.nfe)
            configs = [(nfe, sampler_config(name, steps), None) for nfe, steps in schedule.items()]
        points = []
        for budget, cfg, tol in configs:
            measured, nfe = measure(strategy, model, cfg, args.num_samples, sample_keys, draws)
            if budget is not None:
                if nfe >= 0 and nfe != budget:
                    raise AssertionError(f"{name} at {cfg.num_sampling_steps} steps used {nfe=}")
                nfe = budget
            points.append(Point(name, nfe, measured, tol))
        panel.points += points
        rows[name] = points
        lines.append(table_row(name, points, args.nfe, "c2st"))
        print(lines[-1], flush=True)
    adaptive = [p for p in panel.points if p.rtol is not None]
    if adaptive:
        pairs = ", ".join(f"{p.rtol:g}: {format_value(p.figures.c2st)}@{p.nfe}" for p in adaptive)
        lines += ["", f"adaptive (Tsit5, rtol = atol: C2ST@NFE): {pairs}"]
    more = []
    for figure in ("precision", "recall"):
        more += ["", f"{TITLES[figure]}:", "", *table_header(args.nfe)]
        more += [table_row(name, points, args.nfe, figure) for name, points in rows.items()]
    print("\n".join((lines[-2:] if adaptive else []) + more), flush=True)
    lines += more
    return panel, lines


def plot(panels: Sequence[Panel], datasets, strategies, samplers, budgets, path: Path) -> None:
    """Rows datasets, columns strategies: C2ST accuracy vs NFE (log2 x axis), one line per
    sampler, beside 0.5 (indistinguishable) and the data's own value."""
    by_key = {(p.dataset, p.strategy): p for p in panels}
    rows, cols = len(datasets), len(strategies)
    fig = Figure(figsize=(4.2 * cols + 1.6, 3.2 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    # Ten colours, then black; a marker of its own for each of the first eleven samplers.
    styles = {
        name: (f"C{i}" if i < 10 else "k", "os^vD<>ph*X"[i % 11]) for i, name in enumerate(samplers)
    }
    # Powers of two up to the largest NFE measured (adaptive may go past the largest budget).
    largest = max([p.nfe for panel in panels for p in panel.points] + list(budgets))
    ticks = [2**k for k in range(math.ceil(math.log2(largest)) + 1)]
    for i, dataset in enumerate(datasets):
        for j, strategy in enumerate(strategies):
            ax = axes[i, j]
            panel = by_key.get((dataset, strategy))
            for name in samplers:
                points = sorted(
                    (p for p in (panel.points if panel else []) if p.sampler == name and p.nfe > 0),
                    key=lambda p: p.nfe,
                )
                if not points:
                    continue
                color, marker = styles[name]
                ax.plot(
                    [p.nfe for p in points],
                    [p.figures.c2st for p in points],  # NaN breaks the line
                    color=color,
                    marker=marker,
                    markersize=4,
                    linewidth=1.2,
                    linestyle=":" if name == "adaptive" else "-",
                    label=name,
                )
            ax.axhline(0.5, color="k", linestyle="--", linewidth=1, label="0.5: indistinguishable")
            if panel and math.isfinite(panel.floor.c2st):
                ax.axhline(
                    panel.floor.c2st, color="0.5", linestyle=":", linewidth=1.5, label="data's own"
                )
            ax.set_xscale("log", base=2)
            ax.set_ylim(0.48, 1.01)
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.grid(True, which="major", alpha=0.3)
            if i == 0:
                ax.set_title(strategy, fontsize=11)
            if j == 0:
                ax.set_ylabel(f"{dataset}\nC2ST accuracy", fontsize=10)
            if i == rows - 1:
                ax.set_xlabel("NFE")
    save_with_legend(fig, axes, path, fontsize=9)


def save_with_legend(fig: Figure, axes, path: Path, fontsize: int) -> None:
    """Writes ``fig`` to ``path`` with one legend entry per label drawn on any of ``axes``."""
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(
            list(handles.values()), list(handles), loc="outside right upper", fontsize=fontsize
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def strategy_variants(args: argparse.Namespace) -> list[tuple[str, object, str]]:
    """(strategy name, config, label) for every strategy x prediction x coupling asked for.

    The label is the strategy's name for its own default prediction (so cached checkpoints of
    the default recipe keep their names) and ``name/prediction`` otherwise, followed by
    ``/ot`` for an optimal-transport coupling (flow matching only; the others have none).
    """
    variants = []
    for name in args.strategies:
        default = STRATEGIES[name]
        for prediction in args.predictions:
            if prediction in ("default", default.prediction):
                cfg, label = default, name
            else:
                cfg, label = (
                    dataclasses.replace(default, prediction=prediction),
                    f"{name}/{prediction}",
                )
            couplings = args.couplings if hasattr(cfg, "coupling") else ["independent"]
            for coupling in couplings:
                if coupling == "independent":
                    variant = (name, cfg, label)
                else:
                    variant = (
                        name,
                        dataclasses.replace(cfg, coupling=coupling),
                        f"{label}/{coupling}",
                    )
                if variant not in variants:
                    variants.append(variant)
    return variants


def coupling_table(panels: Sequence[Panel], budgets: Sequence[int]) -> list[str]:
    """Independent against optimal-transport pairs, sampler by sampler, at budgets up to 8.

    A cell is ``independent -> ot`` (C2ST accuracies); rows are every (dataset, strategy,
    sampler) measured with both couplings.
    """
    budgets = [b for b in budgets if b <= 8]
    by_label = {(p.dataset, p.strategy): p for p in panels}
    lines = [
        "| dataset | model | sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
        "|---|---|---|" + "---|" * len(budgets),
    ]
    for (dataset, label), coupled in by_label.items():
        if not label.endswith("/ot") or (dataset, label[: -len("/ot")]) not in by_label:
            continue
        independent = by_label[(dataset, label[: -len("/ot")])]
        for sampler in dict.fromkeys(p.sampler for p in coupled.points if p.rtol is None):
            cells = []
            for b in budgets:
                pair = [
                    [q.figures.c2st for q in panel.points if q.sampler == sampler and q.nfe == b]
                    for panel in (independent, coupled)
                ]
                cells.append(
                    f"{format_value(pair[0][0])} -> {format_value(pair[1][0])}"
                    if all(pair)
                    else "-"
                )
            lines.append(
                f"| {dataset} | {label[: -len('/ot')]} | {sampler} | " + " | ".join(cells) + " |"
            )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES)
    )
    parser.add_argument(
        "--predictions",
        nargs="+",
        default=["default"],
        choices=["default", *PREDICTIONS],
        help="predictions to train each strategy with (`default`: the strategy's own)",
    )
    parser.add_argument(
        "--couplings",
        nargs="+",
        default=["independent"],
        choices=COUPLINGS,
        help="pairings of noise and data to train flow matching with",
    )
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--nfe", type=int, nargs="+", default=list(NFE_BUDGETS))
    parser.add_argument(
        "--tolerances",
        type=float,
        nargs="+",
        default=list(TOLERANCES),
        help="rtol = atol of the adaptive solver",
    )
    parser.add_argument("--train-steps", type=int, default=TrainConfig().train_steps)
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--hidden-dim", type=int, default=MLPConfig().hidden_dim)
    parser.add_argument("--depth", type=int, default=MLPConfig().depth)
    parser.add_argument(
        "--num-samples", type=int, default=10_000, help="samples (and fresh data points) a cell"
    )
    parser.add_argument("--repeats", type=int, default=3, help="sampling seeds per cell")
    parser.add_argument("--seed", type=int, default=0, help="seed of training and sampling")
    parser.add_argument("--retrain", action="store_true", help="ignore cached checkpoints")
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("outputs/benchmark_nfe"))
    parser.add_argument("--output", type=Path, default=Path("outputs/benchmark_nfe.md"))
    parser.add_argument("--figure", type=Path, default=Path("outputs/benchmark_nfe.png"))
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.nfe):
        parser.error(f"--nfe {args.nfe}: every budget must be >= 1")
    args.nfe = sorted(set(args.nfe))
    if any(not tol > 0 for tol in args.tolerances):
        parser.error(f"--tolerances {args.tolerances}: must be positive")
    for flag in ("train_steps", "batch_size", "hidden_dim", "depth", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)}: must be >= 1")
    if args.num_samples <= K:
        parser.error(f"--num-samples={args.num_samples}: must be > {K} (the k-NN radii)")
    return args


def main(argv: Sequence[str] | None = None) -> list[Panel]:
    """Trains (or loads) every model, measures every sampler, writes the tables and the figure."""
    args = parse_args(argv)
    command = shlex.join(["scripts/benchmark_nfe.py", *(sys.argv[1:] if argv is None else argv)])
    model_cfg = dataclasses.replace(MLPConfig(), hidden_dim=args.hidden_dim, depth=args.depth)
    train_cfg = dataclasses.replace(
        TrainConfig(), train_steps=args.train_steps, batch_size=args.batch_size, seed=args.seed
    )
    # The run's named streams (training's come from train_cfg.seed, stored in the checkpoint).
    keys = run_keys(args.seed)
    sample_keys = jax.random.split(keys.sample, args.repeats)
    lines = [
        f"`{command}`: default recipe ({train_cfg.train_steps} train steps, batch "
        f"{train_cfg.batch_size}, MLP {model_cfg.hidden_dim}x{model_cfg.depth}, seed "
        f"{args.seed}, EMA samples); {args.num_samples} samples per cell against as many fresh "
        f"data points, {args.repeats} sampling seeds (each with its own fresh data); C2ST = "
        "cross-validated accuracy of a classifier telling samples from data (0.5: it cannot), "
        f"precision and recall with k = {K}; `data` is a second fresh draw measured in the same "
        "way (the floor); `-` budget out of reach, `nan` non-finite samples; adaptive shows "
        "value@NFE at the nearest budget column.",
    ]
    print(lines[0], flush=True)
    panels = []
    references: dict[str, list[Draw]] = {}
    start = time.perf_counter()
    # Datasets outer: the tables come out in order. The samplers' compiled code is cached per
    # (strategy, sampler config, n), not per dataset, so only the first dataset compiles.
    columns = []
    for dataset in args.datasets:
        for _, strategy_cfg, label in strategy_variants(args):
            if label not in columns:
                columns.append(label)
            # With what the strategy measures on the data (score matching's source mean).
            cfg = measured_config(
                ExperimentConfig(
                    strategy_cfg, model_cfg, DATASETS[dataset], OptimizerConfig(), train_cfg
                )
            )
            path = args.checkpoint_dir / f"{dataset}_{label.replace('/', '_')}.eqx"
            model, status, train_seconds = load_or_train(path, cfg, args.retrain)
            how = f"trained in {train_seconds:.0f} s" if train_seconds is not None else "cached"
            panel_start = time.perf_counter()
            if dataset not in references:
                references[dataset] = reference_draws(
                    DATASETS[dataset], args.num_samples, keys.evaluate, args.repeats
                )
            header = [
                "",
                f"### {dataset} / {label} ({strategy_cfg.prediction}-prediction, "
                f"{strategy_cfg.num_transport_steps} transport steps; {how}: {path})",
                "",
            ]
            print("\n".join(header), flush=True)
            panel, table = run_panel(
                dataset,
                label,
                model,
                create_strategy(cfg.strategy),
                args,
                sample_keys,
                references[dataset],
            )
            footer = [
                "",
                f"sampling and measuring {time.perf_counter() - panel_start:.0f} s "
                f"[{time.perf_counter() - start:.0f} s]",
            ]
            print("\n".join(footer), flush=True)
            lines += header + table + footer
            panels.append(panel)
            # What is measured so far, in case the run is stopped before the end.
            write(args, lines, panels, columns)
    comparison = coupling_table(panels, args.nfe)
    if len(comparison) > 2:
        comparison = [
            "",
            "### Independent -> optimal-transport coupling (C2ST accuracy)",
            "",
            *comparison,
        ]
        print("\n".join(comparison), flush=True)
        lines += comparison
    total = time.perf_counter() - start
    lines += ["", f"Wall time {total:.0f} s."]
    print(lines[-1], flush=True)
    write(args, lines, panels, columns)
    print(f"wrote {args.output} and {args.figure}")
    return panels


def write(args: argparse.Namespace, lines: Sequence[str], panels, columns) -> None:
    """The tables to ``--output`` and the figure of the panels to ``--figure``."""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    measured = [d for d in args.datasets if any(p.dataset == d for p in panels)]
    plot(panels, measured, columns, args.samplers, args.nfe, args.figure)


if __name__ == "__main__":
    main()
