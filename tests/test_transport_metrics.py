"""Exact W2, path energy and normalized path energy against brute force and closed forms."""

import itertools
import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from jax_gen import metrics
from jax_gen.metrics import normalized_path_energy, path_energy, wasserstein2

# ----------------------------------------------------------------------------------------------
# wasserstein2
# ----------------------------------------------------------------------------------------------


def brute_force_w2(a: np.ndarray, b: np.ndarray) -> float:
    """sqrt(min over all n! permutations p of (1/n) sum_i |a_i - b_p(i)|^2)."""
    n = a.shape[0]
    cost = cdist(a, b, "sqeuclidean")
    permutations = np.array(list(itertools.permutations(range(n))))
    return math.sqrt(np.min(cost[np.arange(n), permutations].sum(axis=1)) / n)


def four_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    centres = 3.0 * np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    return centres[np.arange(n) % 4] + 0.3 * rng.standard_normal((n, 2))


@pytest.mark.parametrize("direct", [300, 1])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_wasserstein2_equals_brute_force_over_all_permutations(monkeypatch, d, direct):
    # direct=1 sends even these tiny sets through the coarse levels (pair midpoints, duals),
    # which only guide the solver and must not change its answer.
    monkeypatch.setattr(metrics, "_DIRECT_ASSIGNMENT", direct)
    rng = np.random.default_rng(d)
    for n in range(1, 7):
        for _ in range(4):
            a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
            np.testing.assert_allclose(wasserstein2(a, b), brute_force_w2(a, b), rtol=1e-6)


def test_wasserstein2_in_one_dimension_is_the_sorted_matching():
    # In 1-D the monotone (sorted) pairing is optimal for |x - y|^2, and unique for distinct
    # points: W2^2 = (1/n) sum_i (a_(i) - b_(i))^2.
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2000, 1))
    b = rng.exponential(size=(2000, 1)) - 0.5
    expected = math.sqrt(np.mean((np.sort(a[:, 0]) - np.sort(b[:, 0])) ** 2))
    np.testing.assert_allclose(wasserstein2(a, b), expected, rtol=1e-12)
    # wasserstein2 sorts in 1-D; the assignment solver of the other dimensions (here through
    # one coarse level) finds the same pairing.
    a, b = a[:600], b[:600]
    columns, _ = metrics._optimal_permutation(a, b)
    np.testing.assert_array_equal(np.argsort(b[:, 0])[np.argsort(np.argsort(a[:, 0]))], columns)


def test_wasserstein2_matches_one_assignment_on_the_whole_matrix():
    # Above _DIRECT_ASSIGNMENT points the solver starts from coarse duals; the optimum is the
    # one linear_sum_assignment finds on the plain matrix of squared distances.
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((1000, 2)), four_gaussians(rng, 1000)
    columns = linear_sum_assignment(cdist(a, b, "sqeuclidean"))[1]
    expected = math.sqrt(np.mean(np.sum((a - b[columns]) ** 2, axis=1)))
    np.testing.assert_allclose(wasserstein2(a, b), expected, rtol=1e-12)


def test_a_set_and_its_reordering_are_at_distance_zero():
    rng = np.random.default_rng(2)
    a = four_gaussians(rng, 1000)
    assert wasserstein2(a, rng.permutation(a)) == 0.0


def test_a_shift_by_m_gives_the_norm_of_m():
    # Any pairing p costs |m|^2 + (1/n) sum_i |a_i - a_p(i)|^2 (the cross term sums to 0), so
    # the identity is optimal and W2 = |m|.
    rng = np.random.default_rng(3)
    a = rng.standard_normal((700, 3))
    m = np.array([0.3, -0.4, 1.2])  # |m| = 1.3
    np.testing.assert_allclose(wasserstein2(a, a + m), 1.3, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# path_energy
# ----------------------------------------------------------------------------------------------


def uneven_times(rng: np.random.Generator, steps: int) -> np.ndarray:
    return np.concatenate([[0.0], np.sort(rng.uniform(size=steps - 1)), [1.0]])


def test_straight_lines_on_an_uneven_grid_have_energy_mean_squared_length():
    # z_t = (1 - t) z0 + t z1 moves at the constant speed |z1 - z0|: energy |z1 - z0|^2,
    # whatever the grid, since each step contributes |(dt) (z1 - z0)|^2 / dt.
    rng = np.random.default_rng(4)
    z0, z1 = rng.standard_normal((50, 3)), rng.standard_normal((50, 3))
    t = uneven_times(rng, 20)
    trajectory = (1 - t)[:, None, None] * z0 + t[:, None, None] * z1
    expected = np.mean(np.sum((z1 - z0) ** 2, axis=1))
    np.testing.assert_allclose(path_energy(trajectory, t), expected, rtol=1e-12)


def test_path_energy_bounds_the_chord_and_the_w2_of_the_ends():
    # Cauchy-Schwarz over [0, 1]: PE >= mean |z_N - z_0|^2 >= W2(z_0, z_N)^2, equal only for
    # straight constant-speed paths; a random walk is neither.
    rng = np.random.default_rng(5)
    t = uneven_times(rng, 30)
    steps = np.sqrt(np.diff(t))[:, None, None] * rng.standard_normal((30, 40, 2))
    trajectory = np.concatenate([np.zeros((1, 40, 2)), np.cumsum(steps, axis=0)])
    chord = np.mean(np.sum((trajectory[-1] - trajectory[0]) ** 2, axis=1))
    energy = path_energy(trajectory, t)
    assert energy > 1.5 * chord
    assert chord >= wasserstein2(trajectory[0], trajectory[-1]) ** 2


def test_normalized_path_energy_is_the_relative_distance_to_w2_squared():
    assert normalized_path_energy(4.0, 2.0) == 0.0
    assert normalized_path_energy(6.0, 2.0) == 0.5
    assert normalized_path_energy(2.0, 2.0) == 0.5


# ----------------------------------------------------------------------------------------------
# The exact flow between two Gaussians: path energy and normalized path energy
#
# Source N(0, I_d), target N(m, s^2 I_d). Independent-coupling flow matching's marginal path is
# N(t m, sigma_t^2 I) with sigma_t = sqrt((1 - t)^2 + t^2 s^2); its flow map is
# z_t = t m + sigma_t z_0, velocity v(t, z) = m + sigma_t' / sigma_t (z - t m). Per path,
# integral |m + sigma_t' z_0|^2 dt = |m|^2 + 2 (s - 1) m.z_0 + I |z_0|^2 with
# I = integral_0^1 sigma_t'^2 dt = 1 + s^2 - pi s / 2 (sigma'^2 = A (At - 1)^2 / ((At - 1)^2
# + A - 1) with A = 1 + s^2), so PE = |m|^2 + d I. The optimal map is z_0 -> m + s z_0, whose
# straight path has sigma_t = 1 - t + t s and PE = W2^2 = |m|^2 + d (s - 1)^2. The difference,
# d s (2 - pi / 2), is positive for every s > 0: even for s = 1, where the optimal path is a
# translation, the independent path narrows in the middle (sigma_1/2 = 1 / sqrt 2).
# ----------------------------------------------------------------------------------------------

M = np.array([1.5, -1.0])
D = 2
N_POINTS = 6000
N_STEPS = 500
EULER_RTOL = 2e-3
"""Euler's error in PE is O(dt): measured 2.2e-4 (s = 0.5) and 5.4e-4 (s = 1) at 500 steps,
halving as the steps double."""


def independent_sigma(t, s):
    """sigma_t and sigma_t' on independent-coupling flow matching's path."""
    value = np.sqrt((1 - t) ** 2 + (t * s) ** 2)
    return value, (t * s**2 - (1 - t)) / value


def straight_sigma(t, s):
    """sigma_t and sigma_t' on the optimal transport path."""
    return 1 - t + t * s, s - 1


def euler_trajectory(z0, s, sigma, steps=N_STEPS):
    """Euler steps of v(t, z) = m + sigma_t' / sigma_t (z - t m) from z0, and their times."""
    t = np.linspace(0.0, 1.0, steps + 1)
    z = np.empty((steps + 1, *z0.shape))
    z[0] = z0
    for k in range(steps):
        value, slope = sigma(t[k], s)
        z[k + 1] = z[k] + (t[k + 1] - t[k]) * (M + slope / value * (z[k] - t[k] * M))
    return z, t


def independent_energy_integral(s):
    return 1 + s**2 - math.pi * s / 2


@pytest.mark.parametrize("s", [0.5, 1.0, 2.0])
def test_the_closed_form_of_the_energy_integral(s):
    integral = quad(lambda t: independent_sigma(t, s)[1] ** 2, 0, 1)[0]
    np.testing.assert_allclose(independent_energy_integral(s), integral, rtol=1e-10)


@pytest.mark.parametrize("s", [0.5, 1.0])
def test_path_energy_of_the_independent_gaussian_flow(s):
    rng = np.random.default_rng(6)
    z0 = rng.standard_normal((N_POINTS, D))
    energy = path_energy(*euler_trajectory(z0, s, independent_sigma))
    integral = independent_energy_integral(s)

    # These draws' exact energy: only Euler's O(dt) error separates the two.
    drawn = np.mean(M @ M + 2 * (s - 1) * z0 @ M + integral * np.sum(z0**2, axis=1))
    np.testing.assert_allclose(energy, drawn, rtol=EULER_RTOL)

    # The population's: Var(2 (s - 1) m.z_0 + I |z_0|^2) = 4 (s - 1)^2 |m|^2 + 2 d I^2, so the
    # Monte Carlo SE is 0.027 (s = 0.5) and 0.011 (s = 1) at 6,000 points; 4 SE is a 1 in
    # 16,000 miss.
    expected = M @ M + D * integral
    se = math.sqrt((4 * (s - 1) ** 2 * (M @ M) + 2 * D * integral**2) / N_POINTS)
    assert abs(energy - expected) <= 4 * se + EULER_RTOL * expected

    # Against W2 between source and target, the excess is d s (2 - pi / 2) / W2^2 > 0 (0.114
    # for s = 0.5, 0.264 for s = 1), far above the tolerance (0.030 and 0.016).
    w2_squared = M @ M + D * (s - 1) ** 2
    excess = D * s * (2 - math.pi / 2) / w2_squared
    np.testing.assert_allclose(excess, (expected - w2_squared) / w2_squared, rtol=1e-12)
    npe = normalized_path_energy(energy, math.sqrt(w2_squared))
    tolerance = (4 * se + EULER_RTOL * expected) / w2_squared
    assert abs(npe - excess) <= tolerance
    assert npe > 3 * tolerance


def test_a_translation_has_normalized_path_energy_zero():
    # s = 1 on the straight path: every point moves by m at constant speed, PE = |m|^2 = W2^2
    # exactly, with no Monte Carlo error.
    z0 = np.random.default_rng(7).standard_normal((N_POINTS, D))
    energy = path_energy(*euler_trajectory(z0, 1.0, straight_sigma))
    np.testing.assert_allclose(energy, M @ M, rtol=1e-12)
    assert normalized_path_energy(energy, math.sqrt(M @ M)) < 1e-12


def test_the_optimal_transport_path_has_normalized_path_energy_zero():
    # Straight path to N(m, s^2 I) with s = 0.5: Euler is exact on it (z_t - t m = sigma_t z_0
    # with sigma linear), and PE = mean |m + (s - 1) z_0|^2, an unbiased estimate of W2^2 with
    # SE sqrt((4 (s - 1)^2 |m|^2 + 2 d (s - 1)^4) / n) = 0.024.
    s = 0.5
    z0 = np.random.default_rng(8).standard_normal((N_POINTS, D))
    energy = path_energy(*euler_trajectory(z0, s, straight_sigma))
    w2_squared = M @ M + D * (s - 1) ** 2
    se = math.sqrt((4 * (s - 1) ** 2 * (M @ M) + 2 * D * (s - 1) ** 4) / N_POINTS)
    assert normalized_path_energy(energy, math.sqrt(w2_squared)) <= 4 * se / w2_squared


def test_against_its_own_ends_only_the_straight_path_has_zero_normalized_energy():
    # z_0 -> m + s z_0 is the gradient of a convex function, so it pairs the two ends
    # optimally (cyclical monotonicity) and W2^2 of the ends is mean |z_N - z_0|^2: the straight
    # path's PE to rounding. The independent path pairs the ends the same way but curves.
    s = 0.5
    z0 = np.random.default_rng(9).standard_normal((800, D))
    straight = euler_trajectory(z0, s, straight_sigma, steps=20)
    w2 = wasserstein2(straight[0][0], straight[0][-1])
    assert normalized_path_energy(path_energy(*straight), w2) < 1e-9
    curved = euler_trajectory(z0, s, independent_sigma, steps=200)
    w2 = wasserstein2(curved[0][0], curved[0][-1])
    assert normalized_path_energy(path_energy(*curved), w2) > 0.05


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def test_wasserstein2_rejects_bad_input():
    rng = np.random.default_rng(10)
    a = rng.standard_normal((5, 2))
    with_nan = a.copy()
    with_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="a: 1 of 5 points are not finite"):
        wasserstein2(with_nan, a)
    with pytest.raises(ValueError, match="b: 1 of 5 points are not finite"):
        wasserstein2(a, np.where(with_nan == with_nan, a, np.inf))
    with pytest.raises(ValueError, match=r"same shape .* got \(5, 2\) and \(4, 2\)"):
        wasserstein2(a, a[:4])
    with pytest.raises(ValueError, match=r"same shape .* got \(5, 2\) and \(5, 3\)"):
        wasserstein2(a, rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match=r"a must have shape \(n, d\).*got \(5,\)"):
        wasserstein2(a[:, 0], a[:, 1])


def test_path_energy_and_normalized_path_energy_reject_bad_input():
    rng = np.random.default_rng(11)
    trajectory = rng.standard_normal((4, 10, 2))
    t = np.array([0.0, 0.2, 0.5, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        path_energy(trajectory, t[[0, 2, 1, 3]])
    with pytest.raises(ValueError, match="strictly increasing"):
        path_energy(trajectory, np.array([0.0, 0.5, 0.5, 1.0]))
    with pytest.raises(ValueError, match=r"times must have shape \(4,\).*got \(3,\)"):
        path_energy(trajectory, t[:3])
    with pytest.raises(ValueError, match=r"steps\+1, n, d.*got \(10, 2\)"):
        path_energy(trajectory[0], t)
    trajectory[2, 7, 0] = np.nan
    with pytest.raises(ValueError, match="1 of 10 paths"):
        path_energy(trajectory, t)
    with pytest.raises(ValueError, match="w2="):
        normalized_path_energy(1.0, 0.0)
    with pytest.raises(ValueError, match="energy="):
        normalized_path_energy(-1.0, 1.0)
    with pytest.raises(ValueError, match="w2="):
        normalized_path_energy(1.0, math.nan)
