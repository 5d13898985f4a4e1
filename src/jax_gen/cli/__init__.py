"""The command line: ``train``, ``generate``, ``animate``, ``evaluate``, ``plot-field`` and
``plot-path``.

The only package that prints, seeds and touches paths. Parsing needs only the configs
(:mod:`jax_gen.cli.commands`); a command's runner, and with it JAX, is imported once the
command line has been parsed, so ``--help`` answers at once. Every bad input ends in one line on
stderr and exit code 2, before any output file is touched.

    jax-gen train strategy:ddpm model:mlp dataset:cat --train-steps 3000
    jax-gen generate --model-path outputs/cat_ddpm.eqx --num-samples 2000
    jax-gen animate --model-path outputs/cat_ddpm.eqx --fps 30
    jax-gen evaluate --model-path outputs/cat_ddpm.eqx --steps 25 50 100
    jax-gen plot-field --model-path outputs/cat_ddpm.eqx --times 0 0.5 0.9 1
    jax-gen plot-path --model-path outputs/gaussian-mixture-1d_ddpm.eqx
"""

import importlib
import os
import sys

from jax_gen.cli.commands import (
    AnimateCommand,
    Command,
    EvaluateCommand,
    GenerateCommand,
    PlotFieldCommand,
    PlotPathCommand,
    TrainCommand,
    parse,
)
from jax_gen.config import validate_all

RUNNERS = {
    TrainCommand: "jax_gen.cli.train:run_train",
    GenerateCommand: "jax_gen.cli.sample:run_generate",
    AnimateCommand: "jax_gen.cli.sample:run_animate",
    EvaluateCommand: "jax_gen.cli.evaluate:run_evaluate",
    PlotFieldCommand: "jax_gen.cli.field:run_plot_field",
    PlotPathCommand: "jax_gen.cli.path:run_plot_path",
}
"""The runner of each command, as ``module:function``, imported only when it runs."""


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Parses the command line and runs the command. Bad input: one line on stderr, exit 2."""
    command = parse(argv)
    try:
        validate_all(command)
        module, function = RUNNERS[type(command)].split(":")
        getattr(importlib.import_module(module), function)(command)
    except (ValueError, OSError) as err:
        if os.environ.get("JAX_GEN_DEBUG"):
            raise
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)


__all__ = [
    "AnimateCommand",
    "Command",
    "EvaluateCommand",
    "GenerateCommand",
    "PlotFieldCommand",
    "PlotPathCommand",
    "TrainCommand",
    "main",
    "parse",
]
