"""Sampling throughput: samples/s and network evaluations/s at fixed NFE, for every strategy.

For every strategy (default config) and the default MLP, times ``samplers.sample`` with the
Euler sampler and with the strategy's own ``default`` sampler, each at the number of steps that
gives every NFE budget exactly (``nfe_schedule``; a budget the sampler cannot hit, such as NFE 8
for score matching's 20 Langevin evaluations per level, is left out and listed), at every batch
size. The network is freshly initialised, not trained: the work per evaluation does not depend on
the weights' values, so neither does the throughput.

Every configuration is compiled (and run once) outside the timing, then timed best of
``--repeats``, each run ending with ``block_until_ready``. Network evaluations per second are
samples x NFE / seconds; GFLOP/s count 2 x parameters per evaluation (the forward pass).

    uv run scripts/benchmark_sampling.py    # prints a table, writes outputs/benchmark_sampling.md
    uv run scripts/benchmark_sampling.py --nfe 8 --batch-sizes 100000 --strategies flow-matching

With ``--generate-sizes``, it measures the ``generate`` command instead: for each n, one fresh
process runs ``generate --model-path M --num-samples n --output-samples-path <tmp>.npy`` and
reports its wall time (start-up and compilation included), the sampling time the command
prints, and the process's peak resident memory; the table writes to ``--generate-output``.

    uv run scripts/benchmark_sampling.py --generate-sizes 10000 100000 1000000 \
        --model-path outputs/cat_ddpm.eqx
"""

import argparse
import dataclasses
import json
import math
import re
import shlex
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Sequence
from pathlib import Path

import equinox as eqx
import jax

from jax_gen import config
from jax_gen.config import MLPConfig, SamplerConfig, time_inputs
from jax_gen.models import create_model
from jax_gen.sampling import evals_per_step, nfe_schedule, sample
from jax_gen.strategies import create_strategy

STRATEGIES = {name: cls() for name, cls in config.STRATEGIES.items()}
SAMPLERS = ("euler", "default")
NFE_BUDGETS = (8, 50)
BATCH_SIZES = (1000, 10000)
DATA_DIM = 2


@dataclasses.dataclass(frozen=True)
class Row:
    """One timed configuration."""

    strategy: str
    sampler: str
    steps: int
    nfe: int
    batch: int
    seconds: float
    """Best wall time of one call, compilation excluded."""
    params: int

    @property
    def samples_per_s(self) -> float:
        return self.batch / self.seconds

    @property
    def evals_per_s(self) -> float:
        """Network evaluations (on one point) per second: samples x NFE / seconds."""
        return self.batch * self.nfe / self.seconds

    @property
    def gflops(self) -> float:
        """Forward FLOP rate, counting 2 x parameters per evaluation, in GFLOP/s."""
        return 2 * self.params * self.evals_per_s / 1e9


def time_sampler(strategy, model, cfg: SamplerConfig, batch: int, repeats: int, key):
    """(best seconds of one ``sample`` call, the NFE it reports), compiled outside the timing."""
    result = jax.block_until_ready(sample(strategy, model, key, batch, DATA_DIM, cfg))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(sample(strategy, model, key, batch, DATA_DIM, cfg))
        best = min(best, time.perf_counter() - start)
    return best, int(result.nfe)


def measure(
    name: str,
    samplers: Sequence[str],
    budgets: Sequence[int],
    batch_sizes: Sequence[int],
    repeats: int,
    on_row=None,
) -> tuple[list[Row], list[str]]:
    """Times one strategy at every (sampler, reachable budget, batch size).

    Returns:
        The rows, and a note for every (sampler, budget) that is out of reach.
    """
    model_key, sample_key = jax.random.split(jax.random.key(0))
    strategy = create_strategy(STRATEGIES[name])
    # MeanFlow and shortcut networks read two times (t and the interval's end or length).
    model = create_model(MLPConfig(), model_key, DATA_DIM, num_times=time_inputs(STRATEGIES[name]))
    params = sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    rows, missing = [], []
    for sampler in samplers:
        try:  # a sampler the strategy refuses (an ODE solver of a consistency model)
            sample(strategy, model, sample_key, 1, DATA_DIM, SamplerConfig(sampler=sampler))
        except ValueError as err:
            missing.append(f"{name} / {sampler} ({err})")
            continue
        schedule = nfe_schedule(strategy, SamplerConfig(sampler=sampler), budgets)
        unreachable = [n for n in budgets if n not in schedule]
        if unreachable:
            per_step = evals_per_step(strategy, SamplerConfig(sampler=sampler))
            missing.append(
                f"{name} / {sampler} at NFE {', '.join(map(str, unreachable))} "
                f"({per_step} evaluations per step)"
            )
        for nfe, steps in schedule.items():
            cfg = SamplerConfig(sampler=sampler, num_sampling_steps=steps)
            try:  # a step count the strategy refuses (a shortcut model's 50)
                sample(strategy, model, sample_key, 1, DATA_DIM, cfg)
            except ValueError as err:
                missing.append(f"{name} / {sampler} at NFE {nfe} ({err})")
                continue
            for batch in batch_sizes:
                seconds, used = time_sampler(strategy, model, cfg, batch, repeats, sample_key)
                if used != nfe:
                    raise AssertionError(f"{name} / {sampler} at {steps} steps used {used=}")
                rows.append(Row(name, sampler, steps, nfe, batch, seconds, params))
                if on_row is not None:
                    on_row(rows[-1])
    return rows, missing


def format_row(row: Row) -> str:
    return (
        f"| {row.strategy} | {row.sampler} | {row.steps} | {row.nfe} | {row.batch} "
        f"| {row.seconds:.4f} | {row.samples_per_s:,.0f} | {row.evals_per_s / 1e6:.2f} M "
        f"| {row.gflops:.1f} |"
    )


# ----------------------------------------------------------------------------------------------
# The generate command against n
# ----------------------------------------------------------------------------------------------

GENERATE_SIZES = (10_000, 100_000, 1_000_000)

_CHILD = """
import json, resource, sys
from jax_gen.cli import main
main(json.loads(sys.argv[1]))
print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""
"""A fresh process that runs one command and prints its own peak resident memory."""


@dataclasses.dataclass(frozen=True)
class GenerateRow:
    """One ``generate`` run."""

    n: int
    wall: float
    """Seconds of the whole process: start-up, loading, compilation, sampling, the quality
    figures, the plot and the export."""
    sampling: float
    """Seconds the command reports for sampling (compilation of the first batch included)."""
    peak_mb: float
    """Peak resident memory of the process, MB."""

    @property
    def rest(self) -> float:
        """Everything but sampling."""
        return self.wall - self.sampling


def time_generate(model_path: Path, n: int, extra: Sequence[str] = ()) -> GenerateRow:
    """Runs ``generate`` for n points in a fresh process, exporting them to a temporary .npy."""
    with tempfile.TemporaryDirectory() as folder:
        argv = ["generate", "--model-path", str(model_path), "--num-samples", str(n)]
        argv += ["--output-samples-path", str(Path(folder) / "points.npy")]
        argv += ["--output-image-path", str(Path(folder) / "points.png"), *extra]
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(argv)], capture_output=True, text=True
        )
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"generate failed for n={n}: {done.stderr.strip()[-500:]}")
    sampling = re.search(r"generated \d+ points with .* in ([0-9.]+) s", done.stdout)
    peak = re.search(r"peak_rss_kb (\d+)", done.stdout)
    if sampling is None or peak is None:
        raise RuntimeError(f"unexpected output of generate:\n{done.stdout}")
    return GenerateRow(n, wall, float(sampling.group(1)), int(peak.group(1)) / 1024)


def format_generate_row(row: GenerateRow, first: GenerateRow) -> str:
    return (
        f"| {row.n:,} | {row.wall:.1f} | {row.sampling:.1f} | {row.rest:.1f} "
        f"| {row.sampling / row.n * 1e6:.0f} | {row.n / first.n:.0f}x "
        f"| {row.sampling / first.sampling:.1f}x | {row.wall / first.wall:.1f}x "
        f"| {row.peak_mb:.0f} |"
    )


def main_generate(args: argparse.Namespace, command: str) -> list[GenerateRow]:
    """Runs ``generate`` at every size, prints the table and writes it."""
    lines = [
        f"`{command}`: one fresh process per n runs `jax-gen generate --model-path "
        f"{args.model_path} --num-samples n --output-samples-path <tmp>.npy`; wall time of the "
        "process, the sampling time it prints, the rest (start-up, compilation, the quality "
        "figures on 10,000 points, the plot, the export) and its peak resident memory; ratios "
        "against the first n.",
        "",
        "| n | wall (s) | sampling (s) | rest (s) | sampling µs/point | n ratio "
        "| sampling ratio | wall ratio | peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    rows: list[GenerateRow] = []
    for n in args.generate_sizes:
        rows.append(time_generate(args.model_path, n))
        lines.append(format_generate_row(rows[-1], rows[0]))
        print(lines[-1], flush=True)
    args.generate_output.parent.mkdir(parents=True, exist_ok=True)
    args.generate_output.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.generate_output}")
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES)
    )
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=list(SAMPLERS),
        choices=list(typing.get_args(config.SamplerName)),
    )
    parser.add_argument("--nfe", type=int, nargs="+", default=list(NFE_BUDGETS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (best kept)")
    parser.add_argument("--output", type=Path, default=Path("outputs/benchmark_sampling.md"))
    parser.add_argument(
        "--generate-sizes",
        type=int,
        nargs="+",
        help=f"measure the generate command at these n instead (e.g. {GENERATE_SIZES})",
    )
    parser.add_argument(
        "--model-path",
        type=Path,
        default=Path("outputs/cat_ddpm.eqx"),
        help="checkpoint generate samples (with --generate-sizes)",
    )
    parser.add_argument(
        "--generate-output", type=Path, default=Path("outputs/benchmark_generate.md")
    )
    args = parser.parse_args(argv)
    if args.generate_sizes is not None:
        if any(n < 1 for n in args.generate_sizes):
            parser.error(f"--generate-sizes {args.generate_sizes}: must be >= 1")
        if not args.model_path.is_file():
            parser.error(f"--model-path {args.model_path}: no such checkpoint (train one first)")
    if "adaptive" in args.samplers:
        parser.error("--samplers adaptive: its NFE is not fixed in advance")
    for flag in ("nfe", "batch_sizes"):
        if any(n < 1 for n in getattr(args, flag)):
            parser.error(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 1")
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats}: must be >= 1")
    args.nfe = sorted(set(args.nfe))
    return args


def main(argv: Sequence[str] | None = None) -> list[Row] | list[GenerateRow]:
    """Times every configuration, prints the table and writes it to ``--output`` (or, with
    ``--generate-sizes``, the generate command to ``--generate-output``)."""
    args = parse_args(argv)
    command = shlex.join(
        ["scripts/benchmark_sampling.py", *(sys.argv[1:] if argv is None else argv)]
    )
    if args.generate_sizes is not None:
        return main_generate(args, command)
    model_cfg = MLPConfig()
    device = jax.devices()[0]
    lines = [
        f"`{command}`: freshly initialised MLP {model_cfg.hidden_dim}x{model_cfg.depth} "
        "(throughput does not depend on the weights), default strategy configs, best of "
        f"{args.repeats} calls of `samplers.sample` (final points only), compilation "
        f"excluded; {device.platform.upper()} ({jax.device_count()} device), fp32.",
        "",
        "| strategy | sampler | steps | NFE | batch | seconds | samples/s | evaluations/s "
        "| GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    start = time.perf_counter()
    rows, missing = [], []
    for name in args.strategies:
        strategy_rows, strategy_missing = measure(
            name,
            args.samplers,
            args.nfe,
            args.batch_sizes,
            args.repeats,
            on_row=lambda row: print(format_row(row), flush=True),
        )
        rows += strategy_rows
        missing += strategy_missing
    lines += [format_row(row) for row in rows]
    if missing:
        lines += ["", "Out of reach: " + "; ".join(missing) + "."]
    lines += ["", f"Wall time {time.perf_counter() - start:.0f} s (compilation included)."]
    print("\n".join(lines[4 + len(rows) :]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.output}")
    return rows


if __name__ == "__main__":
    main()
