import subprocess
import sys
from pathlib import Path

import matplotlib.colors
import matplotlib.figure
import numpy as np
import pytest
from helpers import only_file
from PIL import Image

from jax_gen import plots
from jax_gen.plots import save_loss_curve, save_samples_png


def test_module_never_imports_jax():
    code = "import sys, jax_gen.plots; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def decode_png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.mode, im.size, np.asarray(im.convert("L"))


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


# ----------------------------------------------------------------------------------------------
# Density heat maps
# ----------------------------------------------------------------------------------------------


def test_density_grid_layout_is_row_major_cell_centres():
    points = np.array([[0.0, 0.0], [4.0, 2.0]])
    grid, bounds = plots.density_grid(points, resolution=4, margin=0.0)
    assert bounds == (0.0, 4.0, -1.0, 3.0)  # square window around the points
    assert grid.shape == (16, 2)
    for r in range(4):
        for c in range(4):
            np.testing.assert_allclose(grid[r * 4 + c], [0.5 + c, -0.5 + r])
    with pytest.raises(ValueError, match="resolution"):
        plots.density_grid(points, resolution=0)


def test_save_density_png_draws_the_density_where_it_is(tmp_path):
    grid, bounds = plots.density_grid(np.array([[-1.0, -1.0], [1.0, 1.0]]), 32, margin=0.0)

    def bright_centroid(centre):
        """Draws a bump at ``centre`` (zero beyond radius 0.4); centroid of its coloured pixels."""
        distance2 = np.sum((grid - np.asarray(centre)) ** 2, axis=1)
        log_p = np.where(distance2 < 0.16, -distance2, -np.inf)
        path = tmp_path / "density.png"
        plots.save_density_png(path, [("model", log_p)], bounds, title="bump")
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
        plots.save_density_png(tmp_path / "x.png", [("bad", np.zeros(10))], bounds, title="")


# ----------------------------------------------------------------------------------------------
# Image grids and class colours
# ----------------------------------------------------------------------------------------------


def test_images_to_grid_places_each_pixel_where_documented():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1.5, 1.5, size=(5, 6))  # 2 x 3 images, some values out of range
    grid = plots.images_to_grid(images, (2, 3), rows=2, scale=2)
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
        plots.images_to_grid(images, (3, 3))


def test_labels_colour_the_points_by_class(tmp_path):
    points = np.random.default_rng(1).normal(size=(300, 2))
    labels = np.arange(300) % 3
    plain, coloured = tmp_path / "plain.png", tmp_path / "coloured.png"
    plots.save_samples_png(plain, points, points, "t")
    plots.save_samples_png(coloured, points, points, "t", labels=labels, data_labels=labels)
    image = np.asarray(Image.open(coloured).convert("RGB")).reshape(-1, 3).astype(int)
    for k in range(3):
        rgb = (np.array(matplotlib.colors.to_rgb(f"C{k}")) * 255).round()
        assert np.any(np.abs(image - rgb).sum(axis=1) <= 3), f"class {k}'s colour"
    again = tmp_path / "again.png"
    plots.save_samples_png(again, points, points, "t", labels=None)
    assert plain.read_bytes() == again.read_bytes()


def test_histogram_png_draws_two_histograms_and_refuses_points_of_two_coordinates(tmp_path):
    rng = np.random.default_rng(0)
    samples, data = rng.normal(size=(500, 1)), rng.normal(size=500)
    xs = np.linspace(-3, 3, 50)
    path = tmp_path / "h.png"
    plots.save_histogram_png(path, samples, data, "title", (xs, np.exp(-(xs**2) / 2)))
    only_file(tmp_path, "h.png")
    with Image.open(path) as image:
        assert image.size == (1000, 500)
    with pytest.raises(ValueError, match=r"samples must have shape \(n,\) or \(n, 1\)"):
        plots.save_histogram_png(tmp_path / "x.png", np.zeros((5, 2)), data, "title")
    only_file(tmp_path, "h.png")


def test_path_png_puts_the_density_where_it_is_in_the_t_x_plane(tmp_path):
    # One bright band at x = 1 for t >= 0.5 in the only panel: it must be drawn in the upper
    # right quarter of the axes, dark elsewhere.
    times, xs = np.linspace(0, 1, 21), np.linspace(-2, 2, 41)
    density = np.zeros((21, 41))
    density[np.ix_(times >= 0.5, np.abs(xs - 1) < 0.3)] = 1.0
    path = tmp_path / "p.png"
    plots.save_path_png(path, times, xs, [("model", density)], None, "title")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    bright = (red > 230) & (green > 200) & (blue < 225)  # magma's top, pale yellow, not white
    rows, cols = np.nonzero(bright[:, : int(0.8 * pixels.shape[1])])  # the colour bar excluded
    assert rows.size > 0
    height, width = pixels.shape[:2]
    assert cols.min() > 0.35 * width and rows.max() < 0.5 * height
    with pytest.raises(ValueError, match=r"expected shape \(21, 41\)"):
        plots.save_path_png(tmp_path / "q.png", times, xs, [("m", density.T)], None, "t")
