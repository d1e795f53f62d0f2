"""Manifest reading, writing and validation, and the item waveform (clip + the item's noise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import speechlike

from fakevoice.datasets.manifest import (
    MANIFEST_COLUMNS,
    clip_path,
    image_path,
    item_id,
    load_item_waveform,
    manifest_frame,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from fakevoice.datasets.noise import active_power
from fakevoice.errors import DatasetError


def make_dataset(root: Path) -> pd.DataFrame:
    """Two clips (bonafide + world) at two noise levels, with real files."""
    rows = []
    for label, seed in (("bonafide", 0), ("world", 1)):
        clip = clip_path("spk", label, "utt1")
        (root / clip).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / clip, speechlike(1.0, seed=seed), 16000, subtype="PCM_16")
        for noise in ("snr_inf", "snr_10db"):
            item = item_id("utt1", label, noise)
            image = image_path(noise, "spk", label, item)
            (root / image).parent.mkdir(parents=True, exist_ok=True)
            (root / image).write_bytes(b"png")
            rows.append(
                {"item": item, "utterance": "utt1", "speaker": "spk", "class": label,
                 "generator": "" if label == "bonafide" else label, "noise": noise,
                 "clip_path": clip, "image_path": image, "duration": 1.0, "language": "en",
                 "source": "test"}
            )  # fmt: skip
    return manifest_frame(rows)


def test_round_trip_keeps_columns_and_empty_strings(tmp_path: Path) -> None:
    frame = make_dataset(tmp_path)
    write_manifest(tmp_path, frame)
    back = read_manifest(tmp_path)
    assert tuple(back.columns) == MANIFEST_COLUMNS
    assert back["generator"].tolist() == frame["generator"].tolist()
    assert (back.loc[back["class"] == "bonafide", "generator"] == "").all()
    assert back["duration"].dtype == float
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert validate_manifest(tmp_path, back) == []


def test_validation_finds_problems(tmp_path: Path) -> None:
    frame = make_dataset(tmp_path)
    (tmp_path / frame.loc[0, "image_path"]).unlink()
    broken = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)
    broken.loc[2, "generator"] = ""
    broken.loc[3, "image_path"] = "../outside.png"
    problems = validate_manifest(tmp_path, broken)
    text = "\n".join(problems)
    assert "duplicate items" in text
    assert "does not exist" in text
    assert "disagree" in text
    assert "outside the dataset folder" in text


def test_missing_or_corrupt_manifest_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no manifest.csv"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("item,utterance\nx,y\n")
    with pytest.raises(DatasetError, match="missing the columns"):
        read_manifest(tmp_path)


def test_item_waveform_is_the_clip_with_its_own_noise(tmp_path: Path) -> None:
    frame = make_dataset(tmp_path)
    rows = frame.to_dict("records")
    clean = next(r for r in rows if r["class"] == "bonafide" and r["noise"] == "snr_inf")
    noisy = next(r for r in rows if r["class"] == "bonafide" and r["noise"] == "snr_10db")
    x = load_item_waveform(tmp_path, clean)
    y = load_item_waveform(tmp_path, noisy)
    assert x.dtype == np.float32 and x.shape == y.shape
    stored, _ = sf.read(tmp_path / clean["clip_path"], dtype="float32")
    assert np.array_equal(x, stored)
    snr = 10 * np.log10(active_power(x) / np.mean((y - x) ** 2))
    assert abs(snr - 10.0) < 1.5
    assert np.array_equal(y, load_item_waveform(tmp_path, noisy))  # same item, same noise
