"""Users' own data: `dataset:points` (a .npy / .csv file) and `dataset:image` (a silhouette)."""

import json
import math

import jax
import numpy as np
import pytest
from helpers import FAST
from helpers import run_cli as run
from PIL import Image, ImageDraw

from jax_gen import checkpoint
from jax_gen.config import (
    DATASETS,
    CatConfig,
    ExperimentConfig,
    ImageConfig,
    PointsConfig,
    from_dict,
    to_dict,
)
from jax_gen.data import (
    data_dim,
    get_batch,
    has_log_density,
    image_shape,
    is_planar,
    load_points,
    log_density,
    num_classes,
    to_plane,
)

TINY = ["model:mlp", "--model.hidden-dim", "16", "--model.depth", "2"]
FLOW = ["strategy:flow-matching", "--strategy.num-transport-steps", "8"]


def spiral(n=500, dim=2, seed=0):
    """A noisy spiral, off-centre and anisotropic, padded with Gaussian columns to ``dim``."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.5, 3 * math.pi, n)
    xy = np.c_[t * np.cos(t), 0.5 * t * np.sin(t)] + 0.1 * rng.standard_normal((n, 2))
    extra = rng.standard_normal((n, dim - 2))
    return np.c_[xy + [10.0, -4.0], extra]


def star(path, size=(60, 40), mode="L"):
    """A dark five-pointed star on a white (or, for RGBA, transparent) background."""
    width, height = size
    cx, cy, outer, inner = width / 2, height / 2, 0.45 * height, 0.18 * height
    corners = [
        (
            cx + (outer if k % 2 == 0 else inner) * math.sin(k * math.pi / 5),
            cy - (outer if k % 2 == 0 else inner) * math.cos(k * math.pi / 5),
        )
        for k in range(10)
    ]
    background = (255, 255, 255, 0) if mode == "RGBA" else 255
    image = Image.new(mode, size, background)
    ImageDraw.Draw(image).polygon(corners, fill=(0, 0, 0, 255) if mode == "RGBA" else 0)
    image.save(path)
    return path


def draw(cfg, n, seed=0):
    return np.asarray(get_batch(jax.random.key(seed), cfg, n))


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------


def test_registered_default_constructible_and_round_trip():
    assert DATASETS["points"] is PointsConfig and DATASETS["image"] is ImageConfig
    for cfg in (PointsConfig(), ImageConfig(), PointsConfig("a.csv", 2.0), ImageConfig("s.png")):
        assert from_dict(to_dict(cfg)) == cfg
    experiment = ExperimentConfig(dataset=PointsConfig(path="/data/x.npy"))
    assert from_dict(to_dict(experiment)) == experiment
    # Code that walks every registered dataset with its defaults keeps working without a file.
    assert not is_planar(PointsConfig()) and not is_planar(ImageConfig())
    assert num_classes(PointsConfig()) == num_classes(ImageConfig()) == 0


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: PointsConfig(path="x.txt"), "must end in .npy or .csv"),
        (lambda: PointsConfig(path="x.npy", scale=0.0), "scale=0.0"),
        (lambda: ImageConfig(path="x.png", threshold=0), "threshold=0"),
        (lambda: ImageConfig(path="x.png", ambient_dim=1), "ambient_dim=1"),
    ],
)
def test_configs_validate_without_reading_files(make, fragment):
    with pytest.raises(ValueError, match=fragment):
        make()


@pytest.mark.parametrize("cfg", [PointsConfig(), ImageConfig()], ids=["points", "image"])
def test_empty_path_asks_for_dataset_path(cfg):
    with pytest.raises(ValueError, match="pass --dataset.path"):
        get_batch(jax.random.key(0), cfg, 4)


# ----------------------------------------------------------------------------------------------
# Points
# ----------------------------------------------------------------------------------------------


def test_normalisation_is_exact_on_a_small_example(tmp_path):
    path = tmp_path / "p.npy"
    np.save(path, np.array([[0.0, 0.0], [4.0, 2.0], [2.0, 1.0], [1.0, 2.0]]))
    # Box [0, 4] x [0, 2]: centre (2, 1), longer half-extent 2, times scale 3.
    expected = np.array([[-3.0, -1.5], [3.0, 1.5], [0.0, 0.0], [-1.5, 1.5]], np.float32)
    np.testing.assert_array_equal(load_points(PointsConfig(str(path), scale=3.0)), expected)


@pytest.mark.parametrize("dim", [2, 5])
def test_bounding_box_maps_to_scale_centred_with_aspect_kept(tmp_path, dim):
    raw = spiral(700, dim)
    path = tmp_path / "p.npy"
    np.save(path, raw)
    cfg = PointsConfig(str(path), scale=2.5)
    points = load_points(cfg)
    assert points.shape == raw.shape and points.dtype == np.float32
    low, high = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
    np.testing.assert_allclose((low + high) / 2, 0.0, atol=1e-6)  # centred box
    assert np.max(high - low) / 2 == pytest.approx(2.5, abs=1e-6)  # longer side [-2.5, 2.5]
    raw_extent = raw.max(axis=0) - raw.min(axis=0)
    np.testing.assert_allclose(
        (high - low) / (2.5 * 2), raw_extent / raw_extent.max(), rtol=1e-6, atol=1e-6
    )  # one common factor for every axis
    # An affine map of the rows, no reordering.
    factor = 2.5 / (raw_extent.max() / 2)
    np.testing.assert_allclose(
        points, (raw - (raw.max(0) + raw.min(0)) / 2) * factor, rtol=1e-6, atol=1e-5
    )


def test_samples_are_rows_drawn_uniformly(tmp_path):
    raw = np.array([[0.0, 0.0], [1.0, 3.0], [2.0, 1.0], [5.0, 5.0], [3.0, 0.5]])
    path = tmp_path / "p.npy"
    np.save(path, raw)
    cfg = PointsConfig(str(path))
    rows = {row.tobytes(): k for k, row in enumerate(load_points(cfg))}
    x = draw(cfg, 20_000)
    assert x.shape == (20_000, 2) and x.dtype == np.float32
    index = np.array([rows[row.tobytes()] for row in x])  # KeyError if not a row
    frequencies = np.bincount(index, minlength=5) / index.size
    assert np.max(np.abs(frequencies - 0.2)) < 5 * math.sqrt(0.2 * 0.8 / index.size)
    assert is_planar(cfg) and data_dim(cfg) == 2 and image_shape(cfg) is None
    np.testing.assert_array_equal(to_plane(x, cfg), x)
    assert not has_log_density(cfg)


def test_npy_and_csv_with_and_without_header_give_identical_batches(tmp_path):
    raw = spiral(300, 3)
    np.save(tmp_path / "p.npy", raw)
    np.savetxt(tmp_path / "plain.csv", raw, delimiter=",", fmt="%.17g")
    np.savetxt(
        tmp_path / "header.csv", raw, delimiter=",", fmt="%.17g", header="x,y,z", comments=""
    )
    (tmp_path / "crlf.csv").write_bytes(
        b"\xef\xbb\xbfa, b, c\r\n\r\n"  # a BOM, spaces after the commas, a blank line
        + b"".join(f"{a!r}, {b!r}, {c!r}\r\n".encode() for a, b, c in raw.tolist())
    )
    batches = [
        draw(PointsConfig(str(tmp_path / name)), 256, seed=3)
        for name in ("p.npy", "plain.csv", "header.csv", "crlf.csv")
    ]
    for batch in batches[1:]:
        np.testing.assert_array_equal(batch, batches[0])
    assert batches[0].shape == (256, 3)


def test_points_sampler_runs_inside_a_jitted_scan(tmp_path):
    np.save(tmp_path / "p.npy", spiral(100, 4))
    cfg = PointsConfig(str(tmp_path / "p.npy"))
    keys = jax.random.split(jax.random.key(0), 3)

    @jax.jit
    def draw_all(keys):
        return jax.lax.scan(lambda c, key: (c, get_batch(key, cfg, 32)), None, keys)[1]

    assert "callback" not in str(jax.make_jaxpr(draw_all)(keys))
    batches = draw_all(keys)
    assert batches.shape == (3, 32, 4)
    np.testing.assert_array_equal(batches[1], get_batch(keys[1], cfg, 32))
    assert not is_planar(cfg) and data_dim(cfg) == 4 and image_shape(cfg) is None
    with pytest.raises(ValueError, match="4-D data"):
        to_plane(batches[0], cfg)


# ----------------------------------------------------------------------------------------------
# Image
# ----------------------------------------------------------------------------------------------


def test_image_sampler_and_density_are_the_cats(tmp_path):
    path = str(star(tmp_path / "star.png"))
    image, cat = ImageConfig(path, scale=2.0, threshold=100), CatConfig(path, 2.0, 100)
    x = draw(image, 4096, seed=7)
    np.testing.assert_array_equal(x, draw(cat, 4096, seed=7))  # bit for bit
    np.testing.assert_array_equal(log_density(image, x), log_density(cat, x))
    # Uniform on the m dark pixels of side 2 scale / L: log p = -log(m (2 scale / L)^2).
    with Image.open(path) as im:
        grey = np.asarray(im.convert("L"))
    dark, longer = int(np.sum(grey < 100)), max(grey.shape)
    area = dark * (2 * 2.0 / longer) ** 2
    np.testing.assert_allclose(np.asarray(log_density(image, x)), -math.log(area), rtol=1e-6)
    assert has_log_density(image) and is_planar(image) and data_dim(image) == 2


def test_image_log_density_integrates_to_one(tmp_path):
    path = str(star(tmp_path / "star.png", size=(30, 20)))
    scale, sub = 3.0, 4
    cfg = ImageConfig(path, scale=scale)
    # Midpoints of a grid 4 times finer than the pixels, aligned with their edges (60 x 40 px
    # box: x in [-1, 1], y in [-2/3, 2/3] before scaling): the Riemann sum is exact.
    cell = 2 / 30 / sub
    xs = -1 + (np.arange(30 * sub) + 0.5) * cell
    ys = -20 / 30 + (np.arange(20 * sub) + 0.5) * cell
    grid = scale * np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    density = np.exp(np.asarray(log_density(cfg, grid.astype(np.float32)), np.float64))
    assert density.sum() * (scale * cell) ** 2 == pytest.approx(1.0, rel=1e-5)


def test_transparent_background_counts_as_white(tmp_path):
    opaque = ImageConfig(str(star(tmp_path / "grey.png")))
    transparent = ImageConfig(str(star(tmp_path / "rgba.png", mode="RGBA")))
    np.testing.assert_array_equal(draw(opaque, 512), draw(transparent, 512))


def test_image_in_a_higher_ambient_dimension(tmp_path):
    cfg = ImageConfig(str(star(tmp_path / "star.png")), ambient_dim=5)
    x = draw(cfg, 64)
    assert x.shape == (64, 5) and data_dim(cfg) == 5
    np.testing.assert_allclose(
        np.asarray(to_plane(x, cfg)), draw(ImageConfig(cfg.path), 64), atol=1e-5
    )


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def train_cli(capsys, dataset, path, model_path, *extra):
    code, out, err = run(
        ["train", *FLOW, *TINY, dataset, "--dataset.path", path, *FAST, "--model-path", model_path]
        + list(extra),
        capsys,
    )
    assert code == 0, err
    return out + err


def test_train_points_2d_then_evaluate_and_plot_field(tmp_path, capsys):
    data, model_path = tmp_path / "spiral.csv", tmp_path / "out" / "model.eqx"
    np.savetxt(data, spiral(400), delimiter=",", header="x,y", comments="")
    log = train_cli(capsys, "dataset:points", data, model_path)
    assert "sliced W2 to fresh data" in log
    for suffix in (".eqx", ".loss.png", ".samples.png"):
        assert model_path.with_name("model" + suffix).exists(), suffix
    saved = checkpoint.load(model_path)
    assert saved.config.dataset == PointsConfig(str(data)) and saved.data_dim == 2

    json_path, density = tmp_path / "e.json", tmp_path / "d.png"
    argv = ["evaluate", "--model-path", model_path, "--num-samples", "100", "--repeats", "1"]
    argv += ["--nll-points", "32", "--density-resolution", "6"]
    argv += ["--output-json-path", json_path, "--output-density-path", density]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    report = json.loads(json_path.read_text())
    assert report["dataset"] == "points" and report["data_dim"] == 2 and density.exists()

    png, gif = tmp_path / "f.png", tmp_path / "f.gif"
    argv = ["plot-field", "--model-path", model_path, "--times", "0", "1", "--grid-size", "4"]
    argv += ["--num-points", "50", "--gif-frames", "2"]
    code, _, err = run([*argv, "--output-image-path", png, "--output-video-path", gif], capsys)
    assert code == 0, err
    assert png.exists() and gif.exists()


def test_train_and_generate_points_in_3d(tmp_path, capsys):
    data = tmp_path / "cloud.npy"
    np.save(data, spiral(300, 3))
    model_path = tmp_path / "out" / "model.eqx"
    train_cli(capsys, "dataset:points", data, model_path)
    assert checkpoint.load(model_path).data_dim == 3
    assert (tmp_path / "out" / "model.samples.png").exists()

    samples, png = tmp_path / "s.npy", tmp_path / "s.png"
    argv = ["generate", "--model-path", model_path, "--num-samples", "150"]
    code, out, err = run(
        [*argv, "--output-samples-path", samples, "--output-image-path", png], capsys
    )
    assert code == 0, err
    assert np.load(samples).shape == (150, 3) and "sliced W2" in out + err
    with Image.open(png) as image:
        assert image.size[0] > 2 * image.size[1] - 10  # a scatter beside data, not a digit grid
    gif = tmp_path / "a.gif"
    argv = ["animate", "--model-path", model_path, "--num-samples", "50"]
    code, _, err = run([*argv, "--output-video-path", gif], capsys)
    assert code == 0, err
    assert gif.exists()


def test_train_image_end_to_end(tmp_path, capsys):
    data = star(tmp_path / "star.png")
    model_path = tmp_path / "out" / "star.eqx"
    log = train_cli(capsys, "dataset:image", data, model_path, "--dataset.threshold", "100")
    assert "sliced W2 to fresh data" in log
    saved = checkpoint.load(model_path)
    assert saved.config.dataset == ImageConfig(str(data), threshold=100)
    assert (tmp_path / "out" / "star.samples.png").exists()


def assert_clean_failure(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def _write(path, content):
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


POINTS_CASES = {
    "missing": (None, "points file not found"),
    "empty-npy": (b"", "is empty"),
    "empty-csv": ("", "is empty"),
    "blank-csv": ("\n\n", "no points"),
    "header-only": ("x,y\n", "no points"),
    "3d": (np.zeros((4, 2, 2)), "shape (4, 2, 2)"),
    "no-rows": (np.zeros((0, 2)), "no points"),
    "no-columns": (np.zeros((4, 0)), "no points"),
    "one-value-column": ("1\n1\n1\n", "the same point"),
    "ragged": ("1,2\n3,4\n5,6,7\n", "ragged: line 3 has 3 value(s)"),
    "not-a-number": ("x,y\n1,2\n3,oops\n", "line 3: 'oops' is not a number"),
    "nan": (np.array([[0.0, 1.0], [np.nan, 2.0]]), "NaN or infinite"),
    "inf-csv": ("1,2\n3,inf\n", "NaN or infinite value(s), the first on line 2"),
    "corrupt-npy": (b"\x93NUMPY garbage", "cannot read points file"),
    "pickled": (np.array([[{"a": 1}, 2]], dtype=object), "cannot read points file"),
    "strings": (np.array([["a", "b"]]), "not real numbers"),
    "one-point": (np.ones((5, 2)), "the same point"),
    "binary-csv": (b"\xff\xfe\x00\x01", "not UTF-8"),
}
SUFFIX = {"empty-csv": ".csv", "blank-csv": ".csv", "header-only": ".csv", "ragged": ".csv"}
SUFFIX |= {"not-a-number": ".csv", "inf-csv": ".csv", "one-value-column": ".csv"}
SUFFIX |= {"binary-csv": ".csv"}


@pytest.mark.parametrize("case", list(POINTS_CASES))
def test_bad_points_files_fail_cleanly_before_writing(tmp_path, capsys, case):
    content, fragment = POINTS_CASES[case]
    path = tmp_path / f"{case}{SUFFIX.get(case, '.npy')}"
    if content is not None:
        _write(path, content)
    out_dir = tmp_path / "out"
    code, _, err = run(
        ["train", *TINY, "dataset:points", "--dataset.path", path, *FAST]
        + ["--model-path", out_dir / "m.eqx"],
        capsys,
    )
    assert_clean_failure(code, err, fragment, path.name)
    assert not out_dir.exists()


def _text_points(path):
    path = path.with_suffix(".txt")
    path.write_text("1,2\n3,4\n")
    return path


def _garbage(path):
    path.write_bytes(b"not a png")
    return path


def _white(path):
    Image.new("L", (8, 8), 255).save(path)
    return path


def _folder(path):
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "dataset, make_file, fragment",
    [
        ("points", _text_points, "must end in .npy or .csv"),
        ("points", None, "pass --dataset.path"),
        ("image", None, "pass --dataset.path"),
        ("image", lambda path: path, "image not found"),
        ("image", _garbage, "cannot read image"),
        ("image", _white, "no pixel darker"),
        ("image", _folder, "is a directory"),
    ],
    ids=["suffix", "no-path-points", "no-path-image", "missing", "garbage", "white", "dir"],
)
def test_bad_inputs_fail_cleanly_before_writing(tmp_path, capsys, dataset, make_file, fragment):
    argv = ["train", *TINY, f"dataset:{dataset}", *FAST]
    if make_file is not None:
        argv += ["--dataset.path", make_file(tmp_path / "data.png")]
    out_dir = tmp_path / "out"
    code, _, err = run([*argv, "--model-path", out_dir / "m.eqx"], capsys)
    assert_clean_failure(code, err, fragment)
    assert not out_dir.exists()


def test_conditional_on_users_data_is_refused(tmp_path, capsys):
    np.save(tmp_path / "p.npy", spiral(50))
    out_dir = tmp_path / "out"
    for dataset, path in (("points", tmp_path / "p.npy"), ("image", star(tmp_path / "s.png"))):
        argv = ["train", *TINY, f"dataset:{dataset}", "--dataset.path", path, *FAST]
        code, _, err = run([*argv, "--conditional", "--model-path", out_dir / "m.eqx"], capsys)
        assert_clean_failure(code, err, "needs a labelled dataset", f"dataset {dataset}")
    assert not out_dir.exists()
