import jax
import numpy as np

from jax_gen.metrics import distance_and_floor, sliced_wasserstein


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
