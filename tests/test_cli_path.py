"""One-dimensional data on the command line: train, generate (a histogram), animate (the (t, x)
plane), evaluate and plot-path on the 1-D mixture and on a one-column points file."""

import re

import numpy as np
import pytest
from helpers import FAST, run_cli
from PIL import Image

from jax_gen import animation

TINY = ["model:mlp", "--model.hidden-dim", "32", "--model.depth", "2"]
FLOW = ["strategy:flow-matching", "--strategy.num-transport-steps", "10"]
SMALL_PATH = ["--num-times", "6", "--resolution", "40", "--num-trajectories", "12"]


def assert_clean_failure(code, err, *fragments):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


def png_pixels(path):
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return np.asarray(image.convert("L"))


@pytest.fixture(scope="module")
def mixture_1d(tmp_path_factory):
    """A flow-matching model of the 1-D mixture, trained for 20 steps: (folder, checkpoint)."""
    from jax_gen.cli import main

    folder = tmp_path_factory.mktemp("mixture_1d")
    model = folder / "m.eqx"
    main(["train", *TINY, *FLOW, "dataset:gaussian-mixture-1d", *FAST, "--model-path", str(model)])
    return folder, model


def test_the_1d_mixture_generates_animates_evaluates_and_plots_its_path(mixture_1d, capsys):
    folder, model = mixture_1d
    assert (folder / "m.samples.png").exists()

    samples = folder / "s.npy"
    code, out, err = run_cli(
        ["generate", "--model-path", model, "--num-samples", "300"]
        + ["--output-samples-path", samples, "--output-image-path", folder / "g.png"],
        capsys,
    )
    assert code == 0, err
    assert np.load(samples).shape == (300, 1)
    pixels = png_pixels(folder / "g.png")
    assert pixels.shape[1] > pixels.shape[0] and pixels.min() < 100  # two histogram panels

    gif = folder / "a.gif"
    code, out, err = run_cli(
        ["animate", "--model-path", model, "--num-samples", "30", "--output-video-path", gif],
        capsys,
    )
    assert code == 0, err
    with Image.open(gif) as image:
        assert image.n_frames == 11  # 10 steps: the source and every step
        image.seek(0)
        first = np.asarray(image.convert("L"))[animation.CAPTION_HEIGHT :]
        image.seek(image.n_frames - 1)
        last = np.asarray(image.convert("L"))[animation.CAPTION_HEIGHT :]
    # The points sit at t = 0 (the left edge) in the first frame and at t = 1 (the right edge)
    # in the last, which also shows their paths across the plane in grey.
    assert np.flatnonzero((first == 0).any(axis=0)).max() <= 2
    assert np.flatnonzero((last == 0).any(axis=0)).min() >= last.shape[1] - 3
    assert (last == animation.PATH_LINE_GREY).any(axis=0)[: last.shape[1] // 2].all()

    code, out, err = run_cli(
        ["evaluate", "--model-path", model, "--num-samples", "300", "--nll-points", "50"]
        + ["--repeats", "1", "--output-json-path", folder / "e.json"],
        capsys,
    )
    assert code == 0, err
    assert "NLL" in out and "data entropy" in out

    path_png = folder / "p.png"
    code, out, err = run_cli(
        ["plot-path", "--model-path", model, *SMALL_PATH, "--output-image-path", path_png],
        capsys,
    )
    assert code == 0, err
    assert "model p_t      by its probability-flow ODE" in out
    masses = dict(re.findall(r"(model|true path) ([0-9.]+)", out))
    # The window holds every trajectory and 10,000 fresh data points with a 10% margin: the
    # true path keeps all its mass in it at every t, the model (an ODE flow, whatever its
    # training) nearly all.
    assert float(masses["true path"]) > 0.999 and float(masses["model"]) > 0.95, out
    pixels = png_pixels(path_png)
    assert pixels.shape[1] > 1.5 * pixels.shape[0]  # the model beside the true path


def test_plot_path_and_plot_field_each_refuse_the_other_dimension(mixture_1d, tmp_path, capsys):
    folder, model = mixture_1d
    code, _, err = run_cli(["plot-field", "--model-path", model], capsys)
    assert_clean_failure(code, err, "plot-path draws the flow of 1-D data")
    planar = tmp_path / "moon.eqx"
    code, _, err = run_cli(
        ["train", *TINY, *FLOW, "dataset:moon", *FAST, "--model-path", planar], capsys
    )
    assert code == 0, err
    out_png = tmp_path / "p.png"
    code, _, err = run_cli(
        ["plot-path", "--model-path", planar, "--output-image-path", out_png], capsys
    )
    assert_clean_failure(code, err, "plot-path draws one-dimensional data", "moon is 2-D")
    assert not out_png.exists()
    code, _, err = run_cli(["plot-path", "--model-path", model, "--num-times", "1"], capsys)
    assert_clean_failure(code, err, "--num-times=1 must be >= 2")


def test_a_one_column_points_file_is_1d_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-2.0, 0.2, 300), rng.normal(1.0, 0.2, 200)])
    csv = tmp_path / "line.csv"
    csv.write_text("x\n" + "\n".join(f"{v:.5f}" for v in values) + "\n")
    model = tmp_path / "line.eqx"
    code, out, err = run_cli(
        ["train", "strategy:consistency", *TINY, "dataset:points", "--dataset.path", csv]
        + [*FAST, "--model-path", model],
        capsys,
    )
    assert code == 0, err
    # A consistency model has no velocity: plot-path reads its density from samples.
    path_png = tmp_path / "p.png"
    code, out, err = run_cli(
        ["plot-path", "--model-path", model, *SMALL_PATH, "--num-samples", "500"]
        + ["--output-image-path", path_png],
        capsys,
    )
    assert code == 0, err
    assert "model p_t      a histogram of 500 samples at each step" in out
    assert "true path" not in out  # a points file has no known density
    assert png_pixels(path_png).min() < 100
