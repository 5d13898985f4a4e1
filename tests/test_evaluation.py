"""Measuring a trained model: its report, its keys, its labels and its fresh data."""

import dataclasses

import jax
import numpy as np
import pytest

from jax_gen import engine, evaluation
from jax_gen.config import (
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    GaussianMixtureConfig,
    MLPConfig,
    SamplerConfig,
    TrainConfig,
)
from jax_gen.data import gaussian_mixture_centres
from jax_gen.metrics import distance_and_floor
from jax_gen.strategies import create_strategy

CFG = ExperimentConfig(
    strategy=FlowMatchingStrategyConfig(num_transport_steps=4),
    model=MLPConfig(hidden_dim=16, depth=2),
    dataset=GaussianMixtureConfig(),
    train=TrainConfig(batch_size=64, train_steps=20, log_interval=10),
)


@pytest.fixture(scope="module")
def fitted():
    return engine.fit(CFG)


def test_the_report_has_a_row_per_step_count_and_the_likelihood(fitted):
    strategy = create_strategy(CFG.strategy)
    kwargs = dict(seed=1, steps=(2, 4), num_samples=100, repeats=2, nll_points=16)
    report = evaluation.evaluate(strategy, fitted.ema_model, CFG, 2, SamplerConfig(), **kwargs)
    assert report["strategy"] == "flow-matching" and report["dataset"] == "gaussian-mixture"
    assert report["guidance_scale"] is None and report["num_samples"] == 100
    assert [(row["steps"], row["nfe"]) for row in report["rows"]] == [(2, 2), (4, 4)]
    for row in report["rows"]:
        for name in evaluation.METRICS:
            m = row[name]
            assert m["ratio"] == pytest.approx(m["distance"] / m["floor"])
        assert row["quality"]["n"] == 100 and "precision" in row["quality"]
    nll = report["nll_nats_per_dim"]
    assert nll["points"] == 16 and nll["estimator"] == "exact" and np.isfinite(nll["mean"])
    assert "data_entropy" in nll  # the mixture knows its density
    # The same seed gives the same figures (the times aside).
    again = evaluation.evaluate(strategy, fitted.ema_model, CFG, 2, SamplerConfig(), **kwargs)
    for a, b in zip(report["rows"], again["rows"], strict=True):
        assert {k: v for k, v in a.items() if k not in ("seconds", "samples_per_s")} == {
            k: v for k, v in b.items() if k not in ("seconds", "samples_per_s")
        }


def test_reused_draws_give_the_figures_of_fresh_draws():
    draw = evaluation.data_sampler(GaussianMixtureConfig())
    reused = evaluation._reusing_draws(draw)
    samples = np.asarray(draw(jax.random.key(9), 200))
    key = jax.random.key(3)
    plain = distance_and_floor(samples, draw, key, repeats=2)
    assert distance_and_floor(samples, reused, key, repeats=2) == plain
    assert distance_and_floor(samples, reused, key, repeats=2) == plain  # from the cache


def test_summarize_fit_samples_with_the_runs_keys(fitted):
    summary = evaluation.summarize_fit(fitted, 100)
    assert summary.samples.shape == (100, 2) and summary.labels is None
    found = summary.comparison
    assert found.data.shape == (100, 2) and found.data_labels is None
    assert found.distance > 0 and found.floor > 0 and "c2st" in found.support
    assert np.array_equal(evaluation.summarize_fit(fitted, 100).samples, summary.samples)


def test_sampling_labels_and_class_data():
    conditional = dataclasses.replace(CFG, train=dataclasses.replace(CFG.train, conditional=True))
    key = jax.random.key(0)
    assert evaluation.sampling_labels(CFG, SamplerConfig(), None, key, 5) is None
    with pytest.raises(ValueError, match="--condition needs a model trained"):
        evaluation.sampling_labels(CFG, SamplerConfig(), 1, key, 5)
    with pytest.raises(ValueError, match="--guidance-scale needs a model trained"):
        evaluation.sampling_labels(CFG, SamplerConfig(guidance_scale=2.0), None, key, 5)
    with pytest.raises(ValueError, match=r"\(0\.\.3\)"):
        evaluation.sampling_labels(conditional, SamplerConfig(), 7, key, 5)
    np.testing.assert_array_equal(
        evaluation.sampling_labels(conditional, SamplerConfig(), 2, key, 3), [2, 2, 2]
    )
    drawn = np.asarray(evaluation.sampling_labels(conditional, SamplerConfig(), None, key, 400))
    assert set(np.unique(drawn)) == {0, 1, 2, 3}
    points = evaluation.class_data(key, GaussianMixtureConfig(), 1, 50)
    centres = gaussian_mixture_centres(GaussianMixtureConfig())
    nearest = np.linalg.norm(points[:, None] - centres[None], axis=-1).argmin(axis=1)
    assert points.shape == (50, 2) and np.mean(nearest == 1) > 0.9


def test_nats_per_dim_and_the_named_keys():
    nll = evaluation.nats_per_dim(np.array([-2.0, -4.0, -6.0]), 2)
    assert nll["mean"] == pytest.approx(2.0) and nll["stderr"] == pytest.approx(1 / np.sqrt(3))
    keys = evaluation.sampling_keys(5)
    root = jax.random.key(5)
    for name, key in keys._asdict().items():
        expected = engine.key_stream(root, name)
        np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(expected))
    # The sampler's stream is training's: train samples the model as `generate --seed` does.
    run = engine.run_keys(5)
    np.testing.assert_array_equal(jax.random.key_data(keys.sample), jax.random.key_data(run.sample))
