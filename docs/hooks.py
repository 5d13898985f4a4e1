"""What the documentation site writes at build time (mkdocs.yml: ``hooks``).

Nothing here is a list to keep up to date by hand:

- **Tutorials**: every ``tutorials/NN_name.py`` (percent cells: ``# %% [markdown]`` cells of
  ``# ``-commented Markdown, ``# %%`` code cells) becomes the page ``tutorials/NN_name.md``:
  Markdown cells as Markdown, code cells as Python blocks, and after a code cell that saves a
  figure (``fig.savefig(OUT / "name.png")``) the committed picture
  ``docs/tutorials/figures/NN_name/name.png``. A picture that is not there is a warning, so the
  strict build fails and names the command that makes it.
- **API reference**: a page ``api/<name>.md`` per module or package of ``src/jax_gen`` (walked,
  so a new module shows up by itself), rendered by mkdocstrings from the docstrings; a package's
  page holds what its ``__init__`` defines, then each of its modules.
- **Home**: ``index.md`` is the README, its ``docs/...`` links made relative to the site.
- **Markers** in hand-written pages: ``<!-- jax-gen train --help -->`` becomes that command's
  help text, as the installed ``jax-gen`` prints it (parsed here, without running anything);
  ``<!-- every command's help -->`` a section per command that ``jax-gen --help`` lists, so a
  new command shows up; ``<!-- tutorials -->`` and ``<!-- modules -->`` become the lists of
  tutorials and modules.
- **Navigation**: a nav entry written as a folder (``Tutorials: tutorials/``, ``API reference:
  api/``) becomes the folder's ``index.md`` followed by its generated pages, in order.
"""

import ast
import contextlib
import io
import logging
import os
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
SOURCE = ROOT / "src"
PACKAGE = "jax_gen"
HELP_COLUMNS = "72"  # the width --help is wrapped to: a code block of the page, unscrolled

# mkdocs counts every warning logged under "mkdocs"; strict builds fail on them.
log = logging.getLogger("mkdocs.hooks.jax_gen")


# --- tutorials ---------------------------------------------------------------------------------

CELL = re.compile(r"^# %%(.*)$")
MARKDOWN_CELL = re.compile(r"^\s*\[(?:markdown|md)\]")
FIGURE = re.compile(r"""\bOUT\s*/\s*(["'])([^"'/]+\.(?:png|gif|jpg))\1""")
TUTORIAL_LINK = re.compile(r"\]\((?:\.\./tutorials/|\./)?(\d\d_[\w-]+)\.py(#[^)]*)?\)")


def tutorial_files() -> list[Path]:
    """The tutorials, in the order of their numbers."""
    return sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))


def cells(source: str) -> list[tuple[str, str]]:
    """The (kind, text) cells of a percent-format script; kind is "markdown" or "code".

    A jupytext header (``# ---`` ... ``# ---`` at the top) is left out; lines before the first
    ``# %%`` are a code cell; empty cells are dropped.
    """
    lines = source.splitlines()
    if lines and lines[0].strip() == "# ---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "# ---"), None)
        if end is not None:
            lines = lines[end + 1 :]
    raw: list[tuple[str, list[str]]] = [("code", [])]
    for line in lines:
        marker = CELL.match(line)
        if marker:
            raw.append(("markdown" if MARKDOWN_CELL.match(marker.group(1)) else "code", []))
        else:
            raw[-1][1].append(line)
    out = []
    for kind, body in raw:
        if kind == "markdown":
            body = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in body]
        text = "\n".join(body).strip("\n")
        if text.strip():
            out.append((kind, text))
    return out


def tutorial_title(path: Path) -> str:
    """The first Markdown heading of a tutorial, or its file name."""
    for kind, text in cells(path.read_text()):
        if kind == "markdown":
            for line in text.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def tutorial_page(path: Path, docs_dir: Path) -> str:
    """The Markdown page of one tutorial, its pictures taken from docs/tutorials/figures."""
    stem, parts, titled = path.stem, [], False
    run = (
        f'!!! tip "Run it"\n    This page is `tutorials/{path.name}`. Run it with '
        f"`uv run tutorials/{path.name}`, or open it as a notebook: see "
        f"[Tutorials](index.md#run-one).\n"
    )
    for kind, text in cells(path.read_text()):
        if kind == "markdown":
            text = TUTORIAL_LINK.sub(lambda m: f"]({m.group(1)}.md{m.group(2) or ''})", text)
            if not titled and text.startswith("# "):
                title, _, rest = text.partition("\n")
                text = f"{title}\n\n{run}\n{rest}"
                titled = True
            parts.append(text)
            continue
        parts.append(f"```python\n{text}\n```")
        for line in text.splitlines():
            if re.search(r"\bOUT\s*/", line) and not FIGURE.search(line):
                log.warning(
                    f"tutorials/{path.name}: {line.strip()!r} saves a picture whose name is not "
                    f'a plain string, OUT / "name.png": the page cannot show it'
                )
        for name in dict.fromkeys(match.group(2) for match in FIGURE.finditer(text)):
            picture = f"tutorials/figures/{stem}/{name}"
            if (docs_dir / picture).is_file():
                parts.append(f"![{name}](figures/{stem}/{name})")
            else:
                log.warning(
                    f"tutorials/{path.name} saves {name}, but docs/{picture} is missing: "
                    f"run JAX_GEN_TUTORIAL_OUT=docs/tutorials/figures uv run "
                    f"tutorials/{path.name} and commit the picture"
                )
    if not titled:
        parts.insert(0, f"# {stem}\n\n{run}")
    return "\n\n".join(parts) + "\n"


def tutorials_list() -> str:
    """The Markdown table of the tutorials, for tutorials/index.md."""
    rows = [
        f"| {int(path.stem[:2])} | [{tutorial_title(path)}]({path.stem}.md) | "
        f"`tutorials/{path.name}` |"
        for path in tutorial_files()
    ]
    if not rows:
        return "No tutorial has been written yet."
    return "\n".join(["| | tutorial | file |", "|---|---|---|", *rows])


# --- API reference -----------------------------------------------------------------------------


def modules() -> list[str]:
    """jax_gen's public top-level modules and packages, as dotted names."""
    names = []
    for path in sorted((SOURCE / PACKAGE).iterdir()):
        if path.name.startswith("_"):
            continue
        if path.suffix == ".py":
            names.append(f"{PACKAGE}.{path.stem}")
        elif (path / "__init__.py").is_file():
            names.append(f"{PACKAGE}.{path.name}")
    return names


def _path(name: str) -> Path:
    path = SOURCE.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def submodules(package: str) -> list[str]:
    """The public modules inside a package, at any depth, as dotted names."""
    folder = SOURCE.joinpath(*package.split("."))
    names = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(SOURCE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts != tuple(package.split(".")) and not any(p.startswith("_") for p in parts):
            names.append(".".join(parts))
    return names


def defined_names(path: Path) -> list[str]:
    """The public names a module's own code defines (not the ones it imports)."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [name for name in dict.fromkeys(names) if not name.startswith("_")]


def summary(name: str) -> str:
    """The first sentence of a module's docstring, its reST roles and literals as code."""
    docstring = ast.get_docstring(ast.parse(_path(name).read_text())) or ""
    paragraph = " ".join(docstring.strip().split("\n\n", 1)[0].split())
    sentence = re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0]
    sentence = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", sentence)
    return sentence.replace("``", "`").replace("|", "\\|")


def api_page(name: str) -> str:
    """The page of one module or package: mkdocstrings directives."""
    if _path(name).name != "__init__.py":
        return f"# `{name}`\n\n::: {name}\n    options:\n      show_root_heading: false\n"
    members = defined_names(_path(name))
    lines = [
        f"# `{name}`",
        "",
        f"::: {name}",
        "    options:",
        "      show_root_heading: false",
        f"      members: [{', '.join(members)}]" if members else "      members: false",
    ]
    for module in submodules(name):
        lines += ["", f"::: {module}"]
    return "\n".join(lines) + "\n"


def modules_list() -> str:
    """The Markdown table of the modules, for api/index.md."""
    rows = [f"| [`{name}`]({name.split('.', 1)[1]}.md) | {summary(name)} |" for name in modules()]
    return "\n".join(["| module | what it holds |", "|---|---|", *rows])


# --- the command line's help -------------------------------------------------------------------

HELP = re.compile(r"<!-- jax-gen ((?:[\w:-]+ )*)--help -->")
EVERY_HELP = "<!-- every command's help -->"


def help_text(argv: list[str]) -> str:
    """What ``jax-gen ARGV --help`` prints, parsed in this process (JAX is not imported)."""
    from jax_gen.cli.commands import parse

    out, err, old = io.StringIO(), io.StringIO(), os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                parse([*argv, "--help"])
                code = 0
            except SystemExit as exit:
                code = exit.code
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    if code not in (0, None):
        log.warning(f"jax-gen {' '.join(argv)} --help exited {code}: {err.getvalue()[-500:]}")
    return "\n".join(line.rstrip() for line in out.getvalue().strip("\n").splitlines())


def every_help() -> str:
    """A section per command: ``jax-gen --help``, then each command its usage line names."""
    top = help_text([])
    usage = re.search(r"\{([\w,-]+)\}", top.split("\n", 1)[0])
    commands = usage.group(1).split(",") if usage else []
    if not commands:
        log.warning(f"no commands in the first line of jax-gen --help: {top[:200]!r}")
    parts = [f"### jax-gen\n\n```text\n{top}\n```"]
    for command in commands:
        parts.append(f"### {command}\n\n```text\n{help_text([command])}\n```")
    return "\n\n".join(parts)


# --- mkdocs events -----------------------------------------------------------------------------


def _expand(nav: list) -> list:
    """The nav with each folder entry replaced by its index and generated pages."""
    out = []
    for item in nav:
        if isinstance(item, dict):
            (title, value), *_ = item.items()
            if value == "tutorials/":
                pages = [{tutorial_title(p): f"tutorials/{p.stem}.md"} for p in tutorial_files()]
                value = ["tutorials/index.md", *pages]
            elif value == "api/":
                pages = [{name: f"api/{name.split('.', 1)[1]}.md"} for name in modules()]
                value = ["api/index.md", *pages]
            elif isinstance(value, list):
                value = _expand(value)
            item = {title: value}
        out.append(item)
    return out


def on_config(config):
    if config.nav:
        config.nav = _expand(config.nav)
    return config


def on_files(files, config):
    docs_dir = Path(config.docs_dir)
    readme = (ROOT / "README.md").read_text().replace("](docs/", "](")
    generated = {"index.md": readme}
    for path in tutorial_files():
        generated[f"tutorials/{path.stem}.md"] = tutorial_page(path, docs_dir)
    for name in modules():
        generated[f"api/{name.split('.', 1)[1]}.md"] = api_page(name)
    for uri, content in generated.items():
        if files.get_file_from_path(uri) is not None:
            log.warning(f"docs/{uri} exists, but the build writes that page: remove the file")
            continue
        files.append(File.generated(config, uri, content=content))
    return files


def on_serve(server, config, builder):
    # Not in mkdocs.yml's watch: a clone with no tutorial yet has no tutorials/ folder.
    for path in (ROOT / "README.md", TUTORIALS):
        if path.exists():
            server.watch(str(path))
    return server


def on_page_markdown(markdown, page, config, files):
    if EVERY_HELP in markdown:
        markdown = markdown.replace(EVERY_HELP, every_help())
    markdown = HELP.sub(lambda m: f"```text\n{help_text(m.group(1).split())}\n```", markdown)
    markdown = markdown.replace("<!-- tutorials -->", tutorials_list())
    return markdown.replace("<!-- modules -->", modules_list())
