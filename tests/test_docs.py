"""The docs' Python examples run and their assertions hold."""

from __future__ import annotations

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", [*sorted(DOCS.glob("*.md")), DOCS.parent / "README.md"], ids=lambda p: p.name)
def test_doc_examples_run(path):
    blocks = _blocks(path)
    if path.name in ("README.md", "concepts.md", "compiler.md", "data.md"):
        assert blocks, f"{path.name} has no python example"
    namespace = {"__name__": "__doc_example__"}  # a page's blocks run in order, as a reader runs them
    for code in blocks:
        exec(compile(code, str(path), "exec"), namespace)
