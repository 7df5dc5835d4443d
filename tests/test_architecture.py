"""The package's shape: no import cycles, a short top level, subpackages that never take an
exported function's name, and a command line that only parses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import moodscope

PACKAGE = Path(moodscope.__file__).parent
MAX_TOP_LEVEL_MODULES = 12
MAX_CLI_LINES = 450


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph() -> dict[str, set[str]]:
    """Each moodscope module -> the moodscope modules it imports, at module level or inside
    functions alike (a cycle through a function-level import is still a cycle)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_sees_function_level_imports(tmp_path):
    graph = import_graph()
    # predictor imports the backends at module level, the factory imports dask lazily.
    assert "moodscope.backends" in graph["moodscope.inference.predictor"]
    assert "moodscope.backends.cluster" in graph["moodscope.backends.factory"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_top_level_stays_short():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_submodule_takes_an_exported_name():
    submodules = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.parent.name for p in PACKAGE.glob("*/__init__.py")
    }
    assert not submodules & set(moodscope.__all__)


def test_cli_files_stay_short():
    for path in (PACKAGE / "cli").glob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_CLI_LINES, f"{path.name}: {lines} lines"


@pytest.mark.parametrize("name", ["predict", "predict_iter", "load_model", "extract_features"])
def test_exported_functions_stay_functions_after_any_import(name):
    import importlib

    for module in sorted(_modules()):
        if module != "moodscope.__main__":
            importlib.import_module(module)
    assert callable(getattr(moodscope, name))
    assert not isinstance(getattr(moodscope, name), type(moodscope))
