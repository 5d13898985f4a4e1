"""Measuring a trained model: its samples against fresh data, its NFE, speed and likelihood.

Every figure stands beside its floor, the same figure for a second fresh draw of the data (what
a perfect model would score), and every random draw has a named key of its own
(:func:`~jax_gen.engine.key_stream`):

- :func:`evaluate` is the report the command line's ``evaluate`` prints and writes: per number
  of sampling steps, the NFE, the time, sliced W2, energy distance and MMD beside their floors
  and the full :func:`~jax_gen.metrics.quality_report`; then the negative log-likelihood in
  nats per dimension;
- :func:`summarize_fit` is what ``train`` prints after training, :func:`compare_to_data` what
  ``generate`` prints: sliced W2 and the support figures (k-NN precision and recall, the
  classifier two-sample test, the share inside a silhouette).
"""

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jax_gen.config import DatasetConfig, ExperimentConfig, SamplerConfig, name_of
from jax_gen.data import (
    class_frequencies,
    get_batch,
    get_labeled_batch,
    has_log_density,
    log_density,
    num_classes,
    support_indicator,
)
from jax_gen.engine import FitState, key_stream, run_keys
from jax_gen.likelihood import log_prob
from jax_gen.metrics import (
    CHEAP_METRICS,
    QUALITY_METRICS,
    distance_and_floor,
    energy_distance,
    mmd,
    quality_report,
    sliced_wasserstein,
)
from jax_gen.sampling import SampleResult, sample
from jax_gen.strategies import DDPMStrategy, Strategy, create_strategy

METRICS = {"sliced W2": sliced_wasserstein, "energy": energy_distance, "MMD": mmd}
"""The distances of every :func:`evaluate` row, by the name its table and JSON give them."""

NUM_EVAL_SAMPLES = 10_000
"""Samples the quality figures are computed on, however many are generated: the first ones,
which, the points being independent draws, are a uniformly random subsample."""

DrawData = Callable[[PRNGKeyArray, int], Float[Array, "n d"]]
"""``draw(key, n)``: n fresh data points."""


# ----------------------------------------------------------------------------------------------
# Keys, labels and fresh data
# ----------------------------------------------------------------------------------------------


class SamplingKeys(NamedTuple):
    """The named streams of sampling a trained model with one seed, none shared with another."""

    sample: PRNGKeyArray
    """The sampler's source and noise draws (the same as training's ``run_keys(seed).sample``)."""
    labels: PRNGKeyArray
    """The class of each point of a class-conditional model."""
    evaluate: PRNGKeyArray
    """Fresh data and the metrics' own draws."""
    variance: PRNGKeyArray
    """The data and noise that measure DDPM's optimal reverse variance (``--optimal-variance``)."""


def sampling_keys(seed: int) -> SamplingKeys:
    """The keys of sampling with this seed: ``key_stream(key(seed), name)`` for each name."""
    root = jax.random.key(seed)
    return SamplingKeys(*(key_stream(root, name) for name in SamplingKeys._fields))


def class_data(key: PRNGKeyArray, dataset: DatasetConfig, label: int, n: int) -> np.ndarray:
    """n fresh data points of one class (drawn in a batch three times the expected need)."""
    frequency = float(class_frequencies(dataset)[label])
    points, labels = get_labeled_batch(key, dataset, int(np.ceil(3 * n / frequency)) + 64)
    chosen = np.asarray(points)[np.asarray(labels) == label][:n]
    if chosen.shape[0] < n:
        raise ValueError(f"drew too few points of class {label}; try another --seed")
    return chosen


def data_sampler(dataset: DatasetConfig, condition: int | None = None) -> DrawData:
    """The fresh data a model is measured against: the dataset's, or its class ``condition``."""
    if condition is None:
        return lambda key, n: get_batch(key, dataset, n)
    return lambda key, n: class_data(key, dataset, condition, n)


def fresh_data(
    cfg: ExperimentConfig, key: PRNGKeyArray, n: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """n fresh data points, and their labels when the model is class-conditional."""
    if cfg.train.conditional:
        data, labels = get_labeled_batch(key, cfg.dataset, n)
        return np.asarray(data), np.asarray(labels)
    return np.asarray(get_batch(key, cfg.dataset, n)), None


def with_optimal_variance(
    strategy: Strategy, model, cfg: ExperimentConfig, key: PRNGKeyArray, n: int = 4096
) -> Strategy:
    """DDPM with the reverse variance of least KL divergence for ``model``, measured on n fresh
    data points (:meth:`~jax_gen.strategies.DDPMStrategy.with_optimal_variance`); what
    ``--optimal-variance`` samples with.

    Args:
        strategy: the trained DDPM strategy.
        model: its unconditional network.
        cfg: the run's config (its dataset supplies the data).
        key: the measurement's key (:attr:`SamplingKeys.variance`).
        n: data points of the measurement.

    Raises:
        ValueError: not DDPM, or a class-conditional model.
    """
    if not isinstance(strategy, DDPMStrategy):
        raise ValueError(f"--optimal-variance applies to ddpm, not {name_of(cfg.strategy)}")
    if cfg.train.conditional:
        raise ValueError("--optimal-variance needs an unconditional model")
    x = get_batch(key_stream(key, "data"), cfg.dataset, n)
    return strategy.with_optimal_variance(model, x, key_stream(key, "noise"))


def sampling_labels(
    cfg: ExperimentConfig,
    sampler: SamplerConfig,
    condition: int | None,
    key: PRNGKeyArray,
    n: int,
) -> Int[Array, " n"] | None:
    """The class of each of n points: ``condition``, or drawn with the data's class frequencies.

    None for an unconditional model, which takes neither a class nor a guidance scale.

    Raises:
        ValueError: a class or a guidance scale for an unconditional model, or a class the
            dataset does not have.
    """
    if not cfg.train.conditional:
        if condition is not None:
            raise ValueError("--condition needs a model trained with --conditional")
        if sampler.guidance_scale != 1.0:
            raise ValueError("--guidance-scale needs a model trained with --conditional")
        return None
    classes = num_classes(cfg.dataset)
    if condition is not None:
        if not 0 <= condition < classes:
            raise ValueError(
                f"--condition {condition} is not a class of {name_of(cfg.dataset)} "
                f"(0..{classes - 1})"
            )
        return jax.numpy.full(n, condition, jax.numpy.int32)
    weights = jax.numpy.asarray(class_frequencies(cfg.dataset))
    return jax.random.choice(key, classes, (n,), p=weights).astype(jax.numpy.int32)


# ----------------------------------------------------------------------------------------------
# Samples against fresh data
# ----------------------------------------------------------------------------------------------


def quality(
    samples: Float[np.ndarray, "n d"],
    dataset: DatasetConfig,
    key: PRNGKeyArray,
    condition: int | None = None,
) -> tuple[float, float]:
    """Sliced W2 from samples to fresh data (of class ``condition``), and its noise floor."""
    return distance_and_floor(samples, data_sampler(dataset, condition), key)


def support_report(
    samples: Float[np.ndarray, "n d"],
    dataset: DatasetConfig,
    key: PRNGKeyArray,
    condition: int | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The figures that see the data's support (:func:`~jax_gen.metrics.quality_report`):
    k-NN precision and recall, the classifier two-sample test and, on a silhouette, the share
    of samples inside it, each beside a second fresh draw's (``CHEAP_METRICS`` by default)."""
    return quality_report(
        samples,
        data_sampler(dataset, condition),
        key,
        inside=support_indicator(dataset),
        metrics=metrics or CHEAP_METRICS,
    )


class Comparison(NamedTuple):
    """Samples against fresh data: what ``train`` and ``generate`` print and plot."""

    data: Float[np.ndarray, "n d"]
    """As many fresh data points as samples (of class ``condition`` if one was given)."""
    data_labels: Int[np.ndarray, " n"] | None
    """Their classes, for a class-conditional model (None otherwise)."""
    distance: float
    """Sliced W2 from the samples to fresh data (mean over draws)."""
    floor: float
    """The same between two fresh draws of the data."""
    support: dict[str, Any]
    """:func:`support_report` of the samples."""


def compare_to_data(
    samples: Float[np.ndarray, "n d"],
    cfg: ExperimentConfig,
    *,
    data_key: PRNGKeyArray,
    metric_key: PRNGKeyArray,
    condition: int | None = None,
) -> Comparison:
    """Fresh data beside the samples (drawn with ``data_key``), and the samples' sliced W2 and
    support figures (drawn with ``metric_key`` and its ``"support"`` stream)."""
    n = samples.shape[0]
    if condition is None:
        data, data_labels = fresh_data(cfg, data_key, n)
    else:
        data, data_labels = class_data(data_key, cfg.dataset, condition, n), np.full(n, condition)
    distance, floor = quality(samples, cfg.dataset, metric_key, condition)
    support = support_report(samples, cfg.dataset, key_stream(metric_key, "support"), condition)
    return Comparison(data, data_labels, distance, floor, support)


class FitSummary(NamedTuple):
    """A trained model's samples and how they compare with fresh data."""

    samples: Float[np.ndarray, "n d"]
    """Points drawn with the EMA weights and the strategy's default sampler."""
    labels: Int[Array, " n"] | None
    """Their classes, drawn with the data's frequencies, for a class-conditional model."""
    comparison: Comparison


def summarize_fit(
    state: FitState,
    num_samples: int,
    *,
    strategy: Strategy | None = None,
    num_eval_samples: int = NUM_EVAL_SAMPLES,
) -> FitSummary:
    """What ``train`` reports after training: ``num_samples`` samples of the EMA model and the
    :func:`compare_to_data` of the first ``num_eval_samples`` of them, with the run's
    ``sample`` and ``evaluate`` keys (:func:`~jax_gen.engine.run_keys` of the config's seed).

    Args:
        state: a trained run (:func:`~jax_gen.engine.fit`'s result or a loaded checkpoint).
        num_samples: points to draw.
        strategy: the strategy trained (default: built from the config).
        num_eval_samples: how many of them are compared with as many fresh data points.
    """
    cfg = state.config
    strategy = create_strategy(cfg.strategy) if strategy is None else strategy
    keys = run_keys(cfg.train.seed)
    label_key, data_key, metric_key = (
        key_stream(keys.evaluate, name) for name in ("labels", "data", "metrics")
    )
    labels = sampling_labels(cfg, SamplerConfig(), None, label_key, num_samples)
    result = sample(
        strategy, state.state.ema_model, keys.sample, num_samples, state.data_dim, labels=labels
    )
    samples = np.asarray(result.samples)
    shown = samples[:num_eval_samples]
    comparison = compare_to_data(shown, cfg, data_key=data_key, metric_key=metric_key)
    return FitSummary(samples, labels, comparison)


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------


def timed_sample(
    strategy: Strategy,
    model: eqx.Module,
    key: PRNGKeyArray,
    num_samples: int,
    data_dim: int,
    sampler: SamplerConfig,
    labels: Int[Array, " n"] | None = None,
    batch_size: int | None = None,
) -> tuple[SampleResult, float]:
    """Samples once to compile, then again on the clock; returns (result, seconds)."""
    args = (strategy, model, key, num_samples, data_dim, sampler, labels)
    jax.block_until_ready(sample(*args, batch_size=batch_size))
    start = time.perf_counter()
    result = jax.block_until_ready(sample(*args, batch_size=batch_size))
    return result, time.perf_counter() - start


def nats_per_dim(log_p: Float[np.ndarray, " n"], data_dim: int) -> dict[str, float]:
    """Mean of -log p per dimension and its Monte Carlo standard error."""
    nll = -np.asarray(log_p, dtype=np.float64) / data_dim
    return {"mean": float(nll.mean()), "stderr": float(nll.std(ddof=1) / np.sqrt(nll.size))}


class LikelihoodKeys(NamedTuple):
    """The likelihood's named stream of a seed, split in two."""

    data: PRNGKeyArray
    """The fresh points whose likelihood is measured (and the heat map's window)."""
    probes: PRNGKeyArray
    """Hutchinson's probe vectors."""


def likelihood_keys(seed: int) -> LikelihoodKeys:
    """``split(key_stream(key(seed), "likelihood"))``."""
    return LikelihoodKeys(*jax.random.split(key_stream(jax.random.key(seed), "likelihood")))


def _reusing_draws(draw: DrawData) -> DrawData:
    """``draw`` that computes each (key, n) once: every row and distance of :func:`evaluate`
    measures against the same fresh draws."""
    drawn: dict[tuple[bytes, int], Any] = {}

    def reused(key: PRNGKeyArray, n: int):
        index = (np.asarray(jax.random.key_data(key)).tobytes(), n)
        if index not in drawn:
            drawn[index] = draw(key, n)
        return drawn[index]

    return reused


def evaluate(
    strategy: Strategy,
    model: eqx.Module,
    cfg: ExperimentConfig,
    data_dim: int,
    sampler: SamplerConfig,
    *,
    seed: int = 0,
    steps: Sequence[int] = (),
    num_samples: int = 10000,
    num_eval_samples: int = NUM_EVAL_SAMPLES,
    batch_size: int | None = None,
    repeats: int = 3,
    condition: int | None = None,
    nll_points: int = 1000,
    estimator: Literal["exact", "hutchinson"] = "exact",
    num_probes: int = 1,
) -> dict[str, Any]:
    """The report of the command line's ``evaluate``: one row per number of sampling steps.

    A row samples ``num_samples`` points (timed after a compiling run) and measures the first
    ``num_eval_samples`` of them against as many fresh data points (of class ``condition`` if
    given): sliced W2, energy distance and MMD
    each beside its floor (:func:`~jax_gen.metrics.distance_and_floor`, mean over
    ``repeats`` draws; every row and distance sees the same draws) and the full
    :func:`~jax_gen.metrics.quality_report`. Then, with ``nll_points`` > 0, the negative
    log-likelihood of fresh points by the probability-flow ODE, in nats per dimension, beside
    the data's own entropy where the dataset knows its density.

    Args:
        strategy, model: the trained strategy and network (EMA weights or not).
        cfg: the run's config; data_dim: the data's dimension D.
        sampler: the sampler of every row (its ``num_sampling_steps`` unless ``steps``).
        seed: the seed of the sampler, the labels, the fresh data and the likelihood's points
            (:func:`sampling_keys`, :func:`likelihood_keys`).
        steps: sampling step counts, one row each (default: one row, ``sampler``'s).
        num_samples: points sampled (and timed) per row.
        num_eval_samples: how many of them are measured (fresh data draws have this size).
        batch_size: points per compiled call of the sampler (:func:`~jax_gen.sampling.sample`).
        repeats: fresh draws each distance and its floor are averaged over.
        condition: the class to generate, for a class-conditional model (default: classes
            drawn with the data's frequencies).
        nll_points: fresh points whose log-likelihood is computed (0: none).
        estimator, num_probes: the likelihood ODE's divergence
            (:func:`~jax_gen.likelihood.log_prob`).

    Returns:
        A JSON-ready dict: ``strategy``, ``prediction``, ``dataset``, ``data_dim``,
        ``sampler``, ``condition``, ``guidance_scale`` (None unconditional), ``num_samples``,
        ``num_eval_samples`` (the points measured), ``rows`` (each ``steps``, ``nfe``,
        ``seconds``, ``samples_per_s``, one
        ``{"distance", "floor", "ratio"}`` per name of :data:`METRICS`, and ``quality``) and,
        with ``nll_points``, ``nll_nats_per_dim`` (``mean``, ``stderr``, ``points``,
        ``estimator``, ``seconds``, and ``data_entropy`` where known).
    """
    keys = sampling_keys(seed)
    labels = sampling_labels(cfg, sampler, condition, keys.labels, num_samples)
    draw_data = _reusing_draws(data_sampler(cfg.dataset, condition))
    rows = []
    for row_steps in steps or (sampler.num_sampling_steps,):
        row_sampler = dataclasses.replace(sampler, num_sampling_steps=row_steps)
        result, seconds = timed_sample(
            strategy, model, keys.sample, num_samples, data_dim, row_sampler, labels, batch_size
        )
        samples = np.asarray(result.samples[:num_eval_samples])
        row = {
            "steps": row_steps or strategy.num_transport_steps,
            "nfe": int(result.nfe),
            "seconds": seconds,
            "samples_per_s": num_samples / seconds,
        }
        for name, metric in METRICS.items():
            distance, floor = distance_and_floor(
                samples, draw_data, keys.evaluate, repeats=repeats, metric=metric
            )
            row[name] = {"distance": distance, "floor": floor, "ratio": distance / floor}
        row["quality"] = support_report(
            samples,
            cfg.dataset,
            key_stream(keys.evaluate, "report"),
            condition,
            metrics=QUALITY_METRICS,
        )
        rows.append(row)

    report = {
        "strategy": name_of(cfg.strategy),
        "prediction": cfg.strategy.prediction,
        "dataset": name_of(cfg.dataset),
        "data_dim": data_dim,
        "sampler": sampler.sampler,
        "condition": condition,
        "guidance_scale": sampler.guidance_scale if cfg.train.conditional else None,
        "num_samples": num_samples,
        "num_eval_samples": min(num_samples, num_eval_samples),
        "rows": rows,
    }
    if nll_points:
        likelihood = likelihood_keys(seed)
        data = get_batch(likelihood.data, cfg.dataset, nll_points)
        start = time.perf_counter()
        model_log_p = log_prob(
            strategy, model, data, key=likelihood.probes, estimator=estimator, num_probes=num_probes
        )
        nll = nats_per_dim(np.asarray(model_log_p), data_dim)
        nll.update(points=nll_points, estimator=estimator)
        nll["seconds"] = time.perf_counter() - start
        if has_log_density(cfg.dataset):
            nll["data_entropy"] = nats_per_dim(np.asarray(log_density(cfg.dataset, data)), data_dim)
        report["nll_nats_per_dim"] = nll
    return report


def density_panels(
    strategy: Strategy,
    model: eqx.Module,
    dataset: DatasetConfig,
    points: Float[np.ndarray, "n d"],
    *,
    key: PRNGKeyArray,
    estimator: Literal["exact", "hutchinson"] = "exact",
    num_probes: int = 1,
) -> list[tuple[str, Float[np.ndarray, " n"]]]:
    """The log-density at ``points``: the model's (``"model"``, by the probability-flow ODE)
    and, where the dataset knows it, the data's own (``"data"``): a density heat map's panels.
    ``key`` draws Hutchinson's probes (:func:`likelihood_keys` ``.probes``)."""
    model_log_p = log_prob(
        strategy, model, points, key=key, estimator=estimator, num_probes=num_probes
    )
    panels = [("model", np.asarray(model_log_p))]
    if has_log_density(dataset):
        panels.append(("data", np.asarray(log_density(dataset, points))))
    return panels
