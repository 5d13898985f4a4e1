import jax
import numpy as np

from jax_gen.metrics import distance_and_floor, energy_distance, mmd, sliced_wasserstein


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
    distance, floor = distance_and_floor(samples, draw, jax.random.key(0), repeats=4)
    # Samples from the data distribution itself sit at the floor.
    assert 0.5 < distance / floor < 2.0
    shifted, floor_again = distance_and_floor(samples + 1.0, draw, jax.random.key(0), repeats=4)
    assert floor_again == floor
    np.testing.assert_allclose(shifted, np.sqrt(2.0), rtol=0.1)


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


def test_mmd_matches_its_closed_form_for_shifted_gaussians():
    # For N(0, s^2 I) and N(mu, s^2 I) in d dimensions and k = exp(-|x-y|^2 / 2h^2):
    # E k = (h^2 / (h^2 + 2 s^2))^(d/2) exp(-|m|^2 / 2(h^2 + 2 s^2)) for a mean difference m,
    # so MMD^2 = 2 sum_h (h^2 / (h^2 + 2 s^2))^(d/2) (1 - exp(-|mu|^2 / 2(h^2 + 2 s^2))).
    from jax_gen.metrics import MMD_BANDWIDTHS

    d, s, mu = 2, 1.0, np.array([0.8, -0.6])
    expected2 = sum(
        2
        * (h**2 / (h**2 + 2 * s**2)) ** (d / 2)
        * (1 - np.exp(-(mu @ mu) / (2 * (h**2 + 2 * s**2))))
        for h in MMD_BANDWIDTHS
    )
    key_a, key_b = jax.random.split(jax.random.key(2))
    a = jax.random.normal(key_a, (3000, d))
    b = jax.random.normal(key_b, (3000, d)) + mu
    np.testing.assert_allclose(float(mmd(a, b)) ** 2, expected2, rtol=0.1)


def test_distance_and_floor_takes_any_metric():
    def draw(key, n):
        return jax.random.normal(key, (n, 2))

    samples = draw(jax.random.key(5), 500) + 1.0
    for metric in (energy_distance, mmd):
        distance, floor = distance_and_floor(samples, draw, jax.random.key(0), 2, metric)
        assert distance > 3 * floor > 0
