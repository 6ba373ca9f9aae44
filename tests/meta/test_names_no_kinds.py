"""agentgraph.meta is generic: it names no kind and never asks which protocol it runs."""

from __future__ import annotations

import pathlib
import re

from agentgraph.nodes.registry import default_kinds
from agentgraph.protocols.base import PROTOCOLS

META = pathlib.Path(__file__).resolve().parents[2] / "agentgraph" / "meta"


def _code(path: pathlib.Path) -> str:
    """The module's code lines: docstring examples (``>>>``/``...``) and comments left out."""
    keep = []
    for line in path.read_text().splitlines():
        t = line.strip()
        keep.append("" if t.startswith((">>>", "...", "#")) else line.split("  #")[0])
    return "\n".join(keep)


def test_meta_names_no_library_kind():
    # "step" (the step activation) is also the meta-step's name in metrics and checkpoints
    names = set(default_kinds()) - {"step"}
    assert {"synapse", "bias", "softmax", "sigmoid", "l2"} <= names  # the check below is not vacuous
    hits = []
    for path in sorted(META.glob("*.py")):
        for i, line in enumerate(_code(path).splitlines(), 1):
            for lit in re.findall(r"[\"']([A-Za-z_]+)[\"']", line):
                if lit in names:
                    hits.append(f"{path.name}:{i}: {lit!r}")
    assert not hits, "kind names in agentgraph/meta:\n" + "\n".join(hits)


def test_meta_branches_on_no_protocol():
    rules = "|".join(sorted(PROTOCOLS))
    assert "mplp" in rules and "blur" in rules
    pattern = re.compile(rf"(==|!=|\bin\b)\s*\(?[\"']({rules})[\"']|\.rule\b|protocol\.name\s*(==|!=|in)")
    hits = [f"{p.name}:{i}: {line.strip()}" for p in sorted(META.glob("*.py"))
            for i, line in enumerate(_code(p).splitlines(), 1) if pattern.search(line)]
    assert not hits, "protocol branches in agentgraph/meta:\n" + "\n".join(hits)


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The two patterns flag the code they are meant to forbid (so the tests can fail)."""
    names = set(default_kinds())
    line = 'out["synapse"] = {**state["synapse"], "w": w}'
    assert {lit for lit in re.findall(r"[\"']([A-Za-z_]+)[\"']", line)} & names == {"synapse"}
    rules = "|".join(sorted(PROTOCOLS))
    pattern = re.compile(rf"(==|!=|\bin\b)\s*\(?[\"']({rules})[\"']|\.rule\b|protocol\.name\s*(==|!=|in)")
    assert pattern.search('if cfg.protocol.rule == "sgd":') and pattern.search('if name in ("mplp", "x"):')
