"""``jax-gen generate`` and ``jax-gen animate``: sample a checkpoint, plot or animate the points."""

import contextlib
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jax_gen import animation
from jax_gen.cli.commands import AnimateCommand, GenerateCommand
from jax_gen.cli.common import (
    beside,
    count_title,
    describe_sampling,
    load_for_sampling,
    open_rerun,
    plot_coordinates,
    plot_title,
    quality_line,
    save_samples_figure,
    say,
)
from jax_gen.data import image_shape, is_planar
from jax_gen.engine import check_dataset, key_stream
from jax_gen.evaluation import compare_to_data, sampling_keys, sampling_labels
from jax_gen.fields import plane
from jax_gen.files import check_output_path, points_writer
from jax_gen.metrics import format_report
from jax_gen.sampling import SampleResult, frame_times, sample, sample_batches


def run_generate(cmd: GenerateCommand) -> None:
    options = cmd.sampling
    image_path = cmd.output_image_path or beside(options.model_path, ".samples.png")
    check_output_path(image_path, "--output-image-path")
    if cmd.output_samples_path is not None:
        check_output_path(cmd.output_samples_path, "--output-samples-path")
    cfg, strategy, model, data_dim, sampler = load_for_sampling(options)
    check_dataset(cfg.dataset)

    n = cmd.num_samples
    shown = min(n, cmd.num_eval_samples)
    keys = sampling_keys(options.seed)
    labels = sampling_labels(cfg, sampler, options.condition, keys.labels, n)
    rerun_asked = cmd.rerun.rerun or cmd.rerun.rerun_spawn
    batches = sample_batches(
        strategy,
        model,
        keys.sample,
        n,
        data_dim,
        sampler,
        labels,
        keep_trajectory=rerun_asked and is_planar(cfg.dataset),
        batch_size=options.batch_size,
    )
    drawn = stream_samples(batches, shown, cmd.output_samples_path, n, data_dim)
    title = describe_sampling(cfg, sampler, drawn.nfe, options.condition)
    found = compare_to_data(
        drawn.first,
        cfg,
        data_key=keys.evaluate,
        metric_key=key_stream(keys.evaluate, "metrics"),
        condition=options.condition,
    )
    shown_labels = None if labels is None else labels[:shown]
    save_samples_figure(
        image_path,
        drawn.first,
        found.data,
        cfg,
        count_title(title, shown, n),
        shown_labels,
        found.data_labels,
    )
    rerun = open_rerun(cmd.rerun, options.model_path, "generate")
    if rerun and drawn.trajectory is not None:
        rerun[0].log_trajectory(plane(drawn.trajectory, cfg.dataset))
    if rerun:
        rerun[0].close()

    say(f"generated {n} points with {title} in {drawn.seconds:.2f} s")
    say(quality_line(found.distance, found.floor, shown, n))
    say(format_report(found.support))
    say(f"samples plot {image_path}")
    if cmd.output_samples_path is not None:
        say(f"points       {cmd.output_samples_path}")
    if rerun:
        say(f"rerun        {rerun[1]}")


class Drawn(NamedTuple):
    """What :func:`stream_samples` keeps of a draw."""

    first: np.ndarray
    """The first points, on the host (the ones measured and drawn)."""
    trajectory: np.ndarray | None
    """Their trajectory, when the batches carry one."""
    nfe: int
    """Network evaluations per point (the largest batch's)."""
    seconds: float
    """Time spent sampling, writing excluded."""


def stream_samples(
    batches: Iterable[tuple[int, SampleResult]],
    keep: int,
    path: Path | None,
    num_samples: int,
    data_dim: int,
) -> Drawn:
    """Runs the sampler's batches, writes every point to ``path`` (if given) as it comes and
    keeps only the first ``keep`` points (and their trajectory): memory holds one batch and
    the kept points, however many are drawn."""
    first, frames, nfe, seconds = [], [], 0, 0.0
    writer = points_writer(path, num_samples, data_dim) if path else contextlib.nullcontext()
    with writer as write:
        iterator = iter(batches)
        while True:
            start_time = time.perf_counter()
            batch = next(iterator, None)
            if batch is None:
                break
            start, result = batch
            points = np.asarray(result.samples)
            seconds += time.perf_counter() - start_time
            nfe = max(nfe, int(result.nfe))
            if write is not None:
                write(points)
            if start < keep:
                first.append(points[: keep - start])
                if result.trajectory is not None:
                    frames.append(np.asarray(result.trajectory[:, : keep - start]))
    trajectory = np.concatenate(frames, axis=1) if frames else None
    return Drawn(np.concatenate(first), trajectory, nfe, seconds)


def run_animate(cmd: AnimateCommand) -> None:
    options = cmd.sampling
    video_path = cmd.output_video_path or beside(options.model_path, ".gif")
    check_output_path(video_path, "--output-video-path")
    cfg, strategy, model, data_dim, sampler = load_for_sampling(options)

    keys = sampling_keys(options.seed)
    labels = sampling_labels(cfg, sampler, options.condition, keys.labels, cmd.num_samples)
    result = sample(
        strategy,
        model,
        keys.sample,
        cmd.num_samples,
        data_dim,
        sampler,
        labels,
        keep_trajectory=True,
        batch_size=options.batch_size,
    )
    title = describe_sampling(cfg, sampler, int(result.nfe), options.condition)
    states = result.trajectory.shape[0]
    shape = image_shape(cfg.dataset)
    if data_dim == 1:
        trajectory = np.asarray(result.trajectory)
        frames = animation.save_path_gif(
            video_path,
            np.asarray(frame_times(strategy, sampler)),
            trajectory,
            fps=cmd.fps,
            max_frames=cmd.max_frames,
            title=title,
        )
    elif shape is None:
        trajectory = plot_coordinates(result.trajectory, cfg.dataset)
        frames = animation.save_trajectory_gif(
            video_path,
            trajectory,
            fps=cmd.fps,
            max_frames=cmd.max_frames,
            title=plot_title(title, cfg.dataset),
        )
    else:
        trajectory = np.asarray(result.trajectory)
        if labels is not None:
            trajectory = trajectory[:, np.argsort(np.asarray(labels), kind="stable")]
        frames = animation.save_image_trajectory_gif(
            video_path,
            trajectory,
            shape,
            fps=cmd.fps,
            max_frames=cmd.max_frames,
            rows=None,
            title=title,
        )
    rerun = open_rerun(cmd.rerun, options.model_path, "animate")
    if rerun and is_planar(cfg.dataset):
        rerun[0].log_trajectory(trajectory)
    if rerun:
        rerun[0].close()
    say(f"animated {states - 1} steps of {title} in {frames} frames")
    say(f"animation    {video_path}")
    if rerun:
        say(f"rerun        {rerun[1]}")
