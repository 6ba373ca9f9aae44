"""The package's architecture, read from its imports: every import runs downhill.

The layers, lowest first (DESIGN.md §2: declare → validate → compile → run → meta-train). A
module may import its own package and any lower layer — never a higher one, whether at module
level or inside a function (``if TYPE_CHECKING:`` imports are annotations and do not count). Beyond that: no import circles between modules, the interpreter and
the compiler never import each other, and the library never imports the command line.
"""

from __future__ import annotations

import ast
import pathlib

import networkx as nx
import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "agentgraph"

#: Top-level names of ``agentgraph`` (packages or modules), lowest layer first.
LAYERS: list[set[str]] = [
    {"errors"},
    {"arrows", "learners", "data", "runtime", "rundir", "loading"},
    {"nodes", "checkpoint"},
    {"graph"},
    {"interpreter", "compiler"},
    {"network", "unroll"},
    {"inner", "builders"},
    {"models", "protocols"},
    {"meta", "errors_user"},
    {"benchmarks", "plots", "pretrained", "testing"},
    {"cli", "cli_args", "cli_train"},
    {"__init__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(name: str, path: pathlib.Path, modules: dict) -> set[str]:
    """The agentgraph modules ``name`` imports anywhere in its file (resolved to modules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` imports are annotations, not dependencies
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                cand = f"{target}.{alias.name}"
                found.add(cand if cand in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    modules = _modules()
    g = nx.DiGraph()
    for name, path in modules.items():
        g.add_node(name)
        for target in _imports(name, path, modules):
            g.add_edge(name, target)
    return g


def test_every_top_level_name_has_a_layer(graph):
    unplaced = sorted({_top(m) for m in graph} - set(LAYER))
    assert not unplaced, f"place these in LAYERS: {unplaced}"


def test_no_import_runs_up(graph):
    upward = [(a, b) for a, b in graph.edges if LAYER[_top(b)] > LAYER[_top(a)]]
    assert not upward, "imports that run up the layers:\n" + "\n".join(f"  {a} -> {b}" for a, b in upward)


def test_no_import_circles(graph):
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not circles, f"import circles: {circles}"


def test_interpreter_and_compiler_never_import_each_other(graph):
    crossing = [(a, b) for a, b in graph.edges
                if {_top(a), _top(b)} == {"interpreter", "compiler"}]
    assert not crossing, crossing


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The checker itself: an upward import in a module is found."""
    src = "from agentgraph.meta.train import train\n"
    (tmp_path / "x.py").write_text(src)
    found = _imports("agentgraph.nodes.x", tmp_path / "x.py", {"agentgraph.meta.train": None, "agentgraph.nodes.x": None})
    assert found == {"agentgraph.meta.train"}
    assert LAYER[_top("agentgraph.meta.train")] > LAYER[_top("agentgraph.nodes.x")]
