"""The published 2-D flow-matching yardsticks, reproduced: four transports, three couplings.

Tong et al. ("Improving and generalizing flow-based generative models with minibatch optimal
transport", TMLR 2024, and its torchcfm library) compare independent pairs (I-CFM), minibatch
optimal transport (OT-CFM) and the Schrodinger bridge (SB-CFM) on N -> 8 Gaussians,
8 Gaussians -> moons, N -> moons and N -> S-curve. For every task, coupling and seed this
script trains flow matching with :func:`jax_gen.engine.fit` under one of two recipes:

- ``torchcfm``: their 2-D protocol as far as this library can say it: an MLP of width 64 and
  3 hidden layers with SELU (on the library's sinusoidal time embedding, no Fourier features,
  where torchcfm concatenates t to x), batch 512, path noise sigma = 0.1 for every coupling
  (constant for I-CFM and OT-CFM, the Brownian bridge for SB-CFM), AdamW at a constant 1e-3
  with weight decay 1e-5, no weight averaging, ``--steps`` steps (their runner trains 1000
  epochs of 10,000 points at batch 512: about 20,000 steps);
- ``default``: ``scripts/main.py train strategy:flow-matching``'s config (MLP 128 x 4 with GELU and
  Fourier features, batch 1024, 5,000 steps, EMA 0.999, warmup and cosine decay), with
  sigma = 0 for independent and OT pairs and 0.1 for the bridge.

and measures, on ``--num-points`` points against fresh points of the target (the evaluation
key's stream, never a training batch):

- **W2 (adaptive)**: the exact 2-Wasserstein distance (:func:`jax_gen.metrics.wasserstein2`)
  of the samples of the adaptive solver (diffrax Tsit5, rtol = atol = 1e-5 as torchcfm's);
- **W2 (1 Euler step)**: the same for one Euler step from the source;
- **NPE**: the normalised path energy |E int |v|^2 dt - W2^2(source, target)| / W2^2(source,
  target) (:func:`jax_gen.metrics.normalized_path_energy`), the energy taken along 100 Euler
  steps and W2^2(source, target) between as many fresh points of each;

each the mean over ``--seeds`` with the standard deviation over seeds, beside the data's own
floor (the W2 between two fresh draws of the target, which a perfect sampler also shows at this
number of points) and the published values where they exist (as read from the papers; other
cells are left empty). The datasets are the library's: ``eight-gaussians`` and ``s-curve`` are
torchcfm's definitions; ``moon`` is the library's two moons (scale 3, noise 0.05), where
torchcfm's notebooks use torchdyn's moons times 3 and its runner scikit-learn's times 2.

    uv run scripts/benchmark_yardsticks.py                        # the whole protocol
    uv run scripts/benchmark_yardsticks.py --steps 2000 --seeds 0 1 2 --recipes torchcfm
    uv run scripts/benchmark_yardsticks.py --table-only     # the tables of every run so far

Writes ``<out>.md`` (a table per recipe) and ``<out>.json`` (every run's figures).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jax_gen.config import (
    EightGaussiansConfig,
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    MLPConfig,
    MoonConfig,
    NormalSourceConfig,
    OptimizerConfig,
    SamplerConfig,
    SCurveConfig,
    TrainConfig,
    to_dict,
)
from jax_gen.data import get_batch
from jax_gen.engine import fit, run_keys
from jax_gen.metrics import normalized_path_energy, path_energy, wasserstein2
from jax_gen.sampling import sample
from jax_gen.strategies import create_strategy

TASKS = {
    "N -> 8 Gaussians": (NormalSourceConfig(), EightGaussiansConfig()),
    "8 Gaussians -> moons": (EightGaussiansConfig(), MoonConfig()),
    "N -> moons": (NormalSourceConfig(), MoonConfig()),
    "N -> S-curve": (NormalSourceConfig(), SCurveConfig()),
}
COUPLINGS = {"independent": "I-CFM", "ot": "OT-CFM", "sb": "SB-CFM"}
RECIPES = ("torchcfm", "default")
TORCHCFM_SIGMA = 0.1
ENERGY_STEPS = 100

PUBLISHED = {
    # (task, coupling, figure): value, source
    ("8 Gaussians -> moons", "independent", "w2_euler1"): (6.2, "C2OT Fig. 1"),
    ("8 Gaussians -> moons", "ot", "w2_euler1"): (0.07, "C2OT Fig. 1"),
    ("8 Gaussians -> moons", "independent", "npe"): (2.74, "Tong et al. Table 2, moons -> 8G"),
    ("8 Gaussians -> moons", "ot", "npe"): (0.053, "Tong et al. Table 2, moons -> 8G"),
}
"""Published values as read from the papers: C2OT is arXiv 2503.10636; Tong et al.'s Table 2
reports the reverse direction, moons -> 8 Gaussians, on its own scaling of both."""


def experiment(recipe: str, task: str, coupling: str, steps: int | None) -> ExperimentConfig:
    source, target = TASKS[task]
    if recipe == "torchcfm":
        strategy = FlowMatchingStrategyConfig(
            coupling=coupling, sigma=TORCHCFM_SIGMA, source=source
        )
        return ExperimentConfig(
            strategy=strategy,
            model=MLPConfig(hidden_dim=64, depth=3, activation="selu", fourier_features=0),
            dataset=target,
            optimizer=OptimizerConfig(
                learning_rate=1e-3,
                warmup_steps=0,
                final_lr_fraction=1.0,
                max_grad_norm=1e6,
                weight_decay=1e-5,
            ),
            train=TrainConfig(
                batch_size=512, train_steps=steps or 20_000, log_interval=500, ema_decay=0.0
            ),
        )
    sigma = TORCHCFM_SIGMA if coupling == "sb" else 0.0
    strategy = FlowMatchingStrategyConfig(coupling=coupling, sigma=sigma, source=source)
    train = TrainConfig() if steps is None else TrainConfig(train_steps=steps)
    return ExperimentConfig(strategy=strategy, dataset=target, train=train)


def measure(config: ExperimentConfig, seed: int, num_points: int) -> dict:
    start = time.perf_counter()
    fitted = fit(config, seed=seed)
    seconds = time.perf_counter() - start
    strategy = create_strategy(fitted.config.strategy)
    model, dim = fitted.ema_model, fitted.data_dim
    keys = run_keys(seed)
    data_key, floor_key, source_key = jax.random.split(keys.evaluate, 3)
    data = np.asarray(get_batch(data_key, config.dataset, num_points))
    adaptive = SamplerConfig(sampler="adaptive", rtol=1e-5, atol=1e-5)
    one_step = SamplerConfig(sampler="euler", num_sampling_steps=1)
    euler = SamplerConfig(sampler="euler", num_sampling_steps=ENERGY_STEPS)
    samples = np.asarray(sample(strategy, model, keys.sample, num_points, dim, adaptive).samples)
    jumped = np.asarray(sample(strategy, model, keys.sample, num_points, dim, one_step).samples)
    path = sample(strategy, model, keys.sample, num_points, dim, euler, keep_trajectory=True)
    times = np.linspace(0.0, 1.0, ENERGY_STEPS + 1)
    energy = path_energy(np.asarray(path.trajectory), times)
    source = np.asarray(strategy.sample_from_source_distribution(source_key, num_points, dim))
    transport = wasserstein2(source, np.asarray(get_batch(floor_key, config.dataset, num_points)))
    return {
        "seed": seed,
        "train_seconds": seconds,
        "w2_adaptive": wasserstein2(samples, data),
        "w2_euler1": wasserstein2(jumped, data),
        "npe": normalized_path_energy(energy, transport),
        "path_energy": energy,
        "w2_source_target": transport,
        "w2_floor": wasserstein2(
            np.asarray(get_batch(floor_key, config.dataset, num_points)), data
        ),
    }


def cell(values: list[float]) -> str:
    values = np.asarray(values)
    if values.size == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def table(results: dict, configs: dict, recipe: str, num_points: int) -> str:
    rows = [
        f"### Recipe `{recipe}` (W2 on {num_points:,} points; mean ± SD over seeds)",
        "",
        "| task | coupling | steps | seeds | W2 adaptive | W2 1 Euler step | NPE | data floor W2 "
        "| train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        for coupling, label in COUPLINGS.items():
            runs = results.get(f"{recipe}/{task}/{coupling}")
            if not runs:
                continue
            figures = []
            for figure in ("w2_adaptive", "w2_euler1", "npe"):
                text = cell([r[figure] for r in runs])
                published = PUBLISHED.get((task, coupling, figure))
                if published is not None and recipe == "torchcfm":
                    text += f" (published {published[0]:g})"
                figures.append(text)
            floor = cell([r["w2_floor"] for r in runs])
            seconds = np.mean([r["train_seconds"] for r in runs])
            steps = configs[f"{recipe}/{task}/{coupling}"]["train"]["train_steps"]
            rows.append(
                f"| {task} | {label} | {steps:,} | {len(runs)} | {' | '.join(figures)} | {floor} "
                f"| {seconds:.0f} |"
            )
    return "\n".join(rows)


def record(
    json_path: Path, name: str, config: dict, figures: dict, num_points: int
) -> tuple[dict, dict]:
    """Adds one seed's figures to ``json_path`` as soon as they are measured.

    The file is read again first, so runs of other tasks, couplings or seeds in other processes
    are kept; the seeds of a run under another config (another number of steps, say) are
    dropped, and a seed run again replaces its earlier figures. Returns (runs, configs).
    """
    results: dict[str, list[dict]] = {}
    configs: dict[str, dict] = {}
    if json_path.exists():
        saved = json.loads(json_path.read_text())
        results, configs = saved["runs"], saved["configs"]
    kept = results.get(name, []) if configs.get(name) == config else []
    runs = [r for r in kept if r["seed"] != figures["seed"]] + [figures]
    results[name], configs[name] = sorted(runs, key=lambda r: r["seed"]), config
    json_path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(
        {
            "command": " ".join(sys.argv),
            "num_points": num_points,
            "configs": configs,
            "runs": results,
        },
        indent=1,
    )
    partial = json_path.with_suffix(".json.partial")
    partial.write_text(text)
    partial.replace(json_path)
    return results, configs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--couplings", nargs="+", choices=list(COUPLINGS), default=list(COUPLINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=None, help="training steps (recipe's own)")
    parser.add_argument("--num-points", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/yardsticks"))
    parser.add_argument(
        "--table-only", action="store_true", help="rewrite <out>.md from <out>.json, run nothing"
    )
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {}
    configs: dict[str, dict] = {}
    json_path = args.out.with_suffix(".json")
    if json_path.exists():  # a run for other tasks or couplings adds to the same files
        saved = json.loads(json_path.read_text())
        results, configs = saved["runs"], saved["configs"]
        if args.table_only:
            args.num_points = saved["num_points"]
        elif saved["num_points"] != args.num_points:
            parser.error(
                f"{json_path} holds W2s on {saved['num_points']} points, not {args.num_points}: "
                "pass --out for a new file"
            )
    for recipe in [] if args.table_only else args.recipes:
        for task in args.tasks:
            for coupling in args.couplings:
                name = f"{recipe}/{task}/{coupling}"
                config = experiment(recipe, task, coupling, args.steps)
                for seed in args.seeds:
                    figures = measure(config, seed, args.num_points)
                    print(
                        f"{name} seed {seed}: "
                        + ", ".join(f"{k} {v:.4g}" for k, v in figures.items() if k != "seed"),
                        flush=True,
                    )
                    results, configs = record(
                        json_path, name, to_dict(config), figures, args.num_points
                    )
    recipes = [r for r in args.recipes if any(name.startswith(f"{r}/") for name in results)]
    text = "\n\n".join(table(results, configs, r, args.num_points) for r in recipes)
    title = "# 2-D flow-matching yardsticks (`scripts/benchmark_yardsticks.py`)\n\n"
    args.out.with_suffix(".md").write_text(title + text + "\n")
    print(text)


if __name__ == "__main__":
    main()
