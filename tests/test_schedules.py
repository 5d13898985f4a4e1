import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SCHEDULES, GaussianOracle

from jax_gen.config import DDPMStrategyConfig, FlowMatchingStrategyConfig
from jax_gen.sampling import sample
from jax_gen.schedules import (
    CosinePath,
    LinearPath,
    VPCosineSchedule,
    VPLinearBetaSchedule,
    VPSchedule,
    VPSigmoidSchedule,
)
from jax_gen.strategies import create_strategy

DDPM_SCHEDULES = {name: s for name, s in SCHEDULES.items() if isinstance(s, VPSchedule)}
VP_PATHS = {name: s for name, s in SCHEDULES.items() if isinstance(s, VPSchedule | CosinePath)}
MEAN, STD = jnp.array([2.0, -1.0]), 0.5


@pytest.mark.parametrize("name", SCHEDULES)
def test_endpoints_and_monotonicity(name):
    schedule = SCHEDULES[name]
    end = schedule(jnp.array(1.0))
    assert end.alpha == 1.0 and end.sigma == 0.0  # t=1 is the data, exactly
    start = schedule(jnp.array(0.0))
    assert start.alpha <= 1e-2 and start.sigma >= 0.999  # t=0 is (close to) pure noise
    c = schedule(jnp.linspace(0.0, 1.0, 201))
    assert np.all(np.diff(c.alpha) > 0) and np.all(np.diff(c.sigma) < 0)


def test_linear_path_closed_form():
    t = jnp.linspace(0.0, 1.0, 11)
    c = LinearPath()(t)
    np.testing.assert_allclose(c.alpha, t)
    np.testing.assert_allclose(c.sigma, 1 - t)
    np.testing.assert_allclose(c.d_alpha, 1.0)
    np.testing.assert_allclose(c.d_sigma, -1.0)


def test_vp_path_preserves_variance():
    c = VPLinearBetaSchedule()(jnp.linspace(0.0, 1.0, 101))
    np.testing.assert_allclose(c.alpha**2 + c.sigma**2, 1.0, atol=1e-6)


@pytest.mark.parametrize("name", SCHEDULES)
def test_derivatives_match_autodiff(name):
    schedule = SCHEDULES[name]
    with jax.enable_x64(True):
        for t in np.linspace(0.01, 0.99, 17):
            t = jnp.asarray(t, jnp.float64)
            c = schedule(t)
            d_alpha = jax.grad(lambda s: schedule(s).alpha)(t)
            d_sigma = jax.grad(lambda s: schedule(s).sigma)(t)
            np.testing.assert_allclose(c.d_alpha, d_alpha, rtol=1e-10)
            np.testing.assert_allclose(c.d_sigma, d_sigma, rtol=1e-10)


@pytest.mark.parametrize("num_steps", [10, 50, 100, 1000])
def test_ddpm_chain_reaches_noise_for_any_number_of_steps(num_steps):
    schedule = VPLinearBetaSchedule()
    k = np.arange(num_steps + 1)
    abar = np.exp(np.asarray(schedule.log_abar((num_steps - k) / num_steps), np.float64))
    assert abar[0] == 1.0
    assert abar[-1] <= 1e-3
    betas = 1 - abar[1:] / abar[:-1]
    assert np.all((betas > 0) & (betas < 1))


def test_fixed_per_step_betas_would_not_reach_noise():
    # The pitfall this schedule avoids: betas 1e-4..0.02 taken over only 50 steps.
    abar_end = np.prod(1 - np.linspace(1e-4, 0.02, 50))
    assert abar_end > 0.5


def test_ddpm_betas_at_1000_steps_are_the_papers():
    schedule = VPLinearBetaSchedule()
    t = (1000 - np.arange(1001)) / 1000
    abar = np.exp(np.asarray(schedule.log_abar(t), np.float64))
    # The noise added by step k, -log(1 - beta_k), is the rate integrated over the step: the
    # paper's linear betas up to half a step's offset (beta_max - beta_min) / 2T^2 ~ 1e-5.
    step_noise = -np.log(abar[1:] / abar[:-1])
    np.testing.assert_allclose(step_noise, np.linspace(1e-4, 0.02, 1000), atol=1.1e-5)


@pytest.mark.parametrize("name", VP_PATHS)
def test_every_vp_path_preserves_variance(name):
    c = VP_PATHS[name](jnp.linspace(0.0, 1.0, 101))
    np.testing.assert_allclose(c.alpha**2 + c.sigma**2, 1.0, atol=1e-6)


@pytest.mark.parametrize("name", DDPM_SCHEDULES)
def test_log_abar_is_zero_at_the_data_end_and_finite_at_the_noise_end(name):
    schedule = DDPM_SCHEDULES[name]
    # 1 + 1e-7: a grid time T / T computed a rounding error above 1 must not make abar exceed 1.
    end = jax.jit(schedule.log_abar)(jnp.array([1.0, 1.0 + 1e-7], jnp.float32))
    np.testing.assert_array_equal(end, 0.0)
    start = schedule.log_abar(jnp.float32(0.0))
    assert np.isfinite(start) and start <= np.log(1e-4)
    rate = schedule.d_log_abar(jnp.linspace(0.0, 1.0, 201))
    assert np.all(np.isfinite(rate)) and np.all(rate > 0)


@pytest.mark.parametrize("name", DDPM_SCHEDULES)
@pytest.mark.parametrize("num_steps", [10, 50, 100, 1000])
def test_every_ddpm_schedule_chain_reaches_noise(name, num_steps):
    schedule = DDPM_SCHEDULES[name]
    t = jnp.arange(num_steps, -1, -1, dtype=jnp.float32) / jnp.float32(num_steps)  # k = 0..T
    abar = np.exp(np.asarray(schedule.log_abar(t), np.float64))
    assert abar[0] == 1.0
    assert abar[-1] <= 1e-3
    betas = 1 - abar[1:] / abar[:-1]
    assert np.all((betas > 0) & (betas < 1))
    # The truncated schedules keep the papers' cap of 0.999 on every beta (T >= 10).
    assert np.all(betas <= 0.999)


def _paper_cosine_abar(s, offset=0.008):
    f = np.cos((s + offset) / (1 + offset) * np.pi / 2) ** 2
    return f / np.cos(offset / (1 + offset) * np.pi / 2) ** 2


def _paper_sigmoid_abar(s, start=-3.0, end=3.0, tau=1.0):
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    low, high = sig(-end / tau), sig(-start / tau)
    return (sig(-(s * (end - start) + start) / tau) - low) / (high - low)


@pytest.mark.parametrize(
    "schedule, paper",
    [
        (VPCosineSchedule(), _paper_cosine_abar),
        (VPSigmoidSchedule(), _paper_sigmoid_abar),
        (
            VPSigmoidSchedule(start=0.0, end=3.0, tau=0.7),
            lambda s: _paper_sigmoid_abar(s, 0, 3, 0.7),
        ),
    ],
    ids=["cosine", "sigmoid", "sigmoid-0-3-0.7"],
)
def test_truncated_schedules_follow_the_papers_curve(schedule, paper):
    # abar(t) is the paper's abar at s_end (1 - t), cut where it reaches exp(log_abar_min).
    assert 0.99 < schedule.s_end < 1
    np.testing.assert_allclose(paper(schedule.s_end), np.exp(schedule.log_abar_min), rtol=1e-9)
    with jax.enable_x64(True):
        t = np.linspace(0.0, 1.0, 101)
        abar = np.exp(np.asarray(schedule.log_abar(jnp.asarray(t))))
    np.testing.assert_allclose(abar, paper(schedule.s_end * (1 - t)), rtol=1e-9)


def test_cosine_schedule_without_offset_or_truncation_is_the_cosine_path():
    t = jnp.linspace(0.05, 0.95, 19)  # at t = 1 the abar form gives sigma' = -abar rate / 0
    vp, path = VPCosineSchedule(offset=0.0, log_abar_min=-60.0)(t), CosinePath()(t)
    for a, b in zip(vp, path, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_cosine_path_closed_form():
    t = jnp.linspace(0.0, 1.0, 11)
    c = CosinePath()(t)
    np.testing.assert_allclose(c.alpha, np.sin(np.pi * t / 2), atol=1e-7)
    np.testing.assert_allclose(c.sigma, np.cos(np.pi * t / 2), atol=1e-7)
    assert c.alpha[0] == 0.0 and c.alpha[-1] == 1.0 and c.sigma[0] == 1.0 and c.sigma[-1] == 0.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: VPCosineSchedule(offset=-0.1),
        lambda: VPCosineSchedule(log_abar_min=0.0),
        lambda: VPSigmoidSchedule(log_abar_min=-float("inf")),
        lambda: VPSigmoidSchedule(start=3.0, end=-3.0),
        lambda: VPSigmoidSchedule(tau=0.0),
    ],
)
def test_invalid_hyperparameters_are_rejected(make):
    with pytest.raises(ValueError):
        make()


def test_configs_select_the_schedule():
    expected = {"linear": VPLinearBetaSchedule, "cosine": VPCosineSchedule}
    expected["sigmoid"] = VPSigmoidSchedule
    for name, cls in expected.items():
        assert type(create_strategy(DDPMStrategyConfig(schedule=name)).schedule) is cls
    linear = create_strategy(DDPMStrategyConfig(beta_min=0.2, beta_max=10.0)).schedule
    assert (linear.beta_min, linear.beta_max) == (0.2, 10.0)
    for name, cls in {"linear": LinearPath, "cosine": CosinePath}.items():
        assert type(create_strategy(FlowMatchingStrategyConfig(path=name)).schedule) is cls
    cfg = FlowMatchingStrategyConfig(path="cosine", loss_target="v")
    assert create_strategy(cfg).loss_target == "v"


@pytest.mark.parametrize(
    "cfg",
    [
        DDPMStrategyConfig(num_transport_steps=1000, schedule="linear"),
        DDPMStrategyConfig(num_transport_steps=1000, schedule="cosine"),
        DDPMStrategyConfig(num_transport_steps=1000, schedule="sigmoid", prediction="x"),
        FlowMatchingStrategyConfig(num_transport_steps=100, path="cosine"),
        FlowMatchingStrategyConfig(num_transport_steps=100, path="cosine", prediction="eps"),
    ],
    ids=["ddpm-linear", "ddpm-cosine", "ddpm-sigmoid-x", "flow-cosine-v", "flow-cosine-eps"],
)
def test_exact_denoiser_samples_the_gaussian_data_on_every_path(cfg):
    strategy = create_strategy(cfg)
    samples = sample(
        strategy,
        GaussianOracle(strategy, MEAN, STD),
        jax.random.key(0),
        num_samples=4000,
        data_dim=2,
    ).samples
    assert np.all(np.isfinite(samples))
    np.testing.assert_allclose(samples.mean(0), MEAN, atol=0.05)
    np.testing.assert_allclose(samples.std(0), STD, rtol=0.03)
