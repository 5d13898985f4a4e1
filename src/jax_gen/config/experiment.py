"""The experiment (what a checkpoint stores), the short names of the configs, and the JSON round
trip."""

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from jax_gen.config.base import Validated
from jax_gen.config.datasets import (
    CatConfig,
    DatasetConfig,
    DigitsConfig,
    EightGaussiansConfig,
    GaussianMixture1DConfig,
    GaussianMixtureConfig,
    ImageConfig,
    MoonConfig,
    PointsConfig,
    SCurveConfig,
    SwissRollConfig,
)
from jax_gen.config.models import MLPConfig, ModelConfig, ResNetConfig
from jax_gen.config.sampling import SamplerConfig
from jax_gen.config.strategies import (
    ConsistencyStrategyConfig,
    DDPMStrategyConfig,
    FlowMatchingStrategyConfig,
    MeanFlowStrategyConfig,
    NormalSourceConfig,
    ScoreMatchingStrategyConfig,
    ShortcutStrategyConfig,
    StrategyConfig,
)
from jax_gen.config.training import OptimizerConfig, TrainConfig


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
    "mean-flow": MeanFlowStrategyConfig,
    "consistency": ConsistencyStrategyConfig,
    "shortcut": ShortcutStrategyConfig,
}
MODELS: dict[str, type] = {"mlp": MLPConfig, "resnet": ResNetConfig}
DATASETS: dict[str, type] = {
    "cat": CatConfig,
    "moon": MoonConfig,
    "swiss-roll": SwissRollConfig,
    "gaussian-mixture": GaussianMixtureConfig,
    "eight-gaussians": EightGaussiansConfig,
    "s-curve": SCurveConfig,
    "gaussian-mixture-1d": GaussianMixture1DConfig,
    "digits": DigitsConfig,
    "points": PointsConfig,
    "image": ImageConfig,
}


SOURCES: dict[str, type] = {"normal": NormalSourceConfig, **DATASETS}
"""Where flow matching's path may start: N(0, I) (``source:normal``, the default) or any
dataset."""


def name_of(config: Any) -> str:
    """The short name of a strategy, model, dataset or source config (``"ddpm"``, ``"mlp"``,
    ...)."""
    for registry in (STRATEGIES, MODELS, SOURCES):
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
        *STRATEGIES.values(),
        *MODELS.values(),
        *SOURCES.values(),
        SamplerConfig,
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


def _from_json(value: Any) -> Any:
    """A field's value from JSON: nested configs rebuilt, lists back to the tuples they were."""
    if isinstance(value, dict):
        return from_dict(value)
    if isinstance(value, list):
        return tuple(value)
    return value


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
    kwargs = {key: _from_json(value) for key, value in data.items() if key != "type"}
    return cls(**kwargs)
