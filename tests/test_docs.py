"""Docs are checked: every example in a docstring of src/ runs (doctest), and says what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ckptfetch

MODULES = sorted(m.name for m in pkgutil.walk_packages(ckptfetch.__path__, "ckptfetch.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
