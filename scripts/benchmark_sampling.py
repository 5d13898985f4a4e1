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

import equinox as eqx
import jax

from jax_gen import config
from jax_gen.config import MLPConfig, SamplerConfig
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
    model = create_model(MLPConfig(), model_key, DATA_DIM)
    params = sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    rows, missing = [], []
    for sampler in samplers:
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
    args = parser.parse_args(argv)
    if "adaptive" in args.samplers:
        parser.error("--samplers adaptive: its NFE is not fixed in advance")
    for flag in ("nfe", "batch_sizes"):
        if any(n < 1 for n in getattr(args, flag)):
            parser.error(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 1")
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats}: must be >= 1")
    args.nfe = sorted(set(args.nfe))
    return args


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Times every configuration, prints the table and writes it to ``--output``."""
    args = parse_args(argv)
    command = shlex.join(
        ["scripts/benchmark_sampling.py", *(sys.argv[1:] if argv is None else argv)]
    )
    model_cfg = MLPConfig()
    device = jax.devices()[0]
    lines = [
        f"`{command}`: freshly initialised MLP {model_cfg.hidden_dim}x{model_cfg.depth} "
        "(throughput does not depend on the weights), default strategy configs, best of "
        f"{args.repeats} calls of `samplers.sample` (trajectory included), compilation "
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
