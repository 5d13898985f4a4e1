"""Training throughput: the fused scan loop against plain per-step loops and the matmul rate.

Three loops train the same model (DDPM on moons, default optimizer) with the same batch size in
one process, alternating, best of ``--repeats``, so the machine's noise hits them alike:

- ``fused``: ``train_chunk``, ``--steps`` steps in one compiled ``lax.scan``, data drawn on device,
  the losses read once;
- ``per-step``: the same ``train_step`` (data drawn on device) jitted alone and called once per
  step from Python, reading the loss back every step, as a typical hand-written loop does;
- ``per-step, host data``: a jitted step on a given batch (``batch_loss`` + optax update + EMA,
  the pieces of ``train_step``), its batch drawn each step on the host with
  ``sklearn.datasets.make_moons`` (scaled like ``MoonConfig``), reading the loss every step.

Both per-step loops derive each step's key inside the jitted step (``fold_in(key, step)``), one
dispatch per step; deriving it eagerly on the host instead adds the "eager fold_in" host cost
printed at the end to every step.

Beside them, the machine's fp32 matrix-multiply rate at the MLP's own shapes: a jitted
``lax.scan`` repeating exactly the matrix multiplies of one training step (forward
``(B, in) @ (in, out)`` for every Linear layer; backward the weight gradient
``(in, B) @ (B, out)`` for every layer and the input gradient ``(B, out) @ (out, in)`` for every
layer but the first, whose input gradient nothing needs), timed like the loops. Its rate is
sum(2 m k n) over those matmuls / time.

FLOPs per step are the usual estimate 6 x batch x parameters (forward 2, backward 4 per weight
and example); the exact matmul count of a step (biases and the first layer's input gradient
differ) is printed beside it. Achieved GFLOP/s = steps/s x the estimate; the fraction of the
matmul rate = achieved GFLOP/s / matmul rate. Each per-step loop's overhead over the fused loop
is 1 / its steps/s - 1 / fused steps/s (so the fused speedup is 1 + overhead / fused step time);
beside it, the time of an empty step (a jitted step returning the state unchanged, its loss read
back) shows how much of that overhead is dispatch and synchronisation.

    uv run scripts/benchmark_train.py    # prints tables, writes outputs/benchmark_train.md
    uv run scripts/benchmark_train.py --steps 50 --repeats 2 --batch-size 256
"""

import argparse
import dataclasses
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import make_moons

from jax_gen.config import DDPMStrategyConfig, MLPConfig, MoonConfig, OptimizerConfig, TrainConfig
from jax_gen.models import create_model
from jax_gen.strategies import create_strategy
from jax_gen.train import (
    TrainState,
    batch_loss,
    ema_update,
    init_train_state,
    make_optimizer,
    train_chunk,
    train_step,
)

DATA_DIM = 2
SMALL_MLP = MLPConfig(hidden_dim=128, depth=3)
DEFAULT_MLP = MLPConfig()
MODELS = (SMALL_MLP, DEFAULT_MLP)
LOOPS = ("per-step, host data", "per-step", "fused")
MATMUL = "matmul"
EMPTY = "empty step"
ASYNC = "per-step, no read back"
MOON_CENTRE = (0.5, 0.25)
"""The mean of scikit-learn's two moons, which ``MoonConfig`` subtracts before scaling."""
TARGET_FRACTION = 0.8
"""Target: the fused loop reaches this fraction of the matmul rate on the default MLP."""
TARGET_SPEEDUP = 3.0
"""Target: the fused loop is this many times faster than the per-step loop on the small MLP."""


@dataclasses.dataclass
class Result:
    """One model's measurements; rates in steps/s (the matmul scan counts one step's matmuls)."""

    config: MLPConfig
    params: int
    flops_estimate: int
    """6 x batch x parameters."""
    flops_exact: int
    """sum of 2 m k n over the matmuls of one training step."""
    steps_per_s: dict[str, float]
    """Loop name (``LOOPS``), ``MATMUL``, ``EMPTY`` or ``ASYNC`` -> repetitions per second."""

    @property
    def empty_step_ms(self) -> float:
        """A per-step loop's cost of a step that computes nothing: dispatch and read back."""
        return 1e3 / self.steps_per_s[EMPTY]

    @property
    def model(self) -> str:
        return f"MLP {self.config.hidden_dim}x{self.config.depth}"

    @property
    def matmul_gflops(self) -> float:
        """The machine's fp32 matmul rate at this model's shapes, in GFLOP/s."""
        return self.steps_per_s[MATMUL] * self.flops_exact / 1e9

    def gflops(self, loop: str) -> float:
        """Achieved GFLOP/s of a loop, counting the estimate 6 x batch x parameters per step."""
        return self.steps_per_s[loop] * self.flops_estimate / 1e9

    def fraction(self, loop: str) -> float:
        """Achieved GFLOP/s of a loop / the matmul rate."""
        return self.gflops(loop) / self.matmul_gflops

    def speedup(self, loop: str) -> float:
        """Fused steps/s / this loop's steps/s."""
        return self.steps_per_s["fused"] / self.steps_per_s[loop]

    def overhead_ms(self, loop: str) -> float:
        """Time per step this loop spends beyond the fused loop's step, in ms."""
        return 1e3 * (1 / self.steps_per_s[loop] - 1 / self.steps_per_s["fused"])


def linear_shapes(model: eqx.Module) -> list[tuple[int, int]]:
    """(in, out) of every Linear layer of an MLP, input layer first."""
    return [(layer.in_features, layer.out_features) for layer in model.layers]


def step_matmuls(shapes: Sequence[tuple[int, int]], batch_size: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matmul (m, k) @ (k, n) of one training step of an MLP.

    Forward (B, in) @ (in, out) and weight gradient (in, B) @ (B, out) for every layer; input
    gradient (B, out) @ (out, in) for every layer but the first (the network's input is data,
    not a function of the weights).
    """
    matmuls = []
    for i, (n_in, n_out) in enumerate(shapes):
        matmuls.append((batch_size, n_in, n_out))
        matmuls.append((n_in, batch_size, n_out))
        if i > 0:
            matmuls.append((batch_size, n_out, n_in))
    return matmuls


def matmul_flops(matmuls: Sequence[tuple[int, int, int]]) -> int:
    """sum of 2 m k n: a multiply and an add per term of every product."""
    return sum(2 * m * k * n for m, k, n in matmuls)


def flops_estimate(num_params: int, batch_size: int) -> int:
    """The usual estimate of a training step's FLOPs: 6 x batch x parameters."""
    return 6 * batch_size * num_params


def count_params(model: eqx.Module) -> int:
    """Trained weights: every float array but the fixed Fourier frequencies."""
    if getattr(model, "fourier", None) is not None:
        model = eqx.tree_at(lambda m: m.fourier, model, None)
    return sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))


def host_moons(rng: np.random.RandomState, cfg: MoonConfig, batch_size: int) -> np.ndarray:
    """A batch from ``make_moons`` on the host, centred and scaled as ``MoonConfig`` does."""
    points, _ = make_moons(n_samples=batch_size, noise=cfg.noise, random_state=rng)
    return (cfg.scale * (points - np.asarray(MOON_CENTRE))).astype(np.float32)


def make_matmul_run(
    shapes: Sequence[tuple[int, int]], batch_size: int, num_reps: int
) -> Callable[[], object]:
    """A callable running ``num_reps`` repetitions of one training step's matmuls in a scan.

    The weights are fixed, N(0, 1 / in). Each repetition's input is the previous one's scaled
    by 1 + 1e-6 tanh(mean of the output), so no matmul is loop invariant (XLA would hoist it),
    and the weight gradients are summed into the carry, so none is dead code; the values stay
    O(1) (no overflow, no denormals).
    """
    keys = jax.random.split(jax.random.key(0), len(shapes) + 1)
    weights = [
        jax.random.normal(k, (n_in, n_out)) / math.sqrt(n_in)
        for k, (n_in, n_out) in zip(keys[1:], shapes, strict=True)
    ]
    x0 = jax.random.normal(keys[0], (batch_size, shapes[0][0]))

    @jax.jit
    def run(x, weights):
        def body(carry, _):
            x, sums = carry
            activations = [x]
            for w in weights:
                activations.append(activations[-1] @ w)
            grad = activations[-1]
            new_sums = list(sums)
            for i in reversed(range(len(weights))):
                new_sums[i] = sums[i] + activations[i].T @ grad
                if i > 0:
                    grad = grad @ weights[i].T
            x = x * (1 + 1e-6 * jnp.tanh(jnp.mean(activations[-1])))
            return (x, new_sums), None

        sums = [jnp.zeros_like(w) for w in weights]
        carry, _ = jax.lax.scan(body, (x, sums), length=num_reps)
        return carry

    return lambda: run(x0, weights)


def measure(
    model_cfg: MLPConfig, batch_size: int, num_steps: int, repeats: int, seed: int = 0
) -> Result:
    """Times the three loops, the matmul scan and two diagnostic loops, best of ``repeats``.

    The diagnostics: the per-step loop with an empty step (dispatch and read back alone), and
    the per-step loop without reading the loss (dispatch overlaps the device's work, so its
    time per step is about that of the step's computation, whichever is longer).
    """
    strategy = create_strategy(DDPMStrategyConfig())
    dataset = MoonConfig()
    train_cfg = TrainConfig(batch_size=batch_size)
    optimizer = make_optimizer(OptimizerConfig(), train_cfg.train_steps)
    model = create_model(model_cfg, jax.random.key(seed), data_dim=DATA_DIM)
    key = jax.random.key(seed + 1)
    static = dict(
        strategy=strategy,
        optimizer=optimizer,
        dataset=dataset,
        batch_size=batch_size,
        ema_decay=train_cfg.ema_decay,
    )

    @eqx.filter_jit
    def device_step(state, key):
        return train_step(state, jax.random.fold_in(key, state.step), **static)

    @eqx.filter_jit
    def batch_step(state: TrainState, batch, key):
        # train_step's update on a batch given from outside instead of drawn on device.
        loss_key = jax.random.fold_in(key, state.step)
        loss, grads = eqx.filter_value_and_grad(batch_loss)(state.model, strategy, batch, loss_key)
        params = eqx.filter(state.model, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(grads, state.opt_state, params)
        new_model = eqx.apply_updates(state.model, updates)
        step = state.step + 1
        decay = jnp.minimum(train_cfg.ema_decay, (1.0 + step) / (10.0 + step))
        ema_model = ema_update(state.ema_model, new_model, decay)
        return TrainState(new_model, ema_model, opt_state, step), loss

    rng = np.random.RandomState(seed)

    def host_data_loop(state):
        for _ in range(num_steps):
            state, loss = batch_step(state, host_moons(rng, dataset, batch_size), key)
            float(loss)  # the host reads every loss
        return state

    def per_step_loop(state):
        for _ in range(num_steps):
            state, loss = device_step(state, key)
            float(loss)
        return state

    def async_loop(state):
        for _ in range(num_steps):
            state, _ = device_step(state, key)
        return state

    @eqx.filter_jit
    def empty_step(state, key):
        return eqx.tree_at(lambda s: s.step, state, state.step + 1), jnp.zeros(())

    def empty_loop(state):
        for _ in range(num_steps):
            state, loss = empty_step(state, key)
            float(loss)
        return state

    def fused_loop(state):
        chunk = train_chunk(state, key, num_steps, *static.values())
        np.asarray(chunk.losses)  # the host reads the chunk's losses once
        return chunk.state

    shapes = linear_shapes(model)
    matmul_run = make_matmul_run(shapes, batch_size, num_steps)
    state = init_train_state(model, optimizer)
    runs = dict(zip(LOOPS, (host_data_loop, per_step_loop, fused_loop), strict=True))
    runs = {name: (lambda loop=loop: loop(state)) for name, loop in runs.items()}
    runs[MATMUL] = matmul_run
    runs[EMPTY] = lambda: empty_loop(state)
    runs[ASYNC] = lambda: async_loop(state)
    for run in runs.values():  # compile outside the timing
        jax.block_until_ready(run())
    best = {name: math.inf for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run())
            best[name] = min(best[name], time.perf_counter() - start)
    params = count_params(model)
    return Result(
        config=model_cfg,
        params=params,
        flops_estimate=flops_estimate(params, batch_size),
        flops_exact=matmul_flops(step_matmuls(shapes, batch_size)),
        steps_per_s={name: num_steps / seconds for name, seconds in best.items()},
    )


def host_costs(batch_size: int, repeats: int, calls: int = 200) -> dict[str, float]:
    """Per-call cost in ms of what a per-step loop does on the host besides the step.

    A trivial jitted call read back, a ``make_moons`` draw, and a key derived outside ``jit``
    (eager ``fold_in``, which the loops here avoid by deriving each step's key inside the step).
    """
    trivial = jax.jit(lambda x: x + 1)
    x = jnp.zeros(())
    key = jax.random.key(0)
    float(trivial(x))
    jax.block_until_ready(jax.random.fold_in(key, 1))
    rng = np.random.RandomState(0)
    costs = {}
    for name, fn in {
        "jit call + read back": lambda: float(trivial(x)),
        f"make_moons({batch_size})": lambda: host_moons(rng, MoonConfig(), batch_size),
        "eager fold_in": lambda: jax.block_until_ready(jax.random.fold_in(key, 1)),
    }.items():
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best = min(best, time.perf_counter() - start)
        costs[name] = 1e3 * best / calls
    return costs


def report(results: Sequence[Result], costs: dict[str, float], header: str) -> list[str]:
    """The markdown: FLOPs per model, rates per loop, where the time goes, the targets."""
    lines = [
        header,
        "",
        "| model | params | FLOPs/step (6 B P) | matmul FLOPs/step (exact) "
        "| matmul rate (GFLOP/s) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.model} | {r.params:,} | {r.flops_estimate / 1e6:.1f} M "
            f"| {r.flops_exact / 1e6:.1f} M | {r.matmul_gflops:.1f} |"
        )
    lines += [
        "",
        "| model | loop | steps/s | ms/step | GFLOP/s | of matmul rate | fused speedup "
        "| overhead (ms/step) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for loop in LOOPS:
            overhead = "-" if loop == "fused" else f"{r.overhead_ms(loop):.2f}"
            lines.append(
                f"| {r.model} | {loop} | {r.steps_per_s[loop]:.0f} "
                f"| {1e3 / r.steps_per_s[loop]:.2f} | {r.gflops(loop):.1f} "
                f"| {100 * r.fraction(loop):.0f}% | {r.speedup(loop):.2f}x | {overhead} |"
            )
    lines += [
        "",
        "Where a per-step loop's time goes (ms per step): the fused speedup over it is "
        "1 + overhead / fused step. An empty step is a jitted step taking and returning the "
        "same state without computing, its loss read back: the per-step loop's cost of dispatch "
        "and synchronisation alone. Without reading the loss back, dispatch overlaps the "
        "computation, so that loop's time per step is about the jitted step's own.",
        "",
        "| model | fused step | matmuls alone | per-step, no read back | empty step "
        "| overhead, device data | overhead, host data |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.model} | {1e3 / r.steps_per_s['fused']:.2f} "
            f"| {1e3 / r.steps_per_s[MATMUL]:.2f} | {1e3 / r.steps_per_s[ASYNC]:.2f} "
            f"| {r.empty_step_ms:.2f} "
            f"| {r.overhead_ms('per-step'):.2f} | {r.overhead_ms('per-step, host data'):.2f} |"
        )
    lines += [
        "",
        "Host costs per call: " + ", ".join(f"{name} {ms:.3f} ms" for name, ms in costs.items()),
    ]
    by_config = {r.config: r for r in results}
    targets = []
    if (default := by_config.get(DEFAULT_MLP)) is not None:
        fraction = default.fraction("fused")
        targets.append(
            f"fused >= {TARGET_FRACTION:.0%} of the matmul rate on {default.model}: "
            f"{fraction:.0%} ({'met' if fraction >= TARGET_FRACTION else 'not met'})"
        )
    if (small := by_config.get(SMALL_MLP)) is not None:
        speedup = small.speedup("per-step")
        targets.append(
            f"fused >= {TARGET_SPEEDUP:g}x the per-step loop on {small.model}: {speedup:.2f}x "
            f"({'met' if speedup >= TARGET_SPEEDUP else 'not met'}; "
            f"{small.speedup('per-step, host data'):.2f}x against host data)"
        )
    if targets:
        lines += ["", "Targets: " + "; ".join(targets) + "."]
    lines += [
        "",
        "GFLOP/s count the estimate 6 B P; with the exact matmul count every fraction is "
        + ", ".join(f"{r.flops_exact / r.flops_estimate:.3f}x" for r in results)
        + " as large (in the models' order).",
    ]
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--steps", type=int, default=250, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per loop (best kept)")
    parser.add_argument(
        "--widths", type=int, nargs="+", default=[m.hidden_dim for m in MODELS], help="per model"
    )
    parser.add_argument(
        "--depths", type=int, nargs="+", default=[m.depth for m in MODELS], help="per model"
    )
    parser.add_argument("--output", type=Path, default=Path("outputs/benchmark_train.md"))
    args = parser.parse_args(argv)
    for flag in ("batch_size", "steps", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)}: must be >= 1")
    if len(args.widths) != len(args.depths):
        parser.error(f"--widths {args.widths} and --depths {args.depths}: one of each per model")
    return args


def main(argv: Sequence[str] | None = None) -> list[Result]:
    """Measures every model, prints the tables and writes them to ``--output``."""
    args = parse_args(argv)
    command = shlex.join(["scripts/benchmark_train.py", *(sys.argv[1:] if argv is None else argv)])
    device = jax.devices()[0]
    header = (
        f"`{command}`: DDPM on moons, batch {args.batch_size}, {args.steps} steps per timed run, "
        f"best of {args.repeats}, alternating; {device.platform.upper()} "
        f"({jax.device_count()} device, {os.cpu_count()} host cores), fp32."
    )
    print(header, flush=True)
    start = time.perf_counter()
    results = []
    for width, depth in zip(args.widths, args.depths, strict=True):
        cfg = MLPConfig(hidden_dim=width, depth=depth)
        results.append(measure(cfg, args.batch_size, args.steps, args.repeats))
        print(f"  measured {results[-1].model}", flush=True)
    costs = host_costs(args.batch_size, args.repeats)
    lines = report(results, costs, header)
    lines += ["", f"Wall time {time.perf_counter() - start:.0f} s."]
    text = "\n".join(lines)
    print("\n" + "\n".join(lines[1:]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(f"\nwrote {args.output}")
    return results


if __name__ == "__main__":
    main()
