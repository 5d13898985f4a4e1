"""What every command's runner shares: reporting, output paths, checkpoint agreement, the
samples figure and Rerun."""

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from jax_gen import checkpoint, plots, recording
from jax_gen.cli.commands import RerunOptions, SamplingOptions
from jax_gen.config import ExperimentConfig, SamplerConfig, name_of, source_of
from jax_gen.data import data_dim as dataset_dim
from jax_gen.data import has_log_density, image_shape, is_planar, log_density
from jax_gen.evaluation import sampling_keys, with_optimal_variance
from jax_gen.fields import plane
from jax_gen.geometry import line_bounds
from jax_gen.strategies import create_strategy


def say(message: str) -> None:
    if jax.process_index() == 0:  # several hosts run one training: one of them reports
        tqdm.write(message)


def default_model_path(cfg: ExperimentConfig) -> Path:
    """outputs/<dataset>_<strategy>.eqx (..._reflow.eqx for a reflow, so it keeps its teacher;
    <dataset>-from-<source>_... for a source other than N(0, I))."""
    reflow = "_reflow" if getattr(cfg.strategy, "coupling", None) == "reflow" else ""
    data = name_of(cfg.dataset)
    if source_of(cfg.strategy) is not None:
        data += f"-from-{name_of(source_of(cfg.strategy))}"
    return Path("outputs") / f"{data}_{name_of(cfg.strategy)}{reflow}.eqx"


def beside(model_path: Path, suffix: str) -> Path:
    """outputs/cat_ddpm.eqx -> outputs/cat_ddpm<suffix>."""
    return model_path.with_name(model_path.stem + suffix)


def check_agrees(given: Any, default: Any, stored: Any, group: str, ignore=()) -> None:
    """Raises ``ValueError`` if flags the user set contradict the checkpoint's config.

    A field counts as set when it differs from the class default; a different class (e.g.
    ``model:resnet`` for an MLP checkpoint) always contradicts.
    """
    if given is None or given == default:
        return
    if type(given) is not type(stored):
        raise ValueError(
            f"{group}:{name_of(given)} contradicts the checkpoint's {group}:{name_of(stored)}"
        )
    class_default = type(given)()
    for field in dataclasses.fields(given):
        if field.name in ignore:
            continue
        value, stored_value = getattr(given, field.name), getattr(stored, field.name)
        if value != getattr(class_default, field.name) and value != stored_value:
            flag = f"--{group}.{field.name.replace('_', '-')}"
            raise ValueError(
                f"{flag}={value!r} contradicts the checkpoint's {field.name}={stored_value!r}"
            )


def plot_coordinates(points: Any, dataset: Any) -> np.ndarray:
    """The 2-D coordinates points of shape (..., D) are drawn at: their plane for 2-D data,
    else (a points file with D > 2 columns) their first two coordinates."""
    if is_planar(dataset):
        return plane(points, dataset)
    return np.asarray(points)[..., :2]


def plot_title(title: str, dataset: Any) -> str:
    """``title``, noting which coordinates are drawn when the data have no plane."""
    if is_planar(dataset) or image_shape(dataset) is not None:
        return title
    return f"{title} (coordinates 1-2 of {dataset_dim(dataset)})"


def quality_line(distance: float, floor: float, shown: int, total: int) -> str:
    """Sliced W2 beside its floor, and which points it measured (``shown`` of ``total``)."""
    which = f"{shown:,} points" if shown == total else f"the first {shown:,} of {total:,} points"
    return (
        f"sliced W2 to fresh data {distance:.3f} "
        f"(noise floor {floor:.3f}, ratio {distance / floor:.2f}) on {which}"
    )


def count_title(title: str, shown: int, total: int) -> str:
    """``title``, with how many of the points a figure draws when it draws fewer than all."""
    return title if shown == total else f"{title} ({shown:,} of {total:,} points)"


def describe_sampling(
    cfg: ExperimentConfig, sampler: SamplerConfig, nfe: int, condition: int | None = None
) -> str:
    s = cfg.strategy
    name = "" if sampler.sampler == "default" else f", {sampler.sampler} sampler"
    text = f"{name_of(s)}, {s.prediction}-prediction{name}, NFE {nfe}"
    if source_of(s) is not None:
        text += f", from {name_of(source_of(s))}"
    if sampler.optimal_variance:
        text += ", optimal variance"
    if cfg.train.conditional:
        which = "all classes" if condition is None else f"class {condition}"
        text += f", {which}, guidance {sampler.guidance_scale:g}"
    return text


IMAGES_SHOWN = 100
"""Image samples drawn in a figure: the first 100 (about as many per class row), a grid one can
still read however many points were generated and measured."""


def save_samples_figure(
    path: Path, samples, data, cfg: ExperimentConfig, title: str, labels=None, data_labels=None
) -> None:
    """Points beside fresh data (see :func:`plot_coordinates`), an image grid (a row per class)
    for images, histograms beside the data's density for one-dimensional data."""
    shape = image_shape(cfg.dataset)
    if dataset_dim(cfg.dataset) == 1:
        density = None
        if has_log_density(cfg.dataset):
            xs = np.linspace(*line_bounds(np.concatenate([samples, data]).ravel(), 0.0), 400)
            density = (xs, np.exp(np.asarray(log_density(cfg.dataset, xs[:, None]))))
        plots.save_histogram_png(path, samples, data, title, density)
        return
    if shape is None:
        plots.save_samples_png(
            path,
            plot_coordinates(samples, cfg.dataset),
            plot_coordinates(data, cfg.dataset),
            title=plot_title(title, cfg.dataset),
            labels=None if labels is None else np.asarray(labels),
            data_labels=None if data_labels is None else np.asarray(data_labels),
        )
        return
    images, row_labels, rows = np.asarray(samples)[:IMAGES_SHOWN], None, None
    if labels is not None:
        images, labels = np.asarray(samples), np.asarray(labels)
        order = np.argsort(labels, kind="stable")
        images, present = images[order], np.unique(labels)
        rows, row_labels = len(present), [f"class {k}" for k in present]
        per_row = min(int(np.sum(labels == k)) for k in present)
        per_row = min(per_row, max(IMAGES_SHOWN // len(present), 1))
        images = np.concatenate([images[labels[order] == k][:per_row] for k in present])
    plots.save_image_grid(path, images, shape, rows=rows, title=title, row_labels=row_labels)


def describe(cfg: ExperimentConfig) -> str:
    s = cfg.strategy
    text = f"{name_of(s)}, {s.prediction}-prediction, {s.num_transport_steps} steps"
    if getattr(s, "coupling", "independent") != "independent":
        text += f", {s.coupling} coupling"
    if source_of(s) is not None:
        text += f", from {name_of(source_of(s))}"
    return text


def open_rerun(options: RerunOptions, model_path: Path, app: str):
    if not options.rerun and not options.rerun_spawn:
        return None
    path = options.rerun_path or beside(model_path, f".{app}.rrd")
    logger = recording.RerunLogger(f"jax_gen_{app}", recording_path=path, spawn=options.rerun_spawn)
    if logger.warning:
        say(logger.warning)
    return logger, path


def load_for_sampling(options: SamplingOptions):
    """Loads the checkpoint, checks optional flags against it, builds strategy and model."""
    saved = checkpoint.load(options.model_path)
    cfg = saved.config
    check_agrees(options.strategy, None, cfg.strategy, "strategy", ignore=("num_transport_steps",))
    check_agrees(options.model, None, cfg.model, "model")
    check_agrees(options.dataset, None, cfg.dataset, "dataset")
    sampler = options.sampler
    if sampler.num_sampling_steps is None and options.strategy is not None:
        steps = options.strategy.num_transport_steps
        if steps != type(options.strategy)().num_transport_steps:
            sampler = dataclasses.replace(sampler, num_sampling_steps=steps)
    model = saved.state.ema_model if options.use_ema else saved.state.model
    strategy = create_strategy(cfg.strategy)
    if sampler.optimal_variance:
        key = sampling_keys(options.seed).variance
        strategy = with_optimal_variance(strategy, model, cfg, key)
    return cfg, strategy, model, saved.data_dim, sampler
