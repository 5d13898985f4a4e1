"""Tests of jax_gen.data: shapes, keys, jit/scan, and the distributions themselves.

Statistical checks compare against scikit-learn or exact values with tolerances of 5 standard
errors estimated from the samples, so a correct sampler fails with probability < 1e-6 per check
(and the keys are fixed, so the tests are deterministic).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy.special import logsumexp
from scipy.stats import kstest, multivariate_normal
from sklearn.datasets import load_digits, make_moons, make_s_curve, make_swiss_roll

from jax_gen.config import DATASETS as DATASET_NAMES
from jax_gen.config import (
    CatConfig,
    DigitsConfig,
    EightGaussiansConfig,
    GaussianMixtureConfig,
    MoonConfig,
    SCurveConfig,
    SwissRollConfig,
    from_dict,
    to_dict,
)
from jax_gen.data import (
    DIGITS_IMAGE_SHAPE,
    Dataset,
    cat_image_path,
    class_frequencies,
    data_dim,
    from_plane,
    gaussian_mixture_centres,
    get_batch,
    get_labeled_batch,
    has_log_density,
    is_planar,
    log_density,
    num_classes,
    projection,
    register,
    support_indicator,
    to_plane,
)
from jax_gen.data.builtin import eight_gaussians_centres

DATASETS = [
    CatConfig(),
    MoonConfig(),
    SwissRollConfig(),
    GaussianMixtureConfig(),
    EightGaussiansConfig(),
    SCurveConfig(),
]
IDS = [type(cfg).__name__ for cfg in DATASETS]
MOON_CENTRE = np.array([0.5, 0.25])
ROLL_MEAN = np.array([2.0, 2.0 / (3.0 * math.pi)])
ROLL_MAX_RADIUS = 4.5 * math.pi
Z = 5.0  # tolerance in standard errors

batch = jax.jit(get_batch, static_argnums=(1, 2))


def _sample(cfg, n, seed=0):
    return np.asarray(batch(jax.random.key(seed), cfg, n))


def _moment_standard_errors(x):
    """Standard errors of the sample mean and of each sample covariance entry of x (n, d)."""
    n = x.shape[0]
    centred = x - x.mean(axis=0)
    products = centred[:, :, None] * centred[:, None, :]
    return x.std(axis=0) / math.sqrt(n), products.std(axis=0) / math.sqrt(n)


def _assert_same_moments(ours, theirs):
    mean_se_a, cov_se_a = _moment_standard_errors(ours)
    mean_se_b, cov_se_b = _moment_standard_errors(theirs)
    mean_gap = np.abs(ours.mean(axis=0) - theirs.mean(axis=0))
    cov_gap = np.abs(np.cov(ours, rowvar=False) - np.cov(theirs, rowvar=False))
    assert np.all(mean_gap < Z * np.hypot(mean_se_a, mean_se_b)), mean_gap
    assert np.all(cov_gap < Z * np.hypot(cov_se_a, cov_se_b)), cov_gap


# ----------------------------------------------------------------------------------------------
# Every dataset
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", DATASETS, ids=IDS)
def test_shape_dtype_finite(cfg):
    x = batch(jax.random.key(0), cfg, 1000)
    assert x.shape == (1000, 2)
    assert x.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(x)))


@pytest.mark.parametrize("cfg", DATASETS, ids=IDS)
def test_same_key_same_batch_different_key_different_batch(cfg):
    a, b, c = _sample(cfg, 1000, seed=0), _sample(cfg, 1000, seed=0), _sample(cfg, 1000, seed=1)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a == c) < 0.01


@pytest.mark.parametrize("cfg", DATASETS, ids=IDS)
def test_eager_matches_jit(cfg):
    key = jax.random.key(3)
    np.testing.assert_allclose(get_batch(key, cfg, 256), batch(key, cfg, 256), atol=1e-5)


@pytest.mark.parametrize("cfg", DATASETS, ids=IDS)
def test_inside_jitted_scan(cfg):
    keys = jax.random.split(jax.random.key(0), 4)

    @jax.jit
    def draw_all(keys):
        return jax.lax.scan(lambda carry, key: (carry, get_batch(key, cfg, 256)), None, keys)[1]

    # No host round trip: the compiled loop contains no callback back into Python.
    assert "callback" not in str(jax.make_jaxpr(draw_all)(keys))
    batches = np.asarray(draw_all(keys))
    assert batches.shape == (4, 256, 2)
    for key, scanned in zip(keys, batches, strict=True):
        np.testing.assert_allclose(scanned, batch(key, cfg, 256), atol=1e-5)
    assert np.mean(batches[0] == batches[1]) < 0.01


@pytest.mark.parametrize("cfg", DATASETS, ids=IDS)
def test_default_datasets_fit_in_a_box_of_half_width_5(cfg):
    # Not a hard bound for the moons: their tips sit at +-4.5 with noise std 0.15, so one point
    # in 50 000 lands past 5; at this batch size every dataset stays inside with this key. The
    # eight Gaussians keep torchcfm's radius 5: their box is the radius plus 6 std.
    half_width = cfg.radius + 6 * cfg.std if isinstance(cfg, EightGaussiansConfig) else 5.0
    assert np.max(np.abs(_sample(cfg, 1000))) <= half_width


def test_unregistered_config_raises_type_error():
    @dataclasses.dataclass(frozen=True)
    class Unknown:
        pass

    with pytest.raises(TypeError, match="Unknown"):
        get_batch(jax.random.key(0), Unknown(), 8)


@pytest.mark.parametrize("batch_size", [0, -1, 2.0])
def test_bad_batch_size_raises(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        get_batch(jax.random.key(0), MoonConfig(), batch_size)


def test_user_registered_dataset():
    @dataclasses.dataclass(frozen=True)
    class LineConfig:
        slope: float = 2.0

    def sample_line(key, cfg, batch_size):
        t = jax.random.uniform(key, (batch_size,))
        return jnp.stack([t, cfg.slope * t], axis=1)

    register(LineConfig, Dataset(sample=sample_line))

    x = np.asarray(batch(jax.random.key(0), LineConfig(), 64))
    assert x.shape == (64, 2)
    np.testing.assert_allclose(x[:, 1], 2.0 * x[:, 0])


def test_one_record_answers_for_a_labelled_dataset_with_a_density():
    @dataclasses.dataclass(frozen=True)
    class SquareConfig:
        side: float = 2.0

    def sample_square(key, cfg, batch_size):
        points = jax.random.uniform(key, (batch_size, 2), maxval=cfg.side)
        return points, (points[:, 0] > cfg.side / 2).astype(jnp.int32)

    def log_density_square(cfg, x):
        inside = jnp.all((x >= 0) & (x <= cfg.side), axis=1)
        return jnp.where(inside, -2 * jnp.log(cfg.side), -jnp.inf)

    record = Dataset(
        labeled=sample_square,
        class_frequencies=lambda cfg: np.array([0.5, 0.5]),
        log_density=log_density_square,
        support_from_density=True,
    )
    register(SquareConfig, record)
    cfg, key = SquareConfig(), jax.random.key(0)
    points, labels = get_labeled_batch(key, cfg, 64)
    np.testing.assert_array_equal(batch(key, cfg, 64), points)  # get_batch drops the labels
    np.testing.assert_array_equal(labels, np.asarray(points[:, 0] > 1.0))
    assert num_classes(cfg) == 2
    np.testing.assert_array_equal(class_frequencies(cfg), [0.5, 0.5])
    assert has_log_density(cfg) and data_dim(cfg) == 2 and is_planar(cfg)
    np.testing.assert_allclose(log_density(cfg, points), -2 * math.log(2.0), rtol=1e-6)
    inside = support_indicator(cfg)
    np.testing.assert_array_equal(inside(np.array([[1.0, 1.0], [3.0, 1.0]])), [True, False])


def test_a_record_leaves_out_what_the_dataset_lacks():
    @dataclasses.dataclass(frozen=True)
    class CubeConfig:
        pass

    def sample_cube(key, cfg, batch_size):
        return jax.random.uniform(key, (batch_size, 3))

    register(CubeConfig, Dataset(sample=sample_cube, native_dim=lambda cfg: 3))
    cfg = CubeConfig()
    assert batch(jax.random.key(0), cfg, 16).shape == (16, 3)
    assert data_dim(cfg) == 3 and not is_planar(cfg) and num_classes(cfg) == 0
    assert not has_log_density(cfg) and support_indicator(cfg) is None
    with pytest.raises(ValueError, match="no labels"):
        get_labeled_batch(jax.random.key(0), cfg, 8)
    with pytest.raises(ValueError, match="3-D data, not 2-D points"):
        to_plane(np.zeros((2, 3)), cfg)
    with pytest.raises(NotImplementedError, match="CubeConfig"):
        log_density(cfg, np.zeros((2, 2)))


def test_a_record_needs_a_sampler_and_a_subclass_draws_like_its_parent():
    with pytest.raises(ValueError, match="needs a sampler"):
        Dataset()
    with pytest.raises(TypeError, match="config class"):
        register(MoonConfig(), Dataset(sample=lambda key, cfg, n: None))

    @dataclasses.dataclass(frozen=True)
    class WideMoonConfig(MoonConfig):
        pass

    key = jax.random.key(0)
    np.testing.assert_array_equal(batch(key, WideMoonConfig(), 32), batch(key, MoonConfig(), 32))
    assert num_classes(WideMoonConfig()) == 2


# ----------------------------------------------------------------------------------------------
# Two moons and swiss roll: exact shapes, and agreement with scikit-learn
# ----------------------------------------------------------------------------------------------


def test_noiseless_moons_lie_on_the_two_half_circles():
    cfg = MoonConfig(noise=0.0, scale=2.0)
    q = _sample(cfg, 2000) / cfg.scale
    outer, inner = q + MOON_CENTRE, MOON_CENTRE - q  # inner = 2c - outer, see the sampler
    on_outer = np.isclose(np.hypot(*outer.T), 1.0, atol=1e-5) & (outer[:, 1] >= -1e-6)
    on_inner = np.isclose(np.hypot(*inner.T), 1.0, atol=1e-5) & (inner[:, 1] >= -1e-6)
    assert np.all(on_outer | on_inner)
    # The moon of each point is a fair coin.
    assert abs(on_outer.mean() - 0.5) < Z * math.sqrt(0.25 / len(q))


def test_noiseless_swiss_roll_lies_on_the_spiral():
    cfg = SwissRollConfig(noise=0.0, scale=2.0)
    q = _sample(cfg, 2000).astype(np.float64) * ROLL_MAX_RADIUS / cfg.scale + ROLL_MEAN
    s = np.hypot(*q.T)
    assert np.all((s > 1.5 * math.pi - 1e-4) & (s < 4.5 * math.pi + 1e-4))
    np.testing.assert_allclose(q, s[:, None] * np.stack([np.cos(s), np.sin(s)], 1), atol=1e-3)


@pytest.mark.parametrize("noise", [0.05, 0.3])
def test_moons_match_sklearn(noise):
    cfg = MoonConfig(noise=noise)
    theirs, _ = make_moons(n_samples=20_000, noise=noise, random_state=0)
    _assert_same_moments(_sample(cfg, 20_000), (theirs - MOON_CENTRE) * cfg.scale)


@pytest.mark.parametrize("noise", [0.3, 1.0])
def test_swiss_roll_matches_sklearn(noise):
    cfg = SwissRollConfig(noise=noise)
    theirs, _ = make_swiss_roll(n_samples=20_000, noise=noise, random_state=0)
    theirs = (theirs[:, [0, 2]] - ROLL_MEAN) / ROLL_MAX_RADIUS * cfg.scale
    _assert_same_moments(_sample(cfg, 20_000), theirs)


def test_exact_moon_mean_against_sklearn():
    theirs, _ = make_moons(n_samples=200_000, noise=0.05, random_state=0)
    mean_se, _ = _moment_standard_errors(theirs)
    assert np.all(np.abs(theirs.mean(axis=0) - MOON_CENTRE) < Z * mean_se)


def test_exact_swiss_roll_mean_against_sklearn():
    theirs, _ = make_swiss_roll(n_samples=1_000_000, noise=0.0, random_state=0)
    theirs = theirs[:, [0, 2]]
    mean_se, _ = _moment_standard_errors(theirs)
    # The standard error (~0.007) is well below 2 / (3 pi) ~ 0.21, so this tells the mean apart
    # from (2, 0) as well as from the origin.
    assert np.all(np.abs(theirs.mean(axis=0) - ROLL_MEAN) < Z * mean_se)


# ----------------------------------------------------------------------------------------------
# Gaussian mixture
# ----------------------------------------------------------------------------------------------


def test_gaussian_mixture_components():
    cfg = GaussianMixtureConfig()
    n = 20_000
    x = _sample(cfg, n)
    # The nearest of the centres (+-scale, +-scale) is the one with the same signs.
    signs = np.sign(x)
    residual = x - cfg.scale * signs
    for sx in (-1, 1):
        for sy in (-1, 1):
            member = (signs[:, 0] == sx) & (signs[:, 1] == sy)
            count = member.sum()
            assert abs(count / n - 0.25) < Z * math.sqrt(0.25 * 0.75 / n)
            r = residual[member]
            assert np.all(np.abs(r.mean(axis=0)) < Z * cfg.std / math.sqrt(count))
            assert np.all(np.abs(r.std(axis=0) - cfg.std) < Z * cfg.std / math.sqrt(2 * count))


# ----------------------------------------------------------------------------------------------
# Eight Gaussians
# ----------------------------------------------------------------------------------------------

# torchcfm's eight_normal_sample: its centres (in its order) and N(0, sqrt(var) I) noise.
TORCHCFM_EIGHT_CENTRES = np.array(
    [
        (1, 0),
        (-1, 0),
        (0, 1),
        (0, -1),
        *((a / math.sqrt(2), b / math.sqrt(2)) for a in (1, -1) for b in (1, -1)),
    ]
)


def _torchcfm_eight_gaussians(n, seed, scale=5.0, var=0.1):
    """torchcfm's ``eight_normal_sample(n, 2, scale, var)`` in NumPy, and the centre drawn."""
    rng = np.random.default_rng(seed)
    component = rng.integers(0, 8, size=n)
    noise = rng.multivariate_normal(np.zeros(2), math.sqrt(var) * np.eye(2), size=n)
    centres = scale * TORCHCFM_EIGHT_CENTRES[component]
    return centres + noise, centres


def test_eight_gaussians_centres_are_on_the_circle_at_multiples_of_45_degrees():
    cfg = EightGaussiansConfig(radius=2.5)
    centres = eight_gaussians_centres(cfg)
    assert centres.shape == (8, 2) and centres.dtype == np.float64
    np.testing.assert_allclose(np.hypot(*centres.T), 2.5, rtol=1e-12)
    angles = np.arctan2(centres[:, 1], centres[:, 0]) % (2 * math.pi)
    np.testing.assert_allclose(angles, np.arange(8) * math.pi / 4, atol=1e-12)


def test_eight_gaussians_defaults_are_torchcfms():
    cfg = EightGaussiansConfig()
    # The same eight centres as torchcfm's scale-5 ones, as a set.
    ours = np.round(eight_gaussians_centres(cfg), 9)
    theirs = np.round(5.0 * TORCHCFM_EIGHT_CENTRES, 9)
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
    # The component std is 0.1^(1/4): torchcfm passes sqrt(var) as the covariance.
    assert abs(cfg.std - 0.5623) < 1e-4
    n = 20_000
    points, labels = _labeled(cfg, n, seed=4)
    reference, reference_centres = _torchcfm_eight_gaussians(n, seed=0)
    _assert_same_moments(points, reference)
    residual = points - eight_gaussians_centres(cfg)[labels]
    _assert_same_moments(residual, reference - reference_centres)


def test_eight_gaussians_components():
    cfg = EightGaussiansConfig(radius=4.0, std=0.7)
    n = 40_000
    points, labels = _labeled(cfg, n, seed=2)
    centres = 4.0 * np.stack(
        [np.cos(np.arange(8) * math.pi / 4), np.sin(np.arange(8) * math.pi / 4)], 1
    )
    for k in range(8):
        member = points[labels == k].astype(np.float64)
        count = len(member)
        # Equal weights: each label's frequency is 1/8 within 4 standard errors.
        assert abs(count / n - 1 / 8) < 4 * math.sqrt(1 / 8 * 7 / 8 / n), (k, count)
        # Each label's points are N(centre_k, std^2 I).
        se_mean = cfg.std / math.sqrt(count)
        assert np.all(np.abs(member.mean(axis=0) - centres[k]) < Z * se_mean), k
        se_std = cfg.std / math.sqrt(2 * count)
        assert np.all(np.abs(member.std(axis=0) - cfg.std) < Z * se_std), k
        correlation = np.corrcoef(member, rowvar=False)[0, 1]
        assert abs(correlation) < Z / math.sqrt(count), k


def test_eight_gaussians_log_density_integrates_to_one_and_matches_scipy():
    cfg = EightGaussiansConfig()
    # The midpoint rule on a Gaussian with spacing h = std / 5 errs by ~exp(-2 pi^2 25): nothing.
    h = cfg.std / 5
    edge = cfg.radius + 8 * cfg.std
    axis = np.arange(-edge, edge, h) + h / 2
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    log_p = np.asarray(log_density(cfg, grid), dtype=np.float64)
    assert log_p.shape == (len(grid),)
    assert abs(np.exp(log_p).sum() * h**2 - 1.0) < 1e-4

    angles = np.arange(8) * math.pi / 4
    centres = cfg.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    x = _sample(cfg, 500, seed=3).astype(np.float64)
    x = np.concatenate([x, [[0.0, 0.0], [10.0, -7.0], [3.0, 3.0]]])
    components = [multivariate_normal(c, cfg.std**2 * np.eye(2)).logpdf(x) for c in centres]
    theirs = logsumexp(np.stack(components), axis=0) - math.log(8)
    np.testing.assert_allclose(np.asarray(log_density(cfg, x)), theirs, rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# S-curve
# ----------------------------------------------------------------------------------------------


def _sklearn_s_curve(n, seed, noise=0.05):
    """torchcfm's S-curve: columns 0 and 2 of ``make_s_curve(n, noise=noise)``, times 1.5."""
    return make_s_curve(n, noise=noise, random_state=seed)[0][:, [0, 2]] * 1.5


def _sliced_w2(a, b, directions):
    """The W2 distance of the projections of a and b (equally many points) on each direction."""
    return np.array([np.sqrt(np.mean((np.sort(a @ d) - np.sort(b @ d)) ** 2)) for d in directions])


def test_s_curve_matches_sklearn():
    n = 10_000
    ours = _sample(SCurveConfig(), n).astype(np.float64)
    theirs = _sklearn_s_curve(n, seed=0)
    _assert_same_moments(ours, theirs)
    # Each axis and both diagonals: W2 against scikit-learn's within 3 times the mean W2
    # between two of scikit-learn's own draws.
    angles = np.array([0.0, 0.5, 0.25, -0.25]) * math.pi
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    floors = [
        _sliced_w2(_sklearn_s_curve(n, seed), _sklearn_s_curve(n, seed + 1), directions)
        for seed in (1, 3, 5, 7)
    ]
    floor = np.mean(floors, axis=0)
    w2 = _sliced_w2(ours, theirs, directions)
    assert np.all(w2 < 3 * floor), (w2, floor)


def test_s_curve_is_centred_with_the_exact_covariance():
    cfg = SCurveConfig()
    x = _sample(cfg, 1_000_000).astype(np.float64)
    # t ~ U[-3 pi / 2, 3 pi / 2]: E[sin^2 t] = 1/2, E[(cos t - 1)^2] = 3/2 + 4 / (3 pi) (as
    # E[cos t] = -2 / (3 pi) and E[cos^2 t] = 1/2), E[sign(t) sin t (cos t - 1)] = -1 / (3 pi).
    curve = np.array([[0.5, -1 / (3 * math.pi)], [-1 / (3 * math.pi), 1.5 + 4 / (3 * math.pi)]])
    covariance = cfg.scale**2 * (curve + cfg.noise**2 * np.eye(2))
    mean_se, cov_se = _moment_standard_errors(x)
    assert np.all(np.abs(x.mean(axis=0)) < Z * mean_se)
    assert np.all(np.abs(np.cov(x, rowvar=False) - covariance) < Z * cov_se)


def test_noiseless_s_curve_lies_on_the_curve():
    cfg = SCurveConfig(noise=0.0, scale=2.0)
    q = _sample(cfg, 5000).astype(np.float64) / cfg.scale
    # The point of parameter t is (sin t, sign(t) (cos t - 1)): for t > 0 (lower half) the unit
    # circle about (0, -1), for t < 0 (upper half) the one about (0, 1).
    lower = q[:, 1] <= 0
    centre_y = np.where(lower, -1.0, 1.0)
    np.testing.assert_allclose(np.hypot(q[:, 0], q[:, 1] - centre_y), 1.0, atol=1e-5)
    # The parameter read back from the point, (sin t, cos t) = (x, 1 + z) or (x, 1 - z), lies in
    # [-3 pi / 2, 3 pi / 2], is uniform there, and gives the point back.
    angle = np.arctan2(q[:, 0], 1 - np.abs(q[:, 1])) % (2 * math.pi)
    t = np.where(lower, angle, angle - 2 * math.pi)
    t = np.where(np.abs(q).max(axis=1) < 1e-6, 0.0, t)  # the origin is t = 0 on either arc
    assert np.all(np.abs(t) <= 1.5 * math.pi + 1e-4)
    assert kstest(t, "uniform", args=(-1.5 * math.pi, 3 * math.pi)).pvalue > 1e-6
    curve = np.stack([np.sin(t), np.sign(t) * (np.cos(t) - 1)], axis=1)
    np.testing.assert_allclose(q, curve, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Cat
# ----------------------------------------------------------------------------------------------


def _dark_mask(cfg):
    with Image.open(cat_image_path(cfg)) as image:
        return np.asarray(image.convert("L")) < cfg.threshold


def _pixel_coordinates(x, cfg, shape):
    """Continuous (row, column) of points: pixel (i, j) is the square [i, i+1) x [j, j+1)."""
    height, width = shape
    longer = max(height, width)
    q = x.astype(np.float64) / cfg.scale
    return (height - q[:, 1] * longer) / 2, (q[:, 0] * longer + width) / 2


def test_default_cat_image_is_the_project_asset():
    path = cat_image_path(CatConfig())
    assert path.parts[-2:] == ("assets", "cat.png")
    assert path.is_file()
    assert cat_image_path(CatConfig(image_path="/some/where.png")).as_posix() == "/some/where.png"


def test_cat_points_fall_on_dark_pixels():
    cfg = CatConfig()
    dark = _dark_mask(cfg)
    rows, cols = _pixel_coordinates(_sample(cfg, 20_000), cfg, dark.shape)
    # Float32 rounding can put a point exactly on its pixel's edge, so accept either side of an
    # edge closer than a thousandth of a pixel.
    eps = 1e-3
    padded = np.pad(dark, 1)  # a white border catches points that leave the image
    inside = np.zeros(len(rows), dtype=bool)
    for row in (np.floor(rows - eps), np.floor(rows + eps)):
        for col in (np.floor(cols - eps), np.floor(cols + eps)):
            i = np.clip(row.astype(int) + 1, 0, padded.shape[0] - 1)
            j = np.clip(col.astype(int) + 1, 0, padded.shape[1] - 1)
            inside |= padded[i, j]
    assert np.all(inside)
    # The jitter fills each pixel uniformly: offsets inside the pixel average 1/2 (std 1/sqrt(12)).
    for offsets in (rows % 1, cols % 1):
        assert abs(offsets.mean() - 0.5) < Z * math.sqrt(1 / 12 / len(offsets))


def test_cat_is_uniform_over_dark_pixels():
    cfg = CatConfig()
    dark = _dark_mask(cfg)
    m = int(dark.sum())
    n = 8 * m
    rows, cols = _pixel_coordinates(_sample(cfg, n), cfg, dark.shape)
    rows = np.clip(np.floor(rows).astype(int), 0, dark.shape[0] - 1)
    cols = np.clip(np.floor(cols).astype(int), 0, dark.shape[1] - 1)
    counts = np.bincount(rows * dark.shape[1] + cols, minlength=dark.size)[dark.ravel()]
    # With 8 draws per pixel on average, a pixel is never drawn with probability ~e^-8, so the
    # number of missed pixels is about Poisson(m e^-8) (~7 for the default cat).
    expected_missed = m * math.exp(-n / m)
    assert np.sum(counts == 0) < expected_missed + Z * math.sqrt(expected_missed)
    # Pearson's statistic of uniform counts has mean ~m and standard deviation ~sqrt(2m).
    expected = n / m
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert abs(chi2 - m) < Z * math.sqrt(2 * m)


def test_cat_keeps_aspect_ratio_and_points_y_up(tmp_path):
    # A 4 x 2 image (width x height) whose only dark pixel is the top-left one: the longer side
    # spans [-1, 1], so that pixel is the square [-1, -0.5) x (0, 0.5] before scaling.
    grey = np.full((2, 4), 255, dtype=np.uint8)
    grey[0, 0] = 0
    path = tmp_path / "corner.png"
    Image.fromarray(grey).save(path)
    cfg = CatConfig(image_path=str(path), scale=2.0)
    q = _sample(cfg, 1000) / cfg.scale
    assert np.all((q[:, 0] >= -1.0) & (q[:, 0] <= -0.5))
    assert np.all((q[:, 1] >= 0.0) & (q[:, 1] <= 0.5))
    assert q[:, 0].max() - q[:, 0].min() > 0.45  # the jitter spans the whole pixel


def test_cat_missing_image_raises_file_not_found(tmp_path):
    path = tmp_path / "no_cat_here.png"
    with pytest.raises(FileNotFoundError, match="no_cat_here.png"):
        get_batch(jax.random.key(0), CatConfig(image_path=str(path)), 8)


def test_cat_image_without_dark_pixels_raises_value_error(tmp_path):
    path = tmp_path / "white.png"
    Image.new("L", (16, 16), color=255).save(path)
    with pytest.raises(ValueError, match="white.png"):
        get_batch(jax.random.key(0), CatConfig(image_path=str(path)), 8)


def test_cat_threshold_is_strict(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (16, 16), color=128).save(path)
    with pytest.raises(ValueError, match="grey.png"):
        get_batch(jax.random.key(0), CatConfig(image_path=str(path), threshold=128), 8)
    x = get_batch(jax.random.key(0), CatConfig(image_path=str(path), threshold=129), 8)
    assert x.shape == (8, 2)


def test_cat_unreadable_image_raises_value_error(tmp_path):
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="garbage.png"):
        get_batch(jax.random.key(0), CatConfig(image_path=str(path)), 8)


# ----------------------------------------------------------------------------------------------
# Ambient dimension: the 2-D data embedded in a fixed plane of R^D
# ----------------------------------------------------------------------------------------------

AMBIENT_DIMS = [2, 3, 8, 128, 512]


@pytest.mark.parametrize("dim", AMBIENT_DIMS)
def test_projection_has_orthonormal_columns_and_is_deterministic(dim):
    cfg = SwissRollConfig(ambient_dim=dim)
    p = projection(cfg)
    assert p.shape == (dim, 2)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.T.astype(np.float64) @ p, np.eye(2), atol=1e-6)
    # Same D, same plane, whatever the dataset; and the caller's copy is its own.
    np.testing.assert_array_equal(p, projection(MoonConfig(ambient_dim=dim)))
    p[:] = 0.0
    np.testing.assert_allclose(projection(cfg).T @ projection(cfg), np.eye(2), atol=1e-6)
    assert data_dim(cfg) == dim


def test_projection_of_two_dims_is_the_identity_and_planes_differ_across_dims():
    np.testing.assert_array_equal(projection(MoonConfig()), np.eye(2, dtype=np.float32))
    # Not a coordinate plane: the embedding mixes every coordinate.
    p = projection(MoonConfig(ambient_dim=8))
    assert np.all(np.abs(p) > 0)
    assert not np.allclose(projection(MoonConfig(ambient_dim=3))[:2], p[:2])


@pytest.mark.parametrize("dim", [3, 8, 128])
@pytest.mark.parametrize("cfg", DATASETS, ids=IDS)
def test_embedded_batch_lies_in_the_plane_and_projects_back_to_the_2d_batch(cfg, dim):
    embedded_cfg = dataclasses.replace(cfg, ambient_dim=dim)
    x = batch(jax.random.key(5), embedded_cfg, 500)
    assert x.shape == (500, dim)
    assert x.dtype == jnp.float32
    p = projection(embedded_cfg).astype(np.float64)
    x64 = np.asarray(x, dtype=np.float64)
    off_plane = x64 - x64 @ p @ p.T
    assert np.max(np.linalg.norm(off_plane, axis=1)) < 1e-5
    flat = batch(jax.random.key(5), cfg, 500)
    np.testing.assert_allclose(to_plane(x, embedded_cfg), flat, atol=1e-5)
    np.testing.assert_allclose(from_plane(flat, embedded_cfg), x, atol=1e-6)


@pytest.mark.parametrize("cfg", DATASETS, ids=IDS)
def test_two_dims_is_bitwise_the_plain_batch(cfg):
    key = jax.random.key(2)
    x = batch(key, cfg, 256)
    np.testing.assert_array_equal(to_plane(x, cfg), x)
    np.testing.assert_array_equal(from_plane(x, cfg), x)
    np.testing.assert_array_equal(batch(key, dataclasses.replace(cfg, ambient_dim=2), 256), x)


def test_embedded_batch_inside_jitted_scan():
    cfg = SwissRollConfig(ambient_dim=32)
    keys = jax.random.split(jax.random.key(0), 4)

    @jax.jit
    def draw_all(keys):
        return jax.lax.scan(lambda carry, key: (carry, get_batch(key, cfg, 128)), None, keys)[1]

    assert "callback" not in str(jax.make_jaxpr(draw_all)(keys))
    batches = np.asarray(draw_all(keys))
    assert batches.shape == (4, 128, 32)
    for key, scanned in zip(keys, batches, strict=True):
        np.testing.assert_allclose(scanned, get_batch(key, cfg, 128), atol=1e-5)
    to_plane_jit = jax.jit(to_plane, static_argnums=1)
    np.testing.assert_allclose(to_plane_jit(batches[0], cfg), to_plane(batches[0], cfg), atol=1e-6)


@pytest.mark.parametrize(
    "config_class", [CatConfig, MoonConfig, SwissRollConfig, EightGaussiansConfig, SCurveConfig]
)
@pytest.mark.parametrize("dim", [1, 0, 2.0])
def test_ambient_dim_below_two_or_not_int_is_rejected(config_class, dim):
    with pytest.raises(ValueError, match="ambient_dim"):
        config_class(ambient_dim=dim)


def test_gaussian_mixture_rejects_ambient_dim_one():
    with pytest.raises(ValueError, match="ambient_dim"):
        GaussianMixtureConfig(ambient_dim=1)


def test_user_registered_dataset_is_embedded_when_it_has_an_ambient_dim():
    @dataclasses.dataclass(frozen=True)
    class DiagonalConfig:
        ambient_dim: int = 16

    def sample_diagonal(key, cfg, batch_size):
        t = jax.random.uniform(key, (batch_size,))
        return jnp.stack([t, t], axis=1)

    register(DiagonalConfig, Dataset(sample=sample_diagonal))

    cfg = DiagonalConfig()
    x = batch(jax.random.key(0), cfg, 64)
    assert x.shape == (64, 16)
    u = np.asarray(to_plane(x, cfg))
    np.testing.assert_allclose(u[:, 0], u[:, 1], atol=1e-6)
    with pytest.raises(ValueError, match="ambient_dim"):
        get_batch(jax.random.key(0), DiagonalConfig(ambient_dim=1), 8)


def test_user_sampler_must_return_2d_points_to_be_embedded():
    @dataclasses.dataclass(frozen=True)
    class WideConfig:
        ambient_dim: int = 4

    def sample_wide(key, cfg, batch_size):
        return jax.random.normal(key, (batch_size, cfg.ambient_dim))

    register(WideConfig, Dataset(sample=sample_wide))

    with pytest.raises(ValueError, match="2-D points"):
        get_batch(jax.random.key(0), WideConfig(), 8)


# ----------------------------------------------------------------------------------------------
# Exact log-densities
# ----------------------------------------------------------------------------------------------


def test_gaussian_mixture_log_density_integrates_to_one_and_matches_scipy():
    cfg = GaussianMixtureConfig(scale=2.0, std=0.5)
    # The midpoint rule on a Gaussian with spacing h = std / 5 errs by ~exp(-2 pi^2 25): nothing.
    h = cfg.std / 5
    axis = np.arange(-cfg.scale - 8 * cfg.std, cfg.scale + 8 * cfg.std, h) + h / 2
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    log_p = np.asarray(log_density(cfg, grid), dtype=np.float64)
    assert log_p.shape == (len(grid),)
    assert abs(np.exp(log_p).sum() * h**2 - 1.0) < 1e-4

    centres = cfg.scale * np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    x = _sample(cfg, 500, seed=3).astype(np.float64)
    x = np.concatenate([x, [[0.0, 0.0], [10.0, -7.0]]])
    components = [multivariate_normal(c, cfg.std**2 * np.eye(2)).logpdf(x) for c in centres]
    theirs = logsumexp(np.stack(components), axis=0) - math.log(4)
    np.testing.assert_allclose(np.asarray(log_density(cfg, x)), theirs, rtol=1e-5, atol=1e-4)


def test_cat_log_density_is_uniform_on_the_dark_pixels():
    cfg = CatConfig()
    dark = _dark_mask(cfg)
    height, width = dark.shape
    side = 2 * cfg.scale / max(height, width)
    # A grid 4 times finer than the pixels, aligned with their edges: every dark pixel holds
    # 16 midpoints, so the integral is exactly 1 if the density is right.
    fine = 4
    h = side / fine
    xs = -cfg.scale * width / max(height, width) + h * (np.arange(width * fine) + 0.5)
    ys = cfg.scale * height / max(height, width) - h * (np.arange(height * fine) + 0.5)
    grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2)
    density = np.exp(np.asarray(log_density(cfg, grid), dtype=np.float64))
    np.testing.assert_allclose(density.sum() * h**2, 1.0, rtol=1e-5)
    # Pixel by pixel: the midpoints of a dark pixel are inside, of a light one outside.
    inside = (density > 0).reshape(height * fine, width * fine)
    np.testing.assert_array_equal(inside, np.kron(dark, np.ones((fine, fine), dtype=bool)))
    np.testing.assert_allclose(density[density > 0], 1 / (dark.sum() * side**2), rtol=1e-5)
    # An unaligned grid still integrates to 1 up to the cells cut by the silhouette's edge.
    offset_grid = grid + 0.37 * h
    offset_density = np.exp(np.asarray(log_density(cfg, offset_grid), dtype=np.float64))
    assert abs(offset_density.sum() * h**2 - 1.0) < 1e-2
    # Every sample of the sampler has the density, far points have none.
    samples = _sample(cfg, 100_000)
    assert np.all(np.isfinite(np.asarray(log_density(cfg, samples))))
    assert np.all(np.isneginf(np.asarray(log_density(cfg, [[10.0, 10.0], [-3.1, 0.0]]))))


def test_log_density_unknown_or_degenerate_raises_not_implemented():
    x = np.zeros((3, 2), dtype=np.float32)
    assert has_log_density(GaussianMixtureConfig()) and has_log_density(CatConfig())
    assert has_log_density(EightGaussiansConfig())
    unknown = (
        MoonConfig(),
        SwissRollConfig(),
        SCurveConfig(),
        GaussianMixtureConfig(ambient_dim=3),
    )
    for cfg in (*unknown, EightGaussiansConfig(ambient_dim=3)):
        assert not has_log_density(cfg)
        with pytest.raises(NotImplementedError):
            log_density(cfg, x)
    jitted = jax.jit(log_density, static_argnums=0)
    cfg = GaussianMixtureConfig()
    np.testing.assert_allclose(jitted(cfg, x), log_density(cfg, x), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------

LABELED = [
    GaussianMixtureConfig(),
    MoonConfig(),
    DigitsConfig(),
    EightGaussiansConfig(),
    GaussianMixtureConfig(ambient_dim=5),
    MoonConfig(ambient_dim=3),
    EightGaussiansConfig(ambient_dim=3),
]
LABELED_IDS = ["mixture", "moons", "digits", "eight", "mixture-5d", "moons-3d", "eight-3d"]
labeled_batch = jax.jit(get_labeled_batch, static_argnums=(1, 2))


@pytest.mark.parametrize("cfg", LABELED, ids=LABELED_IDS)
def test_labeled_batch_has_exactly_the_points_of_get_batch(cfg):
    key = jax.random.key(8)
    points, labels = get_labeled_batch(key, cfg, 500)
    assert points.shape == (500, data_dim(cfg)) and points.dtype == jnp.float32
    assert labels.shape == (500,) and labels.dtype == jnp.int32
    np.testing.assert_array_equal(points, get_batch(key, cfg, 500))
    jit_points, jit_labels = labeled_batch(key, cfg, 500)
    np.testing.assert_array_equal(jit_points, batch(key, cfg, 500))
    np.testing.assert_array_equal(jit_labels, labels)
    assert set(np.unique(np.asarray(labels))) <= set(range(num_classes(cfg)))


@pytest.mark.parametrize("cfg", LABELED, ids=LABELED_IDS)
def test_class_frequencies_match_the_label_frequencies(cfg):
    n = 40_000
    _, labels = labeled_batch(jax.random.key(1), cfg, n)
    expected = class_frequencies(cfg)
    assert expected.shape == (num_classes(cfg),)
    assert abs(expected.sum() - 1.0) < 1e-12
    observed = np.bincount(np.asarray(labels), minlength=num_classes(cfg)) / n
    np.testing.assert_array_less(
        np.abs(observed - expected), Z * np.sqrt(expected * (1 - expected) / n)
    )


def test_number_of_classes_per_dataset():
    assert num_classes(GaussianMixtureConfig()) == 4
    assert num_classes(MoonConfig(ambient_dim=4)) == 2
    assert num_classes(DigitsConfig()) == 10
    assert num_classes(EightGaussiansConfig(ambient_dim=3)) == 8
    assert num_classes(CatConfig()) == num_classes(SwissRollConfig()) == 0
    assert num_classes(SCurveConfig()) == 0


@pytest.mark.parametrize(
    "cfg, name",
    [
        (CatConfig(), "cat"),
        (SwissRollConfig(ambient_dim=3), "swiss-roll"),
        (SCurveConfig(), "s-curve"),
    ],
    ids=["cat", "roll", "s-curve"],
)
def test_unlabelled_datasets_refuse_labels(cfg, name):
    with pytest.raises(ValueError, match=f"dataset {name} has no labels"):
        get_labeled_batch(jax.random.key(0), cfg, 8)
    with pytest.raises(ValueError, match="no labels"):
        class_frequencies(cfg)


def test_mixture_label_is_the_nearest_component():
    cfg = GaussianMixtureConfig()  # centres 6 apart, std 0.3: the nearest is the one drawn
    points, labels = _labeled(cfg, 5000)
    centres = gaussian_mixture_centres(cfg)
    nearest = np.linalg.norm(points[:, None] - centres[None], axis=-1).argmin(axis=1)
    np.testing.assert_array_equal(labels, nearest)
    # Embedded in R^5: same labels, and the centres embed with the points.
    embedded = GaussianMixtureConfig(ambient_dim=5)
    x, embedded_labels = _labeled(embedded, 5000)
    np.testing.assert_array_equal(embedded_labels, labels)
    centres_5d = np.asarray(from_plane(centres.astype(np.float32), embedded))
    np.testing.assert_array_equal(
        np.linalg.norm(x[:, None] - centres_5d[None], axis=-1).argmin(axis=1), labels
    )


def test_moon_label_is_the_moon_the_point_lies_on():
    cfg = MoonConfig(noise=0.0, scale=1.0)
    u, labels = _labeled(cfg, 2000)
    centre = np.array([0.5, 0.25])
    outer, inner = u + centre, centre - u  # (cos t, sin t) for the moon the point is on
    on_outer = np.abs(np.linalg.norm(outer, axis=1) - 1) < 1e-5
    on_inner = np.abs(np.linalg.norm(inner, axis=1) - 1) < 1e-5
    # make_moons' labels: 0 the outer moon (upper half circle), 1 the inner one.
    assert np.all(on_outer[labels == 0] & (outer[labels == 0, 1] >= -1e-6))
    assert np.all(on_inner[labels == 1] & (inner[labels == 1, 1] >= -1e-6))
    assert 0 < np.mean(labels) < 1


def _labeled(cfg, n, seed=0):
    points, labels = labeled_batch(jax.random.key(seed), cfg, n)
    return np.asarray(points), np.asarray(labels)


# ----------------------------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------------------------


def test_digits_are_registered_and_round_trip_through_json():
    assert DATASET_NAMES["digits"] is DigitsConfig
    assert from_dict(to_dict(DigitsConfig())) == DigitsConfig()


def test_digits_batch_rows_are_sklearn_images_scaled_to_the_unit_interval():
    digits = load_digits()
    x, labels = _labeled(DigitsConfig(), 20_000)
    assert x.shape == (20_000, 64) and x.dtype == np.float32 and data_dim(DigitsConfig()) == 64
    assert x.min() == -1.0 and x.max() == 1.0
    grey = (x.astype(np.float64) + 1) * 8
    np.testing.assert_array_equal(grey, np.round(grey))  # the 17 grey levels, exactly
    # Every row is one of scikit-learn's images, with that image's label.
    rows = dict(zip(map(np.ndarray.tobytes, digits.data), digits.target, strict=True))
    assert all(rows.get(row.tobytes()) == label for row, label in zip(grey, labels, strict=True))
    sklearn_frequencies = np.bincount(digits.target) / digits.target.size
    np.testing.assert_allclose(class_frequencies(DigitsConfig()), sklearn_frequencies)
    observed = np.bincount(labels, minlength=10) / labels.size
    assert np.max(np.abs(observed - sklearn_frequencies)) < Z * math.sqrt(0.1 * 0.9 / 20_000)
    assert x[0].reshape(DIGITS_IMAGE_SHAPE).shape == (8, 8)


def test_digits_have_no_plane_and_no_density():
    cfg = DigitsConfig()
    assert not is_planar(cfg) and is_planar(MoonConfig(ambient_dim=3))
    x = np.zeros((2, 64), np.float32)
    for plane_function in (lambda: projection(cfg), lambda: to_plane(x, cfg)):
        with pytest.raises(ValueError, match="digits is 64-D data"):
            plane_function()
    with pytest.raises(ValueError, match="not 2-D points"):
        from_plane(np.zeros((2, 2), np.float32), cfg)
    assert not has_log_density(cfg)
    with pytest.raises(NotImplementedError, match="DigitsConfig"):
        log_density(cfg, x)


def test_digits_inside_jitted_scan():
    cfg = DigitsConfig()
    keys = jax.random.split(jax.random.key(0), 3)

    @jax.jit
    def draw_all(keys):
        return jax.lax.scan(lambda c, key: (c, get_labeled_batch(key, cfg, 64)), None, keys)[1]

    assert "callback" not in str(jax.make_jaxpr(draw_all)(keys))
    points, labels = draw_all(keys)
    assert points.shape == (3, 64, 64) and labels.shape == (3, 64)
    np.testing.assert_array_equal(points[1], get_batch(keys[1], cfg, 64))
