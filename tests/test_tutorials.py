"""Every tutorial under tutorials/ runs in its short mode and prints figures that are right.

A tutorial is run as ``__main__`` in a fresh namespace (what ``python tutorials/NAME.py`` or a
notebook's kernel runs), with ``JAX_GEN_TUTORIAL_QUICK=1`` (fewer training steps and points)
and its pictures written under ``JAX_GEN_TUTORIAL_OUT``. Each test then checks figures the
tutorial printed against what the story claims, and that its pictures were written.
"""

import contextlib
import io
import os
import re
import runpy
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"


def run_tutorial(name: str, out: Path) -> str:
    """Runs tutorials/<name>.py in its short mode; returns what it printed.

    It runs in this process, in a fresh namespace as ``__main__``, the way a notebook's kernel
    runs the cells one after the other: the tutorials share the process's imports and compiled
    programs instead of paying for them six times.
    """
    settings = {"JAX_GEN_TUTORIAL_QUICK": "1", "JAX_GEN_TUTORIAL_OUT": str(out)}
    saved = {name: os.environ.get(name) for name in settings}
    here = os.getcwd()
    printed = io.StringIO()
    os.environ.update(settings)
    os.chdir(out)
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(str(TUTORIALS / f"{name}.py"), run_name="__main__")
    finally:
        os.chdir(here)
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value
    return printed.getvalue()


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


def test_01_ddpm_from_scratch(tmp_path):
    printed = run_tutorial("01_ddpm_from_scratch", tmp_path)
    # The seed-style chain ends far from noise: abar_T = prod(1 - beta), not ~0.
    seed_abar = np.prod(1 - np.linspace(1e-4, 0.02, 50, dtype=np.float64))
    assert abs(figure(printed, r"abar at the last step: seed-style ([\d.]+)") - seed_abar) < 1e-4
    # The library's chain ends at exp(-(beta_min + beta_max) / 2) whatever T.
    library_abar = np.exp(-(0.1 + 20.0) / 2)
    last = figure(printed, r"abar at the last step: seed-style [\d.]+, library ([\d.e+-]+)")
    assert abs(last - library_abar) < 1e-6
    for steps in (50, 100, 300, 1000):
        value = figure(printed, rf"chain of T = +{steps}: abar_T = ([\d.e+-]+)")
        assert abs(value - library_abar) < 1e-7, steps
    # Hand-written formulas against the library (float32 rounding only).
    assert figure(printed, r"recursion against the closed form: max difference (\S+)") < 1e-5
    assert figure(printed, r"schedule against the hand-written one: max difference (\S+)") < 1e-6
    assert figure(printed, r"posterior step, library against the formula: max diff\w* (\S+)") < 1e-5
    assert figure(printed, r"lands exactly on x: max \|z_0 - x\| = ([\d.e+-]+)") < 1e-6
    assert figure(printed, r"max difference per point ([\d.e+-]+)") < 1e-5
    # The chain run step by step has the closed form's noise level sqrt(1 - abar_T).
    assert abs(figure(printed, r"sqrt\(abar_T\) x = ([\d.]+)") - np.sqrt(1 - seed_abar)) < 0.04
    # Its last step is far from N(0, I), the library's is at the floor.
    seed_far = figure(printed, r"z_T against N\(0, I\), sliced W2: seed-style ([\d.]+)")
    library_far = figure(printed, r"z_T against N\(0, I\), sliced W2: library ([\d.]+)")
    normal_floor = figure(printed, r"sliced W2: library [\d.]+ \(floor ([\d.]+)")
    assert seed_far > 5 * normal_floor and library_far < 1.5 * normal_floor
    # Both ancestral samplers, by hand and the library's, land on the moons.
    floor = figure(printed, r"samples against fresh data, .*\(floor ([\d.]+)\)")
    hand = figure(printed, r"sliced W2: by hand ([\d.]+)")
    library = figure(printed, r"sliced W2: by hand [\d.]+, library ([\d.]+)")
    assert hand < 2 * floor and library < 2 * floor
    # With the ideal denoiser the library's chain lands on the data; the seed-style chain only
    # from its own q(z_T), not from N(0, I).
    ideal_library = figure(printed, r"library chain from N\(0, I\): ([\d.]+)")
    ideal_seed = figure(printed, r"seed-style chain from N\(0, I\): ([\d.]+)")
    ideal_seed_true = figure(printed, r"seed-style chain from its own q\(z_T\): ([\d.]+)")
    assert ideal_library < 1.5 * floor and ideal_seed_true < 1.5 * floor
    assert ideal_seed > 4 * floor
    assert_pictures(
        tmp_path / "01_ddpm_from_scratch",
        [
            "abar.png",
            "last_step.png",
            "posterior.png",
            "loss.png",
            "sampling.png",
            "seed_style_samples.png",
        ],
    )


def test_02_flow_matching(tmp_path):
    printed = run_tutorial("02_flow_matching", tmp_path)
    # The path, the Euler loop and the change of time between the two paths, by hand and by
    # the library.
    assert figure(printed, r"conditional velocity, library against .*: max difference (\S+)") < 1e-6
    assert figure(printed, r"Euler by hand against the library's sampler: max diff\w* (\S+)") < 1e-5
    assert figure(printed, r"rescaled DDPM path at matched times: max difference (\S+)") < 1e-5
    assert figure(printed, r"log\(alpha / sigma\) of the two at matched times: .* (\S+)") < 1e-3
    # The closed-form marginal velocity carries noise onto the mixture: a classifier cannot
    # tell its samples from data (0.5), and no network's loss is below the exact field's.
    assert figure(printed, r"exact marginal velocity: C2ST ([\d.]+)") < 0.55
    network = figure(printed, r"loss on a fresh batch: network ([\d.]+)")
    exact = figure(printed, r"loss on a fresh batch: network [\d.]+, exact field ([\d.]+)")
    assert exact < network < 1.1 * exact
    # Trained on the conditional targets, the network is much closer to the marginal field
    # than the targets themselves are.
    gap = figure(printed, r"RMS distance to the exact field: network ([\d.]+)")
    spread = figure(printed, r"conditional targets x - eps ([\d.]+)")
    assert gap < 0.6 * spread
    # Each network under its own sampler and the other strategy's lands on the data.
    for line in (
        "flow matching network, Euler (its own)",
        "flow matching network, DDPM-style ancestral",
        "DDPM network, ancestral (its own)",
        "DDPM network, Euler on its ODE",
    ):
        assert figure(printed, re.escape(line) + r" sampler: C2ST ([\d.]+)") < 0.68, line
    assert_pictures(
        tmp_path / "02_flow_matching",
        [
            "paths.png",
            "marginal_field.png",
            "training.png",
            "euler.png",
            "one_path.png",
            "cross_sampling.png",
        ],
    )


def test_03_x_eps_v(tmp_path):
    printed = run_tutorial("03_x_eps_v", tmp_path)
    # The conversions by hand against the library's, their round trips, and the error
    # amplification through them against the closed-form table.
    assert figure(printed, r"linear-path conversions, library against .*: max diff (\S+)") < 1e-6
    for path in ("linear", "DDPM"):
        line = re.search(rf"round trip on the {path} path.*", printed)
        assert line, path
        errors = [float(e) for e in re.findall(r"(?:x|eps|v) (\S+?)(?:,|$)", line.group(0))]
        assert len(errors) == 3 and max(errors) < 5e-5, line.group(0)
    assert figure(printed, r"against the table: max relative diff (\S+)") < 1e-3
    t = figure(printed, r"an error in eps becomes [\d.]+ times as large in x at t = ([\d.]+)")
    factor = figure(printed, r"an error in eps becomes ([\d.]+) times as large in x")
    assert abs(factor - (1 - t) / t) < 0.005 * factor  # t is printed to 4 digits
    # The JiT toy: at D = 2 every prediction draws the roll; at D = 128 x-prediction keeps it
    # on the plane, eps- and v-prediction leave the samples far off it.
    cells = {
        (int(d), p): (float(ratio), float(off))
        for d, p, ratio, off in re.findall(
            r"D = +(\d+), +(\w+)-prediction: plane SW2 ([\d.]+)x its floor, off-plane ([\d.]+)",
            printed,
        )
    }
    assert len(cells) == 6, cells
    for prediction in ("x", "eps", "v"):
        assert cells[2, prediction][0] < 2.5, (prediction, cells[2, prediction])
    x_ratio, x_off = cells[128, "x"]
    assert x_ratio < 2.5 and x_off < 0.1
    for prediction in ("eps", "v"):
        ratio, off = cells[128, prediction]
        assert ratio > 2 * x_ratio and off > 5, (prediction, ratio, off)
    assert_pictures(tmp_path / "03_x_eps_v", ["amplification.png", "ambient_dim.png"])


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


def test_05_guidance(tmp_path):
    printed = run_tutorial("05_guidance", tmp_path)
    rows = {}
    for match in re.finditer(
        r"w = ([\d.]+) (network|exact) +NFE +(\d+): on class ([\d.]+), spread ([\d.]+|nan), "
        r"outward shift ([+-](?:[\d.]+|nan)), sliced W2 ([\d.]+) \(floor ([\d.]+)\)",
        printed,
    ):
        w, name = float(match.group(1)), match.group(2)
        rows[name, w] = [float(match.group(i)) for i in range(3, 9)]
    assert len(rows) == 6, printed
    for name in ("network", "exact"):
        nfe, share, spread, shift, distance, floor = zip(
            *(rows[name, w] for w in (0, 1, 3)), strict=True
        )
        # Guidance costs two network calls per evaluation; w = 0 and w = 1 one each.
        assert nfe == (16, 16, 32)
        # w = 0 ignores the class: a quarter of the samples land on it, its weight in the
        # mixture (binomial SE at 500 samples: 0.02); w = 1 and guided w = 3 land on it.
        assert 0.17 < share[0] < 0.33, name
        assert share[1] > 0.97 and share[2] > 0.97, name
        # Guidance sharpens the class and pushes it away from the others.
        assert spread[2] < spread[1] - 0.07, name
        assert shift[2] > shift[1] + 0.2, name
        # The conditional model is near the class's data, guided samples farther from it.
        assert distance[1] < 3 * floor[1], name
        assert distance[2] > 3 * distance[1], name
    # The exact conditional flow (w = 1) ends on N(c_0, 0.3^2 I): its spread and centre.
    assert abs(rows["exact", 1][2] - 0.3) < 0.03
    assert abs(rows["exact", 1][3]) < 0.05
    # The exact guidance term pushes harder on the side facing the other classes at t = 0.2,
    # the same everywhere at t = 0, and not at all once the classes are apart (t = 0.9).
    term = {
        float(m.group(1)): [float(m.group(i)) for i in (2, 3, 4)]
        for m in re.finditer(r"\n  (\d\.\d) +(-?[\d.]+) +(-?[\d.]+) +(-?[\d.]+)", printed)
    }
    assert term[0.2][0] > 2 * term[0.2][2] > 0
    np.testing.assert_allclose(term[0.0], 3 * np.sqrt(2), atol=0.01)  # |c_0|, the push at t = 0
    np.testing.assert_allclose(term[0.9], 0, atol=0.01)
    assert_pictures(tmp_path / "05_guidance", ["guided_samples.png", "guidance_sweep.png"])


def test_06_one_step(tmp_path):
    printed = run_tutorial("06_one_step", tmp_path)
    # Optimal transport pairs are shorter and cross far less than independent ones.
    pattern = r"{}\s*: mean squared length ([\d.]+), (\d+) crossing pairs"
    independent = re.search(pattern.format("independent"), printed)
    ot_pairs = re.search(pattern.format("optimal transport"), printed)
    assert float(ot_pairs.group(1)) < 0.6 * float(independent.group(1))
    assert int(ot_pairs.group(2)) < int(independent.group(2)) / 5
    # One Euler step of independent flow matching lands on the data's mean, v(0, z) = E[x] - z.
    point = r"mean \(([+-][\d.]+), ([+-][\d.]+)\), std ([\d.]+)"
    data = [float(v) for v in re.search(r"data: " + point, printed).groups()]
    step = [float(v) for v in re.search(r"one Euler step: " + point, printed).groups()]
    assert abs(step[0] - data[0]) < 0.3 and abs(step[1] - data[1]) < 0.3
    assert step[2] < 0.4 * data[2]
    # C2ST at 1 and 2 NFE: every straightening method beats flow matching's one step by far.
    floor = figure(printed, r"noise floor: C2ST of a second fresh draw ([\d.]+)")
    assert 0.45 < floor < 0.55
    c2st = {
        m.group(1): (float(m.group(2)), float(m.group(3)))
        for m in re.finditer(r"\n  (.+?) +NFE 1: ([\d.]+) ± [\d.]+ +NFE 2: ([\d.]+)", printed)
    }
    assert set(c2st) == {"flow matching", "ot", "reflow", "shortcut"}
    assert c2st["flow matching"][0] > 0.85
    assert c2st["ot"][0] < c2st["flow matching"][0] - 0.15
    assert c2st["reflow"][0] < c2st["flow matching"][0] - 0.15
    assert c2st["shortcut"][0] < c2st["flow matching"][0] - 0.1
    for one, two in c2st.values():
        assert two < one + 0.02
    many = figure(printed, r"flow matching, 50 Euler steps \(NFE 50\): ([\d.]+)")
    assert many < c2st["flow matching"][1] - 0.1
    assert_pictures(
        tmp_path / "06_one_step",
        ["crossing_paths.png", "one_step_quality.png", "one_step_samples.png"],
    )
