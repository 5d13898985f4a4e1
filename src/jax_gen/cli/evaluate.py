"""``jax-gen evaluate``: the report of :func:`jax_gen.evaluation.evaluate`, printed, written as
JSON, and the density heat map."""

import json
from pathlib import Path

from jax_gen import plots
from jax_gen.cli.commands import EvaluateCommand
from jax_gen.cli.common import beside, describe, load_for_sampling, say
from jax_gen.config import name_of
from jax_gen.data import from_plane, get_batch, is_planar
from jax_gen.engine import check_dataset
from jax_gen.evaluation import METRICS, density_panels, evaluate, likelihood_keys
from jax_gen.fields import plane
from jax_gen.files import atomic_output, check_output_path
from jax_gen.metrics import format_report


def run_evaluate(cmd: EvaluateCommand) -> None:
    options = cmd.sampling
    json_path = cmd.output_json_path or beside(options.model_path, ".evaluate.json")
    density_path = cmd.output_density_path or beside(options.model_path, ".density.png")
    check_output_path(json_path, "--output-json-path")
    cfg, strategy, model, data_dim, sampler = load_for_sampling(options)
    check_dataset(cfg.dataset)
    nll_points = cmd.nll_points
    if nll_points and not strategy.has_velocity():
        say(
            f"note: no likelihood for {name_of(cfg.strategy)}, which has no instantaneous velocity "
            "for the probability-flow ODE (no NLL, no density map)"
        )
        nll_points = 0
    if nll_points and not strategy.has_source_density():
        say(
            f"note: no likelihood from the source {name_of(cfg.strategy.source)}, whose density "
            "is not known in closed form (no NLL, no density map)"
        )
        nll_points = 0
    heat_map = nll_points > 0 and cmd.density_resolution > 0 and is_planar(cfg.dataset)
    if heat_map:
        check_output_path(density_path, "--output-density-path")
    report = evaluate(
        strategy,
        model,
        cfg,
        data_dim,
        sampler,
        seed=options.seed,
        steps=cmd.steps,
        num_samples=cmd.num_samples,
        num_eval_samples=cmd.num_eval_samples,
        batch_size=options.batch_size,
        repeats=cmd.repeats,
        condition=options.condition,
        nll_points=nll_points,
        estimator=cmd.estimator,
        num_probes=cmd.num_probes,
    )
    report = {"checkpoint": str(options.model_path), **report}
    rows, nll = report["rows"], report.get("nll_nats_per_dim")
    if heat_map:
        keys = likelihood_keys(options.seed)
        window = get_batch(keys.data, cfg.dataset, report["num_eval_samples"])
        fresh = plane(window, cfg.dataset)
        grid, bounds = plots.density_grid(fresh, cmd.density_resolution)
        panels = density_panels(
            strategy,
            model,
            cfg.dataset,
            from_plane(grid, cfg.dataset),
            key=keys.probes,
            estimator=cmd.estimator,
            num_probes=cmd.num_probes,
        )
        title = f"{name_of(cfg.strategy)}, {cfg.strategy.prediction}-prediction on "
        title += f"{name_of(cfg.dataset)}: density by the probability-flow ODE"
        plots.save_density_png(density_path, panels, bounds, title=title)
    with atomic_output(json_path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")

    say(f"evaluated {options.model_path}: {describe(cfg)} on {name_of(cfg.dataset)}")
    if report["num_eval_samples"] < cmd.num_samples:
        say(
            f"each row samples {cmd.num_samples:,} points; its figures are computed on the "
            f"first {report['num_eval_samples']:,}"
        )
    say(format_table(rows, sampler.sampler, cmd.num_samples))
    for row in rows:
        say(f"{row['steps']} steps:\n" + format_report(row["quality"]))
    if nll_points:
        line = f"NLL {nll['mean']:.3f} ± {nll['stderr']:.3f} nats/dim on {nll_points} "
        line += f"fresh points ({cmd.estimator} divergence, {nll['seconds']:.1f} s)"
        if "data_entropy" in nll:
            entropy = nll["data_entropy"]
            line += f"; data entropy {entropy['mean']:.3f} ± {entropy['stderr']:.3f} nats/dim"
        say(line)
    say(f"figures      {json_path}")
    if heat_map:
        say(f"density map  {density_path}")


def format_table(rows: list[dict], sampler: str, num_samples: int) -> str:
    """The rows as a markdown table; each distance as `value (floor, ratio)`."""
    header = ["sampler", "steps", "NFE", "time (s)", "samples/s"] + [
        f"{name} (floor, ratio)" for name in METRICS
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [sampler, str(row["steps"]), str(row["nfe"]), f"{row['seconds']:.3f}"]
        cells.append(f"{row['samples_per_s']:.0f}")
        for name in METRICS:
            m = row[name]
            cells.append(f"{m['distance']:.4f} ({m['floor']:.4f}, {m['ratio']:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
