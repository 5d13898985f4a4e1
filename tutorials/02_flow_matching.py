# %% [markdown]
# # Flow matching, and the one Gaussian path under it and DDPM
#
# Flow matching (Lipman et al. 2023; Liu et al. 2023) learns a velocity field that carries
# noise to data along an ordinary differential equation. This tutorial builds it from the
# path up and checks each piece against `jax_gen`:
#
# 1. the linear path $z_t = t\,x + (1 - t)\,\epsilon$ and its conditional velocity
#    $x - \epsilon$;
# 2. the marginal velocity, the conditional expectation of $x - \epsilon$ given $z_t$, in
#    closed form for a Gaussian mixture;
# 3. training (`jax_gen.engine.fit`): the network finds that conditional expectation;
# 4. Euler sampling, by hand and with `jax_gen.sampling.sample`;
# 5. DDPM and flow matching as one family $z_t = \alpha(t)\,x + \sigma(t)\,\epsilon$: the same
#    path up to a change of time and scale, so a network of one can be sampled by the other's
#    samplers.
#
# Time runs from $t = 0$ (noise) to $t = 1$ (data), the library's one convention.

# %%
import os
from pathlib import Path

QUICK = os.environ.get("JAX_GEN_TUTORIAL_QUICK") == "1"  # the tests' short mode
OUT = Path(os.environ.get("JAX_GEN_TUTORIAL_OUT", "outputs/tutorials")) / "02_flow_matching"
OUT.mkdir(parents=True, exist_ok=True)

# %%
# ruff: noqa: E402  (a notebook imports in its second cell)
import sys

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jax_gen.config import (
    DDPMStrategyConfig,
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    GaussianMixtureConfig,
    MLPConfig,
    SamplerConfig,
    TrainConfig,
)
from jax_gen.data import gaussian_mixture_centres, get_batch
from jax_gen.engine import fit
from jax_gen.evaluation import data_sampler
from jax_gen.metrics import quality_report
from jax_gen.parameterization import path_coefficients
from jax_gen.sampling import log_snr, sample
from jax_gen.strategies import create_strategy

IN_NOTEBOOK = "ipykernel" in sys.modules


def show(fig):
    """Displays the figure in a notebook; a script has saved it already and closes it."""
    if IN_NOTEBOOK:
        plt.show()
    else:
        plt.close(fig)


def c2st(points):
    """Classifier two-sample test against fresh data: (accuracy, the same for a second fresh
    draw). 0.5 means a classifier cannot tell the points from data."""
    report = quality_report(
        np.asarray(points), data_sampler(DATASET), metric_key, metrics=("c2st",)
    )["c2st"]
    return report["value"], report["data"]


# One key per random stream, split once.
(
    data_key,
    path_key,
    field_key,
    loss_key,
    sample_key,
    cross_key,
    metric_key,
) = jax.random.split(jax.random.key(0), 7)

DATASET = GaussianMixtureConfig()  # four Gaussians N((+-3, +-3), 0.3^2 I), equally likely
NUM_POINTS = 1000 if QUICK else 2000
TRAIN_STEPS = 600 if QUICK else 1500
x_data = get_batch(data_key, DATASET, NUM_POINTS)
print(f"{NUM_POINTS} data points, {TRAIN_STEPS} training steps")

# %% [markdown]
# ## 1. The linear path and its conditional velocity
#
# Pair a data point $x$ with a noise draw $\epsilon \sim \mathcal N(0, I)$ and join them by a
# straight line:
#
# $$z_t = t\,x + (1 - t)\,\epsilon, \qquad
#   \frac{d z_t}{dt} = x - \epsilon \quad (\text{constant along the line}).$$
#
# $x - \epsilon$ is the *conditional* velocity: the velocity of this one pair. The library's
# flow-matching strategy draws the same $z_t$ and, with its default $v$-prediction, the same
# regression target (`strategy.noised(t, x, eps)` returns both). The library reads every path
# at $t$ clipped into $[10^{-3}, 1 - 10^{-3}]$, so that conversions between predictions never
# divide by zero; the hand-written path does the same.

# %%
flow = create_strategy(FlowMatchingStrategyConfig())  # linear path, v-prediction, 50 steps
time_key, noise_key = jax.random.split(path_key)
t_batch = jax.random.uniform(time_key, (NUM_POINTS,))
eps_batch = jax.random.normal(noise_key, x_data.shape)

t_read = jnp.clip(t_batch, 1e-3, 1 - 1e-3)[:, None]  # the library's one clip of the path's ends
z_by_hand = t_read * x_data + (1 - t_read) * eps_batch
v_by_hand = x_data - eps_batch
z_library, v_library = jax.vmap(flow.noised)(t_batch, x_data, eps_batch)
path_error = max(
    float(jnp.max(jnp.abs(z_library - z_by_hand))), float(jnp.max(jnp.abs(v_library - v_by_hand)))
)
print(
    f"path and conditional velocity, library against the formula: max difference {path_error:.1e}"
)

# %% [markdown]
# Straight lines from noise (grey) to data (black) for a few pairs, with $z_{1/2}$ marked. The
# lines cross: a point $z_t$ where two lines meet has two conditional velocities, so no single
# field $v(z, t)$ can follow all of them. That is what the next section resolves.

# %%
fig, ax = plt.subplots(figsize=(6, 4.6), layout="constrained")
shown = 60
for i in range(shown):
    ax.plot([eps_batch[i, 0], x_data[i, 0]], [eps_batch[i, 1], x_data[i, 1]], c="C0", lw=0.5)
ax.scatter(eps_batch[:shown, 0], eps_batch[:shown, 1], s=8, c="0.6", label=r"$\epsilon$ (t = 0)")
half = 0.5 * x_data[:shown] + 0.5 * eps_batch[:shown]
ax.scatter(half[:, 0], half[:, 1], s=8, c="C1", label=r"$z_{1/2}$")
ax.scatter(x_data[:shown, 0], x_data[:shown, 1], s=8, c="k", label="x (t = 1)")
ax.set_aspect("equal")
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
fig.savefig(OUT / "paths.png", dpi=100)
show(fig)

# %% [markdown]
# ## 2. The marginal velocity is a conditional expectation
#
# The field that moves the whole cloud of $z_t$ as the lines do, in distribution, is the
# average of the conditional velocities through each point:
#
# $$v(z, t) = \mathbb E[x - \epsilon \mid z_t = z]
#   = \frac{\mathbb E[x \mid z_t = z] - z}{1 - t},$$
#
# (using $\epsilon = (z_t - t x) / (1 - t)$). Following $dz/dt = v(z, t)$ from
# $z_0 \sim \mathcal N(0, I)$ gives $z_t$ with the path's marginal at every $t$ (Lipman et al.,
# theorem 1), so $z_1$ is a data sample.
#
# For the four-Gaussian mixture, $x \sim \frac14 \sum_k \mathcal N(\mu_k, s^2 I)$, it is
# available in closed form: given component $k$, $z_t \sim \mathcal N(t \mu_k, r_t^2 I)$ with
# $r_t^2 = t^2 s^2 + (1 - t)^2$, so
#
# $$\mathbb E[x \mid z_t = z] = \sum_k w_k(z) \Big(\mu_k + \frac{t s^2}{r_t^2}(z - t\mu_k)\Big),
# \qquad w_k(z) \propto \exp\big(-\|z - t\mu_k\|^2 / (2 r_t^2)\big).$$
#
# Below, this exact field is given to the library as if it were a trained $v$-predicting
# network, and the library's Euler sampler follows it from noise.

# %%
CENTRES = jnp.asarray(gaussian_mixture_centres(DATASET), jnp.float32)  # (4, 2)
STD = DATASET.std


def exact_denoiser(t, z):
    """E[x | z_t = z] for the mixture, on one point z."""
    r2 = t**2 * STD**2 + (1 - t) ** 2
    weights = jax.nn.softmax(-jnp.sum((z - t * CENTRES) ** 2, axis=1) / (2 * r2))
    return weights @ (CENTRES + (t * STD**2 / r2) * (z - t * CENTRES))


def exact_velocity(t, z):
    """The marginal velocity E[x - eps | z_t = z] = (E[x | z_t = z] - z) / (1 - t)."""
    return (exact_denoiser(t, z) - z) / (1 - t)


exact_samples = sample(flow, exact_velocity, sample_key, NUM_POINTS, 2).samples
accuracy_exact, floor = c2st(exact_samples)
print(
    f"Euler on the exact marginal velocity: C2ST {accuracy_exact:.3f} against fresh data "
    f"(a second data draw {floor:.3f})"
)

# %% [markdown]
# The exact field at three times (arrows), over the cloud of $z_t$ (dots). Early on it points
# from everywhere towards the mixture's centre of mass, then it splits the cloud into four,
# and near $t = 1$ it pulls each group onto its component.

# %%
grid = jnp.stack(jnp.meshgrid(jnp.linspace(-4, 4, 13), jnp.linspace(-4, 4, 13)), -1).reshape(-1, 2)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.9), layout="constrained", sharex=True, sharey=True)
for ax, t in zip(axes, (0.2, 0.5, 0.8), strict=True):
    cloud = (t * x_data + (1 - t) * eps_batch)[:800]
    ax.scatter(cloud[:, 0], cloud[:, 1], s=1, c="0.75", linewidths=0)
    arrows = jax.vmap(exact_velocity, in_axes=(None, 0))(t, grid)
    ax.quiver(grid[:, 0], grid[:, 1], arrows[:, 0], arrows[:, 1], color="C0", angles="xy", scale=60)
    ax.set_title(f"t = {t}", fontsize=10)
    ax.set_aspect("equal")
axes[0].set_xlim(-4.5, 4.5)
axes[0].set_ylim(-4.5, 4.5)
fig.savefig(OUT / "marginal_field.png", dpi=100)
show(fig)

# %% [markdown]
# ## 3. Training finds the conditional expectation
#
# The network never sees the marginal velocity. It regresses the conditional one:
#
# $$L(\theta) = \mathbb E_{t \sim U[0, 1],\ x,\ \epsilon}
#   \big\| v_\theta(z_t, t) - (x - \epsilon) \big\|^2 / d .$$
#
# A squared loss is minimised by the conditional mean, so the best $v_\theta$ is
# $\mathbb E[x - \epsilon \mid z_t]$: exactly the marginal velocity. The loss does not go to
# zero; its floor is the spread of $x - \epsilon$ around its mean, which the exact field
# reaches. Below, the trained network's loss beside the exact field's on the same fresh batch
# and keys (`strategy.loss_fn`), and the distance between the two fields at $t = 1/2$ beside
# the spread of the conditional targets around the exact field.

# %%
config = ExperimentConfig(
    strategy=FlowMatchingStrategyConfig(),
    model=MLPConfig(),
    dataset=DATASET,
    train=TrainConfig(batch_size=256, train_steps=TRAIN_STEPS, log_interval=TRAIN_STEPS),
)
trained = fit(config, seed=0)
model = trained.ema_model

batch = get_batch(jax.random.fold_in(loss_key, 0), DATASET, 2048)
keys = jax.random.split(jax.random.fold_in(loss_key, 1), batch.shape[0])
loss_network = jax.vmap(flow.loss_fn, in_axes=(None, 0, 0))(model, batch, keys).mean()
loss_exact = jax.vmap(flow.loss_fn, in_axes=(None, 0, 0))(exact_velocity, batch, keys).mean()
print(
    f"loss on a fresh batch: network {float(loss_network):.4f}, exact field {float(loss_exact):.4f}"
)

half_eps = jax.random.normal(jax.random.fold_in(loss_key, 2), batch.shape)
z_half = 0.5 * batch + 0.5 * half_eps
v_network = jax.vmap(model, in_axes=(None, 0))(0.5, z_half)
v_exact = jax.vmap(exact_velocity, in_axes=(None, 0))(0.5, z_half)
network_gap = float(jnp.sqrt(jnp.mean((v_network - v_exact) ** 2)))
target_spread = float(jnp.sqrt(jnp.mean((batch - half_eps - v_exact) ** 2)))
print(
    f"at t = 0.5, RMS distance to the exact field: network {network_gap:.3f}, "
    f"conditional targets x - eps {target_spread:.3f}"
)

fig, (ax_loss, ax_field) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
window = max(1, TRAIN_STEPS // 50)
smooth = np.convolve(trained.losses, np.ones(window) / window, mode="valid")
ax_loss.plot(np.arange(smooth.size) + window, smooth, label="training loss")
ax_loss.axhline(float(loss_exact), c="k", ls="--", label="exact field's loss")
ax_loss.set_xlabel("training step")
ax_loss.set_ylim(0, 3 * float(loss_exact))
ax_loss.legend()
v_grid_network = jax.vmap(model, in_axes=(None, 0))(0.5, grid)
v_grid_exact = jax.vmap(exact_velocity, in_axes=(None, 0))(0.5, grid)
for vectors, color, label in ((v_grid_exact, "k", "exact"), (v_grid_network, "C1", "network")):
    ax_field.quiver(
        grid[:, 0], grid[:, 1], vectors[:, 0], vectors[:, 1],
        color=color, angles="xy", scale=60, width=0.004, label=label,
    )  # fmt: skip
ax_field.set_title("velocity at t = 0.5", fontsize=10)
ax_field.set_aspect("equal")
ax_field.legend(loc="upper center", fontsize=8)
fig.savefig(OUT / "training.png", dpi=100)
show(fig)

# %% [markdown]
# ## 4. Euler sampling
#
# Integrate $dz/dt = v_\theta(z, t)$ from $t = 0$ to $1$ in $N$ equal steps:
#
# $$z_{i+1} = z_i + \tfrac1N\, v_\theta(z_i, t_i), \qquad t_i = i / N, \quad
#   z_0 \sim \mathcal N(0, I).$$
#
# By hand that is a `lax.scan`; the library's default flow-matching sampler takes the same
# steps. Started from the library's own source points (frame 0 of its trajectory) the two
# agree to float rounding.

# %%
result = sample(flow, model, sample_key, NUM_POINTS, 2, keep_trajectory=True)
N = flow.num_transport_steps


def euler_by_hand(model, z0):
    """N Euler steps z <- z + (t_next - t) v(z, t) on the grid t_i = i / N."""
    times = jnp.arange(N + 1, dtype=jnp.float32) / N

    def step(z, interval):
        t, t_next = interval
        return z + (t_next - t) * jax.vmap(model, in_axes=(None, 0))(t, z), None

    z1, _ = jax.lax.scan(step, z0, (times[:-1], times[1:]))
    return z1


samples_hand = euler_by_hand(model, result.trajectory[0])
euler_error = float(jnp.max(jnp.abs(samples_hand - result.samples)))
print(f"Euler by hand against the library's sampler: max difference {euler_error:.1e}")
accuracy_flow, _ = c2st(result.samples)
print(f"flow matching samples: C2ST {accuracy_flow:.3f} (data {floor:.3f})")

fig, axes = plt.subplots(1, 5, figsize=(13, 2.9), layout="constrained", sharex=True, sharey=True)
for ax, frame in zip(axes, (0, N // 4, N // 2, (3 * N) // 4, N), strict=True):
    points = result.trajectory[frame]
    ax.scatter(points[:, 0], points[:, 1], s=1, c="C0", alpha=0.5, linewidths=0)
    ax.set_title(f"t = {frame / N:.2f}", fontsize=10)
    ax.set_aspect("equal")
axes[0].set_xlim(-4.5, 4.5)
axes[0].set_ylim(-4.5, 4.5)
fig.savefig(OUT / "euler.png", dpi=100)
show(fig)

# %% [markdown]
# ## 5. One Gaussian path under both
#
# DDPM's forward process is the same kind of path, $z_t = \alpha(t)\,x + \sigma(t)\,\epsilon$:
#
# | | $\alpha(t)$ | $\sigma(t)$ |
# |---|---|---|
# | flow matching (linear) | $t$ | $1 - t$ |
# | DDPM (variance preserving) | $\sqrt{\bar\alpha(t)}$ | $\sqrt{1 - \bar\alpha(t)}$ |
#
# with $\bar\alpha(t) = \exp(-\beta_{\min} s - \tfrac12(\beta_{\max} - \beta_{\min}) s^2)$,
# $s = 1 - t$. What tells a point on the path how noisy it is, is the signal-to-noise ratio
# $\alpha / \sigma$. Two paths with the same ratio differ only by a scale: if
# $\alpha_1/\sigma_1 = \alpha_2/\sigma_2$ then $\alpha_1 x + \sigma_1 \epsilon
# = \frac{\sigma_1}{\sigma_2}(\alpha_2 x + \sigma_2 \epsilon)$. For flow-matching time $t$ the
# DDPM time $\tau(t)$ with the same ratio solves
# $\bar\alpha(\tau) = \frac{t^2}{t^2 + (1 - t)^2}$ (a quadratic in $s = 1 - \tau$), and
#
# $$z^{\text{flow}}_t = c(t)\, z^{\text{DDPM}}_{\tau(t)}, \qquad c(t) = \sqrt{t^2 + (1-t)^2},$$
#
# for the same $x$ and $\epsilon$. DDPM's path starts at $\log(\alpha/\sigma) \approx -5$ where
# the linear path starts at $-\infty$, and the library reads DDPM's path at most at
# $\tau = 1 - 10^{-3}$ (log ratio $4.6$), so the match holds for $t$ in about $[0.007, 0.99]$;
# below, $t$ runs over $[0.01, 0.98]$.

# %%
ddpm = create_strategy(DDPMStrategyConfig(num_transport_steps=100))
BETA_MIN, BETA_MAX = 0.1, 20.0


def ddpm_time(t):
    """tau(t): the DDPM time whose signal-to-noise ratio is the linear path's at t."""
    log_abar = jnp.log(t**2 / (t**2 + (1 - t) ** 2))
    # -log abar = beta_min s + (beta_max - beta_min) s^2 / 2, solved for s >= 0
    slope = BETA_MAX - BETA_MIN
    s = (-BETA_MIN + jnp.sqrt(BETA_MIN**2 - 2 * slope * log_abar)) / slope
    return 1 - s


t_match = jnp.linspace(0.01, 0.98, 98)
tau = ddpm_time(t_match)
scale = jnp.sqrt(t_match**2 + (1 - t_match) ** 2)
flow_c, ddpm_c = flow.schedule(t_match), ddpm.schedule(tau)
x_one, eps_one = x_data[0], eps_batch[0]
z_flow = flow_c.alpha[:, None] * x_one + flow_c.sigma[:, None] * eps_one
z_ddpm = ddpm_c.alpha[:, None] * x_one + ddpm_c.sigma[:, None] * eps_one
match_error = float(jnp.max(jnp.abs(z_flow - scale[:, None] * z_ddpm)))
print(
    f"flow path against the rescaled DDPM path at matched times: max difference {match_error:.1e}"
)
snr_error = float(jnp.max(jnp.abs(log_snr(flow.schedule, t_match) - log_snr(ddpm.schedule, tau))))
print(f"log(alpha / sigma) of the two at matched times: max difference {snr_error:.1e}")

# %% [markdown]
# Left: $\alpha$ and $\sigma$ of both paths. Middle: the log signal-to-noise ratio: DDPM's
# spends most of its time at low ratio (noisy) and rises steeply near the data end. Right: the
# change of time $\tau(t)$ and the scale $c(t)$ that turn one path into the other.

# %%
t_plot = jnp.linspace(0.0, 1.0, 201)
flow_p = path_coefficients(flow.schedule, t_plot)
ddpm_p = path_coefficients(ddpm.schedule, t_plot)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
axes[0].plot(t_plot, flow_p.alpha, "C0", label=r"flow $\alpha = t$")
axes[0].plot(t_plot, flow_p.sigma, "C0--", label=r"flow $\sigma = 1 - t$")
axes[0].plot(t_plot, ddpm_p.alpha, "C1", label=r"DDPM $\sqrt{\bar\alpha}$")
axes[0].plot(t_plot, ddpm_p.sigma, "C1--", label=r"DDPM $\sqrt{1 - \bar\alpha}$")
axes[0].set_xlabel("t")
axes[0].legend(fontsize=8)
axes[1].plot(t_plot, log_snr(flow.schedule, t_plot), "C0", label="flow matching")
axes[1].plot(t_plot, log_snr(ddpm.schedule, t_plot), "C1", label="DDPM")
axes[1].set_xlabel("t")
axes[1].set_ylabel(r"$\log(\alpha / \sigma)$")
axes[1].legend(fontsize=8)
axes[2].plot(t_match, tau, "C2", label=r"DDPM time $\tau(t)$")
axes[2].plot(t_match, scale, "C3", label=r"scale $c(t)$")
axes[2].plot([0, 1], [0, 1], c="0.8", lw=0.8, label=r"$\tau = t$")
axes[2].set_xlabel("flow-matching time t")
axes[2].legend(fontsize=8)
fig.savefig(OUT / "one_path.png", dpi=100)
show(fig)

# %% [markdown]
# ### A network of one, the samplers of the other
#
# Every sampler asks the strategy, not the network, for what it needs at $(z, t)$: the
# denoised $\hat x$ and $\hat\epsilon$, the velocity
# $v = \alpha' \hat x + \sigma' \hat\epsilon$ or the score $-\hat\epsilon / \sigma$. The
# strategy converts its network's output through its own path. So a flow-matching network can
# be sampled with DDIM or DDPM-style ancestral steps, and a DDPM network ($\epsilon$-prediction,
# $T = 100$) with Euler steps on its probability-flow ODE. Below, a DDPM trained on the same
# data, and both networks under their own sampler and the other's, each measured by the
# classifier two-sample test against fresh data (0.5: a classifier cannot tell them apart).

# %%
ddpm_config = ExperimentConfig(
    strategy=DDPMStrategyConfig(num_transport_steps=100),
    model=MLPConfig(),
    dataset=DATASET,
    train=TrainConfig(batch_size=256, train_steps=TRAIN_STEPS, log_interval=TRAIN_STEPS),
)
ddpm_model = fit(ddpm_config, seed=0).ema_model

# (name, strategy, network, sampler, its label); the flow's own Euler samples are section 4's
runs = [
    ("flow matching", flow, model, "default", "Euler (its own)"),
    ("flow matching", flow, model, "ancestral", "DDPM-style ancestral"),
    ("DDPM", ddpm, ddpm_model, "default", "ancestral (its own)"),
    ("DDPM", ddpm, ddpm_model, "euler", "Euler on its ODE"),
]
fig, axes = plt.subplots(2, 2, figsize=(7.5, 7.5), layout="constrained", sharex=True, sharey=True)
for ax, (name, strategy, network, sampler, label) in zip(axes.flat, runs, strict=True):
    if strategy is flow and sampler == "default":
        points = result.samples
    else:
        steps = None if sampler == "default" else 50
        cfg = SamplerConfig(sampler=sampler, num_sampling_steps=steps)
        points = sample(strategy, network, cross_key, NUM_POINTS, 2, cfg).samples
    accuracy, _ = c2st(points)
    print(f"{name} network, {label} sampler: C2ST {accuracy:.3f} (data {floor:.3f})")
    ax.scatter(x_data[:, 0], x_data[:, 1], s=1, c="0.8", linewidths=0)
    color = "C0" if name == "DDPM" else "C1"
    ax.scatter(points[:, 0], points[:, 1], s=1, c=color, alpha=0.6, linewidths=0)
    ax.set_title(f"{name} network\n{label} sampler, C2ST {accuracy:.2f}", fontsize=9)
    ax.set_aspect("equal")
axes[0, 0].set_xlim(-4.5, 4.5)
axes[0, 0].set_ylim(-4.5, 4.5)
fig.savefig(OUT / "cross_sampling.png", dpi=100)
show(fig)

# %% [markdown]
# ## Summary
#
# - Flow matching regresses the conditional velocity $x - \epsilon$ of straight lines; the
#   minimiser is the marginal velocity $\mathbb E[x - \epsilon \mid z_t]$, and Euler steps on it
#   carry noise to data.
# - DDPM and flow matching move along the same family
#   $z_t = \alpha(t)\,x + \sigma(t)\,\epsilon$; matching $\alpha/\sigma$ turns one path into
#   the other up to a scale.
# - Since every sampler reads the network through the strategy's path, each strategy's network
#   works with every sampler.

# %%
print(f"pictures in {OUT}")
