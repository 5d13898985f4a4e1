"""``jax-gen generate`` and ``jax-gen animate``: sample a checkpoint, plot or animate the points."""

import time

import numpy as np

from jax_gen import animation
from jax_gen.cli.commands import AnimateCommand, GenerateCommand
from jax_gen.cli.common import (
    beside,
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
from jax_gen.files import atomic_output, check_output_path
from jax_gen.metrics import format_report
from jax_gen.sampling import sample


def run_generate(cmd: GenerateCommand) -> None:
    options = cmd.sampling
    image_path = cmd.output_image_path or beside(options.model_path, ".samples.png")
    check_output_path(image_path, "--output-image-path")
    if cmd.output_samples_path is not None:
        check_output_path(cmd.output_samples_path, "--output-samples-path")
    cfg, strategy, model, data_dim, sampler = load_for_sampling(options)
    check_dataset(cfg.dataset)

    keys = sampling_keys(options.seed)
    labels = sampling_labels(cfg, sampler, options.condition, keys.labels, cmd.num_samples)
    start = time.perf_counter()
    result = sample(strategy, model, keys.sample, cmd.num_samples, data_dim, sampler, labels)
    samples, trajectory = np.asarray(result.samples), result.trajectory
    elapsed = time.perf_counter() - start
    title = describe_sampling(cfg, sampler, int(result.nfe), options.condition)
    found = compare_to_data(
        samples,
        cfg,
        data_key=keys.evaluate,
        metric_key=key_stream(keys.evaluate, "metrics"),
        condition=options.condition,
    )
    save_samples_figure(image_path, samples, found.data, cfg, title, labels, found.data_labels)
    if cmd.output_samples_path is not None:
        with atomic_output(cmd.output_samples_path) as tmp:
            if cmd.output_samples_path.suffix.lower() == ".npy":
                with open(tmp, "wb") as f:
                    np.save(f, samples)
            else:
                header = ",".join(f"x{i}" for i in range(samples.shape[1]))
                if samples.shape[1] == 2:
                    header = "x,y"
                np.savetxt(tmp, samples, delimiter=",", header=header, comments="")
    rerun = open_rerun(cmd.rerun, options.model_path, "generate")
    if rerun and is_planar(cfg.dataset):
        rerun[0].log_trajectory(plane(trajectory, cfg.dataset))
        rerun[0].close()

    say(f"generated {cmd.num_samples} points with {title} in {elapsed:.2f} s")
    say(quality_line(found.distance, found.floor))
    say(format_report(found.support))
    say(f"samples plot {image_path}")
    if cmd.output_samples_path is not None:
        say(f"points       {cmd.output_samples_path}")
    if rerun:
        say(f"rerun        {rerun[1]}")


def run_animate(cmd: AnimateCommand) -> None:
    options = cmd.sampling
    video_path = cmd.output_video_path or beside(options.model_path, ".gif")
    check_output_path(video_path, "--output-video-path")
    cfg, strategy, model, data_dim, sampler = load_for_sampling(options)

    keys = sampling_keys(options.seed)
    labels = sampling_labels(cfg, sampler, options.condition, keys.labels, cmd.num_samples)
    result = sample(strategy, model, keys.sample, cmd.num_samples, data_dim, sampler, labels)
    title = describe_sampling(cfg, sampler, int(result.nfe), options.condition)
    states = result.trajectory.shape[0]
    shape = image_shape(cfg.dataset)
    if shape is None:
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
