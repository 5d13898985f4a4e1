# %% [markdown]
# # One-step and few-step generation
#
# Flow matching learns a velocity and samples by integrating it over many small steps. Can one
# step do? With the plain recipe, no: one Euler step lands every sample on the data's mean.
# This tutorial shows why, and then measures the library's ways around it on the two moons:
#
# 1. why one Euler step of (independently coupled) flow matching lands on the mean: the
#    velocity averages paths that cross;
# 2. **minibatch optimal-transport coupling** (`coupling="ot"`): pairs that do not cross;
# 3. **reflow**: a student trained on its teacher's ODE pairs, noise and where the teacher's
#    flow carries it;
# 4. **shortcut models**: a network told the size of the step it should take;
# 5. all of them at 1 and 2 network evaluations (NFE) beside flow matching's 50 Euler steps,
#    with a quality figure against fresh data beside its noise floor, and the samples.

# %%
import os
from pathlib import Path

QUICK = os.environ.get("JAX_GEN_TUTORIAL_QUICK") == "1"  # the tests' short mode
OUT = Path(os.environ.get("JAX_GEN_TUTORIAL_OUT", "outputs/tutorials")) / "06_one_step"
OUT.mkdir(parents=True, exist_ok=True)

# %%
# ruff: noqa: E402  (a notebook imports in its second cell)
import sys
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection

from jax_gen.config import (
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    MoonConfig,
    SamplerConfig,
    ShortcutStrategyConfig,
    TrainConfig,
)
from jax_gen.coupling import pair_by_optimal_transport, pairing_cost
from jax_gen.data import get_batch
from jax_gen.engine import fit
from jax_gen.metrics import classifier_two_sample_test
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
pairs_key, source_key, sample_key, data_key, floor_key, c2st_key = jax.random.split(
    jax.random.key(0), 6
)

DATASET = MoonConfig()
TRAIN_STEPS = 300 if QUICK else 1200  # every model trains this many steps
REFLOW_PAIRS = 5_000 if QUICK else 20_000  # the teacher's (noise, end point) pairs
NUM_SAMPLES = 1000 if QUICK else 2500  # samples per method and NFE, and fresh data points
print(f"{TRAIN_STEPS} training steps per model, {NUM_SAMPLES} samples per method and NFE")

# %% [markdown]
# ## 1. Why one Euler step lands on the mean
#
# Flow matching draws a data point $x$ and a noise point $\epsilon$ independently, joins them
# by the straight line $z_t = t\,x + (1 - t)\,\epsilon$, and regresses the line's velocity
# $x - \epsilon$. The best it can learn is the average over every line through the point:
#
# $$v(t, z) = E[\,x - \epsilon \mid z_t = z\,].$$
#
# At $t = 0$ the point is the noise itself, $z_0 = \epsilon$, which says nothing about $x$:
# $E[x \mid z_0 = z] = E[x]$, so $v(0, z) = E[x] - z$, and one Euler step from $t = 0$ to 1
# gives
#
# $$z_0 + 1 \cdot v(0, z_0) = E[x] \qquad \text{for every } z_0 .$$
#
# Every sample lands on the data's mean. More generally one step from $t$ to 1 lands on
# $z + (1 - t)\,v(t, z) = E[x \mid z_t = z]$, the average of the data points whose lines pass
# through $z$: a blur, until the steps are small. The lines of independent pairs cross
# everywhere; the learned flow follows their average and curves, and a few straight steps
# cannot follow a curve.
#
# Pairing differently changes the average. **Minibatch optimal transport** reorders a batch of
# noise points so that the summed squared lengths $\sum_j \lVert x_j - \epsilon_j \rVert^2$ are
# the least possible (`jax_gen.coupling.pair_by_optimal_transport`; both marginals are
# unchanged, every $x$ and every $\epsilon$ is used once). Below, 64 pairs of each kind: the
# mean squared length of the lines, and how many of the $64 \cdot 63 / 2$ pairs of lines
# cross.


# %%
def crossings(starts: np.ndarray, ends: np.ndarray) -> int:
    """How many pairs of the segments starts[i] -> ends[i] intersect."""

    def side(a, b, c):  # sign of the turn a -> b -> c, for every pair of segments at once
        return np.sign(
            (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])
            - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
        )

    p, q = starts[:, None], ends[:, None]
    r, s = starts[None, :], ends[None, :]
    cross = (side(p, q, r) != side(p, q, s)) & (side(r, s, p) != side(r, s, q))
    return int(np.triu(cross, k=1).sum())


x_pairs = get_batch(pairs_key, DATASET, 64)
eps_pairs = jax.random.normal(source_key, (64, 2))
eps_ot = pair_by_optimal_transport(x_pairs, eps_pairs)
couplings = {"independent": eps_pairs, "optimal transport": eps_ot}
for name, eps in couplings.items():
    count = crossings(np.asarray(eps), np.asarray(x_pairs))
    cost = float(pairing_cost(x_pairs, eps))
    print(f"{name:<17}: mean squared length {cost:.2f}, {count} crossing pairs of lines")

fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True, sharey=True)
for ax, (name, eps) in zip(axes, couplings.items(), strict=True):
    lines = np.stack([np.asarray(eps), np.asarray(x_pairs)], axis=1)
    ax.add_collection(LineCollection(lines, colors="0.6", linewidths=0.8))
    ax.scatter(*np.asarray(eps).T, s=10, color="C0", label="noise $\\epsilon$", zorder=3)
    ax.scatter(*np.asarray(x_pairs).T, s=10, color="C1", label="data $x$", zorder=3)
    ax.set_title(f"{name} pairs", fontsize=10)
    ax.set_aspect("equal")
axes[0].legend(fontsize=8, loc="lower left")
fig.tight_layout()
fig.savefig(OUT / "crossing_paths.png", dpi=100)
show(fig)

# %% [markdown]
# ## 2. Flow matching, and its one step
#
# We train the library's flow-matching recipe (linear path, v-prediction, the default MLP) on
# the moons, shortened to 1200 steps at batch 256 (every model below trains as long), and take
# one Euler step.


# %%
def train(strategy, batch_size=256):
    """The moons trained with one strategy config; the run's state."""
    train_cfg = TrainConfig(
        batch_size=batch_size, train_steps=TRAIN_STEPS, log_interval=TRAIN_STEPS, ema_decay=0.99
    )
    return fit(ExperimentConfig(strategy=strategy, dataset=DATASET, train=train_cfg), seed=0)


def draw(strategy, run, sampler: SamplerConfig) -> tuple[np.ndarray, int]:
    """NUM_SAMPLES samples of a trained run's averaged weights, and the NFE they took."""
    result = sample(strategy, run.ema_model, sample_key, NUM_SAMPLES, 2, sampler)
    return np.asarray(result.samples), int(result.nfe)


flow = train(FlowMatchingStrategyConfig())
flow_strategy = create_strategy(flow.config.strategy)
one_step, _ = draw(flow_strategy, flow, SamplerConfig("euler", 1))
data = np.asarray(get_batch(data_key, DATASET, NUM_SAMPLES))
print(f"data: mean ({data[:, 0].mean():+.2f}, {data[:, 1].mean():+.2f}), std {data.std():.2f}")
print(
    f"one Euler step: mean ({one_step[:, 0].mean():+.2f}, {one_step[:, 1].mean():+.2f}), "
    f"std {one_step.std():.2f}"
)

# %% [markdown]
# One step puts the samples in a small blob at the data's mean: what the formula said, learned
# by the network.
#
# ## 3. Three ways to straight paths
#
# - **Optimal-transport coupling** trains flow matching on minibatch-OT pairs
#   (`FlowMatchingStrategyConfig(coupling="ot")`). Pairs of nearby points cross rarely, so
#   $E[x \mid z_t]$ is nearly a single point and the learned flow nearly straight. The exact
#   assignment costs $O(n^3)$ per batch (scipy's `linear_sum_assignment`, called from the
#   compiled loop), so we pair within batches of 128.
# - **Reflow** (Liu et al. 2022) draws noise points $\epsilon$, runs the trained flow's ODE
#   from each to its end point $x = \Phi(\epsilon)$, and trains a new flow on these pairs
#   (`coupling="reflow"`, `teacher_path=` the teacher's checkpoint). The pairs are a
#   deterministic map, so their lines never cross where the map is smooth, and the student's
#   flow is straighter than its teacher's. Here the teacher is the flow of section 2, and
#   the student trains on 20,000 of its pairs, each from 8 midpoint steps (16 NFE).
# - **Shortcut models** (Frans et al. 2024, `ShortcutStrategyConfig`) give the network a
#   second input, the step size $d$, and train it to predict the step
#   $z + d\,s(z, t, d)$ that lands where the flow does: at $d = 0$ with flow matching's loss,
#   and at $d > 0$ by self-consistency, one step of $2d$ equal to two steps of $d$. Its own
#   sampler takes $N$ steps of $d = 1/N$ (a power of two), one NFE each.

# %%
ot = train(FlowMatchingStrategyConfig(coupling="ot"), batch_size=128)
with tempfile.TemporaryDirectory() as folder:
    teacher_path = Path(folder) / "teacher.eqx"
    flow.save(teacher_path)
    reflow = train(
        FlowMatchingStrategyConfig(
            coupling="reflow",
            teacher_path=str(teacher_path),
            teacher_sampler="midpoint",
            teacher_steps=8,
            reflow_pairs=REFLOW_PAIRS,
        )
    )
shortcut = train(ShortcutStrategyConfig())
for name, run in (("flow matching", flow), ("ot", ot), ("reflow", reflow), ("shortcut", shortcut)):
    print(f"{name:<13} trained {run.step} steps, final loss {run.losses[-100:].mean():.3f}")

# %% [markdown]
# ## 4. Quality at 1 and 2 NFE
#
# Each method samples with its own cheapest step: Euler for the flows (one NFE a step), the
# shortcut model's own step (one NFE a step, $d = 1/N$). The reference is flow matching's
# default sampler, 50 Euler steps. The figure is the accuracy of a classifier telling the
# samples from fresh data (C2ST, `jax_gen.metrics.classifier_two_sample_test`; 0.5: it
# cannot), beside its noise floor, the same test for a second fresh draw of the data. Every
# method starts from the same source points and is tested against the same fresh data.

# %%
second_draw = np.asarray(get_batch(floor_key, DATASET, NUM_SAMPLES))
floor, floor_se = classifier_two_sample_test(second_draw, data, c2st_key)
print(f"noise floor: C2ST of a second fresh draw {floor:.3f} ± {floor_se:.3f}")

# The coupling changes what a flow learns, not how it is read: the three flows are sampled
# with the same flow-matching strategy, so they share the compiled sampler.
METHODS = {
    "flow matching": (flow_strategy, flow, "euler"),
    "ot": (flow_strategy, ot, "euler"),
    "reflow": (flow_strategy, reflow, "euler"),
    "shortcut": (create_strategy(shortcut.config.strategy), shortcut, "default"),
}
samples, c2st = {}, {}
for name, (strategy, run, sampler) in METHODS.items():
    for steps in (1, 2):
        samples[name, steps], nfe = draw(strategy, run, SamplerConfig(sampler, steps))
        assert nfe == steps
        c2st[name, steps] = classifier_two_sample_test(samples[name, steps], data, c2st_key)
reference, reference_nfe = draw(flow_strategy, flow, SamplerConfig())
reference_c2st = classifier_two_sample_test(reference, data, c2st_key)

print("C2ST accuracy against fresh data (0.5: indistinguishable):")
for name in METHODS:
    (one, one_se), (two, two_se) = c2st[name, 1], c2st[name, 2]
    print(f"  {name:<13} NFE 1: {one:.3f} ± {one_se:.3f}   NFE 2: {two:.3f} ± {two_se:.3f}")
accuracy, se = reference_c2st
print(
    f"  flow matching, {reference_nfe} Euler steps (NFE {reference_nfe}): {accuracy:.3f} ± {se:.3f}"
)

# %%
fig, ax = plt.subplots(figsize=(7, 4.2))
positions = np.arange(len(METHODS))
for k, steps in enumerate((1, 2)):
    values = np.array([c2st[name, steps] for name in METHODS])
    ax.bar(
        positions + (k - 0.5) * 0.38,
        values[:, 0],
        width=0.36,
        yerr=values[:, 1],
        capsize=2,
        label=f"NFE {steps}",
        color=f"C{k}",
    )
ax.axhline(
    reference_c2st[0],
    color="k",
    linestyle="--",
    linewidth=1,
    label=f"flow matching, NFE {reference_nfe}",
)
ax.axhspan(
    floor - 2 * floor_se,
    floor + 2 * floor_se,
    color="grey",
    alpha=0.3,
    label="noise floor (± 2 SE)",
)
ax.set_xticks(positions, list(METHODS))
ax.set_ylim(0.45, 1.02)
ax.set_ylabel("C2ST accuracy (0.5: indistinguishable)")
ax.set_title(f"One and two network evaluations on the moons, {NUM_SAMPLES} samples", fontsize=10)
ax.legend(fontsize=8, loc="upper right")
fig.tight_layout()
fig.savefig(OUT / "one_step_quality.png", dpi=100)
show(fig)

# %%
SHOWN = 1200  # points drawn per panel
low, high = data.min(axis=0) - 0.5, data.max(axis=0) + 0.5  # the data's window, every panel
height = 2.3 * (high[1] - low[1]) / (high[0] - low[0]) + 0.45
fig, axes = plt.subplots(2, len(METHODS) + 1, figsize=(2.3 * (len(METHODS) + 1), 2 * height))
for j, name in enumerate(METHODS):
    for i, steps in enumerate((1, 2)):
        points = samples[name, steps][:SHOWN]
        axes[i, j].scatter(*points.T, s=1, color="C0", rasterized=True)
        axes[i, j].set_title(f"{name}, NFE {steps}\nC2ST {c2st[name, steps][0]:.3f}", fontsize=8)
axes[0, -1].scatter(*data[:SHOWN].T, s=1, color="C1", rasterized=True)
axes[0, -1].set_title(f"fresh data\nfloor {floor:.3f}", fontsize=8)
axes[1, -1].scatter(*reference[:SHOWN].T, s=1, color="C2", rasterized=True)
axes[1, -1].set_title(
    f"flow matching, NFE {reference_nfe}\nC2ST {reference_c2st[0]:.3f}", fontsize=8
)
for ax in axes.flat:
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
fig.savefig(OUT / "one_step_samples.png", dpi=100)
show(fig)
print(f"pictures written to {OUT}/: crossing_paths.png, one_step_quality.png, one_step_samples.png")

# %% [markdown]
# **Reading it.**
#
# - **Flow matching** at one step is the blob at the mean (C2ST near 1: the classifier is
#   never wrong) and at two steps a blurred outline: averages of crossing paths.
# - **OT coupling** turns the same recipe into a usable one-step sampler by pairing alone:
#   the moons are there after one step, a little thick, and sharper after two.
# - **Reflow** is the best here at one step: its pairs come from a deterministic map, so its
#   paths are the straightest. It costs a trained teacher and its ODE solutions first.
# - **Shortcut** learns to take big steps itself; at this short training it is behind the
#   coupled flows at one step, and its two-step samples are better.
# - None of them is at the level of flow matching's 50 steps, which itself stands above the
#   data's own floor after this short training. With the library's full recipes (5000 steps at
#   batch 1024) the README's benchmark measures the same order on the moons: reflow, then
#   shortcut and OT, all still short of 50 Euler steps at one step.
#
# The library has two more one-step strategies, `MeanFlowStrategyConfig` (an average
# velocity over an interval) and `ConsistencyStrategyConfig` (consistency training: a jump to
# the data from any time); they train like the shortcut model above (`jax-gen train
# strategy:mean-flow`, `strategy:consistency`) and are measured in the README.
