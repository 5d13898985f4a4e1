"""The README's usage example runs as written (with fewer steps)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_usage_example_runs(capsys):
    source = (ROOT / "scripts" / "usage_example.py").read_text()
    readme = (ROOT / "README.md").read_text()
    body = source.split('"""', 2)[2].strip()
    assert body in readme, "the README shows scripts/usage_example.py verbatim"
    short = re.sub(r"num_steps = \d+", "num_steps = 5", body)
    assert short != body
    namespace: dict = {}
    exec(compile(short, "usage_example", "exec"), namespace)
    assert namespace["samples"].shape == (1000, 2)
    assert namespace["trajectory"].shape == (51, 1000, 2)
    assert "(1000, 2) (51, 1000, 2)" in capsys.readouterr().out
