import socket
import subprocess
import sys
from pathlib import Path

import matplotlib.colors
import matplotlib.figure
import numpy as np
import PIL.Image
import pytest
from PIL import Image, ImageSequence

from jax_gen import visualize
from jax_gen.visualize import (
    CAPTION_HEIGHT,
    RerunLogger,
    gif_frame_duration_ms,
    gif_frame_indices,
    point_to_pixel,
    rasterize,
    read_recording,
    save_loss_curve,
    save_samples_png,
    save_trajectory_gif,
    trajectory_bounds,
)


def test_module_never_imports_jax():
    code = "import sys, jax_gen.visualize; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def ring_trajectory(num_states=41, n=24, seed=0):
    """Straight lines from Gaussian noise (state 0) to a small ring of points (last state)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, 2))
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = 0.5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    t = np.linspace(0, 1, num_states)[:, None, None]
    return (1 - t) * noise + t * ring


def decode_png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.mode, im.size, np.asarray(im.convert("L"))


def decode_gif(path):
    with Image.open(path) as im:
        assert im.format == "GIF"
        frames = [
            (np.asarray(frame.convert("L")), frame.info["duration"])
            for frame in ImageSequence.Iterator(im)
        ]
        return frames, im.info.get("loop")


def only_file(directory, name):
    assert sorted(p.name for p in Path(directory).iterdir()) == [name], "a temp file was left"


# ------------------------------------------------------------------------------------------
# PNG
# ------------------------------------------------------------------------------------------


def test_samples_png_is_a_two_panel_picture(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "out" / "samples.png"
    save_samples_png(path, rng.normal(size=(300, 2)), rng.normal(size=(200, 2)) + 3, "a title")
    mode, size, grey = decode_png(path)
    assert mode == "RGBA" and size == (1000, 500)
    assert (grey < 200).sum() > 500  # points, axes and text, not a blank canvas
    only_file(path.parent, "samples.png")


def test_samples_png_survives_non_finite_points(tmp_path):
    samples = np.array([[0.0, 0.0], [np.nan, 1.0], [np.inf, 2.0], [1.0, 1.0]])
    save_samples_png(tmp_path / "s.png", samples, np.zeros((3, 2)), "diverged")
    assert decode_png(tmp_path / "s.png")[1] == (1000, 500)


def test_samples_png_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match=r"samples must have shape \(n, 2\)"):
        save_samples_png(tmp_path / "s.png", np.zeros((5, 3)), np.zeros((5, 2)), "")


@pytest.mark.parametrize(
    "losses",
    [
        np.exp(-np.linspace(0, 5, 2000)) + 0.01 * np.random.default_rng(0).random(2000),
        np.array([0.5]),
        np.array([0.3, 0.0, -0.1, 0.2]),  # not drawable on a log axis: linear instead
        np.zeros(0),
    ],
    ids=["decaying", "single", "non-positive", "empty"],
)
def test_loss_curve_png(tmp_path, losses):
    path = tmp_path / "loss.png"
    save_loss_curve(path, losses, title="loss")
    mode, size, grey = decode_png(path)
    assert mode == "RGBA" and size == (700, 400)
    assert (grey < 200).sum() > 200


def test_png_failure_leaves_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "samples.png"
    path.write_bytes(b"previous picture")

    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        save_samples_png(path, np.zeros((4, 2)), np.ones((4, 2)), "t")
    with pytest.raises(OSError, match="disk full"):
        save_loss_curve(path, np.ones(10))
    assert path.read_bytes() == b"previous picture"
    only_file(tmp_path, "samples.png")


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


# ------------------------------------------------------------------------------------------
# Rerun
# ------------------------------------------------------------------------------------------


def test_rerun_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    losses = rng.random(250).astype(np.float32)
    samples = rng.normal(size=(30, 2))
    trajectory = ring_trajectory(num_states=7, n=12)
    path = tmp_path / "run.rrd"
    with RerunLogger("jax_gen_test", recording_path=path) as logger:
        assert logger.warning is None
        logger.log_losses(0, losses[:100])
        logger.log_losses(100, losses[100:])
        logger.log_points("train/samples", 100, samples)
        logger.log_trajectory(trajectory)
        assert not path.exists()  # published on close, not before
    only_file(tmp_path, "run.rrd")

    recording = read_recording(path)
    assert recording["entities"] == ["generate/trajectory", "train/loss", "train/samples"]
    np.testing.assert_array_equal(recording["loss_steps"], np.arange(1, 251))
    np.testing.assert_array_equal(recording["losses"], losses.astype(np.float64))
    snapshot = recording["points"]["train/samples"]["step"]
    assert list(snapshot) == [100]
    np.testing.assert_array_equal(snapshot[100], samples.astype(np.float32))
    states = recording["points"]["generate/trajectory"]["sampling_step"]
    assert sorted(states) == list(range(7))
    for i, state in states.items():
        np.testing.assert_array_equal(state, trajectory[i].astype(np.float32))


def test_rerun_loggers_are_independent(tmp_path):
    a = RerunLogger("jax_gen_a", recording_path=tmp_path / "a.rrd")
    b = RerunLogger("jax_gen_b", recording_path=tmp_path / "b.rrd")
    a.log_losses(0, np.array([1.0, 2.0]))
    b.log_losses(10, np.array([3.0]))
    a.close()
    b.close()
    a.close()  # idempotent
    np.testing.assert_array_equal(read_recording(tmp_path / "a.rrd")["losses"], [1.0, 2.0])
    np.testing.assert_array_equal(read_recording(tmp_path / "b.rrd")["loss_steps"], [11])


def test_rerun_exception_keeps_previous_recording(tmp_path):
    path = tmp_path / "run.rrd"
    path.write_bytes(b"previous recording")
    with pytest.raises(RuntimeError, match="boom"):
        with RerunLogger("jax_gen_test", recording_path=path) as logger:
            logger.log_losses(0, np.ones(5))
            raise RuntimeError("boom")
    assert path.read_bytes() == b"previous recording"
    only_file(tmp_path, "run.rrd")


def test_rerun_spawn_without_display_falls_back_to_saving(tmp_path, monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "run.rrd"
    with RerunLogger("jax_gen_test", recording_path=path, spawn=True) as logger:
        logger.log_losses(0, np.array([0.5, 0.25]))
    if sys.platform.startswith("linux"):
        assert "no display" in logger.warning and str(path) in logger.warning
    np.testing.assert_array_equal(read_recording(path)["losses"], [0.5, 0.25])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("failure", ["no executable", "not listening"])
def test_rerun_spawn_failure_falls_back_to_saving(tmp_path, monkeypatch, failure):
    import rerun as rr

    monkeypatch.setenv("DISPLAY", ":99")  # get past the display check to the spawn itself
    monkeypatch.setattr(visualize, "VIEWER_PORT", free_port())

    def fake_spawn(**kwargs):
        if failure == "no executable":
            raise RuntimeError("Failed to find Rerun Viewer executable in PATH.\n\n more")
        # otherwise: returns as rerun does when the viewer died before binding its port

    monkeypatch.setattr(rr, "spawn", fake_spawn)
    path = tmp_path / "run.rrd"
    with RerunLogger("jax_gen_test", recording_path=path, spawn=True) as logger:
        logger.log_points("train/samples", 3, np.zeros((2, 2)))
    expected = "Failed to find Rerun Viewer" if failure == "no executable" else "did not start"
    assert expected in logger.warning and str(path) in logger.warning
    assert read_recording(path)["entities"] == ["train/samples"]


def test_rerun_without_any_sink_records_nothing(tmp_path):
    logger = RerunLogger("jax_gen_test")
    assert "nothing is recorded" in logger.warning
    logger.log_losses(0, np.ones(3))
    logger.log_trajectory(ring_trajectory(num_states=3))
    logger.close()
    assert not any(tmp_path.iterdir())


def test_read_recording_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no recording"):
        read_recording(tmp_path / "absent.rrd")


# ----------------------------------------------------------------------------------------------
# Density heat maps
# ----------------------------------------------------------------------------------------------


def test_density_grid_layout_is_row_major_cell_centres():
    points = np.array([[0.0, 0.0], [4.0, 2.0]])
    grid, bounds = visualize.density_grid(points, resolution=4, margin=0.0)
    assert bounds == (0.0, 4.0, -1.0, 3.0)  # square window around the points
    assert grid.shape == (16, 2)
    for r in range(4):
        for c in range(4):
            np.testing.assert_allclose(grid[r * 4 + c], [0.5 + c, -0.5 + r])
    with pytest.raises(ValueError, match="resolution"):
        visualize.density_grid(points, resolution=0)


def test_save_density_png_draws_the_density_where_it_is(tmp_path):
    grid, bounds = visualize.density_grid(np.array([[-1.0, -1.0], [1.0, 1.0]]), 32, margin=0.0)

    def bright_centroid(centre):
        """Draws a bump at ``centre`` (zero beyond radius 0.4); centroid of its coloured pixels."""
        distance2 = np.sum((grid - np.asarray(centre)) ** 2, axis=1)
        log_p = np.where(distance2 < 0.16, -distance2, -np.inf)
        path = tmp_path / "density.png"
        visualize.save_density_png(path, [("model", log_p)], bounds, title="bump")
        image = np.asarray(Image.open(path).convert("RGB"), dtype=float)
        panel = image[:, : int(image.shape[1] * 0.7)]  # left of the colour bar
        # magma's upper half is warm (red well above blue); white, black and text are grey.
        ys, xs = np.nonzero(panel[..., 0] - panel[..., 2] > 60)
        assert xs.size > 0
        return xs.mean(), ys.mean()

    right_x, upper_y = bright_centroid((0.5, 0.5))
    left_x, lower_y = bright_centroid((-0.5, -0.5))
    assert right_x > left_x + 50  # +x is to the right
    assert upper_y < lower_y - 50  # +y is up (image rows grow downwards)
    with pytest.raises(ValueError, match="resolution"):
        visualize.save_density_png(tmp_path / "x.png", [("bad", np.zeros(10))], bounds, title="")


# ----------------------------------------------------------------------------------------------
# Image grids and class colours
# ----------------------------------------------------------------------------------------------


def test_images_to_grid_places_each_pixel_where_documented():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1.5, 1.5, size=(5, 6))  # 2 x 3 images, some values out of range
    grid = visualize.images_to_grid(images, (2, 3), rows=2, scale=2)
    columns, h, w, scale = 3, 2, 3, 2
    assert grid.shape == (2 * (h * scale + 1) + 1, columns * (w * scale + 1) + 1)
    for i in range(5):
        for r in range(h):
            for c in range(w):
                value = np.clip(images[i, r * w + c], -1, 1)
                top = 1 + (i // columns) * (h * scale + 1) + r * scale
                left = 1 + (i % columns) * (w * scale + 1) + c * scale
                block = grid[top : top + scale, left : left + scale]
                assert np.all(block == np.round(255 * (1 - value) / 2))
    assert grid[0, 0] == 128  # separator
    with pytest.raises(ValueError, match="shape"):
        visualize.images_to_grid(images, (3, 3))


def test_image_trajectory_gif_frames_go_from_noise_to_samples(tmp_path):
    states = np.stack([np.full((4, 4), -1.0), np.zeros((4, 4)), np.full((4, 4), 1.0)])
    path = tmp_path / "images.gif"
    frames = visualize.save_image_trajectory_gif(path, states, (2, 2), fps=10, rows=2, title="x")
    assert frames == 3
    with Image.open(path) as image:
        assert image.n_frames == 3
        decoded = []
        for frame in ImageSequence.Iterator(image):
            assert frame.info["duration"] == 100
            decoded.append(np.asarray(frame.convert("L"))[CAPTION_HEIGHT:])
    grid = visualize.images_to_grid(states[0], (2, 2), rows=2)
    np.testing.assert_array_equal(decoded[0][: grid.shape[0], : grid.shape[1]], grid)
    last = visualize.images_to_grid(states[-1], (2, 2), rows=2)
    np.testing.assert_array_equal(decoded[-1][: last.shape[0], : last.shape[1]], last)


def test_labels_colour_the_points_by_class(tmp_path):
    points = np.random.default_rng(1).normal(size=(300, 2))
    labels = np.arange(300) % 3
    plain, coloured = tmp_path / "plain.png", tmp_path / "coloured.png"
    visualize.save_samples_png(plain, points, points, "t")
    visualize.save_samples_png(coloured, points, points, "t", labels=labels, data_labels=labels)
    image = np.asarray(Image.open(coloured).convert("RGB")).reshape(-1, 3).astype(int)
    for k in range(3):
        rgb = (np.array(matplotlib.colors.to_rgb(f"C{k}")) * 255).round()
        assert np.any(np.abs(image - rgb).sum(axis=1) <= 3), f"class {k}'s colour"
    again = tmp_path / "again.png"
    visualize.save_samples_png(again, points, points, "t", labels=None)
    assert plain.read_bytes() == again.read_bytes()
