"""``jax-gen plot-path``: a one-dimensional model's density over the (t, x) plane, with its
trajectories, beside the true path's."""

import numpy as np

from jax_gen import plots
from jax_gen.cli.commands import PlotPathCommand
from jax_gen.cli.common import beside, describe_sampling, load_for_sampling, say
from jax_gen.config import name_of
from jax_gen.data import get_batch
from jax_gen.engine import check_dataset
from jax_gen.evaluation import sampling_keys, sampling_labels
from jax_gen.files import check_output_path
from jax_gen.path_density import (
    has_true_density,
    histogram_density,
    model_density,
    true_density,
    window,
)
from jax_gen.sampling import Guided, frame_times, sample

WINDOW_POINTS = 10_000
"""Fresh data points whose span, with the trajectories', sets the heat maps' x window."""


def run_plot_path(cmd: PlotPathCommand) -> None:
    options = cmd.sampling
    image_path = cmd.output_image_path or beside(options.model_path, ".path.png")
    check_output_path(image_path, "--output-image-path")
    cfg, strategy, model, data_dim, sampler = load_for_sampling(options)
    if data_dim != 1:
        raise ValueError(
            f"plot-path draws one-dimensional data; {name_of(cfg.dataset)} is {data_dim}-D "
            "(plot-field draws the field of 2-D data)"
        )
    check_dataset(cfg.dataset)
    from_ode = strategy.has_velocity()
    n = cmd.num_trajectories if from_ode else max(cmd.num_trajectories, cmd.num_samples)
    keys = sampling_keys(options.seed)
    labels = sampling_labels(cfg, sampler, options.condition, keys.labels, n)
    result = sample(
        strategy,
        model,
        keys.sample,
        n,
        data_dim,
        sampler,
        labels,
        keep_trajectory=True,
        batch_size=options.batch_size,
    )
    steps = np.asarray(frame_times(strategy, sampler), np.float64)
    trajectory = np.asarray(result.trajectory, np.float64)[..., 0]  # (states, n)
    data = np.asarray(get_batch(keys.evaluate, cfg.dataset, WINDOW_POINTS))
    xs = window(np.concatenate([trajectory.ravel(), data.ravel()]), cmd.resolution)

    if from_ode:
        times = np.linspace(0.0, 1.0, cmd.num_times)
        density_model = model
        if options.condition is not None:
            density_model = Guided(model, options.condition, sampler.guidance_scale)
        how = "by its probability-flow ODE"
        density = model_density(strategy, density_model, times, xs)
    else:
        times = steps
        how = f"a histogram of {n:,} samples at each step"
        density = histogram_density(trajectory, xs)
    panels = [(f"model: p_t {how}", density)]
    if has_true_density(strategy, cfg.dataset) and options.condition is None:
        truth = true_density(strategy, cfg.dataset, times, xs)
        panels.append(("true path: alpha_t x + sigma_t eps, x ~ data", truth))
    shown = (steps, trajectory[:, : cmd.num_trajectories])
    title = f"{describe_sampling(cfg, sampler, int(result.nfe), options.condition)} on "
    title += name_of(cfg.dataset)
    plots.save_path_png(image_path, times, xs, panels, shown, title)

    h = xs[1] - xs[0]
    mass = [float(np.sum(density, axis=1).min() * h) for _, density in panels]
    say(f"drew p_t(x) of {title} at {times.size} times x {xs.size} points")
    say(f"model p_t      {how}")
    masses = zip(panels, mass, strict=True)
    say(
        "mass in the window, least over t: "
        + ", ".join(f"{p[0].split(':')[0]} {m:.4f}" for p, m in masses)
    )
    say(f"path plot    {image_path}")
