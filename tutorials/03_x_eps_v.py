# %% [markdown]
# # x, eps or v: what the network predicts
#
# On a Gaussian path $z_t = \alpha(t)\,x + \sigma(t)\,\epsilon$ a network can be asked for
# the clean data $x$, the noise $\epsilon$ or the velocity
# $v = dz_t/dt = \alpha'(t)\,x + \sigma'(t)\,\epsilon$. Given $z_t$, any one of them
# determines the other two, so the three are the same model in exact arithmetic. They are not
# the same to learn. This tutorial
#
# 1. writes the conversions by hand and checks `jax_gen.parameterization` against them, with
#    their round trip;
# 2. shows where each conversion amplifies a network's error (near which end of the path);
# 3. reproduces the toy of Li & He (2025), "Back to Basics: Let Denoising Generative Models
#    Denoise" (JiT): a 2-D swiss roll embedded in $\mathbb R^D$; predicting $x$ keeps the roll
#    at high $D$, predicting $\epsilon$ or $v$ does not.
#
# Time runs from $t = 0$ (noise) to $t = 1$ (data), the library's one convention.

# %%
import os
from pathlib import Path

QUICK = os.environ.get("JAX_GEN_TUTORIAL_QUICK") == "1"  # the tests' short mode
OUT = Path(os.environ.get("JAX_GEN_TUTORIAL_OUT", "outputs/tutorials")) / "03_x_eps_v"
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
    MLPConfig,
    OptimizerConfig,
    SwissRollConfig,
    TrainConfig,
)
from jax_gen.data import from_plane, get_batch, to_plane
from jax_gen.engine import fit
from jax_gen.metrics import distance_with_floor
from jax_gen.parameterization import PARAMETERIZATIONS, path_coefficients
from jax_gen.sampling import sample
from jax_gen.schedules import LinearPath, VPLinearBetaSchedule
from jax_gen.strategies import create_strategy

IN_NOTEBOOK = "ipykernel" in sys.modules


def show(fig):
    """Displays the figure in a notebook; a script has saved it already and closes it."""
    if IN_NOTEBOOK:
        plt.show()
    else:
        plt.close(fig)


# One key per random stream, split once.
data_key, noise_key, direction_key, sample_key, metric_key = jax.random.split(jax.random.key(0), 5)

NUM_POINTS = 1000 if QUICK else 1500
TRAIN_STEPS = 300 if QUICK else 800
PREDICTIONS = ("x", "eps", "v")
print(f"{NUM_POINTS} points, {TRAIN_STEPS} training steps per model")

# %% [markdown]
# ## 1. The conversions
#
# With $z = \alpha x + \sigma \epsilon$ and $v = \alpha' x + \sigma' \epsilon$, two linear
# equations in $(x, \epsilon)$:
#
# $$\text{from } x:\ \ \epsilon = \frac{z - \alpha x}{\sigma}, \qquad
#   \text{from } \epsilon:\ \ x = \frac{z - \sigma \epsilon}{\alpha}, \qquad
#   \text{from } v:\ \ x = \frac{\sigma' z - \sigma v}{\alpha\sigma' - \sigma\alpha'},\ \
#   \epsilon = \frac{\alpha v - \alpha' z}{\alpha\sigma' - \sigma\alpha'} .$$
#
# On flow matching's linear path ($\alpha = t$, $\sigma = 1 - t$, $v = x - \epsilon$) they
# read $x = z + (1 - t)\,v$, $\epsilon = z - t\,v$, $\epsilon = (z - t x)/(1 - t)$ and
# $x = (z - (1 - t)\epsilon)/t$. Below, these four lines against the library's
# `to_x_eps(prediction, z, coefficients)` for each prediction, on a batch of points and times.

# %%
dataset_2d = SwissRollConfig()
x = get_batch(data_key, dataset_2d, NUM_POINTS)
time_key, eps_key = jax.random.split(noise_key)
t = jax.random.uniform(time_key, (NUM_POINTS, 1), minval=0.05, maxval=0.95)
eps = jax.random.normal(eps_key, x.shape)
z = t * x + (1 - t) * eps
v = x - eps

by_hand = {
    "x": (x, (z - t * x) / (1 - t)),
    "eps": ((z - (1 - t) * eps) / t, eps),
    "v": (z + (1 - t) * v, z - t * v),
}
linear = path_coefficients(LinearPath(), t)
conversion_error = 0.0
for name, prediction in (("x", x), ("eps", eps), ("v", v)):
    library = PARAMETERIZATIONS[name].to_x_eps(prediction, z, linear)
    for mine, theirs in zip(by_hand[name], library, strict=True):
        conversion_error = max(conversion_error, float(jnp.max(jnp.abs(mine - theirs))))
print(f"linear-path conversions, library against the formulas: max diff {conversion_error:.1e}")

# %% [markdown]
# The round trip: the regression target of each prediction (`target(x, eps, c)`), converted
# back to $(x, \epsilon)$, on the linear path and on DDPM's variance-preserving path
# ($\alpha = \sqrt{\bar\alpha}$, $\sigma = \sqrt{1 - \bar\alpha}$), in float32.

# %%
for path_name, schedule in (("linear", LinearPath()), ("DDPM", VPLinearBetaSchedule())):
    c = path_coefficients(schedule, t)
    z_path = c.alpha * x + c.sigma * eps
    errors = []
    for name in PREDICTIONS:
        parameterization = PARAMETERIZATIONS[name]
        x_back, eps_back = parameterization.to_x_eps(parameterization.target(x, eps, c), z_path, c)
        error = jnp.maximum(jnp.max(jnp.abs(x_back - x)), jnp.max(jnp.abs(eps_back - eps)))
        errors.append(float(error))
    print(
        f"round trip on the {path_name} path, t in [0.05, 0.95]: max error "
        + ", ".join(f"{name} {error:.1e}" for name, error in zip(PREDICTIONS, errors, strict=True))
    )

# %% [markdown]
# ## 2. Where a conversion amplifies errors
#
# A network is never exact. If its prediction is off by $\delta$, the conversions carry that
# error into the other two quantities, multiplied by a factor that depends on $t$. On the
# linear path:
#
# | the network predicts | error in $x$ | error in $\epsilon$ | error in $v$ |
# |---|---|---|---|
# | $x$ | $\delta$ | $\frac{t}{1 - t}\delta$ | $\frac{1}{1 - t}\delta$ |
# | $\epsilon$ | $\frac{1 - t}{t}\delta$ | $\delta$ | $\frac{1}{t}\delta$ |
# | $v$ | $(1 - t)\,\delta$ | $t\,\delta$ | $\delta$ |
#
# $\epsilon$-prediction blows up at the noise end $t \to 0$, where every sampler starts;
# $x$-prediction at the data end $t \to 1$; $v$-prediction nowhere. The picture measures the
# factors through the library's conversions (dots: an error of size 1 added to the
# prediction, and how far the converted outputs move) against the table (lines).
#
# Whether a large factor hurts depends on what the sampler does with the converted quantity.
# DDPM's step weights $\hat x$ by $\sqrt{\bar\alpha_{k-1}}\,\beta_k / (1 - \bar\alpha_k)$,
# small exactly where $\epsilon \to x$ amplifies most, so that in $\hat\epsilon$ the step's
# mean is $\big(z_k - \beta_k \hat\epsilon / \sqrt{1 - \bar\alpha_k}\big) / \sqrt{1 - \beta_k}$,
# with a bounded weight on $\hat\epsilon$: $\epsilon$-prediction and DDPM go well together. An
# Euler step on the linear path, from $t = 0$, uses $v = (z - \hat\epsilon) / t$ in full.

# %%
t_grid = jnp.concatenate([jnp.geomspace(0.002, 0.5, 20), 1 - jnp.geomspace(0.5, 0.002, 20)[1:]])
c_grid = path_coefficients(LinearPath(), t_grid[:, None])
direction = jax.random.normal(direction_key, (1, 2))
direction = direction / jnp.linalg.norm(direction)
x1, eps1 = x[:1], eps[:1]
z1 = c_grid.alpha * x1 + c_grid.sigma * eps1
delta = 1.0  # the conversions are linear in the prediction: any size of error will do
formulas = {
    "x": {"eps": t_grid / (1 - t_grid), "v": 1 / (1 - t_grid)},
    "eps": {"x": (1 - t_grid) / t_grid, "v": 1 / t_grid},
    "v": {"x": 1 - t_grid, "eps": t_grid},
}


def outputs(parameterization, prediction, z, c):
    """x, eps and v implied by a network's prediction at z."""
    x_out, eps_out = parameterization.to_x_eps(prediction, z, c)
    return {"x": x_out, "eps": eps_out, "v": parameterization.to_velocity(prediction, z, c)}


measured = {}  # (predicted, converted) -> amplification along t_grid
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained", sharey=True)
for ax, name in zip(axes, PREDICTIONS, strict=True):
    parameterization = PARAMETERIZATIONS[name]
    exact = parameterization.target(x1, eps1, c_grid)

    clean, noisy = (
        outputs(parameterization, exact, z1, c_grid),
        outputs(parameterization, exact + delta * direction, z1, c_grid),
    )
    for other, color in (("x", "C0"), ("eps", "C1"), ("v", "C2")):
        if other == name:
            continue
        factor = jnp.linalg.norm(noisy[other] - clean[other], axis=1) / delta
        measured[name, other] = factor
        ax.plot(t_grid, factor, ".", c=color)
        ax.plot(t_grid, formulas[name][other], "-", c=color, lw=1, label=f"error in {other}")
    ax.set_xscale("logit")  # both ends of [0, 1] stretched alike
    ax.set_yscale("log")
    ax.set_title(f"the network predicts {name}", fontsize=10)
    ax.set_xlabel("t  (0 noise, 1 data)")
    ax.legend(fontsize=8)
axes[0].set_ylabel("error amplification")
fig.savefig(OUT / "amplification.png", dpi=100)
show(fig)
table_error = max(
    float(jnp.max(jnp.abs(factor / formulas[name][other] - 1)))
    for (name, other), factor in measured.items()
)
print(f"amplification through the library against the table: max relative diff {table_error:.1e}")
for name, other, at in (("eps", "x", 0.01), ("x", "eps", 0.99), ("v", "x", 0.01)):
    i = int(jnp.argmin(jnp.abs(t_grid - at)))
    print(
        f"an error in {name} becomes {float(measured[name, other][i]):.1f} times as large in "
        f"{other} at t = {float(t_grid[i]):.4g}"
    )

# %% [markdown]
# ## 3. The JiT toy: a swiss roll in $\mathbb R^D$
#
# `SwissRollConfig(ambient_dim=D)` (`--dataset.ambient-dim D` on the command line) embeds the
# 2-D swiss roll $u$ in $\mathbb R^D$ with a fixed random $D \times 2$ matrix $P$ with
# orthonormal columns: $x = P u$. The data lie in a plane of $\mathbb R^D$; `to_plane` gives
# back $u = P^\top x$, and whatever is left, $x - P P^\top x$, is off the plane (zero for the
# data).
#
# What each network has to output then differs in kind. $x$ lies in the plane: two numbers'
# worth of information, whatever $D$. $\epsilon$ fills all of $\mathbb R^D$, and so does $v$,
# which contains it: off the plane, the target is the input's own off-plane part, rescaled
# ($\epsilon_\perp = z_\perp / \sigma$), so the network has to carry $D - 2$ coordinates of
# noise from its input to its output accurately, through hidden layers of 128 units. JiT's
# argument: as $D$ grows past what the network can carry, $\epsilon$- and $v$-prediction fail
# while $x$-prediction keeps working.
#
# Below: DDPM ($T = 100$ ancestral steps) with the same MLP (128 wide, 4 deep) and the same
# training for $D = 2$ and $D = 128$, each sampled from its EMA weights. As in JiT, every model
# regresses the same quantity, the velocity its output implies (`loss_target="v"`): only what
# the network outputs differs, not what the loss measures. Two figures per model: the sliced
# Wasserstein-2 distance of the samples' plane coordinates to fresh 2-D data, as a multiple of
# its floor (two fresh draws), and the mean norm of the samples' off-plane part (0 for the
# data, about $\sqrt{D - 2}$ for the noise the chain starts from).

# %%
DIMS = (2, 128)
for dim in DIMS:
    dataset = SwissRollConfig(ambient_dim=dim)
    embedded = get_batch(data_key, dataset, NUM_POINTS)  # (n, dim), the same roll as x above
    off_plane = embedded - from_plane(to_plane(embedded, dataset), dataset)
    noise = jax.random.normal(jax.random.fold_in(eps_key, dim), (NUM_POINTS, dim))
    rms = {
        name: float(jnp.sqrt(jnp.mean(jnp.sum(a**2, axis=1))))
        for name, a in (("x", embedded), ("eps", noise))
    }
    print(
        f"D = {dim}: RMS norm of x {rms['x']:.1f}, of eps {rms['eps']:.1f}; "
        f"largest off-plane part of the data {float(jnp.max(jnp.abs(off_plane))):.1e}"
    )


# %%
def train_and_sample(dim, prediction):
    """Trains DDPM with the given prediction on the swiss roll in R^dim; returns the samples'
    plane coordinates, their distance to 2-D data as a multiple of its floor, and their mean
    off-plane norm."""
    dataset = SwissRollConfig(ambient_dim=dim)
    config = ExperimentConfig(
        strategy=DDPMStrategyConfig(
            num_transport_steps=100, prediction=prediction, loss_target="v"
        ),
        model=MLPConfig(hidden_dim=128, depth=4),
        dataset=dataset,
        optimizer=OptimizerConfig(warmup_steps=TRAIN_STEPS // 10),
        train=TrainConfig(batch_size=256, train_steps=TRAIN_STEPS, log_interval=TRAIN_STEPS),
    )
    state = fit(config, seed=0)
    strategy = create_strategy(config.strategy)
    samples = sample(strategy, state.ema_model, sample_key, NUM_POINTS, dim).samples
    plane = to_plane(samples, dataset)
    off_plane = float(jnp.mean(jnp.linalg.norm(samples - from_plane(plane, dataset), axis=1)))
    report = distance_with_floor(
        np.asarray(plane), lambda key, n: get_batch(key, dataset_2d, n), metric_key, repeats=5
    )
    return np.asarray(plane), report["value"] / report["data"], off_plane


results = {}
for dim in DIMS:
    for prediction in PREDICTIONS:
        results[dim, prediction] = train_and_sample(dim, prediction)
        _, ratio, off_plane = results[dim, prediction]
        print(
            f"D = {dim:3d}, {prediction:>3}-prediction: plane SW2 {ratio:.1f}x its floor, "
            f"off-plane {off_plane:.3f}"
        )

# %% [markdown]
# Rows $D$, columns the prediction: the samples' plane coordinates (coloured) over fresh data
# (grey). At $D = 2$ all three draw the roll. At $D = 128$ only $x$-prediction does and keeps
# its samples on the plane. The $v$-network leaves most of the starting noise (norm about
# $\sqrt{126} \approx 11$) off the plane and scatters the plane coordinates; the
# $\epsilon$-network's errors in its 126 noise coordinates grow along the chain until its
# samples end far outside the picture.

# %%
SHOWN = 1000  # points drawn per panel
fig, axes = plt.subplots(
    len(DIMS), 3, figsize=(9, 3.1 * len(DIMS)), layout="constrained", sharex=True, sharey=True
)
for row, dim in enumerate(DIMS):
    for col, prediction in enumerate(PREDICTIONS):
        ax = axes[row, col]
        plane, ratio, off_plane = results[dim, prediction]
        ax.scatter(x[:SHOWN, 0], x[:SHOWN, 1], s=1, c="0.8", linewidths=0)
        ax.scatter(plane[:SHOWN, 0], plane[:SHOWN, 1], s=1, c=f"C{col}", alpha=0.6, linewidths=0)
        ax.text(
            0.02, 0.02, f"plane {ratio:.1f}x floor\noff-plane {off_plane:.2f}",
            transform=ax.transAxes, fontsize=8, va="bottom",
        )  # fmt: skip
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(f"{prediction}-prediction", fontsize=10)
        if col == 0:
            ax.set_ylabel(f"D = {dim}", fontsize=10)
axes[0, 0].set_xlim(-4, 4)
axes[0, 0].set_ylim(-4, 4)
fig.savefig(OUT / "ambient_dim.png", dpi=100)
show(fig)

# %% [markdown]
# ## Summary
#
# - $x$, $\epsilon$ and $v$ determine each other given $z_t$; the library converts between
#   them in one place, exactly up to float rounding away from the ends of the path.
# - The conversions amplify errors near the ends: $\epsilon \to x$ by $(1 - t)/t$ at the noise
#   end, $x \to \epsilon$ by $t/(1 - t)$ at the data end.
# - When data lie on a low-dimensional set of a high-dimensional space, predicting $x$ asks
#   the network for something of the data's dimension; $\epsilon$ and $v$ ask for the full
#   dimension of the noise, and a small network fails at it. The README's section
#   "x-, eps- and v-prediction in high dimension" measures the same effect with flow matching
#   over more dimensions and longer training (`scripts/experiment_ambient_dim.py`).

# %%
print(f"pictures in {OUT}")
