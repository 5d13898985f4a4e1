"""Time to quality: training seconds until the samples come within a factor of the noise floor.

For every strategy's default recipe (default strategy config, MLP, optimizer and training, seed
0) on moons, trains with ``engine.fit`` (chunks of ``log_interval`` steps) and, after every
chunk, draws ``--num-samples`` samples of the EMA model with the sampler (the strategy's
``default`` unless ``--sampler``) and measures their sliced W2 to fresh data divided by its noise
floor (``metrics.distance_and_floor``, mean over 3 draws; 1.0 is as good as it gets). The source
draw and the fresh data use the run's ``sample`` and ``evaluate`` keys (``engine.run_keys``), so
every checkpoint is measured against the same data and the same floor.

Only training is timed: the clock runs from the end of one chunk's evaluation until the next
chunk's losses are on the host, and stops during evaluation, whose time is reported apart.
Compilation is excluded: before the clock starts, one throwaway chunk of every chunk length the
run uses is trained (``engine.warm_up``: from the initial state, discarded) and one evaluation
is run; that warm-up (compile plus one chunk and one evaluation) is reported apart too.

    uv run scripts/benchmark_time_to_quality.py    # writes outputs/benchmark_time_to_quality.*
    uv run scripts/benchmark_time_to_quality.py --strategies flow-matching --sampler heun \\
        --num-sampling-steps 10
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
from matplotlib.ticker import FuncFormatter

from jax_gen import config
from jax_gen.config import (
    ExperimentConfig,
    MLPConfig,
    MoonConfig,
    OptimizerConfig,
    SamplerConfig,
    TrainConfig,
)
from jax_gen.data import get_batch
from jax_gen.engine import fit, init_state, run_keys, warm_up
from jax_gen.metrics import distance_and_floor
from jax_gen.sampling import sample
from jax_gen.strategies import create_strategy

STRATEGIES = {name: cls() for name, cls in config.STRATEGIES.items()}
SAMPLERS = typing.get_args(config.SamplerName)
DATA_DIM = 2
REPEATS = 3
"""Fresh data draws averaged in every distance and floor."""

draw_batch = jax.jit(get_batch, static_argnums=(1, 2))


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The EMA model's quality after a chunk."""

    step: int
    train_seconds: float
    """Training wall time from the start of the run to the end of this chunk."""
    ratio: float
    """Sliced W2 to fresh data / its floor (NaN if the samples were not finite)."""


@dataclasses.dataclass
class Run:
    """One strategy's time to quality."""

    strategy: str
    sampler: str
    nfe: int
    floor: float
    warmup_seconds: float
    """Compilation plus one throwaway chunk per chunk length plus one evaluation."""
    eval_seconds: float = 0.0
    checkpoints: list[Checkpoint] = dataclasses.field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        return self.checkpoints[-1].train_seconds if self.checkpoints else 0.0

    @property
    def best_ratio(self) -> float:
        finite = [c.ratio for c in self.checkpoints if math.isfinite(c.ratio)]
        return min(finite) if finite else math.nan

    def reached(self, threshold: float) -> Checkpoint | None:
        """The first checkpoint whose ratio is at most ``threshold`` (``None`` if none is)."""
        return next((c for c in self.checkpoints if c.ratio <= threshold), None)


def chunk_lengths(train_cfg: TrainConfig) -> list[int]:
    """The length of every chunk ``train_chunks`` trains, in order."""
    starts = range(0, train_cfg.train_steps, train_cfg.log_interval)
    return [min(train_cfg.log_interval, train_cfg.train_steps - s) for s in starts]


def time_to_quality(
    name: str,
    strategy_cfg,
    train_cfg: TrainConfig,
    sampler_cfg: SamplerConfig,
    num_samples: int,
    on_checkpoint=None,
) -> Run:
    """Trains the default recipe of one strategy and measures the EMA model after every chunk.

    Args:
        name: the strategy's name, for the report.
        strategy_cfg: the strategy's config.
        train_cfg: batch size, steps, chunk length, EMA decay and seed.
        sampler_cfg: how every checkpoint is sampled.
        num_samples: samples per checkpoint (and fresh data points per draw).
        on_checkpoint: called with every ``Checkpoint`` as soon as it is measured.
    """
    dataset = MoonConfig()
    initial = init_state(
        ExperimentConfig(strategy_cfg, MLPConfig(), dataset, OptimizerConfig(), train_cfg)
    )
    cfg = initial.config  # with what the strategy measured on the data
    keys = run_keys(train_cfg.seed)
    strategy = create_strategy(cfg.strategy)

    def evaluate(model) -> tuple[float, float, int]:
        result = sample(strategy, model, keys.sample, num_samples, DATA_DIM, sampler_cfg)
        samples = np.asarray(result.samples)
        finite = bool(np.isfinite(samples).all())
        distance, floor = distance_and_floor(
            samples if finite else np.zeros_like(samples),
            lambda k, n: draw_batch(k, dataset, n),
            keys.evaluate,
            REPEATS,
        )
        return (distance / floor if finite else math.nan), floor, int(result.nfe)

    start = time.perf_counter()
    warm_up(initial)
    _, floor, nfe = evaluate(initial.ema_model)
    run = Run(name, sampler_cfg.sampler, nfe, floor, time.perf_counter() - start)

    train_seconds, clock = 0.0, time.perf_counter()

    def measure(progress) -> None:
        nonlocal train_seconds, clock
        jax.block_until_ready(progress.state)
        train_seconds += time.perf_counter() - clock
        start = time.perf_counter()
        ratio, _, _ = evaluate(progress.state.ema_model)
        run.eval_seconds += time.perf_counter() - start
        run.checkpoints.append(Checkpoint(progress.step, train_seconds, ratio))
        if on_checkpoint is not None:
            on_checkpoint(run.checkpoints[-1])
        clock = time.perf_counter()

    # A non-finite chunk is measured (ratio nan) rather than stopping the run.
    fit(cfg, state=initial, on_chunk=measure, check_finite=False)
    return run


def table(runs: Sequence[Run], threshold: float) -> list[str]:
    lines = [
        f"| strategy | sampler | NFE | steps to {threshold:g}x | train s to {threshold:g}x "
        "| final ratio | best ratio | train s | eval s | warm-up s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        hit = run.reached(threshold)
        steps, seconds = (
            (str(hit.step), f"{hit.train_seconds:.1f}") if hit else ("not reached", "-")
        )
        lines.append(
            f"| {run.strategy} | {run.sampler} | {run.nfe} | {steps} | {seconds} "
            f"| {run.checkpoints[-1].ratio:.2f} | {run.best_ratio:.2f} "
            f"| {run.train_seconds:.1f} | {run.eval_seconds:.1f} | {run.warmup_seconds:.1f} |"
        )
    return lines


def plot(runs: Sequence[Run], threshold: float, path: Path) -> None:
    """Ratio to the floor against training seconds, one line per strategy, log y."""
    fig = Figure(figsize=(6.4, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, run in enumerate(runs):
        ax.plot(
            [c.train_seconds for c in run.checkpoints],
            [c.ratio for c in run.checkpoints],
            color=f"C{i % 10}",
            marker="o",
            markersize=3,
            linewidth=1.2,
            label=f"{run.strategy} ({run.sampler}, NFE {run.nfe})",
        )
    ax.axhline(threshold, color="k", linestyle="--", linewidth=1, label=f"{threshold:g}x floor")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("training wall time (s, compilation excluded)")
    ax.set_ylabel("sliced W2 / floor")
    ax.set_title("moons: time to quality", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES)
    )
    parser.add_argument("--steps", type=int, default=TrainConfig().train_steps, help="train steps")
    parser.add_argument(
        "--log-interval", type=int, default=TrainConfig().log_interval, help="steps per chunk"
    )
    parser.add_argument("--threshold", type=float, default=1.5, help="target ratio to the floor")
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--sampler", default=SamplerConfig().sampler, choices=SAMPLERS)
    parser.add_argument(
        "--num-sampling-steps",
        type=int,
        default=None,
        help="steps of the sampler (default: the strategy's num_transport_steps)",
    )
    parser.add_argument("--output", type=Path, default=Path("outputs/benchmark_time_to_quality.md"))
    parser.add_argument("--figure", type=Path, default=None, help="default: --output as .png")
    args = parser.parse_args(argv)
    for flag in ("steps", "log_interval", "num_samples"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)}: must be >= 1")
    if not args.threshold > 0:
        parser.error(f"--threshold={args.threshold}: must be positive")
    try:
        args.sampler_cfg = SamplerConfig(
            sampler=args.sampler, num_sampling_steps=args.num_sampling_steps
        )
    except ValueError as err:
        parser.error(str(err))
    if args.figure is None:
        args.figure = args.output.with_suffix(".png")
    return args


def main(argv: Sequence[str] | None = None) -> list[Run]:
    """Measures every strategy, prints and writes the table, draws the figure."""
    args = parse_args(argv)
    command = shlex.join(
        ["scripts/benchmark_time_to_quality.py", *(sys.argv[1:] if argv is None else argv)]
    )
    train_cfg = dataclasses.replace(
        TrainConfig(), train_steps=args.steps, log_interval=args.log_interval
    )
    model_cfg = MLPConfig()
    device = jax.devices()[0]
    header = (
        f"`{command}`: moons, default recipe (MLP {model_cfg.hidden_dim}x{model_cfg.depth}, "
        f"batch {train_cfg.batch_size}, {train_cfg.train_steps} steps in chunks of "
        f"{train_cfg.log_interval}, seed {train_cfg.seed}), EMA model measured after every "
        f"chunk on {args.num_samples} samples (sliced W2 / floor, mean over {REPEATS} fresh "
        f"draws); training wall time only, compilation excluded; {device.platform.upper()}."
    )
    print(header, flush=True)
    runs = []
    for name in args.strategies:
        strategy_cfg = STRATEGIES[name]
        print(f"\n{name}:", flush=True)
        run = time_to_quality(
            name,
            strategy_cfg,
            train_cfg,
            args.sampler_cfg,
            args.num_samples,
            on_checkpoint=lambda c: print(
                f"  step {c.step:5d}  train {c.train_seconds:6.1f} s  ratio {c.ratio:.2f}",
                flush=True,
            ),
        )
        runs.append(run)
    lines = [header, "", *table(runs, args.threshold)]
    print("\n" + "\n".join(lines[2:]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    plot(runs, args.threshold, args.figure)
    print(f"\nwrote {args.output} and {args.figure}")
    return runs


if __name__ == "__main__":
    main()
