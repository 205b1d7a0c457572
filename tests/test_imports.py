"""The import graph: rooms import only downstream (STYLE 1), no module-level cycle, all importable.

Rooms, upstream first: data -> simulators -> envs -> agents -> benchmarks -> cli. The graph is
read from the source (every import statement, also those inside functions and under
TYPE_CHECKING, so a lazy import cannot hide an upward edge); one fresh interpreter then imports
every module, `recgym.data.asa` first, the order in which the old data.asa -> envs -> data.asa
cycle showed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RANK = {"data": 0, "simulators": 1, "envs": 2, "agents": 3, "benchmarks": 4, "cli": 5}
# Upward edges that are allowed, each with its reason. data.asa turns logs into SCRI samples for
# a user model, so it reads the simulator-side protocol, user features and SCRI contract; it is
# not imported by `recgym.data` itself, so loading data never pulls in simulators.
# envs.mtf: MTFSession-v0's ranking system contains the multi-task ranking model (MTL) learned from
# the logs, as the paper's production system does; the MTL is an agents-room model (it shares the
# DeepFM/ranker log features), and the env fits a default one when none is given.
ALLOWED_UPWARD = {("recgym.data.asa", "simulators"), ("recgym.envs.mtf", "agents")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["recgym", *parts])


def _package_files() -> list[Path]:
    files = [ROOT / "cli.py"]
    for room in RANK:
        if (ROOT / room).is_dir():
            files += sorted((ROOT / room).rglob("*.py"))
    return files


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported recgym module, line, at module level) for every import in the file."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule too where one exists
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            if target == "recgym" or target.startswith("recgym."):
                out.append((target, node.lineno, id(node) in top))
    return out


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


GRAPH = {_module_name(p): (p, _imports(p)) for p in _package_files()}


def test_every_room_imports_only_upstream():
    wrong = []
    for name, (path, imports) in GRAPH.items():
        mine = _room(name)
        for target, line, _ in imports:
            theirs = _room(target)
            if theirs is None or RANK[theirs] <= RANK[mine] or (name, theirs) in ALLOWED_UPWARD:
                continue
            wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} ({mine}) imports {target}")
    flow = "data -> simulators -> envs -> agents -> benchmarks"
    assert not wrong, f"imports against the {flow} flow:\n" + "\n".join(wrong)


def test_data_imports_nothing_from_envs_or_agents():
    """The cycle this test was written for: data.asa imported the SCRI contract from envs."""
    for name, (_, imports) in GRAPH.items():
        if _room(name) == "data":
            assert not [t for t, *_ in imports if _room(t) in ("envs", "agents", "benchmarks")]


def test_no_module_level_import_cycle():
    known = set(GRAPH)
    edges = {
        name: {t for t, _, top in imports if top and t in known and t != name}
        for name, (_, imports) in GRAPH.items()
    }
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"module-level import cycles: {cycles}"


def test_the_graph_sees_imports():
    """Guard against a walker that silently finds nothing (which would pass every test above)."""
    asa = {t for t, *_ in GRAPH["recgym.data.asa"][1]}
    assert "recgym.simulators.scri" in asa
    relative = {(t, top) for t, _, top in GRAPH["recgym.simulators.learned.simulator"][1]}
    assert ("recgym.simulators.learned.config", True) in relative


@pytest.mark.timeout(120)
def test_every_module_imports_in_a_fresh_interpreter():
    # a package's __main__ is a script (importing it runs it), not a module to import
    modules = [m for m in GRAPH if not m.endswith(".__main__")]
    ordered = sorted(modules, key=lambda m: (m != "recgym.data.asa", RANK[_room(m)], m))
    code = f"import importlib\nfor m in {ordered!r}:\n    importlib.import_module(m)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=110
    )
    assert result.returncode == 0, result.stderr[-3000:]
