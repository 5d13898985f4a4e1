import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from helpers import only_file, ring_trajectory
from PIL import Image, ImageSequence

from jax_gen import animation, plots
from jax_gen.animation import (
    CAPTION_HEIGHT,
    gif_frame_duration_ms,
    gif_frame_indices,
    point_to_pixel,
    rasterize,
    save_trajectory_gif,
    trajectory_bounds,
)


def test_module_never_imports_jax():
    code = "import sys, jax_gen.animation; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def decode_gif(path):
    with Image.open(path) as im:
        assert im.format == "GIF"
        frames = [
            (np.asarray(frame.convert("L")), frame.info["duration"])
            for frame in ImageSequence.Iterator(im)
        ]
        return frames, im.info.get("loop")


# ------------------------------------------------------------------------------------------
# Frames, bounds, rasterization
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_states, max_frames",
    [(1, 2), (2, 2), (3, 2), (5, 10), (10, 10), (11, 10), (101, 120), (1001, 120), (1000, 2)],
)
def test_gif_frame_indices(num_states, max_frames):
    idx = gif_frame_indices(num_states, max_frames)
    assert np.issubdtype(idx.dtype, np.integer)
    assert len(idx) == min(num_states, max_frames)
    assert idx[0] == 0 and idx[-1] == num_states - 1
    assert (np.diff(idx) > 0).all()
    # evenly spaced: gaps differ by at most one
    if len(idx) > 2:
        assert np.ptp(np.diff(idx)) <= 1


def test_gif_frame_indices_validates():
    with pytest.raises(ValueError, match="max_frames=1"):
        gif_frame_indices(10, 1)
    with pytest.raises(ValueError, match="num_states=0"):
        gif_frame_indices(0, 5)


def test_trajectory_bounds_square_and_covers_all_frames():
    trajectory = np.array([[[0.0, 1.0], [1.0, 2.0]], [[4.0, 1.5], [2.0, 1.0]]])
    xmin, xmax, ymin, ymax = trajectory_bounds(trajectory, margin=0.1)
    # span 4 (x), centre (2, 1.5), half side 4 * (0.5 + 0.1)
    np.testing.assert_allclose([xmin, xmax, ymin, ymax], [-0.4, 4.4, -0.9, 3.9])
    assert xmax - xmin == pytest.approx(ymax - ymin)
    traj = ring_trajectory()
    xmin, xmax, ymin, ymax = trajectory_bounds(traj)
    assert (traj[..., 0] > xmin).all() and (traj[..., 0] < xmax).all()
    assert (traj[..., 1] > ymin).all() and (traj[..., 1] < ymax).all()
    assert xmax - xmin == pytest.approx(ymax - ymin)


def test_trajectory_bounds_degenerate_and_non_finite():
    trajectory = np.array([[[1.0, 2.0], [np.nan, 5.0]], [[1.0, 2.0], [np.inf, 0.0]]])
    xmin, xmax, ymin, ymax = trajectory_bounds(trajectory, margin=0.0)
    assert (xmin, xmax, ymin, ymax) == (0.5, 1.5, 1.5, 2.5)
    with pytest.raises(ValueError, match="margin=-0.1"):
        trajectory_bounds(trajectory, margin=-0.1)


def test_point_to_pixel_formula_y_up_and_clipping():
    points = np.array([[0.0, 0.0], [0.55, 0.25], [1.0, 1.0], [5.0, -5.0], [-1.0, 0.999]])
    rows, cols = point_to_pixel(points, (0.0, 1.0, 0.0, 1.0), 10)
    np.testing.assert_array_equal(cols, [0, 5, 9, 9, 0])
    np.testing.assert_array_equal(rows, [9, 7, 0, 9, 0])


def test_rasterize_draws_3x3_dots_exactly_at_the_points():
    rng = np.random.default_rng(1)
    points = rng.uniform(-1, 1, size=(40, 2))
    points[0] = [-1.0, -1.0]  # a corner: the dot is cut at the border
    bounds, size = (-1.0, 1.0, -1.0, 1.0), 64
    image = rasterize(points, bounds, size)
    assert image.dtype == np.uint8 and image.shape == (size, size)
    assert set(np.unique(image)) <= {0, 255}
    rows, cols = point_to_pixel(points, bounds, size)
    assert (image[rows, cols] == 0).all()
    expected = np.zeros((size, size), dtype=bool)
    for r, c in zip(rows, cols, strict=True):
        expected[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = True
    np.testing.assert_array_equal(image == 0, expected)


def test_rasterize_skips_non_finite_points():
    image = rasterize(np.array([[np.nan, 0.0], [0.0, np.inf]]), (-1.0, 1.0, -1.0, 1.0), 16)
    assert (image == 255).all()


# ------------------------------------------------------------------------------------------
# GIF
# ------------------------------------------------------------------------------------------


def test_trajectory_gif_frames_durations_and_pixels(tmp_path):
    trajectory = ring_trajectory(num_states=41)
    path, size, fps = tmp_path / "anim.gif", 200, 10
    count = save_trajectory_gif(path, trajectory, fps=fps, max_frames=15, size=size, title="fm")
    frames, loop = decode_gif(path)
    assert count == len(frames) == min(41, 15)
    assert loop == 0
    assert all(duration == round(1000 / fps) for _, duration in frames)
    bounds = trajectory_bounds(trajectory)
    indices = gif_frame_indices(41, 15)
    for (pixels, _), k in zip(frames, indices, strict=True):
        assert pixels.shape == (CAPTION_HEIGHT + size, size)
        # the plotting area is exactly the rasterized state: the GIF is lossless
        np.testing.assert_array_equal(
            pixels[CAPTION_HEIGHT:], rasterize(trajectory[k], bounds, size)
        )
        assert (pixels[:CAPTION_HEIGHT] < 128).any()  # a caption was drawn
    for (pixels, _), state in ((frames[0], trajectory[0]), (frames[-1], trajectory[-1])):
        rows, cols = point_to_pixel(state, bounds, size)
        assert (pixels[CAPTION_HEIGHT + rows, cols] == 0).all()


def test_trajectory_gif_keeps_identical_states_as_frames(tmp_path):
    # Pillow merges identical consecutive frames; the caption's counter must prevent that.
    still = np.repeat(ring_trajectory(num_states=1), 6, axis=0)
    count = save_trajectory_gif(tmp_path / "still.gif", still, fps=20, max_frames=10, size=160)
    frames, _ = decode_gif(tmp_path / "still.gif")
    assert count == len(frames) == 6
    assert all(duration == 50 for _, duration in frames)


def test_gif_frame_duration_is_storable_in_hundredths():
    assert gif_frame_duration_ms(10) == 100
    assert gif_frame_duration_ms(30) == 30  # 33.3 ms: GIF holds 30 or 40
    assert gif_frame_duration_ms(15) == 70  # 66.7 ms rounds to 70 (Pillow would truncate to 60)
    assert gif_frame_duration_ms(1000) == 20  # browsers slow down faster GIFs


def test_trajectory_gif_validates_before_writing(tmp_path):
    path = tmp_path / "anim.gif"
    trajectory = ring_trajectory(num_states=5)
    with pytest.raises(ValueError, match="fps=0 must be positive"):
        save_trajectory_gif(path, trajectory, fps=0)
    with pytest.raises(ValueError, match="max_frames=1"):
        save_trajectory_gif(path, trajectory, fps=10, max_frames=1)
    with pytest.raises(ValueError, match="size=20"):
        save_trajectory_gif(path, trajectory, fps=10, size=20)
    with pytest.raises(ValueError, match=r"shape \(states, n, 2\)"):
        save_trajectory_gif(path, trajectory[0], fps=10)
    assert not any(tmp_path.iterdir())


def test_trajectory_gif_failure_leaves_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "anim.gif"
    path.write_bytes(b"previous animation")

    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"GIF89a half")
        raise OSError("disk full")

    monkeypatch.setattr(PIL.Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_trajectory_gif(path, ring_trajectory(num_states=5), fps=10, size=128)
    assert path.read_bytes() == b"previous animation"
    only_file(tmp_path, "anim.gif")


# ----------------------------------------------------------------------------------------------
# Image trajectories
# ----------------------------------------------------------------------------------------------


def test_image_trajectory_gif_frames_go_from_noise_to_samples(tmp_path):
    states = np.stack([np.full((4, 4), -1.0), np.zeros((4, 4)), np.full((4, 4), 1.0)])
    path = tmp_path / "images.gif"
    frames = animation.save_image_trajectory_gif(path, states, (2, 2), fps=10, rows=2, title="x")
    assert frames == 3
    with Image.open(path) as image:
        assert image.n_frames == 3
        decoded = []
        for frame in ImageSequence.Iterator(image):
            assert frame.info["duration"] == 100
            decoded.append(np.asarray(frame.convert("L"))[CAPTION_HEIGHT:])
    grid = plots.images_to_grid(states[0], (2, 2), rows=2)
    np.testing.assert_array_equal(decoded[0][: grid.shape[0], : grid.shape[1]], grid)
    last = plots.images_to_grid(states[-1], (2, 2), rows=2)
    np.testing.assert_array_equal(decoded[-1][: last.shape[0], : last.shape[1]], last)


def test_path_gif_moves_the_points_across_the_t_x_plane(tmp_path):
    # Two points going from x = -1 and 1 at t = 0 to x = 1 and -1 at t = 1, in 5 states.
    times = np.linspace(0, 1, 5)
    trajectory = np.stack([np.linspace(-1, 1, 5), np.linspace(1, -1, 5)], axis=1)[..., None]
    path = tmp_path / "p.gif"
    frames = animation.save_path_gif(path, times, trajectory, fps=10, size=100)
    assert frames == 5
    with Image.open(path) as image:
        decoded = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(image)]
    bodies = [frame[animation.CAPTION_HEIGHT :] for frame in decoded]
    assert len(bodies) == 5 and bodies[0].shape == (100, 100)
    bounds = (0.0, 1.0, -1.2, 1.2)  # the points' span widened by 10%
    for k, body in enumerate(bodies):
        dots = np.stack([np.full(2, times[k]), trajectory[k, :, 0]], axis=1)
        expected = animation.rasterize(dots, bounds, 100)
        assert np.array_equal(body == 0, expected == 0), k  # the points of state k, in black
    # The last frame shows both paths (grey) crossing the plane; the first shows none.
    assert not (bodies[0] == animation.PATH_LINE_GREY).any()
    assert (bodies[-1] == animation.PATH_LINE_GREY).any(axis=0)[5:90].all()
    with pytest.raises(ValueError, match="must be"):
        animation.save_path_gif(tmp_path / "q.gif", times[:3], trajectory, fps=10)
    only_file(tmp_path, "p.gif")
