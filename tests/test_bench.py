"""The benchmark scripts of bench/ still load against the package (mypy checks fakevoice/ only,
and ruff does not resolve imports: a moved function once left bench/training.py broken)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_a_bench_script_loads_and_has_its_entry(script: str) -> None:
    name = f"bench_{Path(script).stem}"
    spec = importlib.util.spec_from_file_location(name, BENCH / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)  # imports and definitions only: main() is not run
    finally:
        del sys.modules[name]
    assert callable(module.main)
