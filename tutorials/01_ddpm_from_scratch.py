# %% [markdown]
# # DDPM from first principles
#
# A denoising diffusion model (Ho et al. 2020) destroys data with a chain of small Gaussian
# steps and learns to undo them one at a time. This tutorial writes every piece in a few lines
# of `jax.numpy` and checks it against `jax_gen`:
#
# 1. the forward chain $q(z_k \mid z_{k-1})$ and its closed form $q(z_k \mid x)$;
# 2. where the chain ends: the "seed-style" schedule (betas linear from $10^{-4}$ to $0.02$
#    over 50 steps) never reaches noise, the library's continuous schedule does for any $T$;
# 3. the posterior $q(z_{k-1} \mid z_k, x)$, which is the reverse step;
# 4. training with the noise-prediction loss (`jax_gen.engine.fit`);
# 5. ancestral sampling, by hand and with `jax_gen.sampling.sample`;
# 6. what a chain that does not end at noise does to the samples, even with a perfect
#    denoiser.
#
# Levels run $k = 0$ (data) to $k = T$ (noise). The library's one time convention puts level
# $k$ at time $t_k = (T - k) / T$: $t = 0$ is noise, $t = 1$ is data.

# %%
import os
from pathlib import Path

QUICK = os.environ.get("JAX_GEN_TUTORIAL_QUICK") == "1"  # the tests' short mode
OUT = Path(os.environ.get("JAX_GEN_TUTORIAL_OUT", "outputs/tutorials")) / "01_ddpm_from_scratch"
OUT.mkdir(parents=True, exist_ok=True)

# %%
# ruff: noqa: E402  (a notebook imports in its second cell)
import dataclasses
import sys

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jax_gen.config import (
    DDPMStrategyConfig,
    ExperimentConfig,
    MLPConfig,
    MoonConfig,
    TrainConfig,
)
from jax_gen.data import get_batch
from jax_gen.engine import fit
from jax_gen.metrics import distance_with_floor
from jax_gen.parameterization import path_coefficients
from jax_gen.sampling import sample
from jax_gen.strategies import create_strategy

IN_NOTEBOOK = "ipykernel" in sys.modules


def show(fig):
    """Displays the figure in a notebook; a script has saved it already and closes it."""
    if IN_NOTEBOOK:
        plt.show()
    else:
        plt.close(fig)


# One key per random stream, split once.
(
    data_key,
    chain_key,
    last_step_key,
    posterior_key,
    loss_key,
    sample_key,
    hand_sample_key,
    metric_key,
) = jax.random.split(jax.random.key(0), 8)

DATASET = MoonConfig()
NUM_POINTS = 1000 if QUICK else 2000
TRAIN_STEPS = 400 if QUICK else 2000
T = 50  # the number of steps of every chain in this tutorial
x_data = get_batch(data_key, DATASET, NUM_POINTS)  # (n, 2) points of the two moons


def sliced_w2(points, draw=lambda key, n: get_batch(key, DATASET, n)):
    """Sliced Wasserstein-2 distance to fresh draws, and its floor (two fresh draws), each the
    mean over 5 draws."""
    report = distance_with_floor(np.asarray(points), draw, metric_key, repeats=5)
    return report["value"], report["data"]


print(f"{NUM_POINTS} data points, {TRAIN_STEPS} training steps, T = {T}")

# %% [markdown]
# ## 1. The forward chain and its closed form
#
# Each step shrinks the point a little and adds a little noise:
#
# $$q(z_k \mid z_{k-1}) = \mathcal N\big(\sqrt{1 - \beta_k}\, z_{k-1},\ \beta_k I\big),
# \qquad z_0 = x .$$
#
# A Gaussian step of a Gaussian is Gaussian, so $q(z_k \mid x) = \mathcal N(m_k, v_k I)$ with
# $m_k = \sqrt{1-\beta_k}\, m_{k-1}$ and $v_k = (1-\beta_k) v_{k-1} + \beta_k$, starting from
# $m_0 = x$, $v_0 = 0$. Both recursions close with
# $\bar\alpha_k = \prod_{i \le k} (1 - \beta_i)$:
#
# $$q(z_k \mid x) = \mathcal N\big(\sqrt{\bar\alpha_k}\, x,\ (1 - \bar\alpha_k) I\big),
# \qquad z_k = \sqrt{\bar\alpha_k}\, x + \sqrt{1 - \bar\alpha_k}\, \epsilon .$$
#
# (The variance: if $v_{k-1} = 1 - \bar\alpha_{k-1}$ then
# $v_k = (1-\beta_k)(1-\bar\alpha_{k-1}) + \beta_k = 1 - \bar\alpha_k$.) Below, the
# "seed-style" betas, linear from $10^{-4}$ to $0.02$ over $T = 50$ steps: the recursion against
# the closed form, and the chain run step by step on the data against the closed form's noise
# level.

# %%
betas_seed = jnp.linspace(1e-4, 0.02, T)
abar_seed = jnp.cumprod(1 - betas_seed)  # abar_1 .. abar_T


def moments(carry, beta):
    """One step of the mean factor and the variance: m <- sqrt(1 - b) m, v <- (1 - b) v + b."""
    m, v = carry
    m, v = jnp.sqrt(1 - beta) * m, (1 - beta) * v + beta
    return (m, v), (m, v)


_, (mean_factor, variance) = jax.lax.scan(moments, (1.0, 0.0), betas_seed)
recursion_error = max(
    float(jnp.max(jnp.abs(mean_factor - jnp.sqrt(abar_seed)))),
    float(jnp.max(jnp.abs(variance - (1 - abar_seed)))),
)
print(f"recursion against the closed form: max difference {recursion_error:.1e}")


def chain_step(z, inputs):
    """z_k = sqrt(1 - beta_k) z_{k-1} + sqrt(beta_k) noise."""
    beta, key = inputs
    return jnp.sqrt(1 - beta) * z + jnp.sqrt(beta) * jax.random.normal(key, z.shape), None


z_chain, _ = jax.lax.scan(chain_step, x_data, (betas_seed, jax.random.split(chain_key, T)))
# the closed form says this is sqrt(1 - abar_T) eps, whatever x was
residual = z_chain - jnp.sqrt(abar_seed[-1]) * x_data
print(
    f"chain run step by step: std of z_T - sqrt(abar_T) x = {float(jnp.std(residual)):.3f} "
    f"(closed form sqrt(1 - abar_T) = {float(jnp.sqrt(1 - abar_seed[-1])):.3f})"
)

# %% [markdown]
# ## 2. Where the chain ends
#
# Sampling starts the reverse chain from $\mathcal N(0, I)$, which is right only if
# $q(z_T \mid x)$ has forgotten $x$: $\bar\alpha_T \approx 0$. For the seed-style betas
# $\bar\alpha_T = \prod_k (1 - \beta_k) \approx e^{-\sum_k \beta_k} \approx e^{-0.5}$: the
# signal keeps $\sqrt{\bar\alpha_T} \approx 0.78$ of its size at the "noise" end.
#
# The library defines the chain in continuous time instead. With $s = 1 - t$ the diffusion
# time and a noise rate $\beta(s) = \beta_{\min} + s\,(\beta_{\max} - \beta_{\min})$
# ($\beta_{\min} = 0.1$, $\beta_{\max} = 20$),
#
# $$\bar\alpha(t) = \exp\Big(-\int_0^s \beta\Big)
#   = \exp\big(-\beta_{\min} s - \tfrac12 (\beta_{\max} - \beta_{\min}) s^2\big),$$
#
# and a chain of $T$ steps reads it at $t_k = (T - k)/T$, with the betas
# $\beta_k = 1 - \bar\alpha(t_k) / \bar\alpha(t_{k-1})$. Whatever $T$, the chain ends at
# $\bar\alpha(0) = e^{-(\beta_{\min} + \beta_{\max})/2} \approx 4.3 \times 10^{-5}$; at
# $T = 1000$ its betas are the DDPM paper's $10^{-4} \ldots 0.02$. The same family with
# $\beta_{\min} = 50 \times 10^{-4}$ and $\beta_{\max} = 50 \times 0.02$ is the seed-style chain
# (to a few $10^{-4}$ per beta), which is how it is trained in section 6.


# %%
def abar_by_hand(t, beta_min=0.1, beta_max=20.0):
    """The library's continuous schedule, written out: exp(-(b_min s + (b_max - b_min) s^2 / 2))."""
    s = 1 - t
    return jnp.exp(-(beta_min * s + 0.5 * (beta_max - beta_min) * s**2))


def chain_of(strategy):
    """abar_0 .. abar_T and beta_1 .. beta_T of a library DDPM strategy's chain."""
    levels = jnp.arange(strategy.num_transport_steps + 1)
    log_abar = strategy.schedule.log_abar(strategy.time_of_step(levels))
    return jnp.exp(log_abar), -jnp.expm1(log_abar[1:] - log_abar[:-1])


ddpm = create_strategy(DDPMStrategyConfig(num_transport_steps=T))
abar_lib, betas_lib = chain_of(ddpm)
t_levels = ddpm.time_of_step(jnp.arange(T + 1))
schedule_error = float(jnp.max(jnp.abs(abar_lib - abar_by_hand(t_levels))))
print(f"library schedule against the hand-written one: max difference {schedule_error:.1e}")

print(
    f"abar at the last step: seed-style {float(abar_seed[-1]):.4f}, "
    f"library {float(abar_lib[-1]):.1e}"
)
chains = {
    steps: chain_of(create_strategy(DDPMStrategyConfig(num_transport_steps=steps)))
    for steps in (50, 100, 300, 1000)
}
for steps, (abar, _) in chains.items():
    print(f"  library chain of T = {steps:4d}: abar_T = {float(abar[-1]):.2e}")
paper_gap = float(jnp.max(jnp.abs(chains[1000][1] - jnp.linspace(1e-4, 0.02, 1000))))
print(f"library betas at T = 1000 against the DDPM paper's: max difference {paper_gap:.1e}")

SEED_STYLE = DDPMStrategyConfig(num_transport_steps=T, beta_min=T * 1e-4, beta_max=T * 0.02)
abar_seed_lib, betas_seed_lib = chain_of(create_strategy(SEED_STYLE))
print(
    f"seed-style chain in the library's family (beta_min = {SEED_STYLE.beta_min:g}, "
    f"beta_max = {SEED_STYLE.beta_max:g}): betas within "
    f"{float(jnp.max(jnp.abs(betas_seed_lib - betas_seed))):.1e}, "
    f"abar_T = {float(abar_seed_lib[-1]):.4f}"
)

# %% [markdown]
# The left panel shows $\bar\alpha_k$ along the chain on a log scale: the seed-style chain
# (orange) stays above $0.6$, the library's reaches $4 \times 10^{-5}$ in the same 50 steps
# and at 1000 steps alike. The right panel shows the betas: the library's 50-step chain takes
# larger steps, growing towards the noise end.

# %%
fig, (ax_abar, ax_beta) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
k_over_t = np.arange(T + 1) / T
ax_abar.semilogy(k_over_t, np.concatenate([[1.0], abar_seed]), "C1", label="seed-style, T = 50")
ax_abar.semilogy(k_over_t, abar_lib, "C0", label="library, T = 50")
ax_abar.semilogy(np.arange(1001) / 1000, chains[1000][0], "C0:", label="library, T = 1000")
ax_abar.set_xlabel("k / T  (0 data, 1 noise)")
ax_abar.set_ylabel(r"$\bar\alpha_k$")
ax_abar.legend()
ax_beta.plot(np.arange(1, T + 1), betas_seed, "C1.", label="seed-style")
ax_beta.plot(np.arange(1, T + 1), betas_lib, "C0.", label="library")
ax_beta.set_xlabel("step k")
ax_beta.set_ylabel(r"$\beta_k$")
ax_beta.set_yscale("log")
ax_beta.legend()
fig.savefig(OUT / "abar.png", dpi=100)
show(fig)

# %% [markdown]
# What the chain hands to the sampler: the forward marginal at the last step,
# $z_T = \sqrt{\bar\alpha_T}\, x + \sqrt{1 - \bar\alpha_T}\, \epsilon$, for both schedules,
# beside the $\mathcal N(0, I)$ that sampling starts from. The seed-style $z_T$ still shows
# the two moons; the library's is indistinguishable from the standard normal. The sliced
# Wasserstein-2 distance to fresh normal draws (beside its floor, two normal draws) puts a
# number on it.

# %%
noise_last = jax.random.normal(last_step_key, x_data.shape)
z_last = {
    "seed-style": jnp.sqrt(abar_seed[-1]) * x_data + jnp.sqrt(1 - abar_seed[-1]) * noise_last,
    "library": jnp.sqrt(abar_lib[-1]) * x_data + jnp.sqrt(1 - abar_lib[-1]) * noise_last,
}
distance_to_normal = {}
for name, z in z_last.items():
    distance_to_normal[name], normal_floor = sliced_w2(
        z, lambda key, n: jax.random.normal(key, (n, 2))
    )
    print(
        f"z_T against N(0, I), sliced W2: {name} {distance_to_normal[name]:.3f} "
        f"(floor {normal_floor:.3f})"
    )

fig, axes = plt.subplots(1, 4, figsize=(12, 3.2), layout="constrained", sharex=True, sharey=True)
panels = [
    ("data x", x_data, "0.3"),
    (f"seed-style z_T (abar {float(abar_seed[-1]):.2f})", z_last["seed-style"], "C1"),
    (f"library z_T (abar {float(abar_lib[-1]):.0e})", z_last["library"], "C0"),
    ("N(0, I): where sampling starts", noise_last, "C2"),
]
for ax, (title, points, color) in zip(axes, panels, strict=True):
    ax.scatter(points[:, 0], points[:, 1], s=1, c=color, alpha=0.5, linewidths=0)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
axes[0].set_xlim(-5.5, 5.5)
axes[0].set_ylim(-4, 4)
fig.savefig(OUT / "last_step.png", dpi=100)
show(fig)

# %% [markdown]
# ## 3. The posterior: one step back
#
# Given the data point, the step back is a Gaussian too. By Bayes,
# $q(z_{k-1} \mid z_k, x) \propto q(z_k \mid z_{k-1})\, q(z_{k-1} \mid x)$, a product of two
# Gaussians in $z_{k-1}$ whose precisions add:
# $\frac{1 - \beta_k}{\beta_k} + \frac{1}{1 - \bar\alpha_{k-1}}
#  = \frac{1 - \bar\alpha_k}{\beta_k (1 - \bar\alpha_{k-1})}$. So
#
# $$\tilde\mu_k = \frac{\sqrt{\bar\alpha_{k-1}}\, \beta_k}{1 - \bar\alpha_k}\, x
#    + \frac{\sqrt{1 - \beta_k}\, (1 - \bar\alpha_{k-1})}{1 - \bar\alpha_k}\, z_k,
# \qquad
# \tilde\beta_k = \frac{\beta_k\, (1 - \bar\alpha_{k-1})}{1 - \bar\alpha_k}.$$
#
# At $k = 1$, $\bar\alpha_0 = 1$ gives $\tilde\mu_1 = x$ and $\tilde\beta_1 = 0$: the last
# step is noise-free. A sampler does not know $x$; it puts the network's estimate $\hat x$ in
# its place. Below, the formula by hand against the library's DDPM step
# (`DDPMStrategy.reverse`), given a "network" that returns the true $x$ and the same noise key.

# %%
ddpm_x = create_strategy(DDPMStrategyConfig(num_transport_steps=T, prediction="x"))
abar_x, betas_x = chain_of(ddpm_x)
# 1 - abar_k from the variance recursion of section 1: written as 1 - abar_k in float32 it would
# keep only about 5 digits of 1 - abar_1 = 0.006 (the library computes it as -expm1(log abar)).
_, (_, one_minus_abar) = jax.lax.scan(moments, (1.0, 0.0), betas_x)
one_minus_abar = jnp.concatenate([jnp.zeros(1), one_minus_abar])  # level 0 is the data itself


def posterior_by_hand(x, z_k, k, noise):
    """A draw of q(z_{k-1} | z_k, x) from the closed form, with the given standard noise."""
    abar_prev, beta = abar_x[k - 1], betas_x[k - 1]
    weight_x = jnp.sqrt(abar_prev) * beta / one_minus_abar[k]
    weight_z = jnp.sqrt(1 - beta) * one_minus_abar[k - 1] / one_minus_abar[k]
    variance = beta * one_minus_abar[k - 1] / one_minus_abar[k]
    return weight_x * x + weight_z * z_k + jnp.sqrt(variance) * noise


def posterior_by_library(x, z_k, k, key):
    """The library's reverse step from level k to k - 1, its network replaced by the true x."""
    oracle = lambda t, z: x  # noqa: E731  (an x-prediction "network" that knows the answer)
    t, t_next = ddpm_x.time_of_step(jnp.asarray(k)), ddpm_x.time_of_step(jnp.asarray(k - 1))
    return ddpm_x.reverse(oracle, t, t_next, z_k, key)


def both_posteriors(k, key):
    """(library, by hand) draws of z_{k-1} for every data point, with the same noise."""
    forward_key, step_key = jax.random.split(key)
    noise = jax.random.normal(forward_key, x_data.shape)
    z_k = jnp.sqrt(abar_x[k]) * x_data + jnp.sqrt(one_minus_abar[k]) * noise
    step_keys = jax.random.split(step_key, NUM_POINTS)
    library = jax.vmap(posterior_by_library, in_axes=(0, 0, None, 0))(x_data, z_k, k, step_keys)
    step_noise = jax.vmap(lambda key: jax.random.normal(key, (2,)))(step_keys)
    return library, posterior_by_hand(x_data, z_k, k, step_noise)


posterior_error = 0.0
for k in (1, 2, T // 2, T):
    library, by_hand = both_posteriors(k, jax.random.fold_in(posterior_key, k))
    posterior_error = max(posterior_error, float(jnp.max(jnp.abs(library - by_hand))))
    if k == 1:
        last_step_gap = float(jnp.max(jnp.abs(library - x_data)))
print(f"posterior step, library against the formula: max difference {posterior_error:.1e}")
print(f"last step (k = 1) lands exactly on x: max |z_0 - x| = {last_step_gap:.1e}")

# %% [markdown]
# The two weights of the posterior mean and its standard deviation along the library's chain:
# near the noise end the step mostly keeps $z_k$; the weight on $x$ grows towards the data end
# and is exactly 1 at the last step, where the noise vanishes.

# %%
k_range = np.arange(1, T + 1)
weight_x = np.sqrt(abar_x[:-1]) * betas_x / one_minus_abar[1:]
weight_z = np.sqrt(1 - betas_x) * one_minus_abar[:-1] / one_minus_abar[1:]
posterior_std = np.sqrt(betas_x * one_minus_abar[:-1] / one_minus_abar[1:])
fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
ax.plot(k_range, weight_x, "C0", label=r"weight on $x$")
ax.plot(k_range, weight_z, "C1", label=r"weight on $z_k$")
ax.plot(k_range, posterior_std, "C2", label=r"std $\sqrt{\tilde\beta_k}$")
ax.set_xlabel("step k  (1: the last step of sampling)")
ax.legend()
fig.savefig(OUT / "posterior.png", dpi=100)
show(fig)

# %% [markdown]
# ## 4. Training: predict the noise
#
# The network $\epsilon_\theta(z, t)$ is trained to recover the noise that made $z_k$:
#
# $$L(\theta) = \mathbb E_{x,\ k \sim U\{1..T\},\ \epsilon \sim \mathcal N(0, I)}
#   \big\| \epsilon - \epsilon_\theta\big(\sqrt{\bar\alpha_k}\, x
#   + \sqrt{1 - \bar\alpha_k}\, \epsilon,\ t_k\big) \big\|^2 / d .$$
#
# Its minimiser is $\mathbb E[\epsilon \mid z_k]$, and then
# $\hat x = (z_k - \sqrt{1 - \bar\alpha_k}\, \hat\epsilon) / \sqrt{\bar\alpha_k}$ is
# $\mathbb E[x \mid z_k]$, the best estimate to put into the posterior. `engine.fit` trains it
# (Adam, warmup and cosine decay, gradient clipping, an EMA of the weights, `log_interval`
# steps fused into one compiled call). After training, the loss by hand on a fresh batch, with
# the library's own order of key splits (a time key, then a noise key), against
# `strategy.loss_fn`. The library reads its path at $t$ clipped into $[10^{-3}, 1 - 10^{-3}]$
# (so that conversions never divide by zero), and the hand-written loss does the same.

# %%
config = ExperimentConfig(
    strategy=DDPMStrategyConfig(num_transport_steps=T),
    model=MLPConfig(),
    dataset=DATASET,
    train=TrainConfig(batch_size=512, train_steps=TRAIN_STEPS, log_interval=TRAIN_STEPS),
)
trained = fit(config, seed=0)
model = trained.ema_model
final_loss = trained.losses[-TRAIN_STEPS // 10 :].mean()
print(f"trained {trained.step} steps; loss of the last 10%: {final_loss:.4f}")


def loss_by_hand(model, x, key):
    """The noise-prediction loss of one point, drawn as the library draws it."""
    time_key, noise_key = jax.random.split(key)
    k = jax.random.randint(time_key, (), 1, T + 1)
    t = (T - k).astype(jnp.float32) / T
    abar = abar_by_hand(jnp.clip(t, 1e-3, 1 - 1e-3))  # the library's clip of the path's ends
    eps = jax.random.normal(noise_key, x.shape)
    z = jnp.sqrt(abar) * x + jnp.sqrt(1 - abar) * eps
    return jnp.mean((model(t, z) - eps) ** 2)


batch = get_batch(jax.random.fold_in(loss_key, 0), DATASET, 2048)
point_keys = jax.random.split(jax.random.fold_in(loss_key, 1), batch.shape[0])
hand_loss = jax.vmap(loss_by_hand, in_axes=(None, 0, 0))(model, batch, point_keys)
library_loss = jax.vmap(ddpm.loss_fn, in_axes=(None, 0, 0))(model, batch, point_keys)
loss_error = float(jnp.max(jnp.abs(hand_loss - library_loss)))
print(
    f"loss on a fresh batch: by hand {float(hand_loss.mean()):.4f}, library "
    f"{float(library_loss.mean()):.4f}, max difference per point {loss_error:.1e}"
)

fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
window = max(1, TRAIN_STEPS // 50)
smooth = np.convolve(trained.losses, np.ones(window) / window, mode="valid")
ax.plot(np.arange(smooth.size) + window, smooth)
ax.set_xlabel("training step")
ax.set_ylabel(f"loss (mean of {window} steps)")
fig.savefig(OUT / "loss.png", dpi=100)
show(fig)

# %% [markdown]
# ## 5. Ancestral sampling
#
# Start from $z_T \sim \mathcal N(0, I)$ and take each step once: estimate
# $\hat x = (z_k - \sqrt{1 - \bar\alpha_k}\, \epsilon_\theta(z_k, t_k)) / \sqrt{\bar\alpha_k}$,
# then draw $z_{k-1} \sim \mathcal N(\tilde\mu_k(\hat x, z_k), \tilde\beta_k I)$. By hand that is
# a `lax.scan` over the levels $T, \ldots, 1$; the library's `sample` runs the same step
# (`strategy.reverse`) with its own keys. Both are compared with fresh data by the sliced
# Wasserstein-2 distance, beside its floor (two fresh draws of the data).


# %%
def ancestral_by_hand(denoise, beta_min, beta_max, z_start, key):
    """The reverse chain of T steps from z_T = z_start down to z_0; denoise(t, z) is x_hat."""
    abar = abar_by_hand(jnp.arange(T, -1, -1) / T, beta_min, beta_max)  # abar_0 .. abar_T
    betas = 1 - abar[1:] / abar[:-1]

    def step(z, inputs):
        k, key = inputs
        t = (T - k).astype(jnp.float32) / T
        abar_k, abar_prev, beta = abar[k], abar[k - 1], betas[k - 1]
        x_hat = jax.vmap(denoise, in_axes=(None, 0))(t, z)
        mean = (jnp.sqrt(abar_prev) * beta / (1 - abar_k)) * x_hat + (
            jnp.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar_k)
        ) * z
        std = jnp.sqrt(beta * (1 - abar_prev) / (1 - abar_k))
        return mean + std * jax.random.normal(key, z.shape), None

    levels = jnp.arange(T, 0, -1)  # T, T - 1, ..., 1
    z0, _ = jax.lax.scan(step, z_start, (levels, jax.random.split(key, T)))
    return z0


def denoiser_of(eps_model, beta_min=0.1, beta_max=20.0):
    """x_hat = (z - sqrt(1 - abar) eps_hat) / sqrt(abar), abar read as in training."""

    def denoise(t, z):
        abar_t = abar_by_hand(jnp.clip(t, 1e-3, 1 - 1e-3), beta_min, beta_max)
        return (z - jnp.sqrt(1 - abar_t) * eps_model(t, z)) / jnp.sqrt(abar_t)

    return denoise


start_key, steps_key = jax.random.split(hand_sample_key)
z_start = jax.random.normal(start_key, (NUM_POINTS, 2))
samples_hand = ancestral_by_hand(denoiser_of(model), 0.1, 20.0, z_start, steps_key)
result = sample(ddpm, model, sample_key, NUM_POINTS, 2, keep_trajectory=True)
samples_lib = result.samples

w2_hand, floor = sliced_w2(samples_hand)
w2_lib, _ = sliced_w2(samples_lib)
print(
    f"samples against fresh data, sliced W2: by hand {w2_hand:.3f}, library {w2_lib:.3f} "
    f"(floor {floor:.3f})"
)

# %% [markdown]
# The library's trajectory (frame 0 the source at $t = 0$, the last frame the samples at
# $t = 1$) at a few levels: the moons appear only in the last few steps, where $\bar\alpha$
# moves fastest on this chain. The last row compares fresh data with both samplers.

# %%
frames = [0, T // 2, (4 * T) // 5, (9 * T) // 10, T]
fig, axes = plt.subplots(2, 5, figsize=(13, 5), layout="constrained", sharex=True, sharey=True)
for ax, frame in zip(axes[0], frames, strict=True):
    points = result.trajectory[frame]
    ax.scatter(points[:, 0], points[:, 1], s=1, c="C0", alpha=0.5, linewidths=0)
    ax.set_title(f"k = {T - frame}  (t = {frame / T:.2f})", fontsize=9)
bottom = [
    ("fresh data", x_data, "0.3"),
    ("by hand", samples_hand, "C1"),
    ("library", samples_lib, "C0"),
]
for ax, (title, points, color) in zip(axes[1], bottom, strict=False):
    ax.scatter(points[:, 0], points[:, 1], s=1, c=color, alpha=0.5, linewidths=0)
    ax.set_title(title, fontsize=9)
for ax in axes[1, 3:]:
    ax.axis("off")
for ax in axes.flat:
    ax.set_aspect("equal")
axes[0, 0].set_xlim(-5.5, 5.5)
axes[0, 0].set_ylim(-4, 4)
fig.savefig(OUT / "sampling.png", dpi=100)
show(fig)

# %% [markdown]
# ## 6. A chain that does not reach noise
#
# Sampling starts every chain from $\mathcal N(0, I)$. For the seed-style chain that is not
# where the forward process ends: at level $T$ its points are $0.78\,x + 0.63\,\epsilon$, a
# cloud wider than the standard normal and still shaped like the moons. To see what that
# costs, without any training error in the way, take the best denoiser there is: for data
# drawn uniformly from a set of reference points $x_1, \ldots, x_n$,
#
# $$\mathbb E[x \mid z_k = z] = \sum_i w_i\, x_i, \qquad
#   w_i \propto \exp\Big(-\frac{\|z - \sqrt{\bar\alpha_k}\, x_i\|^2}{2 (1 - \bar\alpha_k)}\Big),$$
#
# exact at every level of either chain. Given to the library as an $x$-predicting "network",
# it makes the library's chain land on the data; the seed-style chain (the library's family
# with $\beta_{\min} = 0.005$, $\beta_{\max} = 1$, whose betas are the seed-style ones to
# $4 \times 10^{-4}$), with the same ideal denoiser and the same sampler, misses: its 50 small
# steps cannot pull a standard normal point out to the tips of the moons. Started instead from
# its own $q(z_T)$ (drawn from fresh data here, which a real sampler cannot do), it lands on
# the data again: the chain was fine, its start was wrong. No network, however well trained,
# does better than this denoiser.

# %%
reference = get_batch(jax.random.fold_in(data_key, 2), DATASET, NUM_POINTS)


def ideal_denoiser(strategy):
    """E[x | z_t = z] for x uniform over the reference points, on the strategy's own path."""

    def denoise(t, z):
        c = path_coefficients(strategy.schedule, t)
        logits = -jnp.sum((z - c.alpha * reference) ** 2, axis=1) / (2 * c.sigma**2)
        return jax.nn.softmax(logits) @ reference

    return denoise


library_x = create_strategy(DDPMStrategyConfig(num_transport_steps=T, prediction="x"))
seed_x = create_strategy(dataclasses.replace(SEED_STYLE, prediction="x"))
# The keys of section 5 again: every chain below starts from the same points and draws the same
# step noise, so the pictures differ by the chain alone.
ideal_library = sample(library_x, ideal_denoiser(library_x), sample_key, NUM_POINTS, 2).samples
ideal_seed = sample(seed_x, ideal_denoiser(seed_x), sample_key, NUM_POINTS, 2).samples

fresh = get_batch(jax.random.fold_in(data_key, 1), DATASET, NUM_POINTS)
z_true_start = jnp.sqrt(abar_seed_lib[-1]) * fresh + jnp.sqrt(1 - abar_seed_lib[-1]) * z_start
ideal_seed_true = ancestral_by_hand(
    ideal_denoiser(seed_x), SEED_STYLE.beta_min, SEED_STYLE.beta_max, z_true_start, steps_key
)

w2_ideal_library, _ = sliced_w2(ideal_library)
w2_ideal_seed, _ = sliced_w2(ideal_seed)
w2_ideal_seed_true, _ = sliced_w2(ideal_seed_true)
print(f"ideal denoiser, sliced W2 to fresh data (floor {floor:.3f}):")
print(f"  library chain from N(0, I): {w2_ideal_library:.3f}")
print(f"  seed-style chain from N(0, I): {w2_ideal_seed:.3f}")
print(f"  seed-style chain from its own q(z_T): {w2_ideal_seed_true:.3f}")

fig, axes = plt.subplots(1, 3, figsize=(12, 3.3), layout="constrained", sharex=True, sharey=True)
panels = [
    (f"library chain from N(0, I): SW2 {w2_ideal_library:.2f}", ideal_library, "C0"),
    (f"seed-style chain from N(0, I): SW2 {w2_ideal_seed:.2f}", ideal_seed, "C1"),
    (f"seed-style chain from its q(z_T): SW2 {w2_ideal_seed_true:.2f}", ideal_seed_true, "C2"),
]
for ax, (title, points, color) in zip(axes, panels, strict=True):
    ax.scatter(fresh[:, 0], fresh[:, 1], s=1, c="0.8", linewidths=0)
    ax.scatter(points[:, 0], points[:, 1], s=1, c=color, alpha=0.6, linewidths=0)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
axes[0].set_xlim(-5.5, 5.5)
axes[0].set_ylim(-3.5, 3.5)
fig.savefig(OUT / "seed_style_samples.png", dpi=100)
show(fig)

# %% [markdown]
# ## Summary
#
# - $q(z_k \mid x) = \mathcal N(\sqrt{\bar\alpha_k} x, (1 - \bar\alpha_k) I)$ with
#   $\bar\alpha_k = \prod_{i \le k}(1 - \beta_i)$; the chain ends at noise only if
#   $\bar\alpha_T \approx 0$, which 50 betas from $10^{-4}$ to $0.02$ do not give
#   ($\bar\alpha_T \approx 0.60$).
# - The library's schedule is continuous in time and ends at $\bar\alpha \approx 4 \times
#   10^{-5}$ for any number of steps.
# - The reverse step is the posterior $q(z_{k-1} \mid z_k, \hat x)$; the network supplies
#   $\hat x$ through its noise prediction.

# %%
print(f"pictures in {OUT}")
