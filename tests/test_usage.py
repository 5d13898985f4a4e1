"""The usage example of the docs' "Use it from Python" page runs as written (with fewer steps)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_usage_example_runs(capsys):
    source = (ROOT / "scripts" / "usage_example.py").read_text()
    page = (ROOT / "docs" / "python.md").read_text()
    body = source.split('"""', 2)[2].strip()
    assert body in page, "docs/python.md shows scripts/usage_example.py verbatim"
    short = re.sub(r"num_steps = \d+", "num_steps = 5", body)
    assert short != body
    namespace: dict = {}
    exec(compile(short, "usage_example", "exec"), namespace)
    assert namespace["samples"].shape == (1000, 2)
    assert namespace["trajectory"].shape == (51, 1000, 2)
    assert "(1000, 2) (51, 1000, 2)" in capsys.readouterr().out
