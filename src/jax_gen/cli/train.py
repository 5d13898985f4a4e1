"""``jax-gen train``: fit a config, save its checkpoint, loss curve and samples figure."""

import dataclasses
import sys
import time
from pathlib import Path

import jax
from tqdm import tqdm

from jax_gen import checkpoint, plots
from jax_gen.cli.commands import TrainCommand
from jax_gen.cli.common import (
    beside,
    check_agrees,
    count_title,
    default_model_path,
    describe,
    open_rerun,
    quality_line,
    save_samples_figure,
    say,
)
from jax_gen.config import ExperimentConfig, NormalSourceConfig, StrategyConfig, name_of
from jax_gen.data import data_dim as dataset_dim
from jax_gen.data import is_planar
from jax_gen.engine import (
    Interrupted,
    check_dataset,
    check_source,
    fit,
    is_reflow,
    load_teacher,
    run_keys,
)
from jax_gen.evaluation import summarize_fit
from jax_gen.fields import plane
from jax_gen.files import check_output_path
from jax_gen.metrics import format_report
from jax_gen.parallel import check_batch_size, data_mesh, num_devices
from jax_gen.sampling import sample
from jax_gen.train import check_conditioning


def strategy_of(cmd: TrainCommand) -> StrategyConfig:
    """The strategy config with the command's source (``source:`` applies to flow matching,
    whose config carries it; the command's validation refuses it for the others)."""
    if isinstance(cmd.source, NormalSourceConfig):
        return cmd.strategy
    return dataclasses.replace(cmd.strategy, source=cmd.source)


def run_train(cmd: TrainCommand) -> None:
    if cmd.distributed:  # before anything touches a device
        jax.distributed.initialize(cmd.coordinator_address, cmd.num_processes, cmd.process_id)
    writer = jax.process_index() == 0  # one process writes the files
    cfg = ExperimentConfig(strategy_of(cmd), cmd.model, cmd.dataset, cmd.optimizer, cmd.train)
    model_path = cmd.model_path or default_model_path(cfg)
    defaults = TrainCommand()
    saved = None
    if cmd.resume:
        saved = checkpoint.load(model_path)
        check_agrees(cfg.strategy, defaults.strategy, saved.config.strategy, "strategy")
        for group in ("model", "dataset", "optimizer"):
            check_agrees(
                getattr(cmd, group), getattr(defaults, group), getattr(saved.config, group), group
            )
        check_agrees(cmd.train, defaults.train, saved.config.train, "train")
        cfg = saved.config
    data_dim = saved.data_dim if saved else dataset_dim(cfg.dataset)
    loss_path, samples_path = beside(model_path, ".loss.png"), beside(model_path, ".samples.png")
    for path, flag in (
        (model_path, "--model-path"),
        (loss_path, "loss curve"),
        (samples_path, "sample plot"),
    ):
        check_output_path(path, flag)
    check_dataset(cfg.dataset)
    check_source(cfg)
    check_conditioning(cfg.dataset, cfg.train)
    if is_reflow(cfg):
        load_teacher(cfg)  # its errors now, before training starts
        if Path(cfg.strategy.teacher_path).resolve() == Path(model_path).resolve():
            raise ValueError(
                f"--model-path {model_path} is the reflow teacher's checkpoint; give another"
            )
    mesh = data_mesh(cmd.num_devices)
    check_batch_size(cfg.train.batch_size, mesh)

    keys = run_keys(cfg.train.seed)
    first_step = saved.step if saved else 0
    if saved:
        say(f"resuming {model_path} at step {first_step}/{cfg.train.train_steps}")
    rerun = open_rerun(cmd.rerun, model_path, "train") if writer else None
    devices = num_devices(mesh)
    say(
        f"training {describe(cfg)} on {name_of(cfg.dataset)} for {cfg.train.train_steps} steps"
        + (f" on {devices} devices" if devices > 1 else "")
    )
    start = finish = time.perf_counter()
    bar = tqdm(
        total=cfg.train.train_steps, initial=first_step, unit="step", disable=None, leave=False
    )

    def on_chunk(progress) -> None:
        nonlocal finish
        step, chunk_losses = progress.step, progress.losses
        rate = (step - first_step) / (time.perf_counter() - start)
        bar.update(chunk_losses.size)
        bar.set_postfix(loss=f"{chunk_losses.mean():.4f}", steps_per_s=f"{rate:.0f}")
        say(
            f"step {step:>6}/{cfg.train.train_steps}  "
            f"loss {chunk_losses.mean():.4f}  {rate:.0f} steps/s"
        )
        if rerun:
            rerun[0].log_losses(step - chunk_losses.size, chunk_losses)
        if rerun and is_planar(cfg.dataset):
            snapshot = sample(
                progress.strategy,
                progress.state.ema_model,
                jax.random.fold_in(keys.sample, step),
                500,
                data_dim,
            ).samples
            rerun[0].log_points("train/samples", step, plane(snapshot, cfg.dataset))
        finish = time.perf_counter()

    try:
        state = fit(
            cfg,
            state=saved,
            mesh=mesh,
            on_chunk=on_chunk,
            checkpoint_path=model_path,
            checkpoint_every=cmd.checkpoint_every,
        )
    except Interrupted as interrupt:
        bar.close()
        interrupt.state.save(model_path)
        if rerun:
            rerun[0].close()
        print(
            f"interrupted: saved step {interrupt.state.step} to {model_path}; continue with "
            f"`train --resume --model-path {model_path}`",
            file=sys.stderr,
        )
        sys.exit(130)
    except Exception as err:
        bar.close()
        if rerun:  # an unfinished recording is discarded: an older one at its path stays
            rerun[0].__exit__(type(err), err, err.__traceback__)
        raise
    bar.close()
    elapsed = finish - start
    all_losses = state.losses
    if writer:
        plots.save_loss_curve(
            loss_path, all_losses, title=f"{describe(cfg)} on {name_of(cfg.dataset)}"
        )

    summary = summarize_fit(state, cmd.num_samples, num_eval_samples=cmd.num_eval_samples)
    found = summary.comparison
    shown = len(found.data)
    if writer:
        save_samples_figure(
            samples_path,
            summary.samples[:shown],
            found.data,
            cfg,
            count_title(describe(cfg), shown, cmd.num_samples),
            None if summary.labels is None else summary.labels[:shown],
            found.data_labels,
        )
    if rerun:
        rerun[0].close()

    trained = state.step - first_step
    say(f"trained {trained} steps in {elapsed:.1f} s ({trained / max(elapsed, 1e-9):.0f} steps/s)")
    if all_losses.size:
        tail = all_losses[-100:]
        say(f"final loss {tail.mean():.4f} (mean of the last {tail.size} steps)")
    say(quality_line(found.distance, found.floor, shown, cmd.num_samples))
    say(format_report(found.support))
    say(f"checkpoint   {model_path}")
    say(f"loss curve   {loss_path}")
    say(f"samples      {samples_path}")
    if rerun:
        say(f"rerun        {rerun[1]}")
