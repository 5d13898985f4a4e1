# %% [markdown]
# # Samplers and NFE: what a step costs and what it buys
#
# A trained flow gives a velocity $v(t, z)$, and sampling solves the ordinary differential
# equation
#
# $$\frac{dz}{dt} = v(t, z), \qquad z_0 \sim \mathcal N(0, I), \qquad \text{sample} = z_1 .$$
#
# Every solver of it pays in **network evaluations (NFE)**: each evaluation is one forward
# pass of the network for every point, and on a small network it is nearly all of the
# sampling time. This tutorial measures what a step costs and what it buys:
#
# 1. the price list: NFE per step of each sampler of `jax_gen.sampling`;
# 2. order of accuracy on Gaussian data, whose velocity and whose exact flow map are known in
#    closed form: error against NFE on a log-log plot, and its slope;
# 3. on a trained model (flow matching on the two moons): sample quality against fresh data,
#    beside its noise floor, for a sampler of each family at equal NFE, and the samples side
#    by side.

# %%
import os
from pathlib import Path

QUICK = os.environ.get("JAX_GEN_TUTORIAL_QUICK") == "1"  # the tests' short mode
OUT = Path(os.environ.get("JAX_GEN_TUTORIAL_OUT", "outputs/tutorials")) / "04_samplers_and_nfe"
OUT.mkdir(parents=True, exist_ok=True)

# %%
# ruff: noqa: E402  (a notebook imports in its second cell)
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jaxtyping import Array

from jax_gen.config import (
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    MoonConfig,
    SamplerConfig,
    TrainConfig,
)
from jax_gen.data import get_batch
from jax_gen.engine import fit
from jax_gen.metrics import classifier_two_sample_test
from jax_gen.sampling import evals_per_step, sample, time_grid
from jax_gen.strategies import create_strategy

IN_NOTEBOOK = "ipykernel" in sys.modules


def show(fig):
    """Displays the figure in a notebook; a script has saved it already and closes it."""
    if IN_NOTEBOOK:
        plt.show()
    else:
        plt.close(fig)


# One key per random stream, split once.
gaussian_key, sample_key, data_key, floor_key, c2st_key = jax.random.split(jax.random.key(0), 5)

DATASET = MoonConfig()
TRAIN_STEPS = 750 if QUICK else 2000
NUM_SAMPLES = 1000 if QUICK else 3000  # points per sampler and NFE, and fresh data points
GAUSSIAN_NFE = (8, 32) if QUICK else (8, 16, 32)  # budgets of the exact comparison
MOON_NFE = (4, 16) if QUICK else (4, 8, 16)  # budgets on the trained model
print(f"{TRAIN_STEPS} training steps, {NUM_SAMPLES} samples per sampler and budget")

# %% [markdown]
# ## 1. What a step costs
#
# A fixed-step sampler cuts $[0, 1]$ into $N$ steps and pays a fixed number of evaluations per
# step, so its NFE is $N$ times that number:
#
# | sampler | one step from $t$ to $t + h$ | NFE per step | order |
# |---|---|---|---|
# | `euler` | $z + h\, v(t, z)$ | 1 | 1 |
# | `midpoint` | $z + h\, v\big(t + \tfrac h2,\ z + \tfrac h2 v(t, z)\big)$ | 2 | 2 |
# | `heun` | $z + \tfrac h2 \big(k_1 + v(t + h, z + h k_1)\big)$, $k_1 = v(t, z)$ | 2 | 2 |
# | `rk4` | the classical four-stage Runge-Kutta | 4 | 4 |
# | `dpm-solver` | DPM-Solver++(2M): reuses the previous step's evaluation | 1 | 2 (in log SNR) |
# | `adaptive` | Tsit5 with error control: as many steps as the tolerance needs | - | 5 |
#
# A solver of order $p$ has a global error $C h^p = C' \,\mathrm{NFE}^{-p}$: doubling the budget
# divides the error by $2^p$, so higher order wins *once the steps are small enough*; how
# small is what the rest of this tutorial measures. The library declares each solver's cost;
# we read it rather than trust the table:

# %%
flow = create_strategy(
    FlowMatchingStrategyConfig()
)  # linear path z_t = t x + (1 - t) eps, v-prediction
SAMPLERS = ("euler", "midpoint", "heun", "rk4", "dpm-solver", "adaptive")
COST = {name: evals_per_step(flow, SamplerConfig(name)) for name in SAMPLERS}
for name, cost in COST.items():
    print(f"{name:<11} NFE per step: {cost if cost is not None else 'as many as it needs'}")

# %% [markdown]
# ## 2. Order of accuracy against an exact flow
#
# Take Gaussian data $x \sim \mathcal N(m, \operatorname{diag}(s^2))$ and the linear path
# $z_t = t\,x + (1 - t)\,\epsilon$. Each coordinate of $z_t$ is Gaussian with mean $t\,m$ and
# standard deviation $\sigma_t = \sqrt{t^2 s^2 + (1 - t)^2}$, and the flow that keeps the
# standardised coordinate $u = (z_t - t\,m) / \sigma_t$ fixed has exactly these marginals. So
# the velocity flow matching learns is, in closed form,
#
# $$v(t, z) = m + \frac{\dot\sigma_t}{\sigma_t}\,(z - t\,m),
# \qquad \frac{\dot\sigma_t}{\sigma_t} = \frac{t\,s^2 - (1 - t)}{t^2 s^2 + (1 - t)^2},$$
#
# and the exact flow map carries a source point $\epsilon$ ($u = \epsilon$ at $t = 0$) to
#
# $$z_1 = m + s\,\epsilon .$$
#
# The closed-form velocity is a "model" like any other: an `equinox` module called as
# `model(t, z)` on one point, which a v-prediction flow-matching strategy hands to the solver
# unchanged. The error of a sampler is then the root mean square distance between its end
# points and $m + s\,\epsilon$ for the same source points $\epsilon$ (frame 0 of its
# trajectory).

# %%
MEAN = jnp.array([2.0, -1.0])
STD = jnp.array([0.3, 1.5])


class ExactVelocity(eqx.Module):
    """The velocity of the linear path for Gaussian data N(mean, diag(std^2)), on one point."""

    mean: Array
    std: Array

    def __call__(self, t, z):
        rate = (t * self.std**2 - (1 - t)) / (t**2 * self.std**2 + (1 - t) ** 2)
        return self.mean + rate * (z - t * self.mean)


exact = ExactVelocity(MEAN, STD)


def flow_map_error(cfg: SamplerConfig) -> tuple[int, float]:
    """(NFE, RMS distance from the exact flow map) of one sampler run on 1000 points."""
    result = sample(flow, exact, gaussian_key, 1000, 2, cfg, keep_trajectory=True)
    target = MEAN + STD * result.trajectory[0]
    return int(result.nfe), float(jnp.sqrt(jnp.mean(jnp.sum((result.samples - target) ** 2, -1))))


RUNGE_KUTTA = ("euler", "midpoint", "heun", "rk4")
gaussian = {}  # sampler -> (NFE array, error array)
for name in RUNGE_KUTTA:
    runs = [flow_map_error(SamplerConfig(name, nfe // COST[name])) for nfe in GAUSSIAN_NFE]
    gaussian[name] = tuple(np.array(column) for column in zip(*runs, strict=True))


def slope(nfe, errors):
    """Least-squares slope of log(error) against log(NFE)."""
    return float(np.polyfit(np.log(nfe), np.log(errors), 1)[0])


orders = {name: -slope(*gaussian[name]) for name in RUNGE_KUTTA}
print("error against the exact flow map (RMS distance; the data's spread is about 1.5):")
for name in RUNGE_KUTTA:
    nfe, errors = gaussian[name]
    cells = "  ".join(f"NFE {n:>2}: {e:.1e}" for n, e in zip(nfe, errors, strict=True))
    print(f"  {name:<9} {cells}   measured order {orders[name]:.2f}")

# %%
MARKERS = {"euler": "o", "midpoint": "s", "heun": "^", "rk4": "D", "dpm-solver": "v"}
fig, ax = plt.subplots(figsize=(6.4, 4.6))
for name in RUNGE_KUTTA:
    nfe, errors = gaussian[name]
    ax.loglog(nfe, errors, marker=MARKERS[name], label=f"{name} (slope {-orders[name]:.1f})")
ax.minorticks_off()
ax.set_xticks(GAUSSIAN_NFE, [str(n) for n in GAUSSIAN_NFE])
ax.set_xlabel("network evaluations (NFE)")
ax.set_ylabel("RMS error against the exact flow map")
ax.set_title("Gaussian data, exact velocity: error against NFE")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "order_of_accuracy.png", dpi=100)
show(fig)

# %% [markdown]
# **Reading the plot.** On a log-log plot an error $C\,\mathrm{NFE}^{-p}$ is a line of slope
# $-p$; the printed orders are the least-squares slopes.
#
# - **Euler** has slope $-1$: twice the work, half the error. At 32 NFE it is still about
#   0.065 off, a few percent of the data's spread.
# - **Heun** has slope $-2$. **RK4** is steeper than its $-4$ at these budgets (2 to 8 steps
#   are not yet small steps); at many more steps float32 rounding ($\sim 10^{-6}$) stops it.
# - **Midpoint** does better than its guaranteed order here: on this particular field the
#   leading term of its error per step vanishes (this field's $\sigma_t^2$ is quadratic in
#   $t$; on the library's cosine path, where it is not, midpoint shows its slope of $-2$), so
#   its slope is about $-3$. Heun, second order as well, has no such luck: an order is a
#   guarantee, and a particular problem may do better.
#
# At equal cost the difference is large: at 8 NFE midpoint is about 50 times closer than
# Euler, and at 32 NFE midpoint and RK4 are at $10^{-4}$ to $10^{-5}$ where Euler is near
# $10^{-1}$.
#
# With the exact velocity, higher order is a clear win. A trained network is not exact: its
# own error is a floor no solver can go below, and at small budgets the asymptotic order says
# little. That is the next question.
#
# ## 3. A trained model: flow matching on the two moons
#
# We train the library's default flow-matching recipe (linear path, v-prediction, the default
# MLP with Fourier features), shortened to 2000 steps at batch 256, with the one training
# loop, `jax_gen.engine.fit`, and sample the moving average of its weights.

# %%
config = ExperimentConfig(
    strategy=FlowMatchingStrategyConfig(),
    dataset=DATASET,
    train=TrainConfig(batch_size=256, train_steps=TRAIN_STEPS, log_interval=250, ema_decay=0.99),
)
trained = fit(config, seed=0)
strategy = create_strategy(trained.config.strategy)
model = trained.ema_model
print(
    f"trained {trained.step} steps; mean loss of the last 100: {trained.losses[-100:].mean():.3f}"
)

# %% [markdown]
# **The quality figure.** A classifier is trained to tell samples from fresh data points
# (the classifier two-sample test, C2ST, `jax_gen.metrics.classifier_two_sample_test`, five
# folds of gradient-boosted trees); its held-out accuracy is 0.5 when it cannot, and 1 when
# it always can. Even a perfect model does not score exactly 0.5 on a finite sample, so we
# measure the **noise floor** too: the same test for a second fresh draw of the data against
# the same data. Every sampler at every budget is tested against the same fresh data with the
# same folds, and draws its points from the same source points (the same `sample_key`).

# %%
data = np.asarray(get_batch(data_key, DATASET, NUM_SAMPLES))
second_draw = np.asarray(get_batch(floor_key, DATASET, NUM_SAMPLES))
floor, floor_se = classifier_two_sample_test(second_draw, data, c2st_key)
print(f"noise floor: C2ST of a second fresh draw {floor:.3f} ± {floor_se:.3f}")

MOON_SAMPLERS = ("euler", "midpoint", "dpm-solver")  # one of each family
samples, c2st = {}, {}  # (sampler, NFE) -> points, (accuracy, SE)
for name in MOON_SAMPLERS:
    for nfe in MOON_NFE:
        result = sample(
            strategy, model, sample_key, NUM_SAMPLES, 2, SamplerConfig(name, nfe // COST[name])
        )
        assert int(result.nfe) == nfe
        samples[name, nfe] = np.asarray(result.samples)
        c2st[name, nfe] = classifier_two_sample_test(samples[name, nfe], data, c2st_key)
adaptive = sample(strategy, model, sample_key, NUM_SAMPLES, 2, SamplerConfig("adaptive"))
adaptive_nfe = int(adaptive.nfe)
adaptive_c2st = classifier_two_sample_test(np.asarray(adaptive.samples), data, c2st_key)

print("C2ST accuracy against fresh data (0.5: indistinguishable; floor above):")
print("  sampler     " + "".join(f"{f'NFE {nfe}':>16}" for nfe in MOON_NFE))
for name in MOON_SAMPLERS:
    print(
        f"  {name:<11} "
        + "".join(f"{c2st[name, n][0]:>9.3f} ± {c2st[name, n][1]:.3f}" for n in MOON_NFE)
    )
accuracy, se = adaptive_c2st
print(f"  adaptive (tolerance 1e-3) at NFE {adaptive_nfe}: {accuracy:.3f} ± {se:.3f}")
best = {nfe: min(MOON_SAMPLERS, key=lambda name: c2st[name, nfe][0]) for nfe in MOON_NFE}
for nfe in MOON_NFE:
    winner, euler = c2st[best[nfe], nfe][0], c2st["euler", nfe][0]
    print(f"best at NFE {nfe}: {best[nfe]} ({winner:.3f}; euler {euler:.3f})")
grid = np.asarray(time_grid(strategy.schedule, 8, "logsnr"))
print("dpm-solver's 8 steps, uniform in log(t / (1 - t)): t =", " ".join(f"{t:.3f}" for t in grid))

# %%
fig, ax = plt.subplots(figsize=(6.4, 4.4))
for name in MOON_SAMPLERS:
    values = np.array([c2st[name, nfe] for nfe in MOON_NFE])
    ax.errorbar(
        MOON_NFE, values[:, 0], yerr=values[:, 1], marker=MARKERS[name], capsize=2, label=name
    )
ax.plot(
    [adaptive_nfe],
    [adaptive_c2st[0]],
    "k*",
    markersize=10,
    label=f"adaptive (tolerance 1e-3): NFE {adaptive_nfe}",
)
ax.axhspan(
    floor - 2 * floor_se,
    floor + 2 * floor_se,
    color="grey",
    alpha=0.3,
    label="noise floor (± 2 SE)",
)
ax.set_xscale("log", base=2)
ax.minorticks_off()
ticks = (*MOON_NFE, adaptive_nfe)
ax.set_xticks(ticks, [str(n) for n in ticks])
ax.set_xlabel("network evaluations (NFE)")
ax.set_ylabel("C2ST accuracy (0.5: indistinguishable)")
ax.set_title(f"Flow matching on the moons, {NUM_SAMPLES} samples")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "quality_vs_nfe.png", dpi=100)
show(fig)

# %% [markdown]
# **Reading it.** At every budget the same network is evaluated the same number of times;
# only the way the evaluations are combined changes.
#
# - At **4 NFE** midpoint has only 2 steps, and Euler's 4 small steps beat it: an order of
#   accuracy is a promise about small steps.
# - From **8 NFE** on, midpoint is ahead of Euler at equal cost, and by 16 NFE it is about
#   where the adaptive solver ends with 60 evaluations. That level, above the data's own
#   floor, is the network's error, which no solver removes: a longer training moves it down
#   (in the README's benchmark, 5000 steps at batch 1024, Heun reaches the floor at 16 NFE).
# - **Euler** improves slowly, as its slope of $-1$ said.
# - **DPM-Solver** pays one evaluation per step and is second order in the log
#   signal-to-noise ratio $\lambda = \log(\alpha_t / \sigma_t) = \log(t / (1 - t))$, the
#   variable of diffusion's probability-flow ODE. Its steps are uniform in $\lambda$ (printed
#   above): at 8 NFE, six of them crowd within 0.15 of the two ends and the middle of the path,
#   from $t = 0.15$ to $0.85$, gets two steps of 0.35. On flow matching's linear path that
#   spacing costs it at small budgets; it catches up as the steps shrink.
#
# The picture shows what the numbers mean: the same source points carried by three samplers
# at increasing budgets, beside fresh data.

# %%
SHOWN = 1200  # points drawn per panel
rows = MOON_SAMPLERS
low, high = data.min(axis=0) - 0.5, data.max(axis=0) + 0.5  # the data's window, for every panel
height = 2.6 * (high[1] - low[1]) / (high[0] - low[0]) + 0.5
fig, axes = plt.subplots(
    len(rows),
    len(MOON_NFE) + 1,
    figsize=(2.6 * (len(MOON_NFE) + 1), height * len(rows)),
    sharex=True,
    sharey=True,
)
for i, name in enumerate(rows):
    for j, nfe in enumerate(MOON_NFE):
        points = samples[name, nfe][:SHOWN]
        axes[i, j].scatter(points[:, 0], points[:, 1], s=1, color="C0", rasterized=True)
        axes[i, j].set_title(f"{name}, NFE {nfe}\nC2ST {c2st[name, nfe][0]:.3f}", fontsize=8)
    axes[i, -1].scatter(data[:SHOWN, 0], data[:SHOWN, 1], s=1, color="C1", rasterized=True)
    axes[i, -1].set_title(f"fresh data\nfloor {floor:.3f}", fontsize=8)
for ax in axes.flat:
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
fig.savefig(OUT / "samples_by_nfe.png", dpi=100)
show(fig)
print(f"pictures written to {OUT}/: order_of_accuracy.png, quality_vs_nfe.png, samples_by_nfe.png")

# %% [markdown]
# ## What to take away
#
# - **Count NFE, not steps.** A midpoint step costs two Euler steps; compare at equal NFE.
# - **Order is measured on a log-log plot against an exact answer**: slopes 1, 2 and 4 for
#   Euler, Heun and RK4 here (and a lucky 3 for midpoint on this field).
# - **On a trained model the network sets the floor.** A second-order solver reaches it at a
#   fraction of Euler's budget (here from 8-16 NFE against Euler's 32 and more); beyond that,
#   more evaluations buy nothing. Below 8 NFE nothing here is good: that is where straighter
#   flows and one-step methods come in (tutorial 06).
#
# To try it on the command line: `jax-gen evaluate --model-path CKPT --sampler midpoint --steps
# 2 4 8 16` prints the same kind of table for any trained checkpoint.
