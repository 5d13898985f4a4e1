"""x-, eps- and v-prediction on a 2-D manifold embedded in R^D (the "JiT" observation).

Li & He, "Back to Basics: Let Denoising Generative Models Denoise" (JiT, 2025) observe that when
the data lie on a low-dimensional manifold of a high-dimensional space, a network that predicts
the clean data x keeps working as the dimension grows, while networks that predict the noise eps
or the velocity v = x - eps degrade: x lives on the manifold, eps and v fill all of R^D, and a
network narrower than D cannot carry D dimensions of noise through its hidden layers.

This script reproduces that on a toy scale. For every ambient dimension D (``--dims``) and
prediction in {x, eps, v}, it trains flow matching on the linear path with an MLP on a 2-D
dataset (``--dataset``, default the swiss roll) embedded in a fixed random plane of R^D
(``dataset.ambient_dim = D``, see ``jax_gen.data``). Every cell regresses the same quantity, the
velocity the network's output implies (``loss_target="v"``), so only the output's
parameterization differs and the final losses are comparable. It then samples with the EMA
weights (Euler, ``--sampling-steps``) and reports:

- ``SW2 D``: sliced Wasserstein-2 from the samples to fresh data in R^D, beside its floor (the
  same distance between two fresh draws of the data);
- ``SW2 plane``: the same in the 2-D plane, after projecting the samples onto it (``to_plane``),
  i.e. how good the shape is regardless of what happens off the plane;
- ``off-plane``: the mean norm of the samples' component orthogonal to the plane (0 for the
  data; about sqrt(D - 2) for the Gaussian source), a direct measure of "stays on the manifold";
- ``v-loss x D``: the training loss (mean squared error per coordinate) over the last 10% of
  steps, times D: the squared error per point. Off the plane z determines the velocity exactly
  (x has no off-plane part, so v_perp = -eps_perp = -z_perp / (1 - t)), so its irreducible part
  is the same for every D and every prediction; and the training time.

**The singular ends of a v-loss.** The velocity implied by an x-prediction on the linear path is
v = (x_hat - z) / (1 - t), so its loss is ||x_hat - x||^2 / (1 - t)^2, a weight unbounded as
t -> 1; the one implied by an eps-prediction is (z - eps_hat) / t, unbounded as t -> 0, which is
where sampling starts. Both are capped only by the library's time clip (t in [1e-3, 1 - 1e-3], a
weight of at most 1e6), and gradient clipping (``OptimizerConfig.max_grad_norm``) keeps the
updates bounded. By default the script runs the library as it is and reports what it measures.
``--clip-min s`` (default 0: off) applies JiT's remedy without touching the library: it swaps in
x- and eps-parameterizations that divide by max(1 - t, s) and max(t, s) respectively, in training
and in sampling alike (JiT clips 1 - t at 0.05); v-prediction divides by nothing and is unchanged.
In sampling, the clip slows the last steps of x-prediction: once 1 - t < s the off-plane noise
shrinks by 1 - dt / s per step instead of vanishing, which leaves (with s = 0.05 and 50 Euler
steps) 0.0144 sqrt(D - 2) off the plane even for a perfect network.

    uv run scripts/experiment_ambient_dim.py            # the whole grid, ~10 min on 2 cores
    uv run scripts/experiment_ambient_dim.py --dims 2 32 --steps 1000
    uv run scripts/experiment_ambient_dim.py --clip-min 0.05   # JiT's clip of 1 - t
"""

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jax_gen import config
from jax_gen.config import (
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    MLPConfig,
    OptimizerConfig,
    TrainConfig,
)
from jax_gen.data import data_dim, from_plane, get_batch, is_planar, to_plane
from jax_gen.engine import fit, run_keys
from jax_gen.metrics import distance_and_floor
from jax_gen.parameterization import Parameterization
from jax_gen.sampling import sample
from jax_gen.strategies import create_strategy

# The 2-D datasets: digits are 64-D images, with no plane to plot or compare in.
DATASETS = {name: cls() for name, cls in config.DATASETS.items() if is_planar(cls())}
PREDICTIONS = ("x", "eps", "v")
DEFAULT_DIMS = (2, 8, 32, 128, 512)
HEADER = (
    "| D | prediction | SW2 D | floor D | SW2 plane | floor plane | off-plane | v-loss x D "
    "| train s |"
)
RULE = "|---|---|---|---|---|---|---|---|---|"


class ClippedXPrediction(Parameterization):
    """x-prediction whose implied eps divides by max(sigma, minimum) (``--clip-min``).

    On the linear path the implied velocity becomes (x_hat - z) / max(1 - t, minimum), which caps
    the v-loss weight 1 / (1 - t)^2 at 1 / minimum^2 (JiT clips 1 - t at 0.05).
    """

    minimum: float = eqx.field(static=True)

    def target(self, x, eps, c):
        return x

    def to_x_eps(self, prediction, z, c):
        return prediction, (z - c.alpha * prediction) / jnp.maximum(c.sigma, self.minimum)


class ClippedEpsPrediction(Parameterization):
    """eps-prediction whose implied x divides by max(alpha, minimum) (``--clip-min``).

    The mirror image of :class:`ClippedXPrediction` at the noise end: on the linear path the
    implied velocity is (z - eps_hat) / t, singular at t = 0, where sampling starts.
    """

    minimum: float = eqx.field(static=True)

    def target(self, x, eps, c):
        return eps

    def to_x_eps(self, prediction, z, c):
        return (z - c.sigma * prediction) / jnp.maximum(c.alpha, self.minimum), prediction


CLIPPED = {"x": ClippedXPrediction, "eps": ClippedEpsPrediction}


@dataclasses.dataclass(frozen=True)
class Cell:
    """What one (D, prediction) run measured."""

    dim: int
    prediction: str
    sw_ambient: float
    floor_ambient: float
    sw_plane: float
    floor_plane: float
    off_plane: float
    loss: float
    """Mean training loss over the last 10% of steps, times D (squared error per point)."""
    seconds: float
    plane_samples: np.ndarray

    def row(self) -> str:
        return (
            f"| {self.dim} | {self.prediction} | {self.sw_ambient:.3f} | {self.floor_ambient:.3f} "
            f"| {self.sw_plane:.3f} | {self.floor_plane:.3f} | {self.off_plane:.3f} "
            f"| {self.loss:.3f} | {self.seconds:.1f} |"
        )


def strategy_config(prediction: str, sampling_steps: int) -> FlowMatchingStrategyConfig:
    """Flow matching with a v-loss, sampled with ``sampling_steps`` Euler steps."""
    return FlowMatchingStrategyConfig(
        num_transport_steps=sampling_steps, prediction=prediction, loss_target="v"
    )


def make_strategy(prediction: str, sampling_steps: int, clip_min: float):
    """Flow matching with a v-loss; the x / eps division optionally clipped (``--clip-min``)."""
    strategy = create_strategy(strategy_config(prediction, sampling_steps))
    if clip_min > 0 and prediction in CLIPPED:
        clipped = CLIPPED[prediction](minimum=clip_min)
        strategy = eqx.tree_at(lambda s: s.parameterization, strategy, clipped)
    return strategy


def run_cell(
    dataset_cfg,
    prediction: str,
    model_cfg: MLPConfig,
    train_cfg: TrainConfig,
    optimizer_cfg: OptimizerConfig,
    *,
    sampling_steps: int,
    num_samples: int,
    repeats: int,
    clip_min: float,
) -> Cell:
    """Trains one model (seed ``train_cfg.seed``), samples it with the EMA weights and measures
    the samples."""
    dim = data_dim(dataset_cfg)
    flat_cfg = dataclasses.replace(dataset_cfg, ambient_dim=2)
    strategy = make_strategy(prediction, sampling_steps, clip_min)
    cfg = ExperimentConfig(
        strategy_config(prediction, sampling_steps),
        model_cfg,
        dataset_cfg,
        optimizer_cfg,
        train_cfg,
    )
    keys = run_keys(train_cfg.seed)

    start = time.perf_counter()
    # The clipped parameterizations are not in the config: the strategy is given. A diverging
    # cell is measured (nan) rather than stopping the grid.
    fitted = fit(cfg, strategy=strategy, check_finite=False)  # returns with the losses on host
    seconds = time.perf_counter() - start

    samples = sample(strategy, fitted.ema_model, keys.sample, num_samples, dim).samples
    plane = to_plane(samples, dataset_cfg)
    off_plane = float(jnp.mean(jnp.linalg.norm(samples - from_plane(plane, dataset_cfg), axis=1)))
    ambient_key, plane_key = jax.random.split(keys.evaluate)
    sw_ambient, floor_ambient = distance_and_floor(
        samples, lambda k, n: get_batch(k, dataset_cfg, n), ambient_key, repeats
    )
    # The plane coordinates of the embedded data are the 2-D data itself (to float32 rounding).
    sw_plane, floor_plane = distance_and_floor(
        plane, lambda k, n: get_batch(k, flat_cfg, n), plane_key, repeats
    )
    tail = max(1, len(fitted.losses) // 10)
    return Cell(
        dim=dim,
        prediction=prediction,
        sw_ambient=sw_ambient,
        floor_ambient=floor_ambient,
        sw_plane=sw_plane,
        floor_plane=floor_plane,
        off_plane=off_plane,
        loss=dim * float(np.mean(fitted.losses[-tail:])),
        seconds=seconds,
        plane_samples=np.asarray(plane),
    )


def plot_grid(
    cells: Sequence[Cell], data: np.ndarray, dims: Sequence[int], path: Path, max_points: int
) -> None:
    """Rows D, columns prediction: samples in the plane (coloured) over fresh data (grey)."""
    by_key = {(cell.dim, cell.prediction): cell for cell in cells}
    rows, cols = len(dims), len(PREDICTIONS)
    fig = Figure(figsize=(2.6 * cols, 2.6 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    half_width = 1.15 * float(np.max(np.abs(data)))
    for i, dim in enumerate(dims):
        for j, prediction in enumerate(PREDICTIONS):
            ax = axes[i, j]
            ax.scatter(data[:, 0], data[:, 1], s=1, c="0.75", alpha=0.4, linewidths=0)
            cell = by_key.get((dim, prediction))
            if cell is not None:
                points = cell.plane_samples[:max_points]
                ax.scatter(points[:, 0], points[:, 1], s=1, c="C0", alpha=0.6, linewidths=0)
                ax.text(
                    0.02,
                    0.02,
                    f"plane {cell.sw_plane / cell.floor_plane:.1f}x floor\n"
                    f"off-plane {cell.off_plane:.2f}",
                    transform=ax.transAxes,
                    fontsize=7,
                    va="bottom",
                )
            ax.set_xlim(-half_width, half_width)
            ax.set_ylim(-half_width, half_width)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{prediction}-prediction", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"D = {dim}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dims",
        type=int,
        nargs="+",
        default=list(DEFAULT_DIMS),
        help="ambient dimensions D (each >= 2)",
    )
    parser.add_argument(
        "--predictions",
        nargs="+",
        default=list(PREDICTIONS),
        choices=PREDICTIONS,
        help="network outputs to compare",
    )
    parser.add_argument(
        "--dataset", default="swiss-roll", choices=list(DATASETS), help="the 2-D data"
    )
    parser.add_argument("--steps", type=int, default=10000, help="training steps per cell")
    parser.add_argument("--batch", type=int, default=256, help="training batch size")
    parser.add_argument("--width", type=int, default=128, help="MLP hidden width")
    parser.add_argument("--depth", type=int, default=4, help="MLP hidden layers")
    parser.add_argument(
        "--lr", type=float, default=OptimizerConfig().learning_rate, help="peak learning rate"
    )
    parser.add_argument("--sampling-steps", type=int, default=50, help="Euler steps")
    parser.add_argument(
        "--num-samples",
        type=int,
        default=4000,
        help="samples per cell (and fresh data per distance)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="fresh data draws per distance")
    parser.add_argument(
        "--clip-min",
        type=float,
        default=0.0,
        help="x- (eps-) prediction divides by max(1 - t, this) (max(t, this)) instead of "
        "1 - t (t); 0 keeps the library's parameterizations; JiT uses 0.05",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every cell's keys")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("outputs/experiment_ambient_dim.md"),
        help="the markdown table",
    )
    parser.add_argument(
        "--figure",
        type=Path,
        default=Path("outputs/experiment_ambient_dim.png"),
        help="the grid of samples (rows D, columns prediction)",
    )
    args = parser.parse_args(argv)
    if any(dim < 2 for dim in args.dims):
        parser.error(f"--dims {args.dims}: every dimension must be >= 2")
    if args.clip_min < 0:
        parser.error(f"--clip-min {args.clip_min}: must be non-negative")
    return args


def main(argv: Sequence[str] | None = None) -> list[Cell]:
    """Runs the grid, printing the table as it goes; writes the table and the figure."""
    args = parse_args(argv)
    base_cfg = DATASETS[args.dataset]
    model_cfg = MLPConfig(hidden_dim=args.width, depth=args.depth)
    train_cfg = TrainConfig(
        batch_size=args.batch, train_steps=args.steps, log_interval=args.steps, seed=args.seed
    )
    optimizer_cfg = dataclasses.replace(
        OptimizerConfig(),
        learning_rate=args.lr,
        warmup_steps=min(OptimizerConfig().warmup_steps, args.steps // 10),
    )
    lines = [
        f"Flow matching (linear path, v-loss, Euler {args.sampling_steps} steps, EMA samples) on "
        f"{args.dataset} embedded in a random plane of R^D; MLP {args.width}x{args.depth}, "
        f"{args.steps} steps, batch {args.batch}, lr {args.lr:g}, seed {args.seed}"
        + (f", clip-min {args.clip_min:g}" if args.clip_min > 0 else "")
        + f". Sliced W2 on {args.num_samples} points, mean over {args.repeats} fresh data "
        "draws, beside its floor (two fresh draws); off-plane = mean norm of the samples' "
        "component orthogonal to the plane (data: 0, source noise: ~sqrt(D - 2)).",
        "",
        HEADER,
        RULE,
    ]
    print("\n".join(lines), flush=True)
    cells = []
    start = time.perf_counter()
    for dim in args.dims:
        dataset_cfg = dataclasses.replace(base_cfg, ambient_dim=dim)
        for prediction in args.predictions:
            cell = run_cell(
                dataset_cfg,
                prediction,
                model_cfg,
                train_cfg,
                optimizer_cfg,
                sampling_steps=args.sampling_steps,
                num_samples=args.num_samples,
                repeats=args.repeats,
                clip_min=args.clip_min,
            )
            print(cell.row(), flush=True)
            lines.append(cell.row())
            cells.append(cell)
    total = time.perf_counter() - start
    lines += ["", f"Wall time {total:.0f} s."]
    print(lines[-1])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    data = np.asarray(get_batch(jax.random.key(args.seed + 1), base_cfg, args.num_samples))
    plot_grid(cells, data, args.dims, args.figure, max_points=args.num_samples)
    print(f"wrote {args.output} and {args.figure}")
    return cells


if __name__ == "__main__":
    main()
