"""Typed, frozen configuration dataclasses: the single description of an experiment.

No JAX here. Every config validates itself when it is created and raises ``ValueError`` naming
the offending field and value, so bad hyperparameters fail before anything is traced. Each field
carries a docstring underneath it, which tyro turns into command-line help.

Configs are hashable (frozen), so they can be static arguments of jitted functions, and they
serialise to JSON (``to_dict`` / ``from_dict``) because checkpoints store them.
"""

import contextlib
import contextvars
import dataclasses
import math
import numbers
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Prediction = Literal["eps", "x", "v"]
LossTarget = Literal["prediction", "v"]
Activation = Literal["gelu", "relu", "swish"]
DDPMSchedule = Literal["linear", "cosine", "sigmoid"]
FlowPath = Literal["linear", "cosine"]
Coupling = Literal["independent", "ot"]
SamplerName = Literal[
    "default",
    "ancestral",
    "ddim",
    "euler",
    "midpoint",
    "heun",
    "rk4",
    "adaptive",
    "euler-maruyama",
    "pc",
    "dpm-solver",
]


def check_finite(obj: Any) -> None:
    """Raises ``ValueError`` if a float field of the dataclass ``obj`` (or an element of a tuple
    field) is inf or nan.

    One check for every field, run before each config's own ``validate``: inf passes every
    lower bound and nan fails every comparison, so the bound checks would let them through or
    name the wrong rule, and a non-finite hyperparameter only ever trains to nan.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, numbers.Real) and not isinstance(item, numbers.Integral):
                if not math.isfinite(item):
                    raise ValueError(f"{f.name}={value!r} must be finite")


def _check_positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ValueError(f"{name}={value!r} must be positive")


def _check_non_negative(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not value >= 0:
            raise ValueError(f"{name}={value!r} must be non-negative")


def _check_unit_interval(obj: Any, *names: str, closed_right: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        inside = 0 <= value <= 1 if closed_right else 0 <= value < 1
        if not inside:
            interval = "[0, 1]" if closed_right else "[0, 1)"
            raise ValueError(f"{name}={value!r} must lie in {interval}")


def _check_ambient_dim(obj: Any) -> None:
    if not (isinstance(obj.ambient_dim, int) and obj.ambient_dim >= 2):
        raise ValueError(f"ambient_dim={obj.ambient_dim!r} must be an integer >= 2")


def _check_silhouette(obj: Any) -> None:
    """The fields a silhouette image's config (cat, image) shares."""
    _check_positive(obj, "scale")
    _check_ambient_dim(obj)
    if not 0 < obj.threshold <= 255:
        raise ValueError(f"threshold={obj.threshold!r} must lie in (0, 255]")


def _check_choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be one of {', '.join(choices)}")


_validating = contextvars.ContextVar("jax_gen_validating", default=True)


class Validated:
    """Mixin: :func:`check_finite` and ``validate()`` run when the dataclass is created, unless
    deferred."""

    def __post_init__(self) -> None:
        if _validating.get():
            check_finite(self)
            self.validate()

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid field and its value."""


@contextlib.contextmanager
def deferred_validation() -> Iterator[None]:
    """Creates configs without validating them; call :func:`validate_all` afterwards.

    The command line parses first and then reports the first invalid value as one line.
    """
    token = _validating.set(False)
    try:
        yield
    finally:
        _validating.reset(token)


def validate_all(obj: Any) -> None:
    """Validates a dataclass and every dataclass nested in its fields, depth first.

    Every float field of every one of them must be finite (:func:`check_finite`), whether or
    not its class has a ``validate`` of its own.
    """
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        validate_all(getattr(obj, f.name))
    check_finite(obj)
    if isinstance(obj, Validated) or hasattr(obj, "validate"):
        obj.validate()


# ----------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DDPMStrategyConfig(Validated):
    """Denoising diffusion (DDPM): a discrete variance-preserving chain with ancestral sampling."""

    num_transport_steps: int = 100
    """Number T of diffusion steps; sampling takes each of them exactly once."""
    prediction: Prediction = "eps"
    """Network output: the noise `eps`, the clean data `x`, or the velocity `v = dz/dt`."""
    beta_min: float = 0.1
    """Noise rate at the data end, in continuous time (the DDPM paper's 1e-4 at T=1000 is 0.1)."""
    beta_max: float = 20.0
    """Noise rate at the noise end, in continuous time (the DDPM paper's 0.02 at T=1000 is 20)."""
    schedule: DDPMSchedule = "linear"
    """Noise schedule: `linear` (beta_min..beta_max), `cosine` (Nichol & Dhariwal), `sigmoid`."""
    loss_target: LossTarget = "prediction"
    """Regress the network's own output (`prediction`) or the velocity it implies (`v`)."""

    def validate(self) -> None:
        _check_positive(self, "num_transport_steps", "beta_min", "beta_max")
        _check_choice(self, "prediction", typing.get_args(Prediction))
        _check_choice(self, "schedule", typing.get_args(DDPMSchedule))
        _check_choice(self, "loss_target", typing.get_args(LossTarget))
        if not self.beta_max > self.beta_min:
            raise ValueError(
                f"beta_max={self.beta_max!r} must be greater than beta_min={self.beta_min!r}"
            )


@dataclass(frozen=True)
class FlowMatchingStrategyConfig(Validated):
    """Flow matching on a Gaussian path from noise (t=0) to data (t=1), Euler sampling."""

    num_transport_steps: int = 50
    """Number of Euler steps from noise (t=0) to data (t=1)."""
    prediction: Prediction = "v"
    """Network output: the velocity `v = x - eps`, the clean data `x`, or the noise `eps`."""
    path: FlowPath = "linear"
    """The path: `linear` (z = t x + (1 - t) eps) or `cosine` (variance preserving)."""
    loss_target: LossTarget = "prediction"
    """Regress the network's own output (`prediction`) or the velocity it implies (`v`)."""
    coupling: Coupling = "independent"
    """How each batch's noise is paired with its data: `independent` draws, or `ot` (minibatch
    optimal transport: straighter paths, better samples in 1-4 steps; the exact assignment
    costs O(batch^3) per step: 8 ms at batch 256, 310 ms at 1024 on 2 CPU cores)."""

    def validate(self) -> None:
        _check_positive(self, "num_transport_steps")
        _check_choice(self, "prediction", typing.get_args(Prediction))
        _check_choice(self, "path", typing.get_args(FlowPath))
        _check_choice(self, "loss_target", typing.get_args(LossTarget))
        _check_choice(self, "coupling", typing.get_args(Coupling))


@dataclass(frozen=True)
class ScoreMatchingStrategyConfig(Validated):
    """Denoising score matching over noise levels, sampled by annealed Langevin dynamics."""

    num_transport_steps: int = 20
    """Number of noise levels, geometric from sigma_max (t=0) to sigma_min (t=1)."""
    prediction: Prediction = "eps"
    """Network output: the noise `eps` (score = -eps / sigma), the clean data `x`, or `v`."""
    sigma_min: float = 0.01
    """Smallest noise level (the data end, t=1)."""
    sigma_max: float = 10.0
    """Largest noise level (the source end, t=0): about the data's diameter."""
    langevin_steps: int = 20
    """Langevin steps at each noise level."""
    step_size: float = 0.5
    """Langevin step at noise level sigma is step_size * sigma^2 (NCSN's eps = 2 * step_size *
    sigma_min^2); stable below 2, and 0.5 leaves the samples' std ~2% high (see the strategy)."""
    loss_target: LossTarget = "prediction"
    """Regress the network's own output (`prediction`) or the velocity it implies (`v`)."""

    def validate(self) -> None:
        _check_positive(
            self, "num_transport_steps", "sigma_min", "sigma_max", "langevin_steps", "step_size"
        )
        _check_choice(self, "prediction", typing.get_args(Prediction))
        _check_choice(self, "loss_target", typing.get_args(LossTarget))
        if not self.sigma_max > self.sigma_min:
            raise ValueError(
                f"sigma_max={self.sigma_max!r} must be greater than sigma_min={self.sigma_min!r}"
            )


StrategyConfig = DDPMStrategyConfig | FlowMatchingStrategyConfig | ScoreMatchingStrategyConfig

# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPConfig(Validated):
    """Multilayer perceptron on [x, time embedding]."""

    hidden_dim: int = 128
    """Width of every hidden layer."""
    depth: int = 4
    """Number of hidden layers."""
    activation: Activation = "gelu"
    """Nonlinearity between layers."""
    time_embed_dim: int = 32
    """Size of the sinusoidal time embedding (even)."""

    def validate(self) -> None:
        _check_positive(self, "hidden_dim", "depth", "time_embed_dim")
        _check_choice(self, "activation", typing.get_args(Activation))
        if self.time_embed_dim % 2:
            raise ValueError(f"time_embed_dim={self.time_embed_dim!r} must be even")


@dataclass(frozen=True)
class ResNetConfig(Validated):
    """Residual MLP: the time embedding is added inside every block."""

    hidden_dim: int = 128
    """Width of the residual stream."""
    num_blocks: int = 3
    """Number of residual blocks."""
    use_layer_norm: bool = True
    """Normalise the residual stream at the start of each block."""
    activation: Activation = "gelu"
    """Nonlinearity inside each block."""
    time_embed_dim: int = 32
    """Size of the sinusoidal time embedding (even)."""

    def validate(self) -> None:
        _check_positive(self, "hidden_dim", "num_blocks", "time_embed_dim")
        _check_choice(self, "activation", typing.get_args(Activation))
        if self.time_embed_dim % 2:
            raise ValueError(f"time_embed_dim={self.time_embed_dim!r} must be even")


ModelConfig = MLPConfig | ResNetConfig

# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatConfig(Validated):
    """Cat silhouette: points drawn uniformly from the dark pixels of an image."""

    image_path: str = ""
    """Silhouette image; empty means the project's `assets/cat.png`."""
    scale: float = 3.0
    """Half-width of the point cloud after normalising the image to [-1, 1]."""
    threshold: int = 128
    """Pixels darker than this (0-255 grey level) belong to the cat."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_silhouette(self)


@dataclass(frozen=True)
class MoonConfig(Validated):
    """Two interleaved half circles (scikit-learn's two moons), centred and scaled."""

    noise: float = 0.05
    """Standard deviation of the Gaussian noise added before scaling."""
    scale: float = 3.0
    """Multiplier applied after centring."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_non_negative(self, "noise")
        _check_positive(self, "scale")
        _check_ambient_dim(self)


@dataclass(frozen=True)
class SwissRollConfig(Validated):
    """The 2-D swiss-roll spiral (columns 0 and 2 of scikit-learn's swiss roll)."""

    noise: float = 0.3
    """Standard deviation of the Gaussian noise added before scaling."""
    scale: float = 3.0
    """Half-width of the spiral after centring and normalising its radius to 1."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_non_negative(self, "noise")
        _check_positive(self, "scale")
        _check_ambient_dim(self)


@dataclass(frozen=True)
class GaussianMixtureConfig(Validated):
    """Four equally weighted Gaussians centred at (+-scale, +-scale)."""

    scale: float = 3.0
    """Distance of each centre from the axes."""
    std: float = 0.3
    """Standard deviation of every component."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_positive(self, "scale", "std")
        _check_ambient_dim(self)


@dataclass(frozen=True)
class DigitsConfig(Validated):
    """scikit-learn's 8x8 handwritten digits (1797 images, labels 0-9), bundled, no download.

    Each point is one image's 64 grey levels (0..16, row-major) scaled to [-1, 1]: 64-D data,
    not a 2-D dataset, so it has no ambient_dim and no plane to plot.
    """


POINTS_SUFFIXES = (".npy", ".csv")
"""File types of a points dataset: a NumPy array, or comma-separated text."""


@dataclass(frozen=True)
class PointsConfig(Validated):
    """Your own points: the empirical distribution of the rows of an N x D array in a file.

    The file is a `.npy` array or a `.csv` table (commas, one point per line, optionally one
    non-numeric header line) of N >= 1 rows and D >= 2 finite numbers. The points are
    normalised like the built-in datasets: the centre of their bounding box moves to the origin
    and one common factor (the aspect is kept) brings the longer half-extent to `scale`.
    Training draws rows uniformly with replacement, like the digits.

    The data dimension is the file's D: 2-D files are plotted, measured and drawn like the
    moons; larger D is trained, sampled and measured in full and plotted by its first two
    coordinates. There is no `ambient_dim` (the file fixes D; to embed 2-D points in R^D, write
    them into D columns), and no labels. The file is read when the data are first needed (the
    config does no I/O); the path is stored in checkpoints as given, so `generate` and
    `evaluate`, which draw fresh data, need the file at that path.
    """

    path: str = ""
    """The `.npy` or `.csv` file of points, one per row (required: pass --dataset.path FILE)."""
    scale: float = 3.0
    """Half-extent of the longer side of the points' bounding box after normalising."""

    def validate(self) -> None:
        _check_positive(self, "scale")
        if self.path and not self.path.lower().endswith(POINTS_SUFFIXES):
            raise ValueError(
                f"points file path={self.path!r} must end in {' or '.join(POINTS_SUFFIXES)}"
            )


@dataclass(frozen=True)
class ImageConfig(Validated):
    """Your own silhouette: points drawn uniformly from the dark pixels of any image.

    Exactly the cat's sampler and exact log-density, on the image at `path` (any format Pillow
    reads; a transparent background counts as white).
    """

    path: str = ""
    """Silhouette image: dark shapes on a light or transparent background (required: pass
    --dataset.path FILE)."""
    scale: float = 3.0
    """Half-width of the point cloud after normalising the image to [-1, 1]."""
    threshold: int = 128
    """Pixels darker than this (0-255 grey level) belong to the silhouette."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_silhouette(self)


DatasetConfig = (
    CatConfig
    | MoonConfig
    | SwissRollConfig
    | GaussianMixtureConfig
    | DigitsConfig
    | PointsConfig
    | ImageConfig
)

# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerConfig(Validated):
    """How to sample: the strategy's own reverse step or a solver of its ODE / SDE."""

    sampler: SamplerName = "default"
    """`default` (the strategy's own step), `ddim`, `ancestral` (DDIM with eta 1), the ODE
    solvers `euler`, `midpoint`, `heun`, `rk4`, `adaptive` (diffrax Tsit5), `dpm-solver`
    (DPM-Solver++(2M), second order at one network evaluation per step), the SDE solver
    `euler-maruyama`, or `pc` (predictor-corrector)."""
    num_sampling_steps: int | None = None
    """Steps of the sampler (default: the strategy's num-transport-steps)."""
    eta: float = 0.0
    """DDIM noise: 0 deterministic, 1 the ancestral DDPM posterior."""
    rtol: float = 1e-3
    """Relative tolerance of the adaptive solver."""
    atol: float = 1e-3
    """Absolute tolerance of the adaptive solver."""
    corrector_steps: int = 1
    """Langevin corrector steps at each time, before the predictor step (`pc`)."""
    snr: float = 0.1
    """Signal-to-noise ratio that sets the corrector's step size (`pc`)."""
    time_grid: Literal["auto", "uniform", "logsnr"] = "auto"
    """Times of the fixed-step samplers: `uniform` in t, or `logsnr`, uniform in the
    log signal-to-noise ratio log(alpha / sigma) (fewer steps near the noise end of a
    variance-preserving path). `auto`: `logsnr` for `dpm-solver`, whose steps are written in
    log(alpha / sigma) (on a uniform grid its steps near t = 1 do not shrink in log SNR and it
    converges at first order only), `uniform` for the rest. `default` keeps the uniform grid,
    `adaptive` picks its own steps."""
    guidance_scale: float = 1.0
    """Classifier-free guidance of a class-conditional model: w = 0 unconditional, 1
    conditional, above 1 pushed further towards the class (uncond + w (cond - uncond))."""
    snap_to_training_times: bool = True
    """Move the fixed-step samplers' grid onto the times a DDPM or score-matching network was
    trained at (k / T; needs at most T steps), since between them it answers for inputs it
    never saw. No effect on flow matching, which trains at every t."""

    def validate(self) -> None:
        _check_choice(self, "sampler", typing.get_args(SamplerName))
        _check_choice(self, "time_grid", ("auto", "uniform", "logsnr"))
        if self.time_grid == "logsnr" and self.sampler in ("default", "adaptive"):
            raise ValueError(
                f"time_grid={self.time_grid!r} needs a fixed-step sampler, not "
                f"sampler={self.sampler!r}"
            )
        if self.num_sampling_steps is not None:
            _check_positive(self, "num_sampling_steps")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0):
            raise ValueError(f"guidance_scale={self.guidance_scale!r} must be >= 0")
        _check_unit_interval(self, "eta", closed_right=True)
        _check_positive(self, "rtol", "atol", "snr")
        _check_non_negative(self, "corrector_steps")


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimizerConfig(Validated):
    """Adam with linear warmup, cosine decay and global-norm gradient clipping."""

    learning_rate: float = 2e-3
    """Peak learning rate, reached at the end of warmup."""
    warmup_steps: int = 200
    """Steps of linear warmup from 0 to the peak learning rate."""
    final_lr_fraction: float = 0.05
    """Learning rate at the last step, as a fraction of the peak (cosine decay)."""
    max_grad_norm: float = 1.0
    """Gradients are rescaled so their global norm is at most this."""

    def validate(self) -> None:
        _check_positive(self, "learning_rate", "max_grad_norm")
        _check_non_negative(self, "warmup_steps")
        _check_unit_interval(self, "final_lr_fraction", closed_right=True)


@dataclass(frozen=True)
class TrainConfig(Validated):
    """The training loop."""

    batch_size: int = 1024
    """Points per optimisation step."""
    train_steps: int = 5000
    """Number of optimisation steps."""
    log_interval: int = 250
    """Steps fused into one compiled call; losses reach the host once per interval."""
    seed: int = 0
    """Seed of every random draw (initialisation, data, noise)."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights (0 disables it)."""
    conditional: bool = False
    """Train a class-conditional model on the dataset's labels."""
    label_dropout: float = 0.1
    """Probability a training label is replaced by the null class, so the one network also
    learns the unconditional model classifier-free guidance needs."""

    def validate(self) -> None:
        _check_positive(self, "batch_size", "train_steps", "log_interval")
        _check_unit_interval(self, "ema_decay")
        _check_unit_interval(self, "label_dropout", closed_right=True)


@dataclass(frozen=True)
class ExperimentConfig(Validated):
    """Everything needed to rebuild a trained model: what a checkpoint stores."""

    strategy: StrategyConfig = field(default_factory=DDPMStrategyConfig)
    model: ModelConfig = field(default_factory=MLPConfig)
    dataset: DatasetConfig = field(default_factory=CatConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ----------------------------------------------------------------------------------------------
# Names (the command line's `strategy:ddpm`, `model:mlp`, `dataset:cat`, and the scripts' flags)
# ----------------------------------------------------------------------------------------------

STRATEGIES: dict[str, type] = {
    "ddpm": DDPMStrategyConfig,
    "flow-matching": FlowMatchingStrategyConfig,
    "score-matching": ScoreMatchingStrategyConfig,
}
MODELS: dict[str, type] = {"mlp": MLPConfig, "resnet": ResNetConfig}
DATASETS: dict[str, type] = {
    "cat": CatConfig,
    "moon": MoonConfig,
    "swiss-roll": SwissRollConfig,
    "gaussian-mixture": GaussianMixtureConfig,
    "digits": DigitsConfig,
    "points": PointsConfig,
    "image": ImageConfig,
}


def name_of(config: Any) -> str:
    """The short name of a strategy, model or dataset config (``"ddpm"``, ``"mlp"``, ...)."""
    for registry in (STRATEGIES, MODELS, DATASETS):
        for name, cls in registry.items():
            if type(config) is cls:
                return name
    raise ValueError(f"no name for {type(config).__name__}")


# ----------------------------------------------------------------------------------------------
# JSON round trip
# ----------------------------------------------------------------------------------------------

_ALL_CONFIGS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        DDPMStrategyConfig,
        FlowMatchingStrategyConfig,
        ScoreMatchingStrategyConfig,
        SamplerConfig,
        MLPConfig,
        ResNetConfig,
        CatConfig,
        MoonConfig,
        SwissRollConfig,
        GaussianMixtureConfig,
        DigitsConfig,
        PointsConfig,
        ImageConfig,
        OptimizerConfig,
        TrainConfig,
        ExperimentConfig,
    )
}


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config; nested configs carry their class name under ``"type"``."""
    out: dict[str, Any] = {"type": type(config).__name__}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def from_dict(data: dict[str, Any]) -> Any:
    """Inverse of :func:`to_dict`. Raises ``ValueError`` on unknown types or fields."""
    if not isinstance(data, dict) or "type" not in data:
        raise ValueError(f"expected a config object with a 'type', got {data!r}")
    name = data["type"]
    if name not in _ALL_CONFIGS:
        raise ValueError(f"unknown config type {name!r}")
    cls = _ALL_CONFIGS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known - {"type"}
    if unknown:
        raise ValueError(f"{name} has no field(s) {', '.join(sorted(unknown))}")
    kwargs = {
        key: from_dict(value) if isinstance(value, dict) else value
        for key, value in data.items()
        if key != "type"
    }
    return cls(**kwargs)


__all__ = [
    "Activation",
    "CatConfig",
    "Coupling",
    "DATASETS",
    "DDPMStrategyConfig",
    "DatasetConfig",
    "DigitsConfig",
    "ExperimentConfig",
    "FlowMatchingStrategyConfig",
    "GaussianMixtureConfig",
    "ImageConfig",
    "MLPConfig",
    "MODELS",
    "ModelConfig",
    "MoonConfig",
    "OptimizerConfig",
    "POINTS_SUFFIXES",
    "PointsConfig",
    "Prediction",
    "ResNetConfig",
    "STRATEGIES",
    "SamplerConfig",
    "ScoreMatchingStrategyConfig",
    "StrategyConfig",
    "SwissRollConfig",
    "TrainConfig",
    "Validated",
    "check_finite",
    "deferred_validation",
    "from_dict",
    "name_of",
    "to_dict",
    "validate_all",
]
