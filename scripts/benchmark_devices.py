"""Data-parallel training throughput on 1, 2 and 4 devices, and the cost of OT coupling.

Trains the default recipe (DDPM on moons, MLP 128x4, batch 1024 by default) with the library's
loop (``engine.fit``, the steps fused in one chunk) on meshes of the first 1, 2, ... devices, in
one process, alternating the meshes over ``--repeats`` rounds (median reported) so the
machine's noise hits them alike; each mesh's compilation is excluded. Without accelerators it
asks XLA for 4 CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``, set before
JAX starts unless ``XLA_FLAGS`` is already set): those devices share the machine's cores, so
this measures the overhead of splitting a batch, not a speedup; on n real devices the same
command measures the scaling.

A second table, ``--couplings``, times flow matching with independent and with optimal-transport
pairs at each ``--ot-batch-sizes`` on one device: the cost of the exact assignment.

    uv run scripts/benchmark_devices.py      # prints tables, writes outputs/benchmark_devices.md
    uv run scripts/benchmark_devices.py --devices 1 2 --steps 50 --repeats 2
"""

import os

if "XLA_FLAGS" not in os.environ:  # before JAX is imported: XLA reads it once
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import argparse  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from jax_gen.config import (  # noqa: E402
    DDPMStrategyConfig,
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    MLPConfig,
    MoonConfig,
    OptimizerConfig,
    TrainConfig,
)
from jax_gen.engine import fit, init_state  # noqa: E402
from jax_gen.parallel import data_mesh  # noqa: E402


def steps_per_second(strategy_cfg, mesh, batch_size: int, steps: int, hidden_dim, depth):
    """A timer for ``steps`` fused steps on ``mesh``: returns a function giving steps/s.

    The first call of the returned function's loop (compilation) happens here.
    """
    cfg = ExperimentConfig(
        strategy_cfg,
        MLPConfig(hidden_dim=hidden_dim, depth=depth),
        MoonConfig(),
        OptimizerConfig(),
        TrainConfig(batch_size=batch_size, train_steps=steps, log_interval=steps),
    )
    initial = init_state(cfg)

    def run() -> float:
        start = time.perf_counter()
        # fit returns with the losses on the host: the steps are done.
        fit(initial.config, state=initial, mesh=mesh, check_finite=False)
        return steps / (time.perf_counter() - start)

    run()  # compiles
    return run


def median_rates(timers: dict, repeats: int) -> dict:
    """Each timer run ``repeats`` times, interleaved; the median steps/s of each."""
    rates = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            rates[name].append(timer())
    return {name: statistics.median(values) for name, values in rates.items()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--steps", type=int, default=200, help="fused steps per timing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden-dim", type=int, default=MLPConfig().hidden_dim)
    parser.add_argument("--depth", type=int, default=MLPConfig().depth)
    parser.add_argument("--ot-batch-sizes", type=int, nargs="*", default=[256, 1024])
    parser.add_argument("--output", type=Path, default=Path("outputs/benchmark_devices.md"))
    args = parser.parse_args(argv)
    available = len(jax.devices())
    for n in args.devices:
        if not 1 <= n <= available:
            parser.error(f"--devices {n}: between 1 and the {available} devices available")
    for flag in ("batch_size", "steps", "repeats", "hidden_dim", "depth"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)}: must be >= 1")
    if any(args.batch_size % n for n in args.devices):
        parser.error(f"--batch-size {args.batch_size} must be divisible by every --devices")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    command = shlex.join(
        ["scripts/benchmark_devices.py", *(sys.argv[1:] if argv is None else argv)]
    )
    devices = jax.devices()
    lines = [
        f"`{command}`: {len(devices)} {devices[0].platform.upper()} devices "
        f"({os.cpu_count()} cores); DDPM on moons, MLP {args.hidden_dim}x{args.depth}, batch "
        f"{args.batch_size}, {args.steps} fused steps per timing, median of {args.repeats}.",
        "",
        "| devices | points per device | steps/s | ms/step | vs 1 device |",
        "|---|---|---|---|---|",
    ]
    print(lines[0], flush=True)
    timers = {
        n: steps_per_second(
            DDPMStrategyConfig(),
            data_mesh(n),
            args.batch_size,
            args.steps,
            args.hidden_dim,
            args.depth,
        )
        for n in args.devices
    }
    rates = median_rates(timers, args.repeats)
    base = rates[args.devices[0]]
    for n, rate in rates.items():
        cells = [
            n,
            args.batch_size // n,
            f"{rate:.0f}",
            f"{1000 / rate:.2f}",
            f"{rate / base:.2f}x",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    results = {"devices": rates}

    if args.ot_batch_sizes:
        lines += [
            "",
            f"Flow matching on one device, independent against optimal-transport pairs (MLP "
            f"{args.hidden_dim}x{args.depth}, {args.steps} steps per timing, median of "
            f"{args.repeats}):",
            "",
            "| batch | independent steps/s | ot steps/s | ot ms/step extra | ot / independent |",
            "|---|---|---|---|---|",
        ]
        results["coupling"] = {}
        for batch in args.ot_batch_sizes:
            timers = {
                coupling: steps_per_second(
                    FlowMatchingStrategyConfig(coupling=coupling),
                    data_mesh(1),
                    batch,
                    args.steps,
                    args.hidden_dim,
                    args.depth,
                )
                for coupling in ("independent", "ot")
            }
            rate = median_rates(timers, args.repeats)
            extra = 1000 / rate["ot"] - 1000 / rate["independent"]
            lines.append(
                f"| {batch} | {rate['independent']:.0f} | {rate['ot']:.0f} | {extra:.1f} | "
                f"{rate['ot'] / rate['independent']:.2f}x |"
            )
            results["coupling"][batch] = rate
    print("\n".join(lines[1:]), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
