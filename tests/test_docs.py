"""The documentation site builds without a warning and holds every page it promises.

``mkdocs build --strict`` runs once, from the repository root into a temporary folder, as a user
runs it (mkdocs.yml; docs/hooks.py writes the home page, the tutorial pages, the API reference
and the commands' help at build time). Any warning fails the build: a bad cross-reference in a
docstring, a link to a missing page or anchor, a tutorial picture that is not committed. The
tests then look for the pages in the built site. The renderer of the tutorials is also tested on
its own, on a small percent-cell script written here.

The tools are dev dependencies (pyproject.toml); without them the module is skipped, except in
CI (``CI`` set), where it fails.
"""

import ast
import html
import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
COMMANDS = ("train", "generate", "animate", "evaluate", "plot-field")
TIMEOUT = 300  # seconds; the build takes about 20 s on 2 busy cores
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def _need_mkdocs() -> None:
    missing = [
        name
        for name in ("mkdocs", "material", "mkdocstrings_handlers.python")
        if importlib.util.find_spec(name.split(".")[0]) is None
    ]
    if missing:
        if _in_ci():
            pytest.fail(f"{missing} not installed: CI installs the dev dependencies")
        pytest.skip(f"{missing} not installed (the dev dependencies have them)")


def _text(path: Path) -> str:
    """A built page's text, tags dropped and white space collapsed."""
    text = re.sub(r"<[^>]+>", " ", path.read_text())
    return re.sub(r"\s+", " ", html.unescape(text))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    _need_mkdocs()
    out = tmp_path_factory.mktemp("site")
    # Material prints a notice about MkDocs 2 on every build; it is not about this site.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    log = ANSI.sub("", done.stdout + done.stderr)
    warnings = [line for line in log.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert done.returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    return out


def test_the_home_page_is_the_readme(site):
    readme = (ROOT / "README.md").read_text()
    pitch = re.sub(r"\s+", " ", readme.split("\n\n", 2)[1])
    assert pitch in _text(site / "index.html")
    assert (site / "assets" / "cat_ddpm_samples.png").is_file()


def test_every_tutorial_has_a_page_with_its_pictures(site):
    index = _text(site / "tutorials" / "index.html")
    for path in TUTORIALS:
        page = site / "tutorials" / path.stem / "index.html"
        assert page.is_file(), f"no page for tutorials/{path.name}"
        assert f"tutorials/{path.name}" in index
        source = path.read_text()
        for name in re.findall(r"""\bOUT\s*/\s*["']([^"'/]+\.png)["']""", source):
            assert f'src="../figures/{path.stem}/{name}"' in page.read_text(), name
            assert (site / "tutorials" / "figures" / path.stem / name).is_file(), name


def test_the_api_reference_shows_the_docstrings(site):
    loop = ast.parse((ROOT / "src" / "jax_gen" / "sampling" / "loop.py").read_text())
    (sample,) = [n for n in loop.body if isinstance(n, ast.FunctionDef) and n.name == "sample"]
    first_line = ast.get_docstring(sample).split("\n")[0].replace("``", "")
    page = site / "api" / "sampling" / "index.html"
    assert first_line in _text(page)
    assert 'id="jax_gen.sampling.loop.sample"' in page.read_text()
    # A :class:`~jax_gen.sampling.guidance.Guided` of that docstring became a link.
    assert 'href="#jax_gen.sampling.guidance.Guided"' in page.read_text()
    for module in (ROOT / "src" / "jax_gen").iterdir():
        if not module.name.startswith("_") and (module.suffix == ".py" or module.is_dir()):
            name = module.stem if module.suffix == ".py" else module.name
            if module.is_dir() and not (module / "__init__.py").is_file():
                continue
            assert (site / "api" / name / "index.html").is_file(), f"no API page for {name}"


def test_the_command_line_page_has_every_commands_help(site):
    text = _text(site / "cli" / "index.html")
    listed = re.search(r"usage: jax-gen \[-h\] \{([\w,-]+)\}", text).group(1).split(",")
    assert set(COMMANDS) <= set(listed)
    for command in listed:
        assert f"usage: jax-gen {command} [-h]" in text, command
    for option in ("--num-sampling-steps", "--guidance-scale", "--times", "--train-steps"):
        assert option in text, option


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SAMPLE = """# %% [markdown]
# # A sample tutorial
#
# The path $z_t = t x + (1 - t) \\epsilon$, then [the next one](02_next.py).

# %%
import numpy as np
x = np.zeros(3)

# %% [markdown]
# ## A picture
#
# $$\\alpha(t) = t$$

# %%
fig.savefig(OUT / "drawn.png", dpi=100)
fig.savefig(OUT / "missing.png", dpi=100)
fig.savefig(OUT / f"step_{k}.png", dpi=100)
"""


def test_the_tutorial_renderer(tmp_path, caplog):
    _need_mkdocs()
    hooks = _hooks()
    script = tmp_path / "01_sample.py"
    script.write_text(SAMPLE)
    figures = tmp_path / "docs" / "tutorials" / "figures" / "01_sample"
    figures.mkdir(parents=True)
    (figures / "drawn.png").write_bytes(b"")
    assert [kind for kind, _ in hooks.cells(SAMPLE)] == ["markdown", "code", "markdown", "code"]
    assert hooks.tutorial_title(script) == "A sample tutorial"
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        page = hooks.tutorial_page(script, tmp_path / "docs")
    assert page.startswith("# A sample tutorial\n\n!!! tip")
    assert "The path $z_t = t x + (1 - t) \\epsilon$, then [the next one](02_next.md)." in page
    assert "```python\nimport numpy as np\nx = np.zeros(3)\n```" in page
    assert "## A picture\n\n$$\\alpha(t) = t$$" in page
    assert "![drawn.png](figures/01_sample/drawn.png)" in page
    assert "missing.png" not in page.replace('OUT / "missing.png"', "")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "'fig.savefig(OUT / f\"step_{k}.png\", dpi=100)' saves a picture" in warnings[0]
    assert "docs/tutorials/figures/01_sample/missing.png is missing" in warnings[1]
