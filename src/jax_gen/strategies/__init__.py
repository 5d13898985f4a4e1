"""Strategies: DDPM and flow matching behind one protocol, built from their configs."""

import functools

from jax_gen.config import DDPMStrategyConfig, FlowMatchingStrategyConfig
from jax_gen.parameterization import PARAMETERIZATIONS
from jax_gen.schedules import LinearPath, VPLinearBetaSchedule
from jax_gen.strategies.base import Strategy
from jax_gen.strategies.ddpm import DDPMStrategy
from jax_gen.strategies.flow_matching import FlowMatchingStrategy


@functools.singledispatch
def create_strategy(cfg) -> Strategy:
    """Builds the strategy a config describes. Extend with ``@create_strategy.register``."""
    raise TypeError(f"no strategy registered for config type {type(cfg).__name__}")


@create_strategy.register
def _(cfg: DDPMStrategyConfig) -> DDPMStrategy:
    return DDPMStrategy(
        schedule=VPLinearBetaSchedule(beta_min=cfg.beta_min, beta_max=cfg.beta_max),
        parameterization=PARAMETERIZATIONS[cfg.prediction],
        num_transport_steps=cfg.num_transport_steps,
        loss_target=cfg.loss_target,
    )


@create_strategy.register
def _(cfg: FlowMatchingStrategyConfig) -> FlowMatchingStrategy:
    return FlowMatchingStrategy(
        schedule=LinearPath(),
        parameterization=PARAMETERIZATIONS[cfg.prediction],
        num_transport_steps=cfg.num_transport_steps,
        loss_target=cfg.loss_target,
    )


__all__ = ["DDPMStrategy", "FlowMatchingStrategy", "Strategy", "create_strategy"]
