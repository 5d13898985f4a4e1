"""Strategies: DDPM, flow matching, score matching and MeanFlow behind one protocol, built from
their configs."""

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from jax_gen.config import (
    ConsistencyStrategyConfig,
    DDPMStrategyConfig,
    FlowMatchingStrategyConfig,
    MeanFlowStrategyConfig,
    ScoreMatchingStrategyConfig,
    ShortcutStrategyConfig,
    source_of,
)
from jax_gen.parameterization import PARAMETERIZATIONS
from jax_gen.schedules import (
    CosinePath,
    LinearPath,
    VEGeometricSchedule,
    VPCosineSchedule,
    VPLinearBetaSchedule,
    VPSigmoidSchedule,
)
from jax_gen.strategies.base import Strategy
from jax_gen.strategies.consistency import ConsistencyStrategy
from jax_gen.strategies.ddpm import DDPMStrategy
from jax_gen.strategies.flow_matching import FlowMatchingStrategy
from jax_gen.strategies.mean_flow import MeanFlowStrategy
from jax_gen.strategies.score_matching import ScoreMatchingStrategy
from jax_gen.strategies.shortcut import ShortcutStrategy


@functools.singledispatch
def create_strategy(cfg) -> Strategy:
    """Builds the strategy a config describes. Extend with ``@create_strategy.register``."""
    raise TypeError(f"no strategy registered for config type {type(cfg).__name__}")


@create_strategy.register
def _(cfg: DDPMStrategyConfig) -> DDPMStrategy:
    match cfg.schedule:
        case "linear":
            schedule = VPLinearBetaSchedule(beta_min=cfg.beta_min, beta_max=cfg.beta_max)
        case "cosine":
            schedule = VPCosineSchedule()
        case "sigmoid":
            schedule = VPSigmoidSchedule()
        case _:
            raise ValueError(f"schedule={cfg.schedule!r} must be one of linear, cosine, sigmoid")
    return DDPMStrategy(
        schedule=schedule,
        parameterization=PARAMETERIZATIONS[cfg.prediction],
        num_transport_steps=cfg.num_transport_steps,
        loss_target=cfg.loss_target,
    )


@create_strategy.register
def _(cfg: FlowMatchingStrategyConfig) -> FlowMatchingStrategy:
    match cfg.path:
        case "linear":
            schedule = LinearPath()
        case "cosine":
            schedule = CosinePath()
        case _:
            raise ValueError(f"path={cfg.path!r} must be one of linear, cosine")
    return FlowMatchingStrategy(
        schedule=schedule,
        parameterization=PARAMETERIZATIONS[cfg.prediction],
        num_transport_steps=cfg.num_transport_steps,
        loss_target=cfg.loss_target,
        coupling=cfg.coupling,
        sigma=cfg.sigma,
        source=source_of(cfg),
    )


@create_strategy.register
def _(cfg: ScoreMatchingStrategyConfig) -> ScoreMatchingStrategy:
    return ScoreMatchingStrategy(
        schedule=VEGeometricSchedule(sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max),
        parameterization=PARAMETERIZATIONS[cfg.prediction],
        num_transport_steps=cfg.num_transport_steps,
        langevin_steps=cfg.langevin_steps,
        step_size=cfg.step_size,
        loss_target=cfg.loss_target,
        source_mean=None if cfg.source_mean is None else jnp.asarray(cfg.source_mean, jnp.float32),
    )


@create_strategy.register
def _(cfg: MeanFlowStrategyConfig) -> MeanFlowStrategy:
    return MeanFlowStrategy(
        schedule=LinearPath(),
        parameterization=PARAMETERIZATIONS["v"],
        num_transport_steps=cfg.num_transport_steps,
        time_mean=cfg.time_mean,
        time_std=cfg.time_std,
        equal_time_share=cfg.equal_time_share,
        adaptive_loss_power=cfg.adaptive_loss_power,
        time_sampler=cfg.time_sampler,
        jvp_tangent=cfg.jvp_tangent,
    )


@create_strategy.register
def _(cfg: ShortcutStrategyConfig) -> ShortcutStrategy:
    return ShortcutStrategy(
        schedule=LinearPath(),
        parameterization=PARAMETERIZATIONS["v"],
        num_transport_steps=cfg.num_transport_steps,
        max_sampling_steps=cfg.max_sampling_steps,
        self_consistency_share=cfg.self_consistency_share,
    )


@create_strategy.register
def _(cfg: ConsistencyStrategyConfig) -> ConsistencyStrategy:
    return ConsistencyStrategy(
        schedule=LinearPath(),
        parameterization=PARAMETERIZATIONS["v"],
        num_intervals=jnp.asarray(cfg.final_intervals, jnp.int32),
        num_transport_steps=cfg.num_transport_steps,
        initial_intervals=cfg.initial_intervals,
        final_intervals=cfg.final_intervals,
        level_mean=cfg.level_mean,
        level_std=cfg.level_std,
        huber_scale=cfg.huber_scale,
    )


@functools.singledispatch
def measure_on_data(cfg, x: Float[np.ndarray, "n d"]):
    """The strategy config with the fields it measures on the data filled in.

    Training calls this once, before the first step, with fresh data points; the checkpoint then
    stores the measured values, so sampling and ``log_prob`` need no data. Strategies with
    nothing to measure return ``cfg`` unchanged. Extend with ``@measure_on_data.register``.
    """
    return cfg


@measure_on_data.register
def _(cfg: ScoreMatchingStrategyConfig, x: Float[np.ndarray, "n d"]) -> ScoreMatchingStrategyConfig:
    """Score matching's source is centred on the data's mean (unless the config sets it)."""
    if cfg.source_mean is not None:
        if len(cfg.source_mean) != x.shape[-1]:
            raise ValueError(
                f"source_mean has {len(cfg.source_mean)} entries but the data has "
                f"{x.shape[-1]} dimensions"
            )
        return cfg
    mean = np.asarray(x, np.float64).mean(axis=0)
    return dataclasses.replace(cfg, source_mean=tuple(float(m) for m in mean))


__all__ = [
    "ConsistencyStrategy",
    "DDPMStrategy",
    "FlowMatchingStrategy",
    "MeanFlowStrategy",
    "ScoreMatchingStrategy",
    "ShortcutStrategy",
    "Strategy",
    "create_strategy",
    "measure_on_data",
]
