"""The layout is part of the design: four rooms, imports that only point inward, small modules.

Rooms (docs/layout.md names them):
- the optimizer library: `lionlib` itself (optim, muon, validate, monitor, distributed, integrations), the `lionlib.kappa` package
  (the K, one small module per kind) and `lionlib.fused`;
- `lionlib.theory`: the paper's Lyapunov function and dynamics, built on the library;
- `lionlib.experiments`: the network experiments, built on the library;
- `lionlib.companion`: the notebook pipeline, which may use all of the above.

Imports are read from the source (every `import`, function-level ones included), so a lazy import
cannot hide a cycle.
"""

import ast
from pathlib import Path

import pytest

import lionlib

ROOT = Path(lionlib.__file__).parent
MAX_LINES = 400
ROOMS = ("theory", "experiments", "companion")
# Which rooms a room may import from ("library" is lionlib's top level and lionlib.fused).
MAY_IMPORT = {
    "library": {"library"},
    "theory": {"library", "theory"},
    "experiments": {"library", "experiments"},
    "companion": {"library", "theory", "experiments", "companion"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "library"


def imports_of(path: Path) -> set[str]:
    """The lionlib modules `path` imports (`from lionlib import kappa` -> lionlib.kappa)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "lionlib"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lionlib":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a list of modules, or None (depth-first search, three colours)."""
    colour, stack = {}, []

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (cycle := visit(nxt)):
                return cycle
        colour[node] = "black"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in colour and (cycle := visit(node)):
            return cycle
    return None


GRAPH = {m: imports_of(p) - {m} for m, p in MODULES.items()}


def test_find_cycle_finds_a_planted_cycle():
    """The checker itself can fail: a planted optim -> fused -> optim cycle is reported."""
    planted = {**GRAPH, "lionlib.fused": GRAPH["lionlib.fused"] | {"lionlib.optim"}}
    assert find_cycle(planted) is not None and "lionlib.optim" in find_cycle(planted)


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(find_cycle(GRAPH))}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_inward(module):
    outward = {m for m in GRAPH[module] if room(m) not in MAY_IMPORT[room(module)]}
    assert not outward, f"{module} ({room(module)}) imports {sorted(outward)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small(module):
    n = len(MODULES[module].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[module].relative_to(ROOT.parent)} has {n} lines (at most {MAX_LINES}): split it"


@pytest.mark.parametrize("module", sorted(m for m, p in MODULES.items()
                                          if p.name != "__init__.py" or m in ("lionlib", "lionlib.fused", "lionlib.kappa")))
def test_public_module_declares_all(module):
    tree = ast.parse(MODULES[module].read_text())
    names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    assert "__all__" in names, f"{module} has no __all__"
    mod = __import__(module, fromlist=["__all__"]) if "triton" not in module else None
    if mod is not None:
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, f"{module}.__all__ names what it does not define: {missing}"


def test_top_level_is_the_library_and_the_rooms():
    """No flat mix: lionlib/ holds the optimizer library's modules (the K as one package) and one
    folder per room."""
    top = {p.name for p in ROOT.iterdir() if not p.name.startswith((".", "__pycache__"))}
    rooms = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == {"fused", "kappa", *ROOMS}, rooms
    library = {p.name for p in ROOT.glob("*.py")}
    assert library <= {"__init__.py", "optim.py", "muon.py", "validate.py", "monitor.py", "distributed.py",
                       "integrations.py"}, library
    assert top <= library | rooms, top - library - rooms
