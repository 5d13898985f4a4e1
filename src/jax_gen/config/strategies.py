"""Configs of the strategies: DDPM, flow matching, denoising score matching and MeanFlow."""

import typing
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import tyro

from jax_gen.config.base import (
    Validated,
    _check_choice,
    _check_non_negative,
    _check_positive,
    _check_unit_interval,
)
from jax_gen.config.datasets import DatasetConfig

Prediction = Literal["eps", "x", "v"]
LossTarget = Literal["prediction", "v"]
DDPMSchedule = Literal["linear", "cosine", "sigmoid"]
FlowPath = Literal["linear", "cosine"]
Coupling = Literal["independent", "ot", "sb", "reflow"]
TeacherSampler = Literal["euler", "midpoint", "heun", "rk4"]
MeanFlowTimes = Literal["logit-normal", "uniform"]
MeanFlowTangent = Literal["conditional", "model"]


@dataclass(frozen=True)
class NormalSourceConfig(Validated):
    """The standard normal N(0, I): the source (t=0) every strategy's path starts from unless
    flow matching is given another."""


SourceConfig = NormalSourceConfig | DatasetConfig
"""Where a path starts: N(0, I), or any dataset (``source:eight-gaussians``, a points file)."""


@dataclass(frozen=True)
class DDPMStrategyConfig(Validated):
    """Denoising diffusion (DDPM): a discrete variance-preserving chain with ancestral sampling."""

    num_transport_steps: int = 300
    """Number T of diffusion steps; sampling takes each of them exactly once. Fewer steps
    narrow the samples (with the exact denoiser of N(m, 0.5^2) data the chain ends at std 0.468
    for T = 100, 0.488 for T = 300, 0.496 for T = 1000): on the swiss roll T = 100 loses 0.015
    of recall, T = 300 none measurable. `--optimal-variance` removes the narrowing at any T."""
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
    """How each batch's source points are paired with its data: `independent` draws, `ot`
    (minibatch optimal transport: straighter paths, better samples in 1-4 steps; the exact
    assignment adds to each step 7 ms at batch 256, 28 ms at 512, 110 ms at 1024 on 2 CPU
    cores), `sb` (the Schrodinger bridge: pairs drawn from the entropic plan of each batch,
    epsilon = 2 sigma^2, on the Brownian-bridge path; needs --strategy.sigma > 0; Sinkhorn
    adds 0.19 s per step at batch 512 and sigma 0.1, 16 ms at sigma 1), or `reflow`
    (rectified flow's reflow: train on pairs (the teacher's ODE end point, its source point)
    instead of the dataset; needs --strategy.teacher-path)."""
    sigma: float = 0.0
    """Noise of the path around each pair's straight line (needs `v` prediction): z_t = t x +
    (1 - t) x0 + s(t) xi, xi ~ N(0, I), with s = sigma for `independent` and `ot` (Tong et
    al.'s I-CFM and OT-CFM) and s = sigma sqrt(t (1 - t)), the Brownian bridge, for `sb`."""
    source: Annotated[SourceConfig, tyro.conf.Suppress] = NormalSourceConfig()
    """Where the path starts (t=0): N(0, I), or any dataset, whose points are then carried
    onto the data (`source:eight-gaussians` on the command line). A source other than N(0, I)
    has no score: the stochastic samplers refuse it."""
    teacher_path: str = ""
    """Reflow's teacher: a checkpoint of a model with a velocity and an N(0, I) source (flow
    matching, DDPM, a reflowed flow). Its EMA model makes the `reflow-pairs` pairs once, before
    the first step, rather than inside every training step: on moons (default MLP, 50 Euler
    steps, 2 CPU cores) 100,000 pairs take 15-28 s once, while a teacher run inside the step
    adds 24 s per 100 steps at batch 1024 (1.0-1.3 s without it), 20 min over 5,000 steps.
    Sampling the trained model needs no teacher; resuming its training does."""
    teacher_sampler: TeacherSampler = "euler"
    """The ODE solver that integrates the teacher's velocity from each source point."""
    teacher_steps: int | None = None
    """Steps of `teacher-sampler` (default: the teacher's num-transport-steps)."""
    reflow_pairs: int = 100_000
    """How many (source point, teacher's end point) pairs reflow trains on; each training batch
    draws its rows uniformly from them."""

    def validate(self) -> None:
        _check_positive(self, "num_transport_steps", "reflow_pairs")
        _check_choice(self, "prediction", typing.get_args(Prediction))
        _check_choice(self, "path", typing.get_args(FlowPath))
        _check_choice(self, "loss_target", typing.get_args(LossTarget))
        _check_choice(self, "coupling", typing.get_args(Coupling))
        _check_choice(self, "teacher_sampler", typing.get_args(TeacherSampler))
        if self.teacher_steps is not None:
            _check_positive(self, "teacher_steps")
        _check_non_negative(self, "sigma")
        if self.coupling == "sb" and not self.sigma > 0:
            raise ValueError(
                f"coupling='sb' needs the bridge's noise: sigma={self.sigma!r} must be positive"
            )
        if self.sigma > 0 and self.prediction != "v":
            raise ValueError(
                f"sigma={self.sigma!r} adds noise the x- and eps-conversions do not know: "
                f"use prediction='v', not {self.prediction!r}"
            )
        if self.coupling == "reflow" and not self.teacher_path:
            raise ValueError("coupling='reflow' needs a teacher: --strategy.teacher-path CKPT")
        if self.teacher_path and self.coupling != "reflow":
            raise ValueError(
                f"teacher_path={self.teacher_path!r} is for coupling='reflow', not "
                f"coupling={self.coupling!r}"
            )


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
    source_mean: tuple[float, ...] | None = None
    """Centre of the source N(m, sigma_max^2 I), which stands in for the data blurred by
    sigma_max: the data's mean. Left unset, training measures it on the data and the checkpoint
    stores it."""

    def validate(self) -> None:
        _check_positive(
            self, "num_transport_steps", "sigma_min", "sigma_max", "langevin_steps", "step_size"
        )
        if self.source_mean is not None and not self.source_mean:
            raise ValueError("source_mean=() must have one entry per data dimension")
        _check_choice(self, "prediction", typing.get_args(Prediction))
        _check_choice(self, "loss_target", typing.get_args(LossTarget))
        if not self.sigma_max > self.sigma_min:
            raise ValueError(
                f"sigma_max={self.sigma_max!r} must be greater than sigma_min={self.sigma_min!r}"
            )


@dataclass(frozen=True)
class MeanFlowStrategyConfig(Validated):
    """MeanFlow: the average velocity over [t, t_end] on the linear path, one-step sampling."""

    time_inputs: ClassVar[int] = 2
    """The network reads two times, t and t_end - t."""
    time_max_frequency: ClassVar[float] = 3.0
    """The time embedding's top frequency for a model that leaves it unset: the loss reads the
    network's derivative in time, which high frequencies make large."""

    num_transport_steps: int = 1
    """Steps of the default sampler, each one network evaluation: 1 is one-step generation."""
    prediction: Literal["v"] = "v"
    """Network output: the average velocity u(z, t, t_end), which is v at t_end = t (only `v`)."""
    time_mean: float = 0.4
    """Training times are logit-normal, sigmoid(m + s n) with n ~ N(0, 1): this m (positive:
    nearer the data, t = 1; Geng et al.'s -0.4 in their direction of time)."""
    time_std: float = 1.0
    """The s of the logit-normal training times."""
    equal_time_share: float = 0.75
    """Share of training pairs with t_end = t, where u is the instantaneous velocity and the
    loss is flow matching's."""
    adaptive_loss_power: float = 1.0
    """p of the adaptive loss weight 1 / (|u - target|^2 + 1e-3)^p (0: plain squared error)."""
    time_sampler: MeanFlowTimes = "logit-normal"
    """Law of the two training times before sorting: `logit-normal` (time_mean, time_std) or
    `uniform` on [0, 1] (which draws the noise end, where one-step sampling starts, as often as
    any other time)."""
    jvp_tangent: MeanFlowTangent = "conditional"
    """The velocity the total derivative d/dt u follows: `conditional`, the pair's x - eps
    (Geng et al. 2025), or `model`, the network's own instantaneous velocity u(z, t, t), held
    fixed (improved MeanFlow, Geng et al. Dec 2025), a lower-variance target."""

    def validate(self) -> None:
        _check_positive(self, "num_transport_steps", "time_std")
        _check_choice(self, "time_sampler", typing.get_args(MeanFlowTimes))
        _check_choice(self, "jvp_tangent", typing.get_args(MeanFlowTangent))
        _check_choice(self, "prediction", ("v",))
        _check_unit_interval(self, "equal_time_share", closed_right=True)
        _check_non_negative(self, "adaptive_loss_power")


@dataclass(frozen=True)
class ShortcutStrategyConfig(Validated):
    """Shortcut model: a velocity conditioned on the step size, sampled in 1, 2, 4, ... steps."""

    time_inputs: ClassVar[int] = 2
    """The network reads two times, t and the step size d."""

    num_transport_steps: int = 1
    """Steps of the default sampler, each one network evaluation (a power of two, at most
    `max_sampling_steps`): 1 is one-step generation."""
    prediction: Literal["v"] = "v"
    """Network output: the shortcut s(z, t, d), the velocity v at d = 0 (only `v`)."""
    max_sampling_steps: int = 128
    """The finest sampling trained: step sizes d = 1, 1/2, ..., 1/max_sampling_steps (a power
    of two). The default sampler refuses finer steps; the ODE samplers read d = 0."""
    self_consistency_share: float = 0.25
    """Share of training points regressed on the self-consistency target (two half steps) at
    a step size d > 0; the others train d = 0 with flow matching's loss."""

    def validate(self) -> None:
        _check_positive(self, "num_transport_steps", "max_sampling_steps")
        _check_choice(self, "prediction", ("v",))
        _check_power_of_two(self, "max_sampling_steps", "num_transport_steps")
        if self.num_transport_steps > self.max_sampling_steps:
            raise ValueError(
                f"num_transport_steps={self.num_transport_steps!r} must be at most "
                f"max_sampling_steps={self.max_sampling_steps!r}"
            )
        _check_unit_interval(self, "self_consistency_share", closed_right=True)


def _check_power_of_two(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (value > 0 and value & (value - 1) == 0):
            raise ValueError(f"{name}={value!r} must be a power of two (1, 2, 4, 8, ...)")


@dataclass(frozen=True)
class ConsistencyStrategyConfig(Validated):
    """Consistency training (iCT): a jump to the data from any time, one- or few-step sampling."""

    num_transport_steps: int = 1
    """Steps of the default sampler, each one network evaluation (a jump to the data, then
    fresh noise up to the next grid time): 1 is one-step generation."""
    prediction: Literal["v"] = "v"
    """Network output: F(z, t), the average velocity from t to the data, so the consistency
    function f(z, t) = z + (1 - t) F(z, t) is exactly the identity at t = 1 (only `v`)."""
    initial_intervals: int = 10
    """iCT's s0: the training grid t_n = n / M starts with M = s0 intervals."""
    final_intervals: int = 160
    """iCT's s1: M doubles in equal stages of the run up to s1 (a run of K steps has
    log2(s1 / s0) + 1 stages of K / (log2(s1 / s0) + 1) steps)."""
    level_mean: float = 0.4
    """Training levels n carry the logit-normal mass of [t_n, t_n+1], logit(t) ~ N(m, s^2):
    this m. It is iCT's lognormal law of sigma = (1 - t) / t with P_mean = -m; their -1.1 for
    data of std 0.5 is about -0.4 for data of std 1."""
    level_std: float = 1.0
    """The s of the logit-normal level law (iCT's P_std is 2.0; on the 2-D mixture 1.0 put
    93% of 2-step samples within 1.0 of a mode after 1500 steps, 2.0 put 87%)."""
    huber_scale: float = 0.00054
    """The pseudo-Huber distance sqrt(|a - b|^2 + c^2) - c has c = huber_scale * sqrt(dim)."""

    def validate(self) -> None:
        _check_positive(
            self,
            "num_transport_steps",
            "initial_intervals",
            "final_intervals",
            "level_std",
            "huber_scale",
        )
        _check_choice(self, "prediction", ("v",))
        if not self.final_intervals >= self.initial_intervals:
            raise ValueError(
                f"final_intervals={self.final_intervals!r} must be at least "
                f"initial_intervals={self.initial_intervals!r}"
            )


StrategyConfig = (
    DDPMStrategyConfig
    | FlowMatchingStrategyConfig
    | ScoreMatchingStrategyConfig
    | MeanFlowStrategyConfig
    | ShortcutStrategyConfig
    | ConsistencyStrategyConfig
)


def source_of(cfg: StrategyConfig) -> DatasetConfig | None:
    """The dataset a strategy's path starts from, or None where it starts from its own Gaussian
    (N(0, I); score matching's N(m, sigma_max^2 I))."""
    source = getattr(cfg, "source", None)
    return None if isinstance(source, NormalSourceConfig) else source


def time_inputs(cfg: StrategyConfig) -> int:
    """How many times the strategy's network reads (1 unless the config says otherwise)."""
    return getattr(cfg, "time_inputs", 1)


def time_frequency(cfg: StrategyConfig) -> float | None:
    """The time-embedding top frequency the strategy asks of a model that leaves it unset
    (None: the model's default)."""
    return getattr(cfg, "time_max_frequency", None)
