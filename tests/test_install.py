"""The package works installed from its wheel, in a fresh environment outside the checkout.

The module builds the sdist and the wheel once (``uv build``, an isolated setuptools
environment, the wheel built from the sdist) from a copy of the source tree, installs the wheel
into a new virtual environment with ``uv pip`` (uv's cache hardlinks jax and the rest instead of
downloading them again) and runs the installed commands from a temporary folder, with an
environment that names neither the checkout nor its virtual environment: anything that still
reads the source tree fails here. Without uv the module is skipped, except in CI (``CI`` set),
where it fails.
"""

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
PACKAGE_DATA = ("jax_gen/assets/cat.png", "jax_gen/py.typed", "jax_gen/__main__.py")
TIMEOUT = 600  # seconds per command; the slowest, `jax-gen train`, takes about 15 s

# Everything a fresh clone lacks: environments, caches, outputs, earlier builds.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "outputs", "build", "dist", "*.egg-info", "__pycache__",
    ".pytest_cache", ".ruff_cache", ".hypothesis", "*.lock", "site",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Installed:
    """A virtual environment holding the built wheel, and how to run its commands."""

    wheel: Path
    sdist: Path
    bin: Path
    env: dict[str, str]

    def run(self, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        """Runs ``argv[0]`` from the environment's bin folder in ``cwd``; fails on a bad exit."""
        assert not cwd.resolve().is_relative_to(ROOT), "run installed commands outside the checkout"
        result = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert result.returncode == 0, (
            f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("uv is not on PATH: CI must build and install the package (.ci/run)")
        pytest.skip("uv is not on PATH: the install test builds and installs with it")
    return uv


def _clean_env(venv: Path) -> dict[str, str]:
    """os.environ with the new environment first on PATH and no way back to the checkout."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PYTHON") and name not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    outside = [p for p in path if not Path(p).resolve().is_relative_to(ROOT)]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *outside])
    env["VIRTUAL_ENV"] = str(venv)
    env["MPLBACKEND"] = "Agg"
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    uv = _uv()
    base = tmp_path_factory.mktemp("install")
    source, dist, venv = base / "source", base / "dist", base / "venv"
    # Built from a copy: setuptools writes its egg-info and build folders into the tree it builds.
    shutil.copytree(ROOT, source, ignore=NOT_IN_A_CLONE)
    env = _clean_env(venv)

    def uv_run(*args: str) -> None:
        result = subprocess.run(
            [uv, *args], cwd=base, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert result.returncode == 0, f"uv {' '.join(args)}\n{result.stdout}\n{result.stderr}"

    uv_run("build", "--out-dir", str(dist), str(source))
    (wheel,) = dist.glob("jax_gen-*.whl")
    (sdist,) = dist.glob("jax_gen-*.tar.gz")
    uv_run("venv", "--python", sys.executable, str(venv))
    uv_run("pip", "install", "--python", str(venv / "bin" / "python"), str(wheel))
    shutil.rmtree(source)  # nothing installed may point into the tree it was built from
    return Installed(wheel, sdist, venv / "bin", env)


def test_wheel_and_sdist_ship_the_cat_the_marker_and_main(installed):
    assert installed.wheel.name == f"jax_gen-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(installed.wheel) as wheel:
        assert set(PACKAGE_DATA) <= set(wheel.namelist())
        assert wheel.read("jax_gen/assets/cat.png") == (ROOT / "assets" / "cat.png").read_bytes()
        entry_points = wheel.read(f"jax_gen-{VERSION}.dist-info/entry_points.txt").decode()
    assert "jax-gen = jax_gen.cli:main" in entry_points
    with tarfile.open(installed.sdist) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {f"src/{name}" for name in PACKAGE_DATA} <= members


def test_the_environment_imports_the_installed_package(installed, tmp_path):
    check = (
        "import importlib.resources, jax_gen; "
        "files = importlib.resources.files('jax_gen'); "
        "print(jax_gen.__file__); print(jax_gen.__version__); "
        "print((files / 'py.typed').is_file(), (files / 'assets' / 'cat.png').is_file())"
    )
    out = installed.run(["python", "-c", check], tmp_path).stdout.split("\n")
    location = Path(out[0]).resolve()
    assert location.is_relative_to(installed.bin.parent.resolve()), location
    assert "site-packages" in location.parts
    assert out[1:3] == [VERSION, "True True"]


def test_jax_gen_train_with_its_defaults_trains_the_cat(installed, tmp_path):
    argv = ["jax-gen", "train", "--train-steps", "20", "--log-interval", "10"]
    out = installed.run([*argv, "--num-samples", "200"], tmp_path).stdout
    assert "on cat" in out
    written = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "outputs").iterdir())
    assert written == [
        "outputs/cat_ddpm.eqx",
        "outputs/cat_ddpm.loss.png",
        "outputs/cat_ddpm.samples.png",
    ]
    assert all((tmp_path / name).stat().st_size > 0 for name in written)


def test_python_m_jax_gen_is_the_command(installed, tmp_path):
    out = installed.run(["python", "-m", "jax_gen", "--help"], tmp_path).stdout
    assert out.startswith("usage: jax-gen ")
    for command in ("train", "generate", "animate", "evaluate", "plot-field"):
        assert command in out


def test_docs_python_example_runs_installed(installed, tmp_path):
    """The first Python block of docs/python.md, as written but for 5 training steps."""
    page = (ROOT / "docs" / "python.md").read_text()
    section = page.split("# Use it from Python\n", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    short, count = re.subn(r"^num_steps = \d+$", "num_steps = 5", example, flags=re.MULTILINE)
    assert count == 1, "the docs' example sets num_steps once, which the test shortens"
    (tmp_path / "example.py").write_text(short)
    out = installed.run(["python", "example.py"], tmp_path).stdout
    assert "(1000, 2) (51, 1000, 2)" in out


def test_both_copies_of_the_cat_are_the_same_image():
    packaged = ROOT / "src" / "jax_gen" / "assets" / "cat.png"
    assert packaged.read_bytes() == (ROOT / "assets" / "cat.png").read_bytes(), (
        "redraw both with scripts/make_cat.py"
    )
