"""Minibatch optimal-transport coupling: the assignment is optimal, and flow matching uses it."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_gen import cli
from jax_gen.config import (
    FlowMatchingStrategyConfig,
    GaussianMixtureConfig,
    MLPConfig,
    OptimizerConfig,
    SamplerConfig,
    TrainConfig,
    from_dict,
    to_dict,
)
from jax_gen.coupling import (
    optimal_assignment,
    pair_by_optimal_transport,
    pairing_cost,
    squared_distances,
)
from jax_gen.data import get_batch
from jax_gen.metrics import distance_and_floor
from jax_gen.models import create_model
from jax_gen.sampling import ODE_SAMPLERS, STOCHASTIC, sample
from jax_gen.strategies import create_strategy
from jax_gen.train import _COUPLING_STREAM, batch_loss, train


def brute_force_cost(x, y) -> float:
    """The smallest mean squared pair length over every reordering of y."""
    return min(
        float(pairing_cost(x, y[np.asarray(order)]))
        for order in itertools.permutations(range(x.shape[0]))
    )


@pytest.mark.parametrize("seed", range(5))
def test_pairing_equals_the_brute_force_optimum_on_tiny_batches(seed):
    kx, ky = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (6, 2)) * 2.0 + 1.0
    y = jax.random.normal(ky, (6, 2))
    paired = pair_by_optimal_transport(x, y)
    assert float(pairing_cost(x, paired)) == pytest.approx(brute_force_cost(x, y), rel=1e-6)
    # A reordering of y: the same rows, each once.
    np.testing.assert_array_equal(np.sort(np.asarray(paired), 0), np.sort(np.asarray(y), 0))


def test_assignment_is_a_permutation_minimising_the_matrix_cost():
    cost = jax.random.uniform(jax.random.key(3), (7, 7))
    p = np.asarray(optimal_assignment(cost))
    assert sorted(p.tolist()) == list(range(7))
    best = min(
        sum(float(cost[i, q[i]]) for i in range(7)) for q in itertools.permutations(range(7))
    )
    assert sum(float(cost[i, p[i]]) for i in range(7)) == pytest.approx(best, rel=1e-6)


def test_pairing_cost_is_below_independent_and_random_pairing():
    kx, ky = jax.random.split(jax.random.key(0))
    x = get_batch(kx, GaussianMixtureConfig(), 256)
    y = jax.random.normal(ky, (256, 2))
    ot = float(pairing_cost(x, pair_by_optimal_transport(x, y)))
    independent = float(pairing_cost(x, y))
    shuffled = [
        float(pairing_cost(x, jax.random.permutation(jax.random.key(s), y))) for s in range(20)
    ]
    assert ot < 0.5 * independent  # the mixture's modes sit at distance ~4.2 from the origin
    assert ot < min(shuffled)


def test_squared_distances_match_the_definition():
    a = jax.random.normal(jax.random.key(1), (4, 3))
    b = jax.random.normal(jax.random.key(2), (5, 3))
    expected = np.array([[np.sum((np.asarray(u) - np.asarray(v)) ** 2) for v in b] for u in a])
    np.testing.assert_allclose(squared_distances(a, b), expected, rtol=1e-5)


def test_pairing_runs_under_jit_and_vmap_and_rejects_non_square_costs():
    x = jax.random.normal(jax.random.key(4), (3, 5, 2))
    y = jax.random.normal(jax.random.key(5), (3, 5, 2))
    batched = jax.jit(jax.vmap(pair_by_optimal_transport))(x, y)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], pair_by_optimal_transport(x[i], y[i]))
    with pytest.raises(ValueError, match="square"):
        optimal_assignment(jnp.zeros((3, 4)))


def test_flow_matching_couples_only_when_asked():
    key = jax.random.key(6)
    x = get_batch(jax.random.key(7), GaussianMixtureConfig(), 32)
    independent = create_strategy(FlowMatchingStrategyConfig())
    assert independent.couple(key, x) is None and independent.has_score()

    coupled = create_strategy(FlowMatchingStrategyConfig(coupling="ot"))
    eps = coupled.couple(key, x)
    source = coupled.sample_from_source_distribution(key, 32, 2)
    # The partners are this key's source draw, reordered: the source marginal is unchanged.
    np.testing.assert_array_equal(np.sort(np.asarray(eps), 0), np.sort(np.asarray(source), 0))
    assert float(pairing_cost(x, eps)) < float(pairing_cost(x, source))
    assert not coupled.has_score()


def test_coupled_loss_regresses_the_straight_line_between_partners():
    """With given partners, loss_fn is the squared error of the velocity x - eps."""
    strategy = create_strategy(FlowMatchingStrategyConfig(coupling="ot"))
    x = get_batch(jax.random.key(8), GaussianMixtureConfig(), 16)
    key = jax.random.key(9)
    eps = strategy.couple(jax.random.fold_in(key, _COUPLING_STREAM), x)

    def model(t, z):  # the exact velocity of each pair, recovered from (t, z) and the pair
        return jnp.zeros_like(z)

    loss = batch_loss(model, strategy, x, key)
    expected = jnp.mean(jnp.mean((x - eps) ** 2, axis=-1))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_independent_training_ignores_the_coupling_code_path():
    strategy = create_strategy(FlowMatchingStrategyConfig())
    x = get_batch(jax.random.key(8), GaussianMixtureConfig(), 16)
    key = jax.random.key(9)

    def model(t, z):
        return jnp.zeros_like(z)

    keys = jax.random.split(key, 16)
    per_point = jax.vmap(strategy.loss_fn, in_axes=(None, 0, 0))(model, x, keys)
    assert float(batch_loss(model, strategy, x, key)) == float(jnp.mean(per_point))


def test_samplers_that_need_the_score_refuse_a_coupled_flow():
    strategy = create_strategy(FlowMatchingStrategyConfig(coupling="ot"))
    model = create_model(MLPConfig(hidden_dim=8, depth=1), jax.random.key(0), 2)
    for name in STOCHASTIC:
        with pytest.raises(ValueError, match="needs the score"):
            sample(strategy, model, jax.random.key(1), 4, 2, SamplerConfig(sampler=name))
    with pytest.raises(ValueError, match="needs the score"):
        sample(strategy, model, jax.random.key(1), 4, 2, SamplerConfig(sampler="ddim", eta=0.5))
    with pytest.raises(ValueError, match="score"):
        strategy.score(model, jnp.float32(0.5), jnp.zeros(2))
    for name in ODE_SAMPLERS:
        cfg = SamplerConfig(sampler=name, num_sampling_steps=None if name == "adaptive" else 2)
        assert np.isfinite(
            np.asarray(sample(strategy, model, jax.random.key(1), 4, 2, cfg)[0])
        ).all()


def test_config_validates_and_round_trips_the_coupling():
    cfg = FlowMatchingStrategyConfig(coupling="ot")
    assert from_dict(to_dict(cfg)) == cfg
    stored = to_dict(FlowMatchingStrategyConfig())
    del stored["coupling"]  # a checkpoint written before couplings existed
    assert from_dict(stored).coupling == "independent"
    with pytest.raises(ValueError, match="coupling='sinkhorn' must be one of independent, ot"):
        FlowMatchingStrategyConfig(coupling="sinkhorn")


def test_ot_coupling_makes_one_euler_step_better_on_the_mixture():
    """The straighter flow: one Euler step lands closer to the data than without coupling."""
    dataset = GaussianMixtureConfig()
    train_cfg = TrainConfig(batch_size=128, train_steps=600, log_interval=600)
    one_step = SamplerConfig(sampler="euler", num_sampling_steps=1)
    ratios = {}
    for coupling in ("independent", "ot"):
        strategy = create_strategy(FlowMatchingStrategyConfig(coupling=coupling))
        model = create_model(MLPConfig(hidden_dim=64, depth=3), jax.random.key(0), 2)
        _, ema, _ = train(strategy, model, dataset, train_cfg, OptimizerConfig(), jax.random.key(1))
        samples = sample(strategy, ema, jax.random.key(2), 1000, 2, one_step).samples
        distance, floor = distance_and_floor(
            np.asarray(samples), lambda k, n: get_batch(k, dataset, n), jax.random.key(3), 2
        )
        ratios[coupling] = distance / floor
    assert ratios["ot"] < 0.5 * ratios["independent"], ratios


def test_cli_trains_with_ot_coupling_and_refuses_a_stochastic_sampler(tmp_path, capsys):
    model_path = tmp_path / "ot.eqx"
    cli.main(
        [
            "train",
            "strategy:flow-matching",
            "--strategy.coupling",
            "ot",
            "model:mlp",
            "--model.hidden-dim",
            "16",
            "--model.depth",
            "1",
            "dataset:moon",
            "--train-steps",
            "20",
            "--batch-size",
            "32",
            "--num-samples",
            "64",
            "--model-path",
            str(model_path),
        ]
    )
    assert model_path.exists()
    capsys.readouterr()
    image = tmp_path / "sde.png"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            [
                "generate",
                "--model-path",
                str(model_path),
                "--sampler",
                "euler-maruyama",
                "--output-image-path",
                str(image),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the score" in err[0]
    assert not image.exists()
