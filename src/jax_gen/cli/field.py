"""``jax-gen plot-field``: the learned field over the data's plane, as panels and a GIF."""

import jax
import numpy as np

from jax_gen import animation, checkpoint, plots
from jax_gen.cli.commands import PlotFieldCommand
from jax_gen.cli.common import beside, describe, say
from jax_gen.config import name_of
from jax_gen.data import get_batch, is_planar
from jax_gen.engine import check_dataset
from jax_gen.fields import field_label, field_views, plane
from jax_gen.files import check_output_path
from jax_gen.strategies import create_strategy


def run_plot_field(cmd: PlotFieldCommand) -> None:
    image_path = cmd.output_image_path or beside(cmd.model_path, ".field.png")
    video_path = cmd.output_video_path or beside(cmd.model_path, ".field.gif")
    check_output_path(image_path, "--output-image-path")
    check_output_path(video_path, "--output-video-path")
    saved = checkpoint.load(cmd.model_path)
    cfg = saved.config
    if not is_planar(cfg.dataset):
        hint = " (plot-path draws the flow of 1-D data)" if saved.data_dim == 1 else ""
        raise ValueError(
            f"plot-field draws 2-D fields; {name_of(cfg.dataset)} is not 2-D data{hint}"
        )
    check_dataset(cfg.dataset)
    strategy = create_strategy(cfg.strategy)
    model = saved.state.ema_model if cmd.use_ema else saved.state.model
    key = jax.random.key(cmd.seed)

    data = plane(get_batch(key, cfg.dataset, cmd.num_points), cfg.dataset)
    grid, bounds = plots.density_grid(data, cmd.grid_size, margin=0.15)
    gif_times = np.linspace(0.0, 1.0, cmd.gif_frames)
    times = np.asarray(cmd.times, dtype=np.float32)
    views = field_views(strategy, model, cfg.dataset, times, grid, key, cmd.num_points, cmd.field)
    gif_views = field_views(
        strategy, model, cfg.dataset, gif_times, grid, key, cmd.num_points, cmd.field
    )
    cell = (bounds[1] - bounds[0]) / cmd.grid_size
    scale = plots.field_arrow_scale(gif_views[0], cell)
    label = field_label(strategy, cmd.field)
    title = f"{label} of {describe(cfg)} on {name_of(cfg.dataset)}"
    plots.save_field_png(image_path, times, grid, *views, bounds, title, scale)
    frames = animation.save_field_gif(
        video_path, gif_times, grid, *gif_views, bounds, title, scale, fps=cmd.fps
    )
    say(f"drew the {label} of {describe(cfg)} at t = {', '.join(f'{t:g}' for t in cmd.times)}")
    say(f"field panels {image_path}")
    say(f"field GIF    {video_path} ({frames} frames)")
