"""Strategies: DDPM and flow matching behind one protocol, built from their configs."""

import functools

from jax_gen.config import (
    DDPMStrategyConfig,
    FlowMatchingStrategyConfig,
    ScoreMatchingStrategyConfig,
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
from jax_gen.strategies.ddpm import DDPMStrategy
from jax_gen.strategies.flow_matching import FlowMatchingStrategy
from jax_gen.strategies.score_matching import ScoreMatchingStrategy


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
    )


__all__ = [
    "DDPMStrategy",
    "FlowMatchingStrategy",
    "ScoreMatchingStrategy",
    "Strategy",
    "create_strategy",
]
