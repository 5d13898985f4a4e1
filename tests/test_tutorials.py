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
