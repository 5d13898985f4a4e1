"""Sample quality of the default recipe: sliced W2 to fresh data, beside its noise floor.

For every dataset and strategy (default configs, default training), trains once, samples with
the EMA weights and reports the sliced Wasserstein-2 distance between the samples and fresh data,
the floor (the same distance between two fresh draws of the data of the same size) and their
ratio (1.0 is as good as it gets).

    uv run scripts/benchmark_quality.py    # prints a table, writes outputs/benchmark_quality.md
    uv run scripts/benchmark_quality.py --train-steps 2000 --datasets moon
"""

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from jax_gen import config
from jax_gen.config import (
    ExperimentConfig,
    MLPConfig,
    OptimizerConfig,
    TrainConfig,
)
from jax_gen.data import get_batch, is_planar
from jax_gen.engine import fit, run_keys
from jax_gen.metrics import distance_and_floor
from jax_gen.sampling import sample
from jax_gen.strategies import create_strategy

# The 2-D datasets: digits are 64-D images, with no plane to plot or compare in.
DATASETS = {name: cls() for name, cls in config.DATASETS.items() if is_planar(cls())}
STRATEGIES = {name: cls() for name, cls in config.STRATEGIES.items()}


def evaluate(dataset, strategy_cfg, train_cfg, num_samples, seed, repeats):
    train_cfg = dataclasses.replace(train_cfg, seed=seed)
    cfg = ExperimentConfig(strategy_cfg, MLPConfig(), dataset, OptimizerConfig(), train_cfg)
    keys = run_keys(seed)
    start = time.perf_counter()
    fitted = fit(cfg, check_finite=False)  # returns with the losses on the host
    seconds = time.perf_counter() - start
    strategy = create_strategy(fitted.config.strategy)  # as measured on the data
    samples = sample(strategy, fitted.ema_model, keys.sample, num_samples, 2).samples
    distance, floor = distance_and_floor(
        samples, lambda k, n: get_batch(k, dataset, n), keys.evaluate, repeats
    )
    loss = float(np.mean(fitted.losses[-100:]))
    return distance, floor, seconds, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=TrainConfig().train_steps)
    parser.add_argument("--num-samples", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="fresh data draws per distance")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--output", type=Path, default=Path("outputs/benchmark_quality.md"))
    args = parser.parse_args()
    train_cfg = dataclasses.replace(TrainConfig(), train_steps=args.train_steps)

    lines = [
        f"Default recipe ({train_cfg.train_steps} steps, batch {train_cfg.batch_size}, MLP "
        f"{MLPConfig().hidden_dim}x{MLPConfig().depth}, EMA samples), sliced W2 on "
        f"{args.num_samples} points, mean over {args.repeats} fresh data draws.",
        "",
        "| dataset | strategy | steps | sliced W2 | floor | ratio | train s | final loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for dataset_name in args.datasets:
        for strategy_name, strategy_cfg in STRATEGIES.items():
            distance, floor, seconds, loss = evaluate(
                DATASETS[dataset_name],
                strategy_cfg,
                train_cfg,
                args.num_samples,
                args.seed,
                args.repeats,
            )
            line = (
                f"| {dataset_name} | {strategy_name} ({strategy_cfg.prediction}) "
                f"| {strategy_cfg.num_transport_steps} | {distance:.3f} | {floor:.3f} "
                f"| {distance / floor:.2f} | {seconds:.1f} | {loss:.3f} |"
            )
            print(line, flush=True)
            lines.append(line)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
