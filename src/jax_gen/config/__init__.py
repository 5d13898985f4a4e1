"""Typed, frozen configuration dataclasses: the single description of an experiment.

No JAX here. Every config validates itself when it is created and raises ``ValueError`` naming
the offending field and value, so bad hyperparameters fail before anything is traced. Each field
carries a docstring underneath it, which tyro turns into command-line help.

Configs are hashable (frozen), so they can be static arguments of jitted functions, and they
serialise to JSON (``to_dict`` / ``from_dict``) because checkpoints store them.

One module per area, every public name importable from ``jax_gen.config`` itself:

- ``base``: :class:`Validated`, :func:`check_finite`, :func:`deferred_validation`,
  :func:`validate_all` and the field checks the configs' ``validate`` methods use;
- ``strategies``: DDPM, flow matching, score matching (:data:`StrategyConfig`);
- ``models``: the MLP and the residual MLP (:data:`ModelConfig`);
- ``datasets``: the built-in datasets, the digits, users' points and images
  (:data:`DatasetConfig`);
- ``training``: :class:`OptimizerConfig`, :class:`TrainConfig`;
- ``sampling``: :class:`SamplerConfig`;
- ``experiment``: :class:`ExperimentConfig`, the short names (:data:`STRATEGIES`,
  :data:`MODELS`, :data:`DATASETS`, :func:`name_of`) and the JSON round trip
  (:func:`to_dict`, :func:`from_dict`).
"""

from jax_gen.config.base import Validated, check_finite, deferred_validation, validate_all
from jax_gen.config.datasets import (
    POINTS_SUFFIXES,
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
from jax_gen.config.experiment import (
    DATASETS,
    MODELS,
    SOURCES,
    STRATEGIES,
    ExperimentConfig,
    from_dict,
    name_of,
    to_dict,
)
from jax_gen.config.models import Activation, MLPConfig, ModelConfig, ResNetConfig
from jax_gen.config.sampling import SamplerConfig, SamplerName
from jax_gen.config.strategies import (
    ConsistencyStrategyConfig,
    Coupling,
    DDPMSchedule,
    DDPMStrategyConfig,
    FlowMatchingStrategyConfig,
    FlowPath,
    LossTarget,
    MeanFlowStrategyConfig,
    NormalSourceConfig,
    Prediction,
    ScoreMatchingStrategyConfig,
    ShortcutStrategyConfig,
    SourceConfig,
    StrategyConfig,
    source_of,
    time_frequency,
    time_inputs,
)
from jax_gen.config.training import OptimizerConfig, TrainConfig

__all__ = [
    "Activation",
    "CatConfig",
    "ConsistencyStrategyConfig",
    "Coupling",
    "DATASETS",
    "DDPMSchedule",
    "DDPMStrategyConfig",
    "DatasetConfig",
    "DigitsConfig",
    "EightGaussiansConfig",
    "ExperimentConfig",
    "FlowMatchingStrategyConfig",
    "FlowPath",
    "GaussianMixture1DConfig",
    "GaussianMixtureConfig",
    "ImageConfig",
    "LossTarget",
    "MLPConfig",
    "MODELS",
    "MeanFlowStrategyConfig",
    "ModelConfig",
    "MoonConfig",
    "NormalSourceConfig",
    "OptimizerConfig",
    "POINTS_SUFFIXES",
    "PointsConfig",
    "Prediction",
    "ResNetConfig",
    "SCurveConfig",
    "SOURCES",
    "STRATEGIES",
    "SamplerConfig",
    "SamplerName",
    "ScoreMatchingStrategyConfig",
    "ShortcutStrategyConfig",
    "SourceConfig",
    "StrategyConfig",
    "SwissRollConfig",
    "TrainConfig",
    "Validated",
    "check_finite",
    "deferred_validation",
    "from_dict",
    "name_of",
    "source_of",
    "time_frequency",
    "time_inputs",
    "to_dict",
    "validate_all",
]
