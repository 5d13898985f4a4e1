"""The command line, end to end in a temporary folder, with tiny models and few steps."""

import json
import math
import subprocess
import sys
import typing
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from helpers import FAST
from helpers import run_cli as run
from PIL import Image, ImageSequence

from jax_gen import animation, checkpoint, config, engine, evaluation, plots
from jax_gen.cli import main
from jax_gen.cli import sample as cli_sample
from jax_gen.cli.common import save_samples_figure
from jax_gen.config import (
    DDPMStrategyConfig,
    DigitsConfig,
    ExperimentConfig,
    GaussianMixtureConfig,
    MLPConfig,
    OptimizerConfig,
    SamplerConfig,
    TrainConfig,
    deferred_validation,
    validate_all,
)
from jax_gen.recording import read_recording
from jax_gen.sampling import sample
from jax_gen.strategies import create_strategy

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model:mlp", "--model.hidden-dim", "16", "--model.depth", "2"]


def train(tmp_path, capsys, *extra, name="model.eqx", strategy=("strategy:ddpm",)):
    path = tmp_path / name
    code, out, err = run(
        [
            "train",
            *strategy,
            *TINY,
            "dataset:gaussian-mixture",
            *FAST,
            "--model-path",
            path,
            *extra,
        ],
        capsys,
    )
    assert code == 0, err
    return path, out + err


def weights(path):
    state = checkpoint.load(path).state
    return jax.tree.leaves(eqx.filter(state, eqx.is_array))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


STRATEGIES = [
    ("strategy:ddpm", "--strategy.num-transport-steps", "10"),
    ("strategy:flow-matching", "--strategy.num-transport-steps", "8", "--strategy.prediction", "x"),
    (
        "strategy:score-matching",
        "--strategy.num-transport-steps",
        "6",
        "--strategy.langevin-steps",
        "3",
    ),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=["ddpm", "flow-matching", "score-matching"])
def test_train_generate_animate_end_to_end(in_tmp, capsys, strategy):
    path, log = train(in_tmp, capsys, strategy=strategy)
    for suffix in (".eqx", ".loss.png", ".samples.png"):
        assert (in_tmp / f"model{suffix}").exists(), suffix
    assert "sliced W2 to fresh data" in log and str(path) in log
    assert log.count("loss") >= 2  # one line per log interval, not per step

    points = in_tmp / "points.npy"
    code, out, err = run(
        [
            "generate",
            "--model-path",
            path,
            "--num-samples",
            "300",
            "--output-image-path",
            in_tmp / "samples.png",
            "--output-samples-path",
            points,
        ],
        capsys,
    )
    assert code == 0, err
    samples = np.load(points)
    assert samples.shape == (300, 2) and np.all(np.isfinite(samples))
    assert Image.open(in_tmp / "samples.png").size[0] > 100

    gif = in_tmp / "movie.gif"
    code, out, err = run(
        [
            "animate",
            "--model-path",
            path,
            "--num-samples",
            "300",
            "--output-video-path",
            gif,
            "--fps",
            "20",
        ],
        capsys,
    )
    assert code == 0, err
    steps = int(strategy[2])
    with Image.open(gif) as image:
        frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(image)]
        assert image.info["duration"] == 50
    assert len(frames) == steps + 1
    # The last frame shows the generated points: same seed and count as `generate`.
    trajectory_bounds = None
    saved = checkpoint.load(path)
    strategy_obj = create_strategy(saved.config.strategy)
    trajectory = sample(
        strategy_obj,
        saved.state.ema_model,
        evaluation.sampling_keys(0).sample,
        300,
        2,
        keep_trajectory=True,
    ).trajectory
    trajectory = np.asarray(trajectory)
    np.testing.assert_allclose(trajectory[-1], samples, rtol=1e-5, atol=1e-5)
    trajectory_bounds = animation.trajectory_bounds(trajectory)
    size = frames[-1].shape[1]
    rows, cols = animation.point_to_pixel(samples, trajectory_bounds, size)
    plot = frames[-1][animation.CAPTION_HEIGHT :]
    assert np.all(plot[rows, cols] < 128)


def test_same_seed_same_points_file(in_tmp, capsys):
    path, _ = train(in_tmp, capsys)
    files = []
    for name, seed in (("a.npy", 3), ("b.npy", 3), ("c.npy", 4)):
        code, _, err = run(
            [
                "generate",
                "--model-path",
                path,
                "--seed",
                seed,
                "--num-samples",
                "100",
                "--output-samples-path",
                in_tmp / name,
            ],
            capsys,
        )
        assert code == 0, err
        files.append((in_tmp / name).read_bytes())
    assert files[0] == files[1] and files[0] != files[2]
    code, _, err = run(
        [
            "generate",
            "--model-path",
            path,
            "--seed",
            3,
            "--num-samples",
            "100",
            "--output-samples-path",
            in_tmp / "a.csv",
        ],
        capsys,
    )
    assert code == 0, err
    csv = np.loadtxt(in_tmp / "a.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(csv, np.load(in_tmp / "a.npy"), rtol=1e-6)


def test_generate_measures_a_fixed_subsample_and_streams_every_point(
    in_tmp, capsys, trained, monkeypatch
):
    # 50,000 points in batches of 16,384: the figures see the first 10,000 (counted at the
    # metrics' entry), the plot draws them, and the file holds all 50,000 in order.
    measured, plotted = [], []
    for name in ("quality_report", "distance_and_floor"):
        original = getattr(evaluation, name)

        def counting(samples, *args, _original=original, **kwargs):
            measured.append(np.shape(samples)[0])
            return _original(samples, *args, **kwargs)

        monkeypatch.setattr(evaluation, name, counting)
    original_figure = cli_sample.save_samples_figure

    def recording_figure(path, samples, data, cfg, title, *args):
        plotted.append((len(samples), len(data), title))
        original_figure(path, samples, data, cfg, title, *args)

    monkeypatch.setattr(cli_sample, "save_samples_figure", recording_figure)
    points_path = in_tmp / "big.npy"
    argv = ["generate", "--model-path", trained, "--num-sampling-steps", "4"]
    argv += ["--num-samples", "50000", "--batch-size", "16384"]
    code, out, err = run([*argv, "--output-samples-path", points_path], capsys)
    assert code == 0, err
    assert measured == [10000, 10000]
    assert plotted == [(10000, 10000, plotted[0][2])]
    assert plotted[0][2].endswith("(10,000 of 50,000 points)")
    assert "on the first 10,000 of 50,000 points" in out and "n = 10000 samples" in out
    saved = checkpoint.load(trained)
    expected = sample(
        create_strategy(saved.config.strategy),
        saved.state.ema_model,
        evaluation.sampling_keys(0).sample,
        50000,
        2,
        SamplerConfig(num_sampling_steps=4),
        batch_size=16384,
    ).samples
    points = np.load(points_path)
    assert points.shape == (50000, 2) and points.dtype == np.float32
    np.testing.assert_array_equal(points, expected)


def test_interrupt_saves_and_resume_matches_an_uninterrupted_run(in_tmp, capsys, monkeypatch):
    full, _ = train(in_tmp, capsys, "--train-steps", "40", name="full.eqx")

    original = engine.train_chunks

    def interrupted(*args, **kwargs):
        for i, chunk in enumerate(original(*args, **kwargs)):
            if i == 2:
                raise KeyboardInterrupt
            yield chunk

    monkeypatch.setattr(engine, "train_chunks", interrupted)
    path = in_tmp / "part.eqx"
    argv = [
        "train",
        "strategy:ddpm",
        *TINY,
        "dataset:gaussian-mixture",
        *FAST,
        "--train-steps",
        "40",
        "--model-path",
        path,
    ]
    code, _, err = run(argv, capsys)
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert checkpoint.load(path).step == 20
    monkeypatch.setattr(engine, "train_chunks", original)

    code, out, err = run([*argv, "--resume"], capsys)
    assert code == 0, err
    resumed = checkpoint.load(path)
    assert resumed.step == 40
    np.testing.assert_array_equal(resumed.losses, checkpoint.load(full).losses)
    for a, b in zip(weights(full), weights(path), strict=True):
        np.testing.assert_array_equal(a, b)


def test_periodic_checkpoints(in_tmp, capsys, monkeypatch):
    saved_steps = []
    original = checkpoint.save

    def spy(path, config, state, losses, data_dim):
        saved_steps.append(int(state.step))
        return original(path, config, state, losses, data_dim)

    monkeypatch.setattr(checkpoint, "save", spy)
    train(in_tmp, capsys, "--train-steps", "40", "--checkpoint-every", "20")
    assert saved_steps == [20, 40]


def test_rerun_recording_of_training_and_generation(in_tmp, capsys):
    path, log = train(in_tmp, capsys, "--rerun")
    recording = in_tmp / "model.train.rrd"
    assert recording.exists() and str(recording) in log
    contents = read_recording(recording)
    np.testing.assert_allclose(contents["losses"], checkpoint.load(path).losses, rtol=1e-6)
    assert "/train/samples" in contents["entities"] or "train/samples" in contents["entities"]

    code, _, err = run(
        ["generate", "--model-path", path, "--rerun", "--rerun-path", in_tmp / "gen.rrd"], capsys
    )
    assert code == 0, err
    entities = read_recording(in_tmp / "gen.rrd")["entities"]
    assert any("trajectory" in e for e in entities)


# ----------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2, nothing overwritten.
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    path = folder / "model.eqx"
    main(
        [
            "train",
            "strategy:ddpm",
            *TINY,
            "dataset:gaussian-mixture",
            *FAST,
            "--model-path",
            str(path),
        ]
    )
    return path


def assert_clean_failure(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_bad_checkpoints(in_tmp, capsys, trained):
    sentinel = in_tmp / "out.png"
    sentinel.write_bytes(b"keep me")
    header, weights_ = trained.read_bytes().split(b"\n", 1)
    corrupt = in_tmp / "corrupt.eqx"
    corrupt.write_bytes(header + b"\n" + weights_[:10])
    other_version = in_tmp / "v2.eqx"
    other_version.write_bytes(header.replace(b'"version": 1', b'"version": 2') + b"\n" + weights_)
    cases = [
        (in_tmp / "missing.eqx", "not found"),
        (corrupt, "corrupt"),
        (other_version, "version 2"),
    ]
    for command in ("generate", "animate"):
        flag = "--output-image-path" if command == "generate" else "--output-video-path"
        for path, fragment in cases:
            code, _, err = run([command, "--model-path", path, flag, sentinel], capsys)
            assert_clean_failure(code, err, fragment)
            assert sentinel.read_bytes() == b"keep me"


def test_contradicting_architecture_flags(in_tmp, capsys, trained):
    before = trained.read_bytes()
    code, _, err = run(
        ["generate", "--model-path", trained, "model:mlp", "--model.hidden-dim", "64"], capsys
    )
    assert_clean_failure(code, err, "--model.hidden-dim=64", "hidden_dim=16")
    code, _, err = run(["animate", "--model-path", trained, "model:resnet"], capsys)
    assert_clean_failure(code, err, "model:resnet", "model:mlp")
    code, _, err = run(["generate", "--model-path", trained, "strategy:flow-matching"], capsys)
    assert_clean_failure(code, err, "strategy:flow-matching", "strategy:ddpm")
    code, _, err = run(
        ["train", "--resume", "--model-path", trained, "model:mlp", "--model.depth", "5"], capsys
    )
    assert_clean_failure(code, err, "--model.depth=5", "depth=2")
    assert trained.read_bytes() == before
    # Sampling options may differ from the checkpoint.
    code, _, err = run(
        [
            "generate",
            "--model-path",
            trained,
            "strategy:ddpm",
            "--strategy.num-transport-steps",
            "5",
            "--output-image-path",
            in_tmp / "ok.png",
        ],
        capsys,
    )
    assert code == 0, err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--batch-size", "0"], "batch_size=0"),
        (["train", "--train-steps", "-5"], "train_steps=-5"),
        (
            ["train", "strategy:ddpm", "--strategy.num-transport-steps", "0"],
            "num_transport_steps=0",
        ),
        (
            ["train", "strategy:ddpm", "--strategy.beta-min", "5", "--strategy.beta-max", "1"],
            "beta_max=1",
        ),
        (["train", "--log-interval", "0"], "log_interval=0"),
        (["generate", "--model-path", "m.eqx", "--num-samples", "0"], "--num-samples=0"),
        (
            ["generate", "--model-path", "m.eqx", "--num-sampling-steps", "0"],
            "num_sampling_steps=0",
        ),
        (["animate", "--model-path", "m.eqx", "--sampler", "ddim", "--eta", "2"], "eta=2"),
        (["animate", "--model-path", "m.eqx", "--fps", "0"], "--fps=0"),
        (["animate", "--model-path", "m.eqx", "--num-samples", "-1"], "--num-samples=-1"),
        (["generate", "--model-path", "m.eqx", "--output-samples-path", "x.txt"], ".npy or .csv"),
        (["generate", "--model-path", "m.eqx", "--batch-size", "0"], "--batch-size=0"),
        (["generate", "--model-path", "m.eqx", "--num-eval-samples", "0"], "--num-eval-samples=0"),
        (
            ["evaluate", "--model-path", "m.eqx", "--num-eval-samples", "-2"],
            "--num-eval-samples=-2",
        ),
        (["animate", "--model-path", "m.eqx", "--batch-size", "-1"], "--batch-size=-1"),
        (["train", "--num-eval-samples", "0"], "--num-eval-samples=0"),
    ],
)
def test_invalid_values(in_tmp, capsys, argv, fragment):
    code, _, err = run(argv, capsys)
    assert_clean_failure(code, err, fragment)
    assert list(in_tmp.iterdir()) == []


def test_unwritable_or_directory_outputs(in_tmp, capsys, trained):
    (in_tmp / "adir").mkdir()
    blocker = in_tmp / "file"
    blocker.write_text("x")
    cases = [
        ["train", "--model-path", in_tmp / "adir"],
        ["train", "--model-path", blocker / "model.eqx"],
        ["generate", "--model-path", trained, "--output-image-path", in_tmp / "adir"],
        [
            "generate",
            "--model-path",
            trained,
            "--output-samples-path",
            in_tmp / "adir.npy",
            "--output-image-path",
            blocker / "x.png",
        ],
        ["animate", "--model-path", trained, "--output-video-path", in_tmp / "adir"],
    ]
    for argv in cases:
        code, _, err = run(argv, capsys)
        assert_clean_failure(code, err)
    assert sorted(p.name for p in in_tmp.iterdir()) == ["adir", "file"]
    assert blocker.read_text() == "x"


def test_missing_cat_asset(in_tmp, capsys):
    code, _, err = run(
        [
            "train",
            "dataset:cat",
            "--dataset.image-path",
            in_tmp / "nocat.png",
            "--model-path",
            in_tmp / "m.eqx",
        ],
        capsys,
    )
    assert_clean_failure(code, err, "nocat.png")
    assert list(in_tmp.iterdir()) == []


@pytest.mark.parametrize("argv", [["train", "dataset:dog"], ["train", "strategy:gan"], ["fly"]])
def test_unknown_names_exit_2(in_tmp, capsys, argv):
    code, _, err = run(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert list(in_tmp.iterdir()) == []


CONFIGS = [
    *config.STRATEGIES.values(),
    *config.MODELS.values(),
    *config.DATASETS.values(),
    SamplerConfig,
    OptimizerConfig,
    TrainConfig,
]
FLOAT_FIELDS = [
    (cls, name)
    for cls in CONFIGS
    for name, hint in typing.get_type_hints(cls).items()
    if float in (hint, *typing.get_args(hint)) and typing.get_origin(hint) is not typing.ClassVar
]


@pytest.mark.parametrize(
    "cls, name", FLOAT_FIELDS, ids=[f"{cls.__name__}.{name}" for cls, name in FLOAT_FIELDS]
)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_float_option_must_be_finite(cls, name, value):
    message = f"^{name}={value!r} must be finite$"
    with pytest.raises(ValueError, match=message):
        cls(**{name: value})
    with deferred_validation():
        invalid = cls(**{name: value})
    with pytest.raises(ValueError, match=message):
        validate_all(invalid)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", *TINY, *FAST, "--optimizer.learning-rate", "inf"], "learning_rate=inf"),
        (["train", *TINY, *FAST, "--optimizer.max-grad-norm", "nan"], "max_grad_norm=nan"),
        (
            ["train", "strategy:ddpm", *TINY, *FAST, "--strategy.beta-max", "nan"],
            "beta_max=nan",
        ),
        (["train", *TINY, "dataset:moon", *FAST, "--dataset.noise", "inf"], "noise=inf"),
        (["generate", "--model-path", "m.eqx", "--guidance-scale", "inf"], "guidance_scale=inf"),
        (["plot-field", "--model-path", "m.eqx", "--times", "0", "nan"], "times=(0.0, nan)"),
    ],
)
def test_non_finite_values_exit_2_before_anything_is_written(in_tmp, capsys, argv, fragment):
    code, _, err = run([*argv, "--model-path", in_tmp / "m.eqx"], capsys)
    assert_clean_failure(code, err, f"error: {fragment} must be finite")
    assert list(in_tmp.iterdir()) == []


def outputs(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_a_diverging_run_exits_2_and_leaves_the_good_checkpoint(in_tmp, capsys):
    # A finite checkpoint and its plots, as a finished run leaves them.
    path = in_tmp / "model.eqx"
    cfg = ExperimentConfig(model=MLPConfig(16, 2), dataset=GaussianMixtureConfig())
    checkpoint.save(path, cfg, checkpoint.skeleton(cfg, 2), [], 2)
    for suffix in (".loss.png", ".samples.png"):
        (in_tmp / f"model{suffix}").write_bytes(b"a plot")
    before = outputs(in_tmp)
    # No clipping and a huge rate: the first steps are finite, then the weights blow up.
    huge = ["--optimizer.learning-rate", "1e30", "--optimizer.max-grad-norm", "1e30"]
    argv = ["train", *TINY, "dataset:gaussian-mixture", *FAST, "--model-path", path, *huge]
    code, _, err = run([*argv, "--rerun"], capsys)
    assert_clean_failure(code, err, "training diverged", "at step", "--optimizer.learning-rate")
    assert "nothing was written" in err
    assert outputs(in_tmp) == before  # no new checkpoint, plot, recording or temporary file


def poison(chunk, losses=False):
    """The chunk with a non-finite loss at its 4th step, or else non-finite weights after it."""
    if losses:
        return chunk._replace(losses=chunk.losses.at[3].set(np.nan))
    model = jax.tree.map(lambda a: a * np.nan if eqx.is_inexact_array(a) else a, chunk.state.model)
    return chunk._replace(state=eqx.tree_at(lambda s: s.model, chunk.state, model))


@pytest.mark.parametrize("losses", [True, False], ids=["loss", "weights"])
def test_divergence_after_a_periodic_save_keeps_that_save(in_tmp, capsys, monkeypatch, losses):
    saved = []
    original_save, original_chunks = checkpoint.save, engine.train_chunks

    def spy(path, cfg, state, losses, data_dim):
        arrays = jax.tree.leaves(eqx.filter(state, eqx.is_inexact_array))
        saved.append((int(state.step), all(np.isfinite(a).all() for a in arrays)))
        return original_save(path, cfg, state, losses, data_dim)

    def diverging(*args, **kwargs):
        for i, chunk in enumerate(original_chunks(*args, **kwargs)):
            yield poison(chunk, losses) if i == 2 else chunk

    monkeypatch.setattr(checkpoint, "save", spy)
    monkeypatch.setattr(engine, "train_chunks", diverging)
    path = in_tmp / "model.eqx"
    argv = ["train", *TINY, "dataset:gaussian-mixture", *FAST, "--train-steps", "40"]
    code, _, err = run([*argv, "--checkpoint-every", "10", "--model-path", path], capsys)
    where = "loss nan at step 24" if losses else "non-finite weights after step 30"
    assert_clean_failure(code, err, f"training diverged ({where})", f"{path} keeps step 20")
    assert saved == [(10, True), (20, True)]
    assert checkpoint.load(path).step == 20
    assert np.all(np.isfinite(checkpoint.load(path).losses))
    assert sorted(p.name for p in in_tmp.iterdir()) == ["model.eqx"]


def test_help_is_readable_and_entry_points_work():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "main.py"), "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for text in (
        "--batch-size",
        "Points per optimisation step",
        "strategy:ddpm",
        "strategy:flow-matching",
        "dataset:swiss-roll",
        "dataset:eight-gaussians",
        "dataset:s-curve",
        "--checkpoint-every",
        "--resume",
    ):
        assert text in out, text
    out = subprocess.run(
        [sys.executable, "-m", "jax_gen.cli", "generate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--num-samples" in out and "--output-samples-path" in out


HEAVY = ("jax", "diffrax", "matplotlib", "equinox")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]], ids=["help", "train-help"])
def test_help_imports_neither_jax_nor_matplotlib(argv):
    """Printing help loads only the configs and tyro: the modules imported, not the time."""
    code = "\n".join(
        [
            "import runpy, sys",
            f"sys.argv = ['jax-gen', *{argv!r}]",
            "try:",
            "    runpy.run_module('jax_gen', run_name='__main__')",
            "except SystemExit as exit_:",
            "    assert exit_.code in (0, None), exit_.code",
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r}))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: jax-gen" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_generate_with_another_sampler_reports_its_nfe(in_tmp, capsys, trained):
    code, out, err = run(
        [
            "generate",
            "--model-path",
            trained,
            "--sampler",
            "heun",
            "--num-sampling-steps",
            "3",
            "--output-image-path",
            in_tmp / "heun.png",
        ],
        capsys,
    )
    assert code == 0, err
    assert "heun sampler, NFE 6" in out + err
    code, out, err = run(
        [
            "animate",
            "--model-path",
            trained,
            "--sampler",
            "ddim",
            "--num-sampling-steps",
            "4",
            "--output-video-path",
            in_tmp / "ddim.gif",
        ],
        capsys,
    )
    assert code == 0, err
    with Image.open(in_tmp / "ddim.gif") as image:
        assert image.n_frames == 5


def test_ambient_dimension_end_to_end(in_tmp, capsys):
    path = in_tmp / "roll8.eqx"
    code, _, err = run(
        [
            "train",
            "strategy:flow-matching",
            "--strategy.num-transport-steps",
            "5",
            *TINY,
            "dataset:swiss-roll",
            "--dataset.ambient-dim",
            "8",
            *FAST,
            "--model-path",
            path,
        ],
        capsys,
    )
    assert code == 0, err
    assert checkpoint.load(path).data_dim == 8
    code, _, err = run(
        [
            "generate",
            "--model-path",
            path,
            "--num-samples",
            "50",
            "--output-samples-path",
            in_tmp / "p.npy",
            "--output-image-path",
            in_tmp / "p.png",
        ],
        capsys,
    )
    assert code == 0, err
    assert np.load(in_tmp / "p.npy").shape == (50, 8)
    code, _, err = run(
        ["animate", "--model-path", path, "--output-video-path", in_tmp / "p.gif"], capsys
    )
    assert code == 0, err


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------

EVAL_FAST = ["--num-samples", "200", "--repeats", "2", "--nll-points", "64"]


def test_evaluate_table_json_and_density_map(in_tmp, capsys, trained):
    json_path, density_path = in_tmp / "eval.json", in_tmp / "density.png"
    argv = ["evaluate", "--model-path", trained, "--steps", "4", "8", *EVAL_FAST]
    argv += ["--density-resolution", "16", "--output-json-path", json_path]
    argv += ["--num-eval-samples", "150"]
    code, out, err = run([*argv, "--output-density-path", density_path], capsys)
    assert code == 0, err
    report = json.loads(json_path.read_text())
    # Each row samples 200 points and measures the first 150.
    assert report["num_samples"] == 200 and report["num_eval_samples"] == 150
    assert all(row["quality"]["n"] == 150 for row in report["rows"])
    assert "computed on the first 150" in out
    assert [row["steps"] for row in report["rows"]] == [4, 8]
    assert [row["nfe"] for row in report["rows"]] == [4, 8]  # DDPM's own step: one NFE each
    for row in report["rows"]:
        assert row["seconds"] > 0 and row["samples_per_s"] > 0
        for name in ("sliced W2", "energy", "MMD"):
            m = row[name]
            assert 0 < m["floor"] and 0 < m["distance"]
            assert m["ratio"] == pytest.approx(m["distance"] / m["floor"])
            assert f"{m['distance']:.4f} ({m['floor']:.4f}, {m['ratio']:.2f})" in out
    # 20 training steps: the model is poor, far from the data at 4 steps.
    assert report["rows"][0]["sliced W2"]["ratio"] > 1.5
    nll = report["nll_nats_per_dim"]
    entropy = nll["data_entropy"]
    assert np.isfinite(nll["mean"]) and nll["stderr"] > 0
    # Gibbs: no model's cross-entropy beats the data's own entropy (beyond Monte Carlo error).
    assert nll["mean"] > entropy["mean"] - 4 * (nll["stderr"] + entropy["stderr"])
    assert f"NLL {nll['mean']:.3f}" in out and "data entropy" in out
    with Image.open(density_path) as image:
        assert image.format == "PNG"
        assert image.size[0] > image.size[1]  # two panels: model and data


def test_evaluate_defaults_write_beside_the_checkpoint(in_tmp, capsys, trained):
    code, out, err = run(
        ["evaluate", "--model-path", trained, *EVAL_FAST, "--estimator", "hutchinson"], capsys
    )
    assert code == 0, err
    report = json.loads(trained.with_name("model.evaluate.json").read_text())
    # DDPM's default transport steps.
    assert [row["steps"] for row in report["rows"]] == [DDPMStrategyConfig().num_transport_steps]
    assert report["nll_nats_per_dim"]["estimator"] == "hutchinson"
    assert trained.with_name("model.density.png").exists()


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--steps", "0"], "--steps 0 must be positive"),
        (["--steps", "4", "--num-sampling-steps", "4"], "not both"),
        (["--nll-points", "-1"], "--nll-points=-1"),
        (["--repeats", "0"], "--repeats=0"),
    ],
)
def test_evaluate_bad_options(in_tmp, capsys, trained, extra, fragment):
    json_path = in_tmp / "eval.json"
    json_path.write_text("keep me")
    argv = ["evaluate", "--model-path", trained, "--output-json-path", json_path, *extra]
    code, _, err = run(argv, capsys)
    assert_clean_failure(code, err, fragment)
    assert json_path.read_text() == "keep me"


# ----------------------------------------------------------------------------------------------
# plot-field
# ----------------------------------------------------------------------------------------------


def test_field_figure_draws_the_given_vectors():
    grid = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    vectors = np.array([[[1.0, 2.0], [-1.0, 0.5], [0.0, -3.0]]])
    marginals = np.zeros((1, 4, 2))
    fig = plots.field_figure(
        np.array([0.5]), grid, vectors, marginals, (-1, 2, -1, 2), "t", arrow_scale=0.25
    )
    (quiver,) = [c for c in fig.axes[0].collections if hasattr(c, "U")]
    np.testing.assert_allclose(np.c_[quiver.U, quiver.V], vectors[0])
    np.testing.assert_allclose(quiver.get_offsets(), grid)
    assert quiver.scale == pytest.approx(4.0)  # an arrow ends at p + 0.25 v


def test_plot_field_end_to_end(in_tmp, capsys, trained):
    png, gif = in_tmp / "field.png", in_tmp / "field.gif"
    argv = ["plot-field", "--model-path", trained, "--times", "0", "0.5", "1"]
    argv += ["--grid-size", "6", "--num-points", "100", "--gif-frames", "4"]
    code, out, err = run([*argv, "--output-image-path", png, "--output-video-path", gif], capsys)
    assert code == 0, err
    with Image.open(png) as image:
        assert image.size[0] > 2.5 * image.size[1]  # three panels in a row
    with Image.open(gif) as image:
        assert image.n_frames == 4
    code, _, err = run(["plot-field", "--model-path", trained, "--times", "1.5"], capsys)
    assert_clean_failure(code, err, "--times 1.5 must be in [0, 1]")
    argv = ["plot-field", "--model-path", trained, "--field", "score", "--times", "0", "1"]
    argv += ["--grid-size", "4", "--num-points", "50", "--gif-frames", "2"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert trained.with_name("model.field.gif").exists()


# ----------------------------------------------------------------------------------------------
# Conditional generation and guidance
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conditional_mixture(tmp_path_factory):
    path = tmp_path_factory.mktemp("conditional") / "cond.eqx"
    argv = ["train", "strategy:flow-matching", "--strategy.num-transport-steps", "16"]
    argv += ["model:mlp", "--model.hidden-dim", "64", "--model.depth", "2"]
    argv += ["dataset:gaussian-mixture", "--conditional", "--label-dropout", "0.2"]
    argv += ["--batch-size", "256", "--train-steps", "500", "--log-interval", "250"]
    argv += ["--optimizer.learning-rate", "3e-3", "--optimizer.warmup-steps", "50"]
    argv += ["--ema-decay", "0.99"]
    main([*argv, "--num-samples", "400", "--model-path", str(path)])
    return path


def test_generate_a_class_with_guidance(in_tmp, capsys, conditional_mixture):
    from jax_gen.data import gaussian_mixture_centres

    centres = gaussian_mixture_centres(GaussianMixtureConfig())
    for scale in ("1", "3"):
        points = in_tmp / f"class2_w{scale}.npy"
        argv = ["generate", "--model-path", conditional_mixture, "--condition", "2"]
        argv += ["--guidance-scale", scale, "--num-samples", "400"]
        code, out, err = run([*argv, "--output-samples-path", points], capsys)
        assert code == 0, err
        assert f"class 2, guidance {scale}" in out + err
        samples = np.load(points)
        nearest = np.linalg.norm(samples[:, None] - centres[None], axis=-1).argmin(axis=1)
        assert np.mean(nearest == 2) > 0.9
    # Without --condition: every class, drawn with the mixture's weights.
    points = in_tmp / "all.npy"
    code, out, err = run(
        ["generate", "--model-path", conditional_mixture, "--output-samples-path", points], capsys
    )
    assert code == 0, err
    nearest = np.linalg.norm(np.load(points)[:, None] - centres[None], axis=-1).argmin(axis=1)
    assert len(np.unique(nearest)) == 4


def test_conditioning_errors(in_tmp, capsys, trained, conditional_mixture):
    cases = [
        (["generate", "--model-path", trained, "--condition", "1"], "needs a model trained"),
        (["generate", "--model-path", trained, "--guidance-scale", "2"], "needs a model trained"),
        (["generate", "--model-path", conditional_mixture, "--condition", "9"], "(0..3)"),
        (["generate", "--model-path", trained, "--guidance-scale", "-1"], "guidance_scale=-1.0"),
        (["train", "dataset:cat", "--conditional", *FAST], "dataset cat has no labels"),
    ]
    for argv, fragment in cases:
        code, _, err = run(argv, capsys)
        assert_clean_failure(code, err, fragment)
    assert not (in_tmp / "outputs").exists()


def test_digits_end_to_end(in_tmp, capsys):
    path = in_tmp / "digits.eqx"
    argv = ["train", "strategy:ddpm", "--strategy.num-transport-steps", "10", *TINY]
    argv += ["dataset:digits", "--conditional", *FAST, "--model-path", path]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    with Image.open(in_tmp / "digits.samples.png") as image:
        assert image.format == "PNG"
    code, out, err = run(["generate", "--model-path", path, "--condition", "3"], capsys)
    assert code == 0, err
    code, out, err = run(
        ["animate", "--model-path", path, "--num-samples", "20", "--max-frames", "5"], capsys
    )
    assert code == 0, err
    with Image.open(in_tmp / "digits.gif") as image:
        assert image.n_frames == 5
    code, out, err = run(["evaluate", "--model-path", path, *EVAL_FAST], capsys)
    assert code == 0, err
    assert not (in_tmp / "digits.density.png").exists()  # no plane to draw a density on
    code, _, err = run(["plot-field", "--model-path", path], capsys)
    assert_clean_failure(code, err, "digits is not 2-D data")


def test_optimal_variance_samples_with_the_measured_variance_and_is_refused_elsewhere(
    in_tmp, capsys, trained, conditional_mixture
):
    drawn = {}
    for flag in ([], ["--optimal-variance"]):
        out_path = in_tmp / f"samples{len(flag)}.npy"
        argv = ["generate", "--model-path", trained, "--num-samples", "300", *flag]
        code, out, err = run([*argv, "--output-samples-path", out_path], capsys)
        assert code == 0, err
        drawn[bool(flag)] = np.load(out_path)
    # The command samples with the variance measured by evaluation.with_optimal_variance on
    # its own key (the widening itself is tested on exact Gaussian data in test_sampling_solvers).
    saved = checkpoint.load(trained)
    keys = evaluation.sampling_keys(0)
    strategy = create_strategy(saved.config.strategy)
    model = saved.state.ema_model
    widened = evaluation.with_optimal_variance(strategy, model, saved.config, keys.variance)
    assert np.all(np.asarray(widened.denoiser_error)[1:] > 0)
    expected = sample(widened, model, keys.sample, 300, 2).samples
    np.testing.assert_allclose(drawn[True], expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(drawn[True], drawn[False], rtol=1e-3, atol=1e-3)
    before = trained.read_bytes()
    argv = ["generate", "--model-path", trained, "--optimal-variance", "--sampler", "ddim"]
    code, _, err = run(argv, capsys)
    assert_clean_failure(code, err, "optimal_variance", "ddim")
    argv = ["generate", "--model-path", conditional_mixture, "--optimal-variance"]
    code, _, err = run(argv, capsys)
    assert_clean_failure(code, err, "--optimal-variance applies to ddpm")
    assert trained.read_bytes() == before


@pytest.mark.parametrize("conditional", [False, True])
def test_image_samples_figure_stays_readable_at_ten_thousand_samples(tmp_path, conditional):
    cfg = ExperimentConfig(dataset=DigitsConfig(), train=TrainConfig(conditional=conditional))
    rng = np.random.default_rng(0)
    samples = rng.uniform(-1, 1, (10_000, 64))
    labels = rng.integers(0, 10, 10_000) if conditional else None
    sizes = {}
    # Past IMAGES_SHOWN images (10 of each class in rows), more samples draw the same grid.
    for n in (1000, 10_000):
        path = tmp_path / f"{n}.png"
        chosen = None if labels is None else labels[:n]
        save_samples_figure(path, samples[:n], samples[:n], cfg, "digits", chosen)
        with Image.open(path) as image:
            sizes[n] = image.size
    assert sizes[10_000] == sizes[1000] and sizes[1000][0] * sizes[1000][1] < 500_000, sizes
