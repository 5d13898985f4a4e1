"""Training throughput: the fused scan loop against a plain per-step jitted loop.

Both loops run the same jitted step (same model, batch size, data drawn on device) in one
process, alternating, so the machine's noise hits both alike. The per-step loop calls the
compiled step once per step from Python and reads the loss back every step, as a typical
hand-written loop does; the fused loop runs ``log_interval`` steps in one ``lax.scan`` and reads
the losses once.

    uv run scripts/benchmark_train.py            # prints a table, writes outputs/benchmark_train.md
"""

import argparse
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from jax_gen.config import DDPMStrategyConfig, MLPConfig, MoonConfig, OptimizerConfig, TrainConfig
from jax_gen.models import create_model
from jax_gen.strategies import create_strategy
from jax_gen.train import init_train_state, make_optimizer, train_chunk, train_step


def measure(model_cfg: MLPConfig, batch_size: int, num_steps: int, repeats: int) -> dict:
    strategy = create_strategy(DDPMStrategyConfig())
    dataset = MoonConfig()
    train_cfg = TrainConfig(batch_size=batch_size)
    optimizer = make_optimizer(OptimizerConfig(), train_cfg.train_steps)
    model = create_model(model_cfg, jax.random.key(0), data_dim=2)
    key = jax.random.key(1)
    static = dict(
        strategy=strategy,
        optimizer=optimizer,
        dataset=dataset,
        batch_size=batch_size,
        ema_decay=train_cfg.ema_decay,
    )

    @eqx.filter_jit
    def single_step(state, step_key):
        return train_step(state, step_key, **static)

    def per_step_loop(state):
        for _ in range(num_steps):
            state, loss = single_step(state, jax.random.fold_in(key, state.step))
            float(loss)  # the host reads every loss
        return state

    def fused_loop(state):
        chunk = train_chunk(state, key, num_steps, *static.values())
        np.asarray(chunk.losses)  # the host reads the chunk's losses once
        return chunk.state

    loops = {"per-step": per_step_loop, "fused": fused_loop}
    state = init_train_state(model, optimizer)
    for loop in loops.values():  # compile outside the timing
        loop(state)
    best = {name: float("inf") for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            start = time.perf_counter()
            jax.block_until_ready(loop(state))
            best[name] = min(best[name], time.perf_counter() - start)
    n_params = sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    return {
        "model": f"MLP width {model_cfg.hidden_dim} depth {model_cfg.depth}",
        "params": n_params,
        "per_step": num_steps / best["per-step"],
        "fused": num_steps / best["fused"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("outputs/benchmark_train.md"))
    args = parser.parse_args()

    rows = [
        measure(cfg, args.batch_size, args.steps, args.repeats)
        for cfg in (MLPConfig(hidden_dim=128, depth=3), MLPConfig())
    ]
    header = "| model | params | per-step loop (steps/s) | fused loop (steps/s) | ratio |"
    lines = [
        f"Training throughput, batch {args.batch_size}, {args.steps} steps, best of "
        f"{args.repeats}, {jax.devices()[0].platform.upper()} ({jax.device_count()} device).",
        "",
        header,
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['per_step']:.0f} | {r['fused']:.0f} "
            f"| {r['fused'] / r['per_step']:.2f}x |"
        )
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
