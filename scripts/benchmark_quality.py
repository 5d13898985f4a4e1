"""Sample quality of the default recipe: precision, recall, C2ST and the cat's inside share.

For every 2-D dataset and strategy, trains the default recipe (the configs' own defaults, the
run ``scripts/main.py train`` makes) once per seed with ``jax_gen.engine.fit``, then measures it
as ``train`` does after training (the support figures of ``jax_gen.evaluation.summarize_fit``):
``--num-samples`` points drawn with the EMA weights, the strategy's default sampler and the
run's ``sample`` key, against as many fresh data points drawn with its ``evaluate`` key (never
a training batch). The figures are those of ``jax_gen.metrics.quality_report``: k-NN precision
and recall (k = 5), the classifier two-sample test's accuracy (C2ST, 0.5 when the classifier
cannot tell samples from data) and, on a silhouette (the cat), the share of samples inside it.
Each stands beside the data's own value (the floor: a second fresh draw measured in the same
way); the table gives mean [min, max] over the seeds, and the JSON every seed's report with its
standard errors.

    uv run scripts/benchmark_quality.py    # writes outputs/benchmark_quality.md and .json
    uv run scripts/benchmark_quality.py --train-steps 2000 --datasets moon --seeds 0
"""

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jax_gen import config
from jax_gen.config import ExperimentConfig, TrainConfig
from jax_gen.data import is_planar
from jax_gen.engine import FitState, fit, key_stream, run_keys
from jax_gen.evaluation import support_report
from jax_gen.sampling import sample
from jax_gen.strategies import create_strategy

# The 2-D datasets: digits are 64-D images, with no plane to plot or compare in.
DATASETS = {name: cls() for name, cls in config.DATASETS.items() if is_planar(cls())}
STRATEGIES = {name: cls() for name, cls in config.STRATEGIES.items()}
COLUMNS = {"precision": "precision", "recall": "recall", "c2st": "C2ST", "support_rate": "inside"}
"""The quality_report entries in the table, by their column names."""


def default_config(dataset: str, strategy: str, train_steps: int, seed: int) -> ExperimentConfig:
    """The config ``scripts/main.py train`` builds for this dataset and strategy (every other
    group at its default), with the number of steps and the seed replaced."""
    defaults = ExperimentConfig()
    train = dataclasses.replace(defaults.train, train_steps=train_steps, seed=seed)
    return dataclasses.replace(
        defaults, strategy=STRATEGIES[strategy], dataset=DATASETS[dataset], train=train
    )


def describe_model(model) -> str:
    """``MLP 128x4`` and its Fourier features, if any."""
    text = f"{config.name_of(model).upper()} {model.hidden_dim}x{model.depth}"
    features = getattr(model, "fourier_features", 0)
    if features:
        text += f" with {features} Fourier features (scale {model.fourier_scale:g})"
    return text


def measure(cfg: ExperimentConfig, num_samples: int) -> dict:
    """Trains ``cfg`` and returns its train seconds, final loss and support report."""
    start = time.perf_counter()
    fitted = fit(cfg, check_finite=False)  # returns with the losses on the host
    seconds = time.perf_counter() - start
    return {
        "seed": cfg.train.seed,
        "train_seconds": seconds,
        "final_loss": float(np.mean(fitted.losses[-100:])),
        "quality": support_after_training(fitted, num_samples),
    }


def support_after_training(fitted: FitState, num_samples: int) -> dict:
    """The support figures ``train`` prints after training (``summarize_fit``'s
    ``comparison.support``), with the same keys, without its sliced W2 (5 fresh draws, ~10 s
    at 10,000 points on two cores)."""
    keys = run_keys(fitted.config.train.seed)
    metric_key = key_stream(keys.evaluate, "metrics")
    strategy = create_strategy(fitted.config.strategy)
    result = sample(strategy, fitted.ema_model, keys.sample, num_samples, fitted.data_dim)
    samples = np.asarray(result.samples)
    return support_report(samples, fitted.config.dataset, key_stream(metric_key, "support"))


def spread(values: Sequence[float], digits: int = 3) -> str:
    """``mean [min, max]``; just the value for a single seed."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def table_row(dataset: str, strategy: str, runs: Sequence[dict]) -> str:
    cfg = STRATEGIES[strategy]
    cells = [dataset, f"{strategy} ({cfg.prediction})", str(cfg.num_transport_steps)]
    for name in COLUMNS:
        entries = [run["quality"].get(name) for run in runs]
        if any(entry is None for entry in entries):
            cells += ["-", "-"]
            continue
        cells += [spread([e["value"] for e in entries]), spread([e["data"] for e in entries])]
    cells.append(spread([run["train_seconds"] for run in runs], digits=1))
    return "| " + " | ".join(cells) + " |"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--train-steps", type=int, default=TrainConfig().train_steps)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES)
    )
    parser.add_argument("--output", type=Path, default=Path("outputs/benchmark_quality.md"))
    args = parser.parse_args(argv)
    for flag in ("train_steps", "num_samples"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)}: must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[tuple[str, str], list[dict]]:
    """Trains and measures every (dataset, strategy, seed); writes the table and the JSON."""
    args = parse_args(argv)
    command = shlex.join(
        ["scripts/benchmark_quality.py", *(sys.argv[1:] if argv is None else argv)]
    )
    defaults = ExperimentConfig()
    model, train = defaults.model, defaults.train
    seeds = ", ".join(str(s) for s in args.seeds)
    lines = [
        f"`{command}`: default recipe ({args.train_steps} steps, batch {train.batch_size}, "
        f"{describe_model(model)}, lr {defaults.optimizer.learning_rate:g}; EMA "
        f"samples with the default sampler), {args.num_samples} samples against as many fresh "
        f"data points, seeds {seeds}: mean [min, max] over the seeds; `data` is a second fresh "
        "draw measured in the same way (the floor); C2ST 0.5 = indistinguishable; inside = "
        "share of points inside the silhouette. Train s (mean [min, max]) includes compilation, "
        "which the first seed of a row pays.",
        "",
        "| dataset | strategy | steps | "
        + " | ".join(f"{title} | data" for title in COLUMNS.values())
        + " | train s |",
        "|---|---|---|" + "---|---|" * len(COLUMNS) + "---|",
    ]
    print("\n".join(lines), flush=True)
    results: dict[tuple[str, str], list[dict]] = {}
    start = time.perf_counter()
    for dataset in args.datasets:
        for strategy in args.strategies:
            runs = []
            for seed in args.seeds:
                cfg = default_config(dataset, strategy, args.train_steps, seed)
                run = measure(cfg, args.num_samples)
                runs.append(run)
                got = run["quality"]
                print(
                    f"  {dataset} / {strategy} seed {seed}: "
                    + ", ".join(
                        f"{COLUMNS[name]} {got[name]['value']:.4f} (data {got[name]['data']:.4f})"
                        for name in COLUMNS
                        if name in got
                    )
                    + f"; trained in {run['train_seconds']:.1f} s "
                    f"[{time.perf_counter() - start:.0f} s]",
                    flush=True,
                )
            results[(dataset, strategy)] = runs
            lines.append(table_row(dataset, strategy, runs))
            print(lines[-1], flush=True)
    lines += ["", f"Wall time {time.perf_counter() - start:.0f} s."]
    print(lines[-1])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    details = args.output.with_suffix(".json")
    details.write_text(
        json.dumps(
            {
                "command": command,
                "runs": [
                    {"dataset": dataset, "strategy": strategy, **run}
                    for (dataset, strategy), runs in results.items()
                    for run in runs
                ],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.output} and {details}")
    return results


if __name__ == "__main__":
    main()
