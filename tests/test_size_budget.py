"""The code's size budget: no module over 500 lines, no class over 250, no function over 80.

Checked for the download engine (`src/ckptfetch/download/`); widen `CHECKED`
as other packages meet it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ckptfetch"
CHECKED = sorted((SRC / "download").glob("*.py"))
MODULE, CLASS, FUNCTION = 500, 250, 80


def too_big(path: Path) -> list[str]:
    text = path.read_text()
    found = []
    if (n := len(text.splitlines())) > MODULE:
        found.append(f"{path.name}: {n} lines")
    for node in ast.walk(ast.parse(text)):
        limit = CLASS if isinstance(node, ast.ClassDef) else FUNCTION
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            n = (node.end_lineno or node.lineno) - node.lineno + 1
            if n > limit:
                found.append(f"{path.name}: {node.name} has {n} lines (limit {limit})")
    return found


@pytest.mark.parametrize("path", CHECKED, ids=[p.name for p in CHECKED])
def test_within_the_size_budget(path: Path) -> None:
    assert not too_big(path)


def test_the_budget_check_sees_an_oversized_function(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_text("def f() -> None:\n" + "    x = 1\n" * FUNCTION)
    assert too_big(big) == [f"big.py: f has {FUNCTION + 1} lines (limit {FUNCTION})"]
