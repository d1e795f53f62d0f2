"""Tests for fakevoice.png: files PIL reads back exactly, written atomically, bad images refused."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import speechlike
from PIL import Image

from fakevoice.errors import InvalidSamplesError
from fakevoice.features import FeatureSpec, render_image
from fakevoice.png import save_png


@pytest.fixture
def voice(rng: np.random.Generator) -> np.ndarray:
    """Speech-like signal plus a little white noise, 2 s at 16 kHz."""
    return speechlike(2.0, 16000) + (0.003 * rng.standard_normal(32000)).astype(np.float32)


def test_save_png_round_trip_is_atomic(tmp_path: Path, voice: np.ndarray) -> None:
    image = render_image(voice, FeatureSpec(image_height=100, image_width=180))
    path = tmp_path / "snr_inf" / "spk1" / "bonafide" / "item.png"
    save_png(image, path)
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        np.testing.assert_array_equal(np.asarray(saved.convert("RGB")), image)
    save_png(image[::-1].copy(), path)  # overwrite in place
    with Image.open(path) as saved:
        np.testing.assert_array_equal(np.asarray(saved), image[::-1])
    assert [p.name for p in path.parent.iterdir()] == ["item.png"]


def test_grey_png_is_valid_and_exact(tmp_path: Path, rng: np.random.Generator) -> None:
    grey = rng.integers(0, 256, size=(17, 31), dtype=np.uint8)
    save_png(grey, tmp_path / "grey.png")
    with Image.open(tmp_path / "grey.png") as saved:
        saved.verify()  # chunk CRCs and structure
    with Image.open(tmp_path / "grey.png") as saved:
        assert saved.mode == "L"
        assert saved.size == (31, 17)
        np.testing.assert_array_equal(np.asarray(saved), grey)
    assert (tmp_path / "grey.png").stat().st_mode & 0o777 == 0o644


def test_save_png_rejects_bad_images_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidSamplesError, match="uint8"):
        save_png(np.zeros((10, 10, 3), dtype=np.float32), tmp_path / "x.png")
    with pytest.raises(InvalidSamplesError, match=re.escape("(H, W, 3)")):
        save_png(np.zeros((10, 10, 4), dtype=np.uint8), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
