import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from jax_gen import metrics
from jax_gen.metrics import (
    CHEAP_METRICS,
    MMD_BANDWIDTHS,
    QUALITY_METRICS,
    classifier_two_sample_test,
    distance_and_floor,
    distance_with_floor,
    energy_distance,
    format_report,
    knn_radii,
    mmd,
    mmd2_unbiased,
    precision_recall,
    quality_report,
    sliced_wasserstein,
    support_rate,
)


def test_identical_sets_are_at_distance_zero():
    a = jax.random.normal(jax.random.key(0), (500, 2))
    assert float(sliced_wasserstein(a, a, jax.random.key(1))) < 1e-6
    permuted = jax.random.permutation(jax.random.key(2), a)
    assert float(sliced_wasserstein(a, permuted, jax.random.key(1))) < 1e-6


def test_a_pure_shift_gives_the_shift():
    a = jax.random.normal(jax.random.key(0), (500, 3))
    shift = np.array([0.3, -0.4, 1.2])  # |shift| = 1.3
    distance = float(sliced_wasserstein(a, a + shift, jax.random.key(1), num_projections=4096))
    np.testing.assert_allclose(distance, 1.3, rtol=0.05)


def test_distance_grows_with_the_mismatch_and_exceeds_the_floor():
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (2000, 2))
    b = jax.random.normal(key_b, (2000, 2))
    floor = float(sliced_wasserstein(a, b, jax.random.key(1)))
    wider = float(sliced_wasserstein(a, 1.5 * b, jax.random.key(1)))
    # Sampling noise alone is O(n^-1/2); a 50% wider distribution is far above it.
    assert 0 < floor < 0.2
    assert wider > 3 * floor


def test_distance_and_floor_average_over_draws():
    def draw(key, n):
        return jax.random.normal(key, (n, 2))

    samples = draw(jax.random.key(5), 1000)
    summary = distance_with_floor(samples, draw, jax.random.key(0), repeats=10)
    # Samples from the data distribution itself: their mean distance to fresh draws (0.103)
    # lies inside the 95% interval of one draw's floor ([0.090, 0.146]); samples 5% too wide
    # sit at 0.147, 10% too wide at 0.207 (ratio 1.8 to the floor's mean).
    low, high = summary["data_interval"]
    assert low <= summary["value"] <= high
    shifted = distance_with_floor(samples + 1.0, draw, jax.random.key(0), repeats=10)
    assert shifted["data"] == summary["data"]
    np.testing.assert_allclose(shifted["value"], np.sqrt(2.0), rtol=0.1)
    # distance_and_floor averages the same draws.
    distance, floor = distance_and_floor(samples, draw, jax.random.key(1), repeats=3)
    again = distance_with_floor(samples, draw, jax.random.key(1), repeats=3)
    np.testing.assert_allclose([distance, floor], [again["value"], again["data"]], rtol=1e-4)


def test_energy_distance_and_mmd_vanish_on_identical_sets():
    a = jax.random.normal(jax.random.key(0), (400, 2))
    assert float(energy_distance(a, a)) < 1e-3
    assert float(mmd(a, a)) < 1e-3


def test_energy_distance_matches_its_closed_form_for_shifted_gaussians():
    # X ~ N(0, 1), Y ~ N(mu, 1) in 1-D: X - Y ~ N(-mu, 2) and X - X' ~ N(0, 2), so
    # E^2 = 2 E|N(mu, 2)| - 2 E|N(0, 2)| with E|N(m, s^2)| = s sqrt(2/pi) e^(-m^2/2s^2)
    # + m (1 - 2 Phi(-m/s)).
    from scipy.stats import norm

    mu, s = 1.0, np.sqrt(2.0)
    folded = s * np.sqrt(2 / np.pi) * np.exp(-(mu**2) / (2 * s**2)) + mu * (
        1 - 2 * norm.cdf(-mu / s)
    )
    expected = np.sqrt(2 * folded - 2 * s * np.sqrt(2 / np.pi))
    key_a, key_b = jax.random.split(jax.random.key(1))
    a = jax.random.normal(key_a, (3000, 1))
    b = jax.random.normal(key_b, (3000, 1)) + mu
    np.testing.assert_allclose(float(energy_distance(a, b)), expected, rtol=0.05)


def mmd2_of_shifted_gaussians(d: int, s: float, mu: np.ndarray) -> float:
    """MMD^2 between N(0, s^2 I) and N(mu, s^2 I) in d dimensions for the kernel of ``mmd``.

    For k = exp(-|x-y|^2 / 2h^2) and a mean difference m,
    E k = (h^2 / (h^2 + 2 s^2))^(d/2) exp(-|m|^2 / 2(h^2 + 2 s^2)), so
    MMD^2 = 2 sum_h (h^2 / (h^2 + 2 s^2))^(d/2) (1 - exp(-|mu|^2 / 2(h^2 + 2 s^2))).
    """
    return sum(
        2
        * (h**2 / (h**2 + 2 * s**2)) ** (d / 2)
        * (1 - np.exp(-(mu @ mu) / (2 * (h**2 + 2 * s**2))))
        for h in MMD_BANDWIDTHS
    )


def test_mmd_matches_its_closed_form_for_shifted_gaussians():
    d, s, mu = 2, 1.0, np.array([0.8, -0.6])
    key_a, key_b = jax.random.split(jax.random.key(2))
    a = jax.random.normal(key_a, (3000, d))
    b = jax.random.normal(key_b, (3000, d)) + mu
    np.testing.assert_allclose(float(mmd(a, b)) ** 2, mmd2_of_shifted_gaussians(d, s, mu), rtol=0.1)


def test_distance_and_floor_takes_any_metric():
    def draw(key, n):
        return jax.random.normal(key, (n, 2))

    samples = draw(jax.random.key(5), 500) + 1.0
    for metric in (energy_distance, mmd):
        distance, floor = distance_and_floor(samples, draw, jax.random.key(0), 2, metric)
        assert distance > 3 * floor > 0


# ----------------------------------------------------------------------------------------------
# Support metrics, C2ST, unbiased MMD^2 and the report, on a mixture with a known support
# ----------------------------------------------------------------------------------------------

CENTRES = 3.0 * np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float32)
STD = 0.3


@functools.partial(jax.jit, static_argnums=1)
def draw_mixture(key, n):
    """Four Gaussians (std 0.3) at (+-3, +-3), exactly n / 4 points each.

    Fixed mode counts keep the floor of sliced W2 at the within-mode noise (0.035 at n = 3000);
    with random counts it is ~0.3 (at n = 10,000), the mode counts' noise.
    """
    return jnp.asarray(CENTRES)[jnp.arange(n) % 4] + STD * jax.random.normal(key, (n, 2))


def on_support(points):
    """Within 2.0 (6.7 std) of a centre: every mixture point of these tests, none moved one."""
    return jnp.min(jnp.linalg.norm(points[:, None, :] - CENTRES, axis=-1), axis=1) < 2.0


def move_off_support(points, key, share=0.05):
    """The first ``share`` of the points moved uniformly into the disc of radius 1.5 about 0.

    The disc is empty space: 2.7 (9 std) from every centre. The first points cover the four
    modes equally, as the others do.
    """
    moved = int(share * points.shape[0])
    radius_key, angle_key = jax.random.split(key)
    radius = 1.5 * jnp.sqrt(jax.random.uniform(radius_key, (moved,)))
    angle = 2 * jnp.pi * jax.random.uniform(angle_key, (moved,))
    disc = jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=1)
    return points.at[:moved].set(disc)


def combined_se(entry):
    return np.hypot(entry["stderr"], entry["data_stderr"])


def test_knn_radii_exclude_the_point_itself():
    # Points 0, 1, 3, 6, 10 on a line: nearest others at 1, 1, 2, 3, 4; second nearest at
    # 3, 2, 3, 4, 7.
    points = np.array([[0.0, 0], [1, 0], [3, 0], [6, 0], [10, 0]])
    np.testing.assert_allclose(knn_radii(points, k=1), [1, 1, 2, 3, 4])
    np.testing.assert_allclose(knn_radii(points, k=2), [3, 2, 3, 4, 7])


def test_precision_recall_match_a_dense_reference(monkeypatch):
    # Blocks of 150 rows, the last one padded with points at the origin, and sets of different
    # sizes. The samples keep 0.5 away from the origin and a data point sits on it: a padding
    # row taken for a sample would cover it.
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 150 * 907)
    x = np.asarray(jax.random.normal(jax.random.key(0), (2000, 2)), np.float32) * 1.3 + 0.2
    x = x[np.linalg.norm(x, axis=1) > 0.5][:1201]
    y = np.array(jax.random.normal(jax.random.key(1), (907, 2)), np.float32)
    y[0] = 0.0
    k = 4
    distances = cdist(x, y)
    r_x = np.sort(cdist(x, x), axis=1)[:, k]
    r_y = np.sort(cdist(y, y), axis=1)[:, k]
    inside_data_balls = distances <= r_y[None, :]
    expected = {
        "precision": np.mean(inside_data_balls.any(1)),
        "recall": np.mean((distances <= r_x[:, None]).any(0)),
        "density": inside_data_balls.sum() / (k * len(x)),
        "coverage": np.mean(distances.min(0) <= r_y),
    }
    scores = precision_recall(x, y, k=k)
    for name, value in expected.items():
        # Exact: float32 distances could only flip a point lying on a ball's edge.
        np.testing.assert_allclose(scores[name][0], value, rtol=1e-6, err_msg=name)
    p = expected["precision"]
    np.testing.assert_allclose(scores["precision"][1], np.sqrt(p * (1 - p) / len(x)), rtol=1e-6)


def test_energy_distance_and_mmd_in_blocks_match_dense_float64(monkeypatch):
    # Blocks of at most 400 rows, the last ones padded, and sets of different sizes.
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 400 * 1201)
    x = np.asarray(jax.random.normal(jax.random.key(0), (1201, 2)), np.float64)
    y = np.asarray(jax.random.normal(jax.random.key(1), (1003, 2)), np.float64) + 0.3

    def dense_energy(a, b):
        return np.sqrt(2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean())

    def kernel_mean(a, b):
        squared = cdist(a, b, "sqeuclidean")
        return sum(np.exp(-squared / (2 * h**2)).mean() for h in MMD_BANDWIDTHS)

    dense_mmd = np.sqrt(kernel_mean(x, x) + kernel_mean(y, y) - 2 * kernel_mean(x, y))
    np.testing.assert_allclose(float(energy_distance(x, y)), dense_energy(x, y), rtol=1e-4)
    np.testing.assert_allclose(float(mmd(x, y)), dense_mmd, rtol=1e-4)


def test_identical_sets_score_perfectly():
    x = draw_mixture(jax.random.key(0), 2000)
    scores = precision_recall(x, x)
    for name in ("precision", "recall", "coverage"):
        assert scores[name] == (1.0, 0.0), name
    # Copies share a fold, so the classifier sees each point under both labels at once.
    accuracy, _ = classifier_two_sample_test(x, x, jax.random.key(1))
    assert accuracy == 0.5
    value, se = mmd2_unbiased(x, x)
    assert abs(value) <= 3 * se + 1e-6


def test_a_shifted_copy_is_flagged_by_every_metric():
    shift = jnp.array([0.3, -0.4])  # |shift| = 0.5, 1.7 std of a mode
    samples = draw_mixture(jax.random.key(7), 3000) + shift
    report = quality_report(samples, draw_mixture, jax.random.key(0), repeats=5)
    for name in ("precision", "recall", "coverage"):
        entry = report[name]
        assert entry["value"] < entry["data"] - 10 * combined_se(entry), name
    for name in ("c2st", "mmd2"):
        entry = report[name]
        assert entry["value"] > entry["data"] + 10 * combined_se(entry), name
    # Against fresh data, SW2 = sqrt(|shift|^2 + floor^2) ~ |shift| (the floor is 0.035).
    np.testing.assert_allclose(report["sliced_w2"]["value"], 0.5, rtol=0.05)
    for name in ("sliced_w2", "energy"):
        assert report[name]["interval"][0] > report[name]["data_interval"][1], name


def test_five_percent_off_the_support_is_flagged():
    n = 10_000
    samples = move_off_support(draw_mixture(jax.random.key(7), n), jax.random.key(8))
    report = quality_report(
        samples, draw_mixture, jax.random.key(0), inside=on_support, metrics=CHEAP_METRICS
    )
    precision, recall, c2st = report["precision"], report["recall"], report["c2st"]
    # The moved points are inside no data ball; the rest still cover the support (with 5%
    # fewer points there, their balls are 2.5% wider, and recall even rises a little).
    np.testing.assert_allclose(precision["data"] - precision["value"], 0.05, atol=0.005)
    assert recall["value"] > recall["data"] - 3 * combined_se(recall)
    # The best possible accuracy is 0.525 (always "data" on the support): C2ST reaches ~0.517.
    assert c2st["value"] > c2st["data"] + 3 * c2st["stderr"]
    assert report["support_rate"]["value"] == 0.95
    assert report["support_rate"]["data"] == 1.0


def test_samples_from_the_data_sit_at_the_floor():
    samples = draw_mixture(jax.random.key(7), 3000)
    report = quality_report(
        samples, draw_mixture, jax.random.key(0), metrics=("precision", "recall", "c2st")
    )
    for name in ("precision", "recall", "c2st"):
        entry = report[name]
        assert abs(entry["value"] - entry["data"]) < 3 * combined_se(entry), name


def test_mmd2_unbiased_matches_the_closed_form_within_its_standard_error():
    d, s, mu = 2, 1.0, np.array([0.8, -0.6])
    expected = mmd2_of_shifted_gaussians(d, s, mu)

    def pair(key, n):
        key_a, key_b = jax.random.split(key)
        return jax.random.normal(key_a, (n, d)), jax.random.normal(key_b, (n, d)) + mu

    value, se = mmd2_unbiased(*pair(jax.random.key(2), 3000))
    assert abs(value - expected) < 3 * se
    # Over independent draws: no bias at n = 200 (where the V-statistic's, 2 (4 - E k) / n,
    # is ~4 standard errors of this mean), and the standard error is the draws' spread.
    keys = jax.random.split(jax.random.key(3), 40)
    draws = np.array([mmd2_unbiased(*pair(key, 200)) for key in keys])
    spread = draws[:, 0].std(ddof=1)
    assert abs(draws[:, 0].mean() - expected) < 3 * spread / np.sqrt(len(keys))
    assert 0.7 < spread / draws[:, 1].mean() < 1.4


def test_support_rate_counts_the_points_inside():
    points = jnp.array([[0.0, 0.0], [3.0, 3.0], [3.2, 2.9], [-3.0, 3.0]])
    rate, se = support_rate(points, on_support)
    assert rate == 0.75
    np.testing.assert_allclose(se, np.sqrt(0.75 * 0.25 / 4))
    with pytest.raises(ValueError, match="shape"):
        support_rate(points, lambda x: jnp.ones((2,), bool))


def test_the_same_key_gives_the_same_report_and_subsets_agree():
    samples = move_off_support(draw_mixture(jax.random.key(7), 2000), jax.random.key(8))
    args = (samples, draw_mixture, jax.random.key(0))
    full = quality_report(*args, inside=on_support, repeats=3)
    assert quality_report(*args, inside=on_support, repeats=3) == full
    assert set(full) == {"n", "k", "repeats", *QUALITY_METRICS}
    # Each metric has its own key stream: asking for fewer leaves the others' numbers alone.
    cheap = quality_report(*args, inside=on_support, metrics=CHEAP_METRICS)
    assert set(cheap) == {"n", "k", "repeats", *CHEAP_METRICS}
    for name in CHEAP_METRICS:
        assert cheap[name] == full[name], name
    other = quality_report(samples, draw_mixture, jax.random.key(1), metrics=("c2st",))
    assert other["c2st"] != full["c2st"]
    # Without a known support the support rate is left out.
    assert "support_rate" not in quality_report(*args, metrics=("precision", "support_rate"))


def test_format_report_reads_one_metric_a_line():
    report = {
        "n": 10000,
        "k": 5,
        "repeats": 10,
        "precision": {"value": 0.96234, "stderr": 0.0021, "data": 0.99, "data_stderr": 0.0012},
        "sliced_w2": {
            "value": 0.0512,
            "stderr": 0.0013,
            "data": 0.0488,
            "data_stderr": 0.0011,
            "interval": [0.045, 0.058],
            "data_interval": [0.043, 0.055],
        },
    }
    lines = format_report(report).splitlines()
    assert lines[0] == "n = 10000 samples against as many fresh data points (k = 5)"
    assert lines[1] == "precision     0.9623 ± 0.0021  (data 0.9900 ± 0.0012)"
    assert lines[2].startswith("sliced_w2     0.0512 ± 0.0013  (data 0.0488 ± 0.0011)")
    assert "[0.045, 0.058]" in lines[2] and "[0.043, 0.055]" in lines[2]
