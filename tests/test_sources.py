"""Flow matching from any source: data-to-data paths, the Schrodinger-bridge coupling (entropic
plan, Brownian bridge) and the path noise."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special

from jax_gen import checkpoint, cli
from jax_gen.config import (
    EightGaussiansConfig,
    FlowMatchingStrategyConfig,
    MLPConfig,
    MoonConfig,
    NormalSourceConfig,
    OptimizerConfig,
    SamplerConfig,
    TrainConfig,
    from_dict,
    to_dict,
)
from jax_gen.coupling import entropic_plan, pair_by_entropic_plan, squared_distances
from jax_gen.data import get_batch, log_density
from jax_gen.likelihood import log_prob
from jax_gen.models import create_model
from jax_gen.sampling import STOCHASTIC, sample
from jax_gen.strategies import create_strategy, flow_matching
from jax_gen.train import train

# The ring of eight Gaussians (torchcfm's): radius 5, std 0.1 ** 0.25.
RING_RADIUS, RING_STD = 5.0, 0.1**0.25


def ring_source():
    return EightGaussiansConfig()


def ring_centres() -> np.ndarray:
    angles = np.arange(8) * np.pi / 4
    return RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def distance_to_nearest(points, centres) -> np.ndarray:
    points = np.asarray(points, np.float64)
    return np.min(np.linalg.norm(points[:, None, :] - centres[None], axis=-1), axis=1)


class Zero(eqx.Module):
    """A velocity of zero: sampling then returns the source draws themselves."""

    def __call__(self, t, x):
        return jnp.zeros_like(x)


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------


def test_config_round_trips_a_source_and_validates_sigma():
    cfg = FlowMatchingStrategyConfig(source=ring_source(), coupling="sb", sigma=0.1)
    assert from_dict(to_dict(cfg)) == cfg
    stored = to_dict(FlowMatchingStrategyConfig())
    del stored["source"], stored["sigma"]  # a checkpoint written before sources existed
    assert from_dict(stored).source == NormalSourceConfig()
    with pytest.raises(ValueError, match="coupling='sb' needs the bridge's noise"):
        FlowMatchingStrategyConfig(coupling="sb")
    with pytest.raises(ValueError, match="use prediction='v', not 'x'"):
        FlowMatchingStrategyConfig(sigma=0.1, prediction="x")
    with pytest.raises(ValueError, match="sigma=-0.1 must be non-negative"):
        FlowMatchingStrategyConfig(sigma=-0.1)
    assert create_strategy(FlowMatchingStrategyConfig()).source is None
    assert create_strategy(cfg).source == ring_source()


# ----------------------------------------------------------------------------------------------
# The source's marginal through each coupling
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coupling", ["independent", "ot"])
def test_a_data_source_keeps_its_batch_through_the_coupling(coupling):
    """Independent pairs are the source batch itself; OT pairs a permutation of it."""
    strategy = create_strategy(FlowMatchingStrategyConfig(source=ring_source(), coupling=coupling))
    x = get_batch(jax.random.key(0), MoonConfig(), 64)
    key = jax.random.key(1)
    partners = np.asarray(strategy.couple(key, x))
    drawn = np.asarray(get_batch(key, ring_source(), 64))
    if coupling == "independent":
        np.testing.assert_array_equal(partners, drawn)
    else:
        order = np.lexsort(drawn.T), np.lexsort(partners.T)
        np.testing.assert_array_equal(partners[order[1]], drawn[order[0]])
        assert np.mean(np.sum((np.asarray(x) - partners) ** 2, -1)) < np.mean(
            np.sum((np.asarray(x) - drawn) ** 2, -1)
        )


def test_sb_partners_are_source_points_with_the_source_marginal():
    """Each partner is a point of the drawn source batch; over many batches the partners'
    component shares are the ring's 1/8 each (the plan's second marginal is uniform)."""
    strategy = create_strategy(
        FlowMatchingStrategyConfig(source=ring_source(), coupling="sb", sigma=1.0)
    )
    couple = jax.jit(strategy.couple)
    x = get_batch(jax.random.key(0), MoonConfig(), 128)
    key = jax.random.key(1)
    partners = np.asarray(couple(key, x))
    drawn = np.asarray(get_batch(key, ring_source(), 128))
    assert all(np.any(np.all(drawn == p, axis=1)) for p in partners)
    shares = []
    for i in range(40):
        batch = get_batch(jax.random.key(100 + i), MoonConfig(), 128)
        nearest = np.argmin(
            np.linalg.norm(
                np.asarray(couple(jax.random.key(i), batch))[:, None] - ring_centres(), axis=-1
            ),
            axis=1,
        )
        shares.append(np.bincount(nearest, minlength=8) / 128)
    shares = np.mean(shares, axis=0)
    # 5,120 partners: a share's standard error is sqrt(1/8 * 7/8 / 5120) = 0.0046 if the
    # partners were independent; draws within a batch repeat points, so allow 5 of those.
    np.testing.assert_allclose(shares, 1 / 8, atol=0.023)


# ----------------------------------------------------------------------------------------------
# The entropic plan
# ----------------------------------------------------------------------------------------------


def test_entropic_plan_marginals_match_to_sinkhorn_tolerance():
    x = get_batch(jax.random.key(0), MoonConfig(), 256)
    y = get_batch(jax.random.key(1), ring_source(), 256)
    for epsilon in (0.5, 2.0):
        plan = np.asarray(entropic_plan(x, y, epsilon), np.float64)
        assert (plan >= 0).all()
        np.testing.assert_allclose(plan.sum(), 1.0, atol=1e-4)
        # ott-jax stops when the 1-norm error of the marginals is below 1e-3.
        assert np.abs(plan.sum(axis=1) - 1 / 256).sum() < 2e-3
        assert np.abs(plan.sum(axis=0) - 1 / 256).sum() < 2e-3


def sinkhorn_numpy(x, y, epsilon, iterations=20_000):
    """The entropic plan by Sinkhorn's iterations in the log domain, in float64 NumPy."""
    cost = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    log_a, log_b = np.full(len(x), -np.log(len(x))), np.full(len(y), -np.log(len(y)))
    f, g = np.zeros(len(x)), np.zeros(len(y))
    for _ in range(iterations):
        f = epsilon * (log_a - scipy.special.logsumexp((g[None, :] - cost) / epsilon, axis=1))
        g = epsilon * (log_b - scipy.special.logsumexp((f[:, None] - cost) / epsilon, axis=0))
    return np.exp((f[:, None] + g[None, :] - cost) / epsilon)


def test_entropic_plan_is_the_plan_of_squared_distances_at_epsilon(monkeypatch):
    """ott-jax's plan equals plain Sinkhorn's on the cost |x - y|^2 (not half of it), and the
    SB coupling asks for it at epsilon = 2 sigma^2."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 2)), rng.normal(size=(12, 2)) * 1.5 + 0.5
    for epsilon in (0.5, 2.0):
        plan = np.asarray(entropic_plan(jnp.asarray(x), jnp.asarray(y), epsilon), np.float64)
        np.testing.assert_allclose(plan, sinkhorn_numpy(x, y, epsilon), atol=2e-4)
    asked = []
    monkeypatch.setattr(
        flow_matching, "pair_by_entropic_plan", lambda key, x, y, eps: asked.append(eps) or y
    )
    strategy = create_strategy(FlowMatchingStrategyConfig(coupling="sb", sigma=0.3))
    strategy.couple(jax.random.key(0), jnp.zeros((4, 2)))
    assert asked == [pytest.approx(2 * 0.3**2)]


def test_entropic_plan_tends_to_the_exact_plan_and_to_independence():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 2)), rng.normal(size=(7, 2)) + 1.0
    cost = np.asarray(squared_distances(jnp.asarray(x), jnp.asarray(y)), np.float64)
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    exact = np.zeros((7, 7))
    exact[rows, cols] = 1 / 7
    errors = [
        np.abs(np.asarray(entropic_plan(jnp.asarray(x), jnp.asarray(y), eps)) - exact).sum()
        for eps in (1.0, 0.1, 0.01)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-2, errors
    wide = np.asarray(entropic_plan(jnp.asarray(x), jnp.asarray(y), 1e4))
    np.testing.assert_allclose(wide, 1 / 49, rtol=1e-2)


def test_pairs_drawn_from_a_concentrated_plan_are_the_assignment():
    """Points a little off the ring's centres, shuffled: at epsilon far below the squared gap
    between centres (14.6) each point's partner is its own centre's point."""
    x = jnp.asarray(ring_centres(), jnp.float32)
    order = np.random.default_rng(0).permutation(8)
    y = x[order] + 0.01 * jax.random.normal(jax.random.key(1), (8, 2))
    partners = np.asarray(pair_by_entropic_plan(jax.random.key(2), x, y, 0.5))
    np.testing.assert_array_equal(partners, np.asarray(y)[np.argsort(order)])


# ----------------------------------------------------------------------------------------------
# The path noise
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coupling", ["independent", "sb"])
def test_the_noisy_path_target_is_its_time_derivative(coupling):
    """For a fixed pair and noise, the regression target is dz_t/dt (central differences)."""
    strategy = create_strategy(FlowMatchingStrategyConfig(coupling=coupling, sigma=0.3))
    jax.config.update("jax_enable_x64", True)
    try:
        keys = jax.random.split(jax.random.key(0), 3)
        x, eps, xi = (jax.random.normal(k, (2,), jnp.float64) for k in keys)
        for t in (0.1, 0.37, 0.5, 0.81):
            h = 1e-5
            z_plus, _ = strategy.noisy_path(jnp.float64(t + h), x, eps, xi)
            z_minus, _ = strategy.noisy_path(jnp.float64(t - h), x, eps, xi)
            _, target = strategy.noisy_path(jnp.float64(t), x, eps, xi)
            np.testing.assert_allclose(target, (z_plus - z_minus) / (2 * h), rtol=1e-6, atol=1e-8)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_the_bridge_vanishes_at_the_ends_and_peaks_in_the_middle():
    strategy = create_strategy(FlowMatchingStrategyConfig(coupling="sb", sigma=0.2))
    s = np.array([float(strategy.path_noise(jnp.float32(t))[0]) for t in (0.0, 0.5, 1.0)])
    end = 0.2 * np.sqrt(1e-3 * (1 - 1e-3))  # t clipped into [1e-3, 1 - 1e-3]
    np.testing.assert_allclose(s, [end, 0.1, end], rtol=1e-5)
    constant = create_strategy(FlowMatchingStrategyConfig(sigma=0.2))
    assert [float(v) for v in constant.path_noise(jnp.float32(0.3))] == [
        pytest.approx(0.2),
        0.0,
    ]


# ----------------------------------------------------------------------------------------------
# Sampling and the likelihood start from the source
# ----------------------------------------------------------------------------------------------


def test_sampling_starts_from_the_source_and_the_likelihood_reads_its_density():
    strategy = create_strategy(FlowMatchingStrategyConfig(source=ring_source()))
    out = sample(strategy, Zero(), jax.random.key(0), 4000, 2, SamplerConfig(sampler="euler"))
    points = np.asarray(out.samples)
    near = distance_to_nearest(points, ring_centres())
    # |N(0, std^2 I)| has P(> 4 std) = exp(-8) = 3e-4 in 2-D.
    assert np.mean(near < 4 * RING_STD) > 0.999
    np.testing.assert_allclose(points.mean(0), 0.0, atol=0.2)
    np.testing.assert_allclose(np.mean(near**2) / 2, RING_STD**2, rtol=0.05)
    z = jnp.asarray(points[:50])
    np.testing.assert_allclose(
        np.asarray(log_prob(strategy, Zero(), z, time=0.0)),
        np.asarray(log_density(ring_source(), z)),
        atol=1e-4,
    )
    moons = create_strategy(FlowMatchingStrategyConfig(source=MoonConfig()))
    assert strategy.has_source_density() and not moons.has_source_density()
    with pytest.raises(ValueError, match="the source moon has no density in closed form"):
        moons.source_log_prob(jnp.zeros(2))
    for name in STOCHASTIC:
        with pytest.raises(ValueError, match="needs the score"):
            sample(strategy, Zero(), jax.random.key(1), 4, 2, SamplerConfig(sampler=name))


def test_a_data_source_needs_the_data_dimension():
    strategy = create_strategy(FlowMatchingStrategyConfig(source=ring_source()))
    with pytest.raises(ValueError, match="draws 2-dimensional points but the data have 1"):
        strategy.sample_from_source_distribution(jax.random.key(0), 4, 1)


def test_one_euler_step_of_an_ot_flow_lands_the_ring_on_a_smaller_ring():
    """Eight Gaussians of radius 5 onto eight of radius 2.5 (std 0.2): each mode's OT image is
    the inner mode at its angle, so one Euler step of the OT flow lands most points within 3
    std of an inner centre, while independent pairs collapse them towards the middle. Batches
    of 256 pair about a tenth of their points across modes (the modes' counts differ by
    sqrt(32) from batch to batch), and those land between modes: 0.77 land here."""
    dataset = EightGaussiansConfig(radius=2.5, std=0.2)
    train_cfg = TrainConfig(batch_size=256, train_steps=500, log_interval=500)
    one_step = SamplerConfig(sampler="euler", num_sampling_steps=1)
    inner = 2.5 * ring_centres() / RING_RADIUS
    landed = {}
    for coupling in ("independent", "ot"):
        strategy = create_strategy(
            FlowMatchingStrategyConfig(source=ring_source(), coupling=coupling)
        )
        model = create_model(MLPConfig(hidden_dim=64, depth=3), jax.random.key(0), 2)
        _, ema, _ = train(strategy, model, dataset, train_cfg, OptimizerConfig(), jax.random.key(1))
        points = sample(strategy, ema, jax.random.key(2), 2000, 2, one_step).samples
        landed[coupling] = np.mean(distance_to_nearest(points, inner) < 3 * 0.2)
    assert landed["ot"] > 0.7 and landed["independent"] < 0.1, landed


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------


def _fails(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_cli_trains_from_a_source_and_generates_from_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = ["--model.hidden-dim", "16", "--model.depth", "1", "--train-steps", "20"]
    tiny += ["--batch-size", "32", "--num-samples", "64", "--num-eval-samples", "64"]
    argv = ["train", "strategy:flow-matching", "--strategy.coupling", "ot", "model:mlp"]
    cli.main([*argv, *tiny[:4], "dataset:moon", "source:eight-gaussians", *tiny[4:]])
    model_path = tmp_path / "outputs" / "moon-from-eight-gaussians_flow-matching.eqx"
    saved = checkpoint.load(model_path)
    assert saved.config.strategy.source == ring_source()
    assert "from eight-gaussians" in capsys.readouterr().out
    image = tmp_path / "one_step.png"
    cli.main(
        ["generate", "--model-path", str(model_path), "--sampler", "euler"]
        + ["--num-sampling-steps", "1", "--num-samples", "64", "--output-image-path", str(image)]
    )
    assert image.exists()
    capsys.readouterr()
    _fails(
        capsys,
        ["train", "strategy:ddpm", "dataset:moon", "source:eight-gaussians"],
        "source:eight-gaussians needs strategy:flow-matching; ddpm's path starts",
    )
    _fails(
        capsys,
        [
            "train",
            "strategy:flow-matching",
            "dataset:gaussian-mixture-1d",
            "source:eight-gaussians",
        ],
        "the source eight-gaussians draws 2-dimensional points but the data have 1 dimensions",
    )
    _fails(
        capsys,
        ["train", "strategy:flow-matching", "dataset:moon", "source:points"],
        "source points needs a file: pass --source.path FILE",
    )
    _fails(
        capsys,
        ["generate", "--model-path", str(model_path), "--sampler", "euler-maruyama"],
        "needs the score",
    )
    assert not (
        tmp_path / "outputs" / "gaussian-mixture-1d-from-eight-gaussians_flow-matching.eqx"
    ).exists()
