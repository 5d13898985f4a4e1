"""The command line: ``train``, ``generate``, ``animate``, ``evaluate`` and ``plot-field``.

The only module that prints, seeds and touches paths. Every bad input ends in one line on
stderr and exit code 2, before any output file is touched.

    jax-gen train strategy:ddpm model:mlp dataset:cat --train-steps 3000
    jax-gen generate --model-path outputs/cat_ddpm.eqx --num-samples 2000
    jax-gen animate --model-path outputs/cat_ddpm.eqx --fps 30
    jax-gen evaluate --model-path outputs/cat_ddpm.eqx --steps 25 50 100
    jax-gen plot-field --model-path outputs/cat_ddpm.eqx --times 0 0.5 0.9 1
"""

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import jax
import numpy as np
import tyro
from tqdm import tqdm

from jax_gen import animation, checkpoint, plots, recording
from jax_gen.config import (
    DATASETS,
    MODELS,
    STRATEGIES,
    CatConfig,
    DDPMStrategyConfig,
    ExperimentConfig,
    MLPConfig,
    OptimizerConfig,
    SamplerConfig,
    TrainConfig,
    deferred_validation,
    name_of,
    validate_all,
)
from jax_gen.data import data_dim as dataset_dim
from jax_gen.data import from_plane, get_batch, image_shape, is_planar
from jax_gen.engine import Interrupted, check_dataset, fit, key_stream, run_keys
from jax_gen.evaluation import (
    METRICS,
    compare_to_data,
    density_panels,
    evaluate,
    likelihood_keys,
    sampling_keys,
    sampling_labels,
    summarize_fit,
)
from jax_gen.fields import field_views, plane
from jax_gen.files import atomic_output, check_output_path
from jax_gen.metrics import format_report
from jax_gen.parallel import check_batch_size, data_mesh, num_devices
from jax_gen.sampling import sample
from jax_gen.strategies import create_strategy
from jax_gen.train import check_conditioning


def _choice(registry: dict[str, type]) -> Any:
    """A union of configs that tyro turns into subcommands named by the registry."""
    annotated = [Annotated[cls, tyro.conf.subcommand(name)] for name, cls in registry.items()]
    out = annotated[0]
    for member in annotated[1:]:
        out = out | member
    return out


StrategyChoice = _choice(STRATEGIES)
ModelChoice = _choice(MODELS)
DatasetChoice = _choice(DATASETS)


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')}={value!r} must be positive")


@dataclass(frozen=True)
class RerunOptions:
    """Rerun recording of training losses, sample snapshots and trajectories."""

    rerun: bool = False
    """Log to Rerun: saved as a .rrd recording (see --rerun-path) or shown with --rerun-spawn."""
    rerun_path: Path | None = None
    """Where to save the recording (default: beside the checkpoint, with suffix .rrd)."""
    rerun_spawn: bool = False
    """Open the Rerun viewer instead of saving (falls back to saving where there is none)."""


@dataclass(frozen=True)
class TrainCommand:
    """Train a model; writes a checkpoint, its loss curve and a sample plot beside it."""

    strategy: StrategyChoice = DDPMStrategyConfig()
    model: ModelChoice = MLPConfig()
    dataset: DatasetChoice = CatConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    train: Annotated[TrainConfig, tyro.conf.arg(name="")] = TrainConfig()
    model_path: Path | None = None
    """Checkpoint to write (default: outputs/<dataset>_<strategy>.eqx)."""
    checkpoint_every: int = 0
    """Also save the checkpoint every this many steps (0: at the end and on Ctrl-C only)."""
    resume: bool = False
    """Continue the run saved at --model-path (its config is used; contradicting flags fail)."""
    num_samples: int = 10000
    """Points generated after training for the sample plot and the quality figures (measured
    against as many fresh data points)."""
    num_devices: int | None = None
    """Devices to split each batch over, data parallel (default: all; the batch size must be a
    multiple). Not stored: the same run on 1 or n devices gives the same model."""
    distributed: bool = False
    """Call jax.distributed.initialize() first, to train on the devices of several hosts (run
    the same command on each; process 0 writes the files). On SLURM, Open MPI, Kubernetes or
    Cloud TPU it finds the other processes itself; elsewhere give the three options below."""
    coordinator_address: str | None = None
    """With --distributed: host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS or the
    cluster's)."""
    num_processes: int | None = None
    """With --distributed: how many processes (hosts) take part."""
    process_id: int | None = None
    """With --distributed: this process's index, 0 .. num_processes - 1."""
    rerun: Annotated[RerunOptions, tyro.conf.arg(name="")] = RerunOptions()

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid option."""
        _positive(self, "num_samples")
        if self.num_devices is not None:
            _positive(self, "num_devices")
        given = [self.coordinator_address, self.num_processes, self.process_id]
        if not self.distributed and any(option is not None for option in given):
            raise ValueError(
                "--coordinator-address, --num-processes and --process-id need --distributed"
            )
        if self.num_processes is not None:
            _positive(self, "num_processes")
            if self.process_id is not None and not 0 <= self.process_id < self.num_processes:
                raise ValueError(
                    f"--process-id={self.process_id} must be in 0 .. {self.num_processes - 1}"
                )
        if self.checkpoint_every < 0:
            raise ValueError(f"--checkpoint-every={self.checkpoint_every!r} must be >= 0")


@dataclass(frozen=True)
class SamplingOptions:
    """Options shared by generate and animate."""

    model_path: Path
    """Checkpoint written by `train`; it carries the strategy, model and dataset config."""
    seed: int = 0
    """Seed of the noise (same seed, same points)."""
    sampler: Annotated[SamplerConfig, tyro.conf.arg(name="")] = SamplerConfig()
    condition: int | None = None
    """Class to generate, for a model trained with --conditional (default: each point's class
    drawn with the data's class frequencies)."""
    use_ema: bool = True
    """Sample with the exponential moving average of the weights."""
    strategy: StrategyChoice | None = None
    """Optional: must agree with the checkpoint (its num-transport-steps sets the steps)."""
    model: ModelChoice | None = None
    """Optional: must agree with the checkpoint."""
    dataset: DatasetChoice | None = None
    """Optional: must agree with the checkpoint."""


@dataclass(frozen=True)
class GenerateCommand:
    """Sample from a trained model; plots the points beside fresh data."""

    sampling: Annotated[SamplingOptions, tyro.conf.arg(name="")]
    num_samples: int = 2000
    """Number of points to generate."""
    output_image_path: Path | None = None
    """PNG of the samples beside fresh data (default: beside the checkpoint, .samples.png)."""
    output_samples_path: Path | None = None
    """Also write the raw points, as .npy or .csv."""
    rerun: Annotated[RerunOptions, tyro.conf.arg(name="")] = RerunOptions()

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid option."""
        _positive(self, "num_samples")
        path = self.output_samples_path
        if path is not None and path.suffix.lower() not in (".npy", ".csv"):
            raise ValueError(f"--output-samples-path {path} must end in .npy or .csv")


@dataclass(frozen=True)
class AnimateCommand:
    """Animate the trajectory from noise (first frame) to samples (last frame) as a GIF."""

    sampling: Annotated[SamplingOptions, tyro.conf.arg(name="")]
    num_samples: int = 1500
    """Number of points to move."""
    output_video_path: Path | None = None
    """GIF to write (default: beside the checkpoint, with suffix .gif)."""
    fps: int = 30
    """Frames per second."""
    max_frames: int = 120
    """At most this many frames, evenly spaced over the trajectory (first and last kept)."""
    rerun: Annotated[RerunOptions, tyro.conf.arg(name="")] = RerunOptions()

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid option."""
        _positive(self, "num_samples", "fps")
        if self.max_frames < 2:
            raise ValueError(f"--max-frames={self.max_frames!r} must be at least 2")


@dataclass(frozen=True)
class EvaluateCommand:
    """Measure a trained model: distances to fresh data beside their floors, NLL, NFE, time."""

    sampling: Annotated[SamplingOptions, tyro.conf.arg(name="")]
    steps: tuple[int, ...] = ()
    """Sampling step counts, one table row each (default: --num-sampling-steps, else the
    strategy's number of transport steps)."""
    num_samples: int = 10000
    """Points generated per row (fresh data draws have the same size)."""
    repeats: int = 3
    """Fresh draws each distance and its floor are averaged over."""
    nll_points: int = 1000
    """Fresh data points whose log-likelihood is computed (0: no NLL and no heat map)."""
    estimator: Literal["exact", "hutchinson"] = "exact"
    """Divergence in the likelihood ODE: the exact Jacobian trace, or Hutchinson's unbiased
    estimate (one Jacobian-vector product per probe; for high ambient dimension)."""
    num_probes: int = 1
    """Hutchinson probes per point."""
    density_resolution: int = 64
    """Cells per side of the density heat map (0: no heat map)."""
    output_json_path: Path | None = None
    """Where to write the figures as JSON (default: beside the checkpoint, .evaluate.json)."""
    output_density_path: Path | None = None
    """Density heat map PNG (default: beside the checkpoint, .density.png)."""

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid option."""
        _positive(self, "num_samples", "repeats", "num_probes")
        for steps in self.steps:
            if not steps > 0:
                raise ValueError(f"--steps {steps} must be positive")
        if self.steps and self.sampling.sampler.num_sampling_steps is not None:
            raise ValueError("give either --steps or --num-sampling-steps, not both")
        for name in ("nll_points", "density_resolution"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')}={getattr(self, name)!r} must be >= 0")


@dataclass(frozen=True)
class PlotFieldCommand:
    """Draw the learned field as arrows over a grid, beside the noisy marginal, at several t."""

    model_path: Path
    """Checkpoint written by `train`."""
    times: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
    """Times of the PNG's panels, in [0, 1] (0 the noise, 1 the data)."""
    field: Literal["velocity", "score"] = "velocity"
    """`velocity`: the probability-flow velocity dz/dt every sampler integrates; `score`: the
    score grad log p_t(z)."""
    grid_size: int = 21
    """Arrows per side of the grid."""
    num_points: int = 1000
    """Fresh data points noised to each time t for the grey marginal."""
    gif_frames: int = 41
    """Frames of the GIF, at times evenly spaced over [0, 1]."""
    fps: int = 10
    """Frames per second of the GIF."""
    seed: int = 0
    """Seed of the marginal's data and noise."""
    use_ema: bool = True
    """Draw the exponential moving average of the weights."""
    output_image_path: Path | None = None
    """PNG of the panels (default: beside the checkpoint, .field.png)."""
    output_video_path: Path | None = None
    """GIF over t (default: beside the checkpoint, .field.gif)."""

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid option."""
        _positive(self, "grid_size", "num_points", "fps")
        if not self.times:
            raise ValueError("--times needs at least one time")
        for t in self.times:
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"--times {t} must be in [0, 1]")
        if self.gif_frames < 2:
            raise ValueError(f"--gif-frames={self.gif_frames!r} must be at least 2")


Command = (
    Annotated[TrainCommand, tyro.conf.subcommand("train")]
    | Annotated[GenerateCommand, tyro.conf.subcommand("generate")]
    | Annotated[AnimateCommand, tyro.conf.subcommand("animate")]
    | Annotated[EvaluateCommand, tyro.conf.subcommand("evaluate")]
    | Annotated[PlotFieldCommand, tyro.conf.subcommand("plot-field")]
)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def say(message: str) -> None:
    if jax.process_index() == 0:  # several hosts run one training: one of them reports
        tqdm.write(message)


def default_model_path(cfg: ExperimentConfig) -> Path:
    return Path("outputs") / f"{name_of(cfg.dataset)}_{name_of(cfg.strategy)}.eqx"


def beside(model_path: Path, suffix: str) -> Path:
    """outputs/cat_ddpm.eqx -> outputs/cat_ddpm<suffix>."""
    return model_path.with_name(model_path.stem + suffix)


def check_agrees(given: Any, default: Any, stored: Any, group: str, ignore=()) -> None:
    """Raises ``ValueError`` if flags the user set contradict the checkpoint's config.

    A field counts as set when it differs from the class default; a different class (e.g.
    ``model:resnet`` for an MLP checkpoint) always contradicts.
    """
    if given is None or given == default:
        return
    if type(given) is not type(stored):
        raise ValueError(
            f"{group}:{name_of(given)} contradicts the checkpoint's {group}:{name_of(stored)}"
        )
    class_default = type(given)()
    for field in dataclasses.fields(given):
        if field.name in ignore:
            continue
        value, stored_value = getattr(given, field.name), getattr(stored, field.name)
        if value != getattr(class_default, field.name) and value != stored_value:
            flag = f"--{group}.{field.name.replace('_', '-')}"
            raise ValueError(
                f"{flag}={value!r} contradicts the checkpoint's {field.name}={stored_value!r}"
            )


def plot_coordinates(points: Any, dataset: Any) -> np.ndarray:
    """The 2-D coordinates points of shape (..., D) are drawn at: their plane for 2-D data,
    else (a points file with D > 2 columns) their first two coordinates."""
    if is_planar(dataset):
        return plane(points, dataset)
    return np.asarray(points)[..., :2]


def plot_title(title: str, dataset: Any) -> str:
    """``title``, noting which coordinates are drawn when the data have no plane."""
    if is_planar(dataset) or image_shape(dataset) is not None:
        return title
    return f"{title} (coordinates 1-2 of {dataset_dim(dataset)})"


def quality_line(distance: float, floor: float) -> str:
    return (
        f"sliced W2 to fresh data {distance:.3f} "
        f"(noise floor {floor:.3f}, ratio {distance / floor:.2f})"
    )


def describe_sampling(
    cfg: ExperimentConfig, sampler: SamplerConfig, nfe: int, condition: int | None = None
) -> str:
    s = cfg.strategy
    name = "" if sampler.sampler == "default" else f", {sampler.sampler} sampler"
    text = f"{name_of(s)}, {s.prediction}-prediction{name}, NFE {nfe}"
    if cfg.train.conditional:
        which = "all classes" if condition is None else f"class {condition}"
        text += f", {which}, guidance {sampler.guidance_scale:g}"
    return text


def save_samples_figure(
    path: Path, samples, data, cfg: ExperimentConfig, title: str, labels=None, data_labels=None
) -> None:
    """Points beside fresh data (see :func:`plot_coordinates`), an image grid (a row per class)
    for images."""
    shape = image_shape(cfg.dataset)
    if shape is None:
        plots.save_samples_png(
            path,
            plot_coordinates(samples, cfg.dataset),
            plot_coordinates(data, cfg.dataset),
            title=plot_title(title, cfg.dataset),
            labels=None if labels is None else np.asarray(labels),
            data_labels=None if data_labels is None else np.asarray(data_labels),
        )
        return
    images, row_labels, rows = np.asarray(samples), None, None
    if labels is not None:
        order = np.argsort(np.asarray(labels), kind="stable")
        images, present = images[order], np.unique(np.asarray(labels))
        rows, row_labels = len(present), [f"class {k}" for k in present]
        per_row = min(int(np.sum(np.asarray(labels) == k)) for k in present)
        images = np.concatenate([images[np.asarray(labels)[order] == k][:per_row] for k in present])
    plots.save_image_grid(path, images, shape, rows=rows, title=title, row_labels=row_labels)


def describe(cfg: ExperimentConfig) -> str:
    s = cfg.strategy
    return f"{name_of(s)}, {s.prediction}-prediction, {s.num_transport_steps} steps"


def open_rerun(options: RerunOptions, model_path: Path, app: str):
    if not options.rerun and not options.rerun_spawn:
        return None
    path = options.rerun_path or beside(model_path, f".{app}.rrd")
    logger = recording.RerunLogger(f"jax_gen_{app}", recording_path=path, spawn=options.rerun_spawn)
    if logger.warning:
        say(logger.warning)
    return logger, path


# ----------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------


def run_train(cmd: TrainCommand) -> None:
    if cmd.distributed:  # before anything touches a device
        jax.distributed.initialize(cmd.coordinator_address, cmd.num_processes, cmd.process_id)
    writer = jax.process_index() == 0  # one process writes the files
    cfg = ExperimentConfig(cmd.strategy, cmd.model, cmd.dataset, cmd.optimizer, cmd.train)
    model_path = cmd.model_path or default_model_path(cfg)
    defaults = TrainCommand()
    saved = None
    if cmd.resume:
        saved = checkpoint.load(model_path)
        for group in ("strategy", "model", "dataset", "optimizer"):
            check_agrees(
                getattr(cmd, group), getattr(defaults, group), getattr(saved.config, group), group
            )
        check_agrees(cmd.train, defaults.train, saved.config.train, "train")
        cfg = saved.config
    data_dim = saved.data_dim if saved else dataset_dim(cfg.dataset)
    loss_path, samples_path = beside(model_path, ".loss.png"), beside(model_path, ".samples.png")
    for path, flag in (
        (model_path, "--model-path"),
        (loss_path, "loss curve"),
        (samples_path, "sample plot"),
    ):
        check_output_path(path, flag)
    check_dataset(cfg.dataset)
    check_conditioning(cfg.dataset, cfg.train)
    mesh = data_mesh(cmd.num_devices)
    check_batch_size(cfg.train.batch_size, mesh)

    keys = run_keys(cfg.train.seed)
    first_step = saved.step if saved else 0
    if saved:
        say(f"resuming {model_path} at step {first_step}/{cfg.train.train_steps}")
    rerun = open_rerun(cmd.rerun, model_path, "train") if writer else None
    devices = num_devices(mesh)
    say(
        f"training {describe(cfg)} on {name_of(cfg.dataset)} for {cfg.train.train_steps} steps"
        + (f" on {devices} devices" if devices > 1 else "")
    )
    start = finish = time.perf_counter()
    bar = tqdm(
        total=cfg.train.train_steps, initial=first_step, unit="step", disable=None, leave=False
    )

    def on_chunk(progress) -> None:
        nonlocal finish
        step, chunk_losses = progress.step, progress.losses
        rate = (step - first_step) / (time.perf_counter() - start)
        bar.update(chunk_losses.size)
        bar.set_postfix(loss=f"{chunk_losses.mean():.4f}", steps_per_s=f"{rate:.0f}")
        say(
            f"step {step:>6}/{cfg.train.train_steps}  "
            f"loss {chunk_losses.mean():.4f}  {rate:.0f} steps/s"
        )
        if rerun:
            rerun[0].log_losses(step - chunk_losses.size, chunk_losses)
        if rerun and is_planar(cfg.dataset):
            snapshot = sample(
                progress.strategy,
                progress.state.ema_model,
                jax.random.fold_in(keys.sample, step),
                500,
                data_dim,
            ).samples
            rerun[0].log_points("train/samples", step, plane(snapshot, cfg.dataset))
        finish = time.perf_counter()

    try:
        state = fit(
            cfg,
            state=saved,
            mesh=mesh,
            on_chunk=on_chunk,
            checkpoint_path=model_path,
            checkpoint_every=cmd.checkpoint_every,
        )
    except Interrupted as interrupt:
        bar.close()
        interrupt.state.save(model_path)
        if rerun:
            rerun[0].close()
        print(
            f"interrupted: saved step {interrupt.state.step} to {model_path}; continue with "
            f"`train --resume --model-path {model_path}`",
            file=sys.stderr,
        )
        sys.exit(130)
    except Exception as err:
        bar.close()
        if rerun:  # an unfinished recording is discarded: an older one at its path stays
            rerun[0].__exit__(type(err), err, err.__traceback__)
        raise
    bar.close()
    elapsed = finish - start
    all_losses = state.losses
    if writer:
        plots.save_loss_curve(
            loss_path, all_losses, title=f"{describe(cfg)} on {name_of(cfg.dataset)}"
        )

    summary = summarize_fit(state, cmd.num_samples)
    found = summary.comparison
    if writer:
        save_samples_figure(
            samples_path,
            summary.samples,
            found.data,
            cfg,
            describe(cfg),
            summary.labels,
            found.data_labels,
        )
    if rerun:
        rerun[0].close()

    trained = state.step - first_step
    say(f"trained {trained} steps in {elapsed:.1f} s ({trained / max(elapsed, 1e-9):.0f} steps/s)")
    if all_losses.size:
        tail = all_losses[-100:]
        say(f"final loss {tail.mean():.4f} (mean of the last {tail.size} steps)")
    say(quality_line(found.distance, found.floor))
    say(format_report(found.support))
    say(f"checkpoint   {model_path}")
    say(f"loss curve   {loss_path}")
    say(f"samples      {samples_path}")
    if rerun:
        say(f"rerun        {rerun[1]}")


# ----------------------------------------------------------------------------------------------
# generate and animate
# ----------------------------------------------------------------------------------------------


def load_for_sampling(options: SamplingOptions):
    """Loads the checkpoint, checks optional flags against it, builds strategy and model."""
    saved = checkpoint.load(options.model_path)
    cfg = saved.config
    check_agrees(options.strategy, None, cfg.strategy, "strategy", ignore=("num_transport_steps",))
    check_agrees(options.model, None, cfg.model, "model")
    check_agrees(options.dataset, None, cfg.dataset, "dataset")
    sampler = options.sampler
    if sampler.num_sampling_steps is None and options.strategy is not None:
        steps = options.strategy.num_transport_steps
        if steps != type(options.strategy)().num_transport_steps:
            sampler = dataclasses.replace(sampler, num_sampling_steps=steps)
    model = saved.state.ema_model if options.use_ema else saved.state.model
    return cfg, create_strategy(cfg.strategy), model, saved.data_dim, sampler


def run_generate(cmd: GenerateCommand) -> None:
    options = cmd.sampling
    image_path = cmd.output_image_path or beside(options.model_path, ".samples.png")
    check_output_path(image_path, "--output-image-path")
    if cmd.output_samples_path is not None:
        check_output_path(cmd.output_samples_path, "--output-samples-path")
    cfg, strategy, model, data_dim, sampler = load_for_sampling(options)
    check_dataset(cfg.dataset)

    keys = sampling_keys(options.seed)
    labels = sampling_labels(cfg, sampler, options.condition, keys.labels, cmd.num_samples)
    start = time.perf_counter()
    result = sample(strategy, model, keys.sample, cmd.num_samples, data_dim, sampler, labels)
    samples, trajectory = np.asarray(result.samples), result.trajectory
    elapsed = time.perf_counter() - start
    title = describe_sampling(cfg, sampler, int(result.nfe), options.condition)
    found = compare_to_data(
        samples,
        cfg,
        data_key=keys.evaluate,
        metric_key=key_stream(keys.evaluate, "metrics"),
        condition=options.condition,
    )
    save_samples_figure(image_path, samples, found.data, cfg, title, labels, found.data_labels)
    if cmd.output_samples_path is not None:
        with atomic_output(cmd.output_samples_path) as tmp:
            if cmd.output_samples_path.suffix.lower() == ".npy":
                with open(tmp, "wb") as f:
                    np.save(f, samples)
            else:
                header = ",".join(f"x{i}" for i in range(samples.shape[1]))
                if samples.shape[1] == 2:
                    header = "x,y"
                np.savetxt(tmp, samples, delimiter=",", header=header, comments="")
    rerun = open_rerun(cmd.rerun, options.model_path, "generate")
    if rerun and is_planar(cfg.dataset):
        rerun[0].log_trajectory(plane(trajectory, cfg.dataset))
        rerun[0].close()

    say(f"generated {cmd.num_samples} points with {title} in {elapsed:.2f} s")
    say(quality_line(found.distance, found.floor))
    say(format_report(found.support))
    say(f"samples plot {image_path}")
    if cmd.output_samples_path is not None:
        say(f"points       {cmd.output_samples_path}")
    if rerun:
        say(f"rerun        {rerun[1]}")


def run_animate(cmd: AnimateCommand) -> None:
    options = cmd.sampling
    video_path = cmd.output_video_path or beside(options.model_path, ".gif")
    check_output_path(video_path, "--output-video-path")
    cfg, strategy, model, data_dim, sampler = load_for_sampling(options)

    keys = sampling_keys(options.seed)
    labels = sampling_labels(cfg, sampler, options.condition, keys.labels, cmd.num_samples)
    result = sample(strategy, model, keys.sample, cmd.num_samples, data_dim, sampler, labels)
    title = describe_sampling(cfg, sampler, int(result.nfe), options.condition)
    states = result.trajectory.shape[0]
    shape = image_shape(cfg.dataset)
    if shape is None:
        trajectory = plot_coordinates(result.trajectory, cfg.dataset)
        frames = animation.save_trajectory_gif(
            video_path,
            trajectory,
            fps=cmd.fps,
            max_frames=cmd.max_frames,
            title=plot_title(title, cfg.dataset),
        )
    else:
        trajectory = np.asarray(result.trajectory)
        if labels is not None:
            trajectory = trajectory[:, np.argsort(np.asarray(labels), kind="stable")]
        frames = animation.save_image_trajectory_gif(
            video_path,
            trajectory,
            shape,
            fps=cmd.fps,
            max_frames=cmd.max_frames,
            rows=None,
            title=title,
        )
    rerun = open_rerun(cmd.rerun, options.model_path, "animate")
    if rerun and is_planar(cfg.dataset):
        rerun[0].log_trajectory(trajectory)
    if rerun:
        rerun[0].close()
    say(f"animated {states - 1} steps of {title} in {frames} frames")
    say(f"animation    {video_path}")
    if rerun:
        say(f"rerun        {rerun[1]}")


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------


def run_evaluate(cmd: EvaluateCommand) -> None:
    options = cmd.sampling
    json_path = cmd.output_json_path or beside(options.model_path, ".evaluate.json")
    density_path = cmd.output_density_path or beside(options.model_path, ".density.png")
    check_output_path(json_path, "--output-json-path")
    cfg, strategy, model, data_dim, sampler = load_for_sampling(options)
    check_dataset(cfg.dataset)
    heat_map = cmd.nll_points > 0 and cmd.density_resolution > 0 and is_planar(cfg.dataset)
    if heat_map:
        check_output_path(density_path, "--output-density-path")
    report = evaluate(
        strategy,
        model,
        cfg,
        data_dim,
        sampler,
        seed=options.seed,
        steps=cmd.steps,
        num_samples=cmd.num_samples,
        repeats=cmd.repeats,
        condition=options.condition,
        nll_points=cmd.nll_points,
        estimator=cmd.estimator,
        num_probes=cmd.num_probes,
    )
    report = {"checkpoint": str(options.model_path), **report}
    rows, nll = report["rows"], report.get("nll_nats_per_dim")
    if heat_map:
        keys = likelihood_keys(options.seed)
        fresh = plane(get_batch(keys.data, cfg.dataset, cmd.num_samples), cfg.dataset)
        grid, bounds = plots.density_grid(fresh, cmd.density_resolution)
        panels = density_panels(
            strategy,
            model,
            cfg.dataset,
            from_plane(grid, cfg.dataset),
            key=keys.probes,
            estimator=cmd.estimator,
            num_probes=cmd.num_probes,
        )
        title = f"{name_of(cfg.strategy)}, {cfg.strategy.prediction}-prediction on "
        title += f"{name_of(cfg.dataset)}: density by the probability-flow ODE"
        plots.save_density_png(density_path, panels, bounds, title=title)
    with atomic_output(json_path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")

    say(f"evaluated {options.model_path}: {describe(cfg)} on {name_of(cfg.dataset)}")
    say(format_table(rows, sampler.sampler, cmd.num_samples))
    for row in rows:
        say(f"{row['steps']} steps:\n" + format_report(row["quality"]))
    if cmd.nll_points:
        line = f"NLL {nll['mean']:.3f} ± {nll['stderr']:.3f} nats/dim on {cmd.nll_points} "
        line += f"fresh points ({cmd.estimator} divergence, {nll['seconds']:.1f} s)"
        if "data_entropy" in nll:
            entropy = nll["data_entropy"]
            line += f"; data entropy {entropy['mean']:.3f} ± {entropy['stderr']:.3f} nats/dim"
        say(line)
    say(f"figures      {json_path}")
    if heat_map:
        say(f"density map  {density_path}")


def format_table(rows: list[dict], sampler: str, num_samples: int) -> str:
    """The rows as a markdown table; each distance as `value (floor, ratio)`."""
    header = ["sampler", "steps", "NFE", "time (s)", "samples/s"] + [
        f"{name} (floor, ratio)" for name in METRICS
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [sampler, str(row["steps"]), str(row["nfe"]), f"{row['seconds']:.3f}"]
        cells.append(f"{row['samples_per_s']:.0f}")
        for name in METRICS:
            m = row[name]
            cells.append(f"{m['distance']:.4f} ({m['floor']:.4f}, {m['ratio']:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# plot-field
# ----------------------------------------------------------------------------------------------


def run_plot_field(cmd: PlotFieldCommand) -> None:
    image_path = cmd.output_image_path or beside(cmd.model_path, ".field.png")
    video_path = cmd.output_video_path or beside(cmd.model_path, ".field.gif")
    check_output_path(image_path, "--output-image-path")
    check_output_path(video_path, "--output-video-path")
    saved = checkpoint.load(cmd.model_path)
    cfg = saved.config
    if not is_planar(cfg.dataset):
        raise ValueError(f"plot-field draws 2-D fields; {name_of(cfg.dataset)} is not 2-D data")
    check_dataset(cfg.dataset)
    strategy = create_strategy(cfg.strategy)
    model = saved.state.ema_model if cmd.use_ema else saved.state.model
    key = jax.random.key(cmd.seed)

    data = plane(get_batch(key, cfg.dataset, cmd.num_points), cfg.dataset)
    grid, bounds = plots.density_grid(data, cmd.grid_size, margin=0.15)
    gif_times = np.linspace(0.0, 1.0, cmd.gif_frames)
    times = np.asarray(cmd.times, dtype=np.float32)
    views = field_views(strategy, model, cfg.dataset, times, grid, key, cmd.num_points, cmd.field)
    gif_views = field_views(
        strategy, model, cfg.dataset, gif_times, grid, key, cmd.num_points, cmd.field
    )
    cell = (bounds[1] - bounds[0]) / cmd.grid_size
    scale = plots.field_arrow_scale(gif_views[0], cell)
    title = f"{cmd.field} of {describe(cfg)} on {name_of(cfg.dataset)}"
    plots.save_field_png(image_path, times, grid, *views, bounds, title, scale)
    frames = animation.save_field_gif(
        video_path, gif_times, grid, *gif_views, bounds, title, scale, fps=cmd.fps
    )
    say(f"drew the {cmd.field} of {describe(cfg)} at t = {', '.join(f'{t:g}' for t in cmd.times)}")
    say(f"field panels {image_path}")
    say(f"field GIF    {video_path} ({frames} frames)")


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------

RUNNERS = {
    TrainCommand: run_train,
    GenerateCommand: run_generate,
    AnimateCommand: run_animate,
    EvaluateCommand: run_evaluate,
    PlotFieldCommand: run_plot_field,
}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Parses the command line and runs the command. Bad input: one line on stderr, exit 2."""
    with deferred_validation():  # report invalid values below as one line, not tyro's box
        command = tyro.cli(
            Command, args=argv, prog="jax-gen", config=(tyro.conf.CascadeSubcommandArgs,)
        )
    try:
        validate_all(command)
        RUNNERS[type(command)](command)
    except (ValueError, OSError) as err:
        if os.environ.get("JAX_GEN_DEBUG"):
            raise
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)


if __name__ == "__main__":
    main()
