"""The benchmark scripts of bench/ still load against the package (mypy checks fakevoice/ only,
and ruff does not resolve imports: a moved function once left bench/training.py broken)."""

from __future__ import annotations

import pytest
from conftest import BENCH, bench_module


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_a_bench_script_loads_and_has_its_entry(script: str) -> None:
    module = bench_module(script)  # imports and definitions only: main() is not run
    assert callable(module.main)
