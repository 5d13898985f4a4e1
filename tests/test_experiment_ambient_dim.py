"""scripts/experiment_ambient_dim.py runs end to end at a tiny size and writes its outputs."""

import importlib.util
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jax_gen.parameterization import PARAMETERIZATIONS, path_coefficients
from jax_gen.schedules import LinearPath

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "experiment_ambient_dim.py"


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("experiment_ambient_dim", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_grid_writes_a_finite_table_and_a_figure(experiment, tmp_path, capsys):
    table, figure = tmp_path / "table.md", tmp_path / "grid.png"
    # Tiny and fast: the point is that every cell runs and is measured, not its quality.
    argv = ["--dims", "2", "8", "--steps", "50", "--batch", "64", "--width", "32", "--depth", "2"]
    argv += ["--sampling-steps", "10", "--num-samples", "256", "--repeats", "2"]
    argv += ["--clip-min", "0.05", "--output", str(table), "--figure", str(figure)]
    cells = experiment.main(argv)

    assert [(c.dim, c.prediction) for c in cells] == [
        (dim, p) for dim in (2, 8) for p in experiment.PREDICTIONS
    ]
    rows = [line for line in table.read_text().splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(cells)
    for row, cell in zip(rows, cells, strict=True):
        fields = [f.strip() for f in row.strip("|").split("|")]
        assert (int(fields[0]), fields[1]) == (cell.dim, cell.prediction)
        numbers = [float(f) for f in fields[2:]]
        assert len(numbers) == 7
        assert all(math.isfinite(x) for x in numbers), row
        assert numbers[1] > 0 and numbers[3] > 0  # the floors
    # The table is printed as it goes, and the data of D = 2 has nothing off the plane.
    printed = capsys.readouterr().out
    assert all(row in printed for row in rows)
    assert all(c.off_plane == 0.0 for c in cells if c.dim == 2)
    assert all(c.plane_samples.shape == (256, 2) for c in cells)

    with Image.open(figure) as image:
        image.load()
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[1] > pixels.shape[0]  # two rows (D) by three columns (predictions)
    assert pixels.min() < 128  # something is drawn


def test_help_and_bad_dims(experiment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiment.parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "--clip-min" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        experiment.parse_args(["--dims", "1"])


@pytest.mark.parametrize("prediction", ["x", "eps", "v"])
def test_clip_min_swaps_only_the_singular_parameterizations(experiment, prediction):
    plain = experiment.make_strategy(prediction, 10, clip_min=0.0)
    assert plain.parameterization is PARAMETERIZATIONS[prediction]
    assert plain.loss_target == "v"
    clipped = experiment.make_strategy(prediction, 10, clip_min=0.05)
    if prediction == "v":
        assert clipped.parameterization is PARAMETERIZATIONS["v"]
        return
    assert isinstance(clipped.parameterization, experiment.CLIPPED[prediction])
    output, z = jax.random.normal(jax.random.key(0), (2, 4))
    # Away from the clip both give the same velocity; at the singular end the clipped one is
    # 1 / 0.05 = 20 times the raw difference, not 1 / 1e-3 = 1000 times.
    for t in (0.3, 0.7):
        c = path_coefficients(LinearPath(), jnp.float32(t))
        np.testing.assert_allclose(
            clipped.parameterization.to_velocity(output, z, c),
            plain.parameterization.to_velocity(output, z, c),
            rtol=1e-5,
        )
    # At the singular end the clipped division is by 0.05, not by the library's 1e-3.
    if prediction == "x":
        c = path_coefficients(LinearPath(), jnp.float32(1.0))
        expected = output - (z - c.alpha * output) / 0.05
    else:
        c = path_coefficients(LinearPath(), jnp.float32(0.0))
        expected = (z - c.sigma * output) / 0.05 - output
    velocity = clipped.parameterization.to_velocity(output, z, c)
    np.testing.assert_allclose(velocity, expected, rtol=1e-5)
    raw = plain.parameterization.to_velocity(output, z, c)
    assert np.max(np.abs(raw)) > 10 * np.max(np.abs(velocity))
