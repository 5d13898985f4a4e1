"""Time per training step of each coupling, side by side: independent, exact OT, Schrodinger bridge.

Flow matching from the eight Gaussians to the moons (the MLP of ``--hidden-dim`` x 3), trained
with :func:`jax_gen.engine.fit` for ``--steps`` steps per coupling after a run that compiles
it; the steps of the timed run are divided into its wall time. The couplings are independent
pairs, the exact assignment (``ot``: scipy's ``linear_sum_assignment`` on the host) and the
entropic plan (``sb``: ott-jax's Sinkhorn, epsilon = 2 sigma^2) at each ``--sigmas``. All run
in the same process, one after the other, and are reported as ratios to independent pairs, so
a shared, noisy machine moves them together.

    uv run scripts/benchmark_coupling.py
    uv run scripts/benchmark_coupling.py --batch-sizes 256 512 1024 --steps 50
"""

import argparse
import time

from jax_gen.config import (
    EightGaussiansConfig,
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    MLPConfig,
    MoonConfig,
    TrainConfig,
)
from jax_gen.engine import fit


def seconds_per_step(strategy: FlowMatchingStrategyConfig, batch: int, steps: int, width: int):
    config = ExperimentConfig(
        strategy=strategy,
        model=MLPConfig(hidden_dim=width, depth=3, activation="selu", fourier_features=0),
        dataset=MoonConfig(),
        train=TrainConfig(batch_size=batch, train_steps=steps, log_interval=steps),
    )
    fit(config, seed=0)  # compiles
    start = time.perf_counter()
    fit(config, seed=1)
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 512, 1024])
    parser.add_argument("--sigmas", nargs="+", type=float, default=[0.1, 0.5, 1.0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden-dim", type=int, default=64)
    args = parser.parse_args(argv)
    source = EightGaussiansConfig()
    couplings = {"independent": FlowMatchingStrategyConfig(source=source)}
    couplings["ot"] = FlowMatchingStrategyConfig(source=source, coupling="ot")
    for sigma in args.sigmas:
        couplings[f"sb sigma={sigma:g}"] = FlowMatchingStrategyConfig(
            source=source, coupling="sb", sigma=sigma
        )
    print("| batch | " + " | ".join(couplings) + " |")
    print("|---" * (len(couplings) + 1) + "|")
    for batch in args.batch_sizes:
        times = {
            name: seconds_per_step(cfg, batch, args.steps, args.hidden_dim)
            for name, cfg in couplings.items()
        }
        base = times["independent"]
        cells = [f"{1e3 * t:.1f} ms ({t / base:.0f}x)" for t in times.values()]
        print(f"| {batch} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
