"""Tests for fakevoice.colormaps: the tables match matplotlib's, unknown names are refused."""

from __future__ import annotations

import numpy as np
import pytest

from fakevoice.colormaps import COLORMAPS, colormap_lut
from fakevoice.errors import InvalidSpecError


@pytest.mark.parametrize("name", [c for c in COLORMAPS if c != "gray"])
def test_colormap_tables_match_matplotlib(name: str) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    reference = np.round(matplotlib.colormaps[name](np.arange(256))[:, :3] * 255)
    lut = colormap_lut(name)
    assert lut.shape == (256, 3)
    assert lut.dtype == np.uint8
    assert np.abs(lut.astype(int) - reference).max() <= 2


def test_gray_is_the_identity_ramp() -> None:
    assert (colormap_lut("gray") == np.arange(256, dtype=np.uint8)[:, None]).all()


def test_unknown_colormap_is_refused_and_tables_are_read_only() -> None:
    with pytest.raises(InvalidSpecError, match="colormap must be one of magma"):
        colormap_lut("jet")
    with pytest.raises(ValueError, match="read-only"):
        colormap_lut("magma")[0, 0] = 1
