"""Tests of jax_gen.config: no jax on import, short names, the JSON round trip, validation."""

import json
import subprocess
import sys

import pytest

from jax_gen import config
from jax_gen.config import (
    DATASETS,
    MODELS,
    STRATEGIES,
    ExperimentConfig,
    SamplerConfig,
    from_dict,
    name_of,
    to_dict,
)


def test_importing_the_configs_imports_no_jax():
    code = "import sys, jax_gen, jax_gen.config; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("registry", [STRATEGIES, MODELS, DATASETS])
def test_every_short_name_names_its_class(registry):
    for name, cls in registry.items():
        assert name_of(cls()) == name


def test_name_of_an_unnamed_config_raises():
    with pytest.raises(ValueError, match="no name for SamplerConfig"):
        name_of(SamplerConfig())


@pytest.mark.parametrize("cls", [*STRATEGIES.values(), *MODELS.values(), *DATASETS.values()])
def test_json_round_trip_of_every_config(cls):
    fields = (("strategy", STRATEGIES), ("model", MODELS), ("dataset", DATASETS))
    name = next(name for name, registry in fields if cls in registry.values())
    experiment = ExperimentConfig(**{name: cls()})
    data = json.loads(json.dumps(to_dict(experiment)))
    assert from_dict(data) == experiment
    assert from_dict(to_dict(SamplerConfig(sampler="ddim", eta=0.5))) == SamplerConfig(
        sampler="ddim", eta=0.5
    )


def test_from_dict_rejects_unknown_types_and_fields():
    with pytest.raises(ValueError, match="unknown config type 'Nope'"):
        from_dict({"type": "Nope"})
    with pytest.raises(ValueError, match="MoonConfig has no field"):
        from_dict({"type": "MoonConfig", "colour": 1})


def test_validation_names_the_value_and_can_be_deferred():
    with pytest.raises(ValueError, match="scale=-1.0 must be positive"):
        config.MoonConfig(scale=-1.0)
    with pytest.raises(ValueError, match="must be finite"):
        config.TrainConfig(ema_decay=float("nan"))
    with config.deferred_validation():
        bad = ExperimentConfig(dataset=config.MoonConfig(scale=-1.0))
    with pytest.raises(ValueError, match="scale=-1.0 must be positive"):
        config.validate_all(bad)
