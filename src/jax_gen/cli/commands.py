"""The commands and their options: what ``jax-gen`` parses (tyro dataclasses).

Only configs and paths: importing this module loads neither JAX nor matplotlib, so ``jax-gen
--help`` answers at once. Every field's docstring is its help text.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from jax_gen.config import (
    DATASETS,
    MODELS,
    SOURCES,
    STRATEGIES,
    CatConfig,
    DDPMStrategyConfig,
    FlowMatchingStrategyConfig,
    MLPConfig,
    NormalSourceConfig,
    OptimizerConfig,
    SamplerConfig,
    TrainConfig,
    deferred_validation,
    name_of,
)


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
SourceChoice = _choice(SOURCES)


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
    source: SourceChoice = NormalSourceConfig()
    """Where the path starts (t=0): N(0, I) (`source:normal`), or any dataset, whose points
    flow matching then carries onto the data (`source:eight-gaussians`)."""
    optimizer: OptimizerConfig = OptimizerConfig()
    train: Annotated[TrainConfig, tyro.conf.arg(name="")] = TrainConfig()
    model_path: Path | None = None
    """Checkpoint to write (default: outputs/<dataset>_<strategy>.eqx, or
    outputs/<dataset>-from-<source>_<strategy>.eqx)."""
    checkpoint_every: int = 0
    """Also save the checkpoint every this many steps (0: at the end and on Ctrl-C only)."""
    resume: bool = False
    """Continue the run saved at --model-path (its config is used; contradicting flags fail)."""
    num_samples: int = 10000
    """Points generated after training for the sample plot and the quality figures."""
    num_eval_samples: int = 10000
    """Points the quality figures are computed on (and the scatter plot draws): the first N of
    those generated, against as many fresh data points, however many are generated."""
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
        _positive(self, "num_samples", "num_eval_samples")
        if not isinstance(self.source, NormalSourceConfig) and not isinstance(
            self.strategy, FlowMatchingStrategyConfig
        ):
            raise ValueError(
                f"source:{name_of(self.source)} needs strategy:flow-matching; "
                f"{name_of(self.strategy)}'s path starts from its own Gaussian source"
            )
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
    batch_size: int | None = None
    """Points sampled per compiled call, at most (default: 16384); more are sampled in equal
    batches, so memory stays bounded. The points do not depend on it, except with the pc and
    adaptive samplers, whose steps read the whole batch."""
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
    num_eval_samples: int = 10000
    """Points the quality figures are computed on (and the scatter plot draws): the first N of
    those generated, against as many fresh data points, however many are generated."""
    output_image_path: Path | None = None
    """PNG of the samples beside fresh data (default: beside the checkpoint, .samples.png)."""
    output_samples_path: Path | None = None
    """Also write the raw points, as .npy or .csv."""
    rerun: Annotated[RerunOptions, tyro.conf.arg(name="")] = RerunOptions()

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid option."""
        _positive(self, "num_samples", "num_eval_samples")
        _positive(self.sampling, "batch_size")
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
        _positive(self.sampling, "batch_size")
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
    """Points generated (and timed) per row."""
    num_eval_samples: int = 10000
    """Points of each row the figures are computed on: the first N generated, against as many
    fresh data points."""
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
        _positive(self, "num_samples", "num_eval_samples", "repeats", "num_probes")
        _positive(self.sampling, "batch_size")
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


@dataclass(frozen=True)
class PlotPathCommand:
    """Draw a one-dimensional model's flow: its density p_t(x) over the (t, x) plane as a heat
    map, with sampled trajectories on top, beside the true path's density where it is known."""

    sampling: Annotated[SamplingOptions, tyro.conf.arg(name="")]
    num_trajectories: int = 40
    """Trajectories drawn over the model's density (sampled with --sampler)."""
    num_times: int = 51
    """Columns of the heat maps: times evenly spaced over [0, 1]."""
    resolution: int = 200
    """Rows of the heat maps: points evenly spaced over the window of the data and the
    trajectories."""
    num_samples: int = 10000
    """For a strategy without a velocity (consistency), whose density is read from samples:
    points whose histogram at each of the sampler's times gives the density."""
    output_image_path: Path | None = None
    """PNG of the (t, x) plane (default: beside the checkpoint, .path.png)."""

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid option."""
        _positive(self, "num_trajectories", "num_samples")
        _positive(self.sampling, "batch_size")
        for name in ("num_times", "resolution"):
            if getattr(self, name) < 2:
                raise ValueError(f"--{name.replace('_', '-')}={getattr(self, name)!r} must be >= 2")


Command = (
    Annotated[TrainCommand, tyro.conf.subcommand("train")]
    | Annotated[GenerateCommand, tyro.conf.subcommand("generate")]
    | Annotated[AnimateCommand, tyro.conf.subcommand("animate")]
    | Annotated[EvaluateCommand, tyro.conf.subcommand("evaluate")]
    | Annotated[PlotFieldCommand, tyro.conf.subcommand("plot-field")]
    | Annotated[PlotPathCommand, tyro.conf.subcommand("plot-path")]
)


def parse(argv: list[str] | None = None) -> Any:
    """The command ``argv`` (default: ``sys.argv``) names, with its options.

    Invalid values are reported later, by :func:`jax_gen.config.validate_all`, as one line
    rather than tyro's box. ``--help`` prints and exits here.
    """
    with deferred_validation():
        return tyro.cli(
            Command, args=argv, prog="jax-gen", config=(tyro.conf.CascadeSubcommandArgs,)
        )
