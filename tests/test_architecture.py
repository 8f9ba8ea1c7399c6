"""The architecture ARCHITECTURE.md describes, checked: imports point one way, units stay small.

Every import in src/ is read from the source (module level and inside
functions alike), so a cycle hidden in a function-local import fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGE = REPO / "src" / "ckptfetch"
# Above the facade: what may import `ckptfetch.api` or the package root.
FACADE_USERS = {"ckptfetch", "ckptfetch.api", "ckptfetch.cli", "ckptfetch.entry", "ckptfetch.__main__"}
MAX_FUNCTION, MAX_CLASS, MAX_MODULE = 80, 250, 500


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from . import x` names a submodule (which needs nothing of the package's __init__ beyond it having
            # run, as it has for any submodule); `from .pkg import name` takes a name from pkg/__init__.
            subs = [f"{stem}.{a.name}" for a in node.names if f"{stem}.{a.name}" in known]
            targets = subs + ([stem] if len(subs) < len(node.names) else [])
        else:
            continue
        found.update(t for t in targets if t in known)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _parents(name: str) -> set[str]:
    """Importing `a.b.c` runs `a/__init__` and `a/b/__init__` first."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_cycle_anywhere_in_src() -> None:
    graph = _graph()
    # A package's __init__ runs before any of its submodules: an edge from a submodule to its own
    # package is how `sources/__init__` and its plugins used to import each other.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_a_submodule_never_imports_its_own_package_init() -> None:
    graph = _graph()
    bad = [(name, dep) for name, deps in graph.items() for dep in deps
           if dep in _parents(name) and dep != "ckptfetch" and name not in FACADE_USERS]
    assert not bad, f"submodules importing their package's __init__: {bad}"


def test_nothing_below_the_facade_imports_it_or_the_package_root() -> None:
    graph = _graph()
    bad = sorted((name, dep) for name, deps in graph.items() for dep in deps
                 if dep in ("ckptfetch", "ckptfetch.api") and name not in FACADE_USERS and not name.startswith("ckptfetch.cli."))
    assert not bad, f"modules below the facade importing it: {bad}"


def test_the_engine_does_not_reach_up() -> None:
    """download/ is the bottom of the pipeline: it knows nothing of manifests, sources or runs."""
    graph = _graph()
    allowed_prefixes = ("ckptfetch.download", "ckptfetch.errors", "ckptfetch.compat", "ckptfetch.hashing",
                        "ckptfetch.pins", "ckptfetch.progress", "ckptfetch.urls", "ckptfetch._testhooks",
                        "ckptfetch._version", "ckptfetch.failover")
    for name, deps in graph.items():
        if name.startswith("ckptfetch.download"):
            assert all(d.startswith(allowed_prefixes) for d in deps), (name, sorted(deps))


def _sizes() -> list[tuple[str, str, int, int]]:
    """(module, what, lines, budget) for every unit over its budget."""
    over = []
    for name, path in _modules().items():
        text = path.read_text()
        n = len(text.splitlines())
        if n > MAX_MODULE:
            over.append((name, "module", n, MAX_MODULE))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines, budget, what = node.end_lineno - node.lineno + 1, MAX_FUNCTION, f"function {node.name}"  # type: ignore[operator]
            elif isinstance(node, ast.ClassDef):
                lines, budget, what = node.end_lineno - node.lineno + 1, MAX_CLASS, f"class {node.name}"  # type: ignore[operator]
            else:
                continue
            if lines > budget:
                over.append((name, what, lines, budget))
    return over


def test_size_budget() -> None:
    """No function over 80 lines, no class over 250, no module over 500 (tests and benchmarks aside)."""
    over = _sizes()
    assert not over, "\n".join(f"{m}: {what} has {n} lines (budget {b})" for m, what, n, b in over)


def test_the_budget_check_sees_an_oversized_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ckptfetch").mkdir()
    (tmp_path / "ckptfetch" / "big.py").write_text("def f() -> None:\n" + "    x = 1\n" * MAX_FUNCTION)
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", tmp_path / "ckptfetch")
    assert _sizes() == [("ckptfetch.big", "function f", MAX_FUNCTION + 1, MAX_FUNCTION)]


def test_no_citation_of_documents_outside_the_repository() -> None:
    """Code and tests cite ARCHITECTURE.md and the README, never a spec or issue a maintainer does not have."""
    import re

    pattern = re.compile(r"SPEC §|SPEC\.md|\bissue \d+, item|\(issue \d+\)")
    offenders = []
    for folder in ("src", "tests", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == Path(__file__).name:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
