"""Every tutorial under tutorials/ runs in its short mode and prints figures that are right.

A tutorial is run as a user runs it (``python tutorials/NAME.py``, a fresh process), with
``JAX_GEN_TUTORIAL_QUICK=1`` (fewer training steps and points) and its pictures written under
``JAX_GEN_TUTORIAL_OUT``. Each test then checks figures the tutorial printed against what the
story claims, and that its pictures were written.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"


def run_tutorial(name: str, out: Path) -> str:
    """Runs tutorials/<name>.py in its short mode; returns what it printed."""
    env = {**os.environ, "JAX_GEN_TUTORIAL_QUICK": "1", "JAX_GEN_TUTORIAL_OUT": str(out)}
    env.setdefault("MPLBACKEND", "Agg")
    done = subprocess.run(
        [sys.executable, str(TUTORIALS / f"{name}.py")],
        env=env,
        cwd=out,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def figure(printed: str, pattern: str) -> float:
    """The number the first line matching ``pattern`` (a regex with one group) printed."""
    match = re.search(pattern, printed)
    assert match, f"no line matches {pattern!r} in:\n{printed}"
    return float(match.group(1))


def assert_pictures(folder: Path, names: list[str]) -> None:
    """Each of ``names`` is a PNG in ``folder`` with something drawn on it."""
    for name in names:
        with Image.open(folder / name) as image:
            image.load()
            assert image.format == "PNG", name
            pixels = np.asarray(image.convert("L"))
        assert pixels.min() < 128 and pixels.max() > 128, f"{name} is blank"


def test_every_tutorial_has_a_test():
    here = Path(__file__).read_text()
    for path in sorted(TUTORIALS.glob("[0-9][0-9]_*.py")):
        assert f'run_tutorial("{path.stem}"' in here, f"{path.name} is not run by the tests"


# --- tutorials 01-03 ---


# --- tutorials 04-06 ---


def test_04_samplers_and_nfe(tmp_path):
    printed = run_tutorial("04_samplers_and_nfe", tmp_path)
    # The price list: network evaluations per step, as each solver declares it.
    for name, cost in [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4), ("dpm-solver", 1)]:
        assert figure(printed, rf"{name} +NFE per step: (\d+)") == cost
    assert re.search(r"adaptive +NFE per step: as many as it needs", printed)
    # Orders of accuracy against the exact flow map of Gaussian data: Euler 1, Heun 2, midpoint
    # at least its 2 (3 on this field), RK4 at least 4 (steeper at these few steps).
    order = {
        name: figure(printed, rf"\n  {name} +NFE.*measured order (-?[\d.]+)")
        for name in ("euler", "midpoint", "heun", "rk4")
    }
    assert 0.85 < order["euler"] < 1.15
    assert 1.7 < order["heun"] < 2.4
    assert 1.8 < order["midpoint"] < 3.3
    assert order["rk4"] > 3.5
    # Midpoint at 8 NFE is much closer to the exact map than Euler at the same cost.
    euler_8 = figure(printed, r"\n  euler +NFE  8: ([\d.e+-]+)")
    midpoint_8 = figure(printed, r"\n  midpoint +NFE  8: ([\d.e+-]+)")
    assert midpoint_8 < euler_8 / 10
    # The trained model: the noise floor is a fresh draw's; more NFE is better for every
    # sampler; DPM-Solver's log-SNR steps are the worst of the three at 4 NFE.
    floor = figure(printed, r"noise floor: C2ST of a second fresh draw ([\d.]+)")
    assert 0.46 < floor < 0.54
    c2st = {}
    for name in ("euler", "midpoint", "dpm-solver"):
        row = re.search(rf"\n  {name} +([\d.]+) ± [\d.]+ +([\d.]+) ± [\d.]+\n", printed)
        assert row, f"no C2ST row for {name}"
        c2st[name] = (float(row.group(1)), float(row.group(2)))  # NFE 4, NFE 16
        assert c2st[name][1] < c2st[name][0] - 0.05, name
        assert c2st[name][1] < 0.65, name
    assert c2st["dpm-solver"][0] > max(c2st["euler"][0], c2st["midpoint"][0]) + 0.05
    adaptive_nfe = figure(printed, r"adaptive \(tolerance 1e-3\) at NFE (\d+)")
    assert adaptive_nfe > 16
    assert_pictures(
        tmp_path / "04_samplers_and_nfe",
        ["order_of_accuracy.png", "quality_vs_nfe.png", "samples_by_nfe.png"],
    )
