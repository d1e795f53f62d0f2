"""Fingerprints of clips: the same samples match whatever the file, other audio does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike
from test_manifest import make_dataset

from fakevoice.datasets.fingerprints import (
    FINGERPRINT_HEX,
    MAX_FINGERPRINTS,
    clip_fingerprint,
    items_heard,
    training_fingerprints,
    valid_fingerprints,
)
from fakevoice.errors import DatasetError


def test_the_same_samples_match_in_another_file_and_other_audio_does_not(tmp_path: Path) -> None:
    audio = np.round(speechlike(1.0, seed=3) * 32767).astype(np.int16)
    plain = tmp_path / "plain.wav"
    sf.write(plain, audio, 16000, subtype="PCM_16")
    # Another container and file name, the same 16-bit samples: the same fingerprint.
    flac = tmp_path / "other name.flac"
    sf.write(flac, audio, 16000, subtype="PCM_16")
    assert plain.read_bytes() != flac.read_bytes()
    assert clip_fingerprint(plain) == clip_fingerprint(flac)
    assert len(clip_fingerprint(plain)) == FINGERPRINT_HEX
    # One sample changed, or the same samples at another rate: other audio.
    changed = audio.copy()
    changed[100] += 1
    sf.write(tmp_path / "changed.wav", changed, 16000, subtype="PCM_16")
    sf.write(tmp_path / "rate.wav", audio, 22050, subtype="PCM_16")
    assert clip_fingerprint(tmp_path / "changed.wav") != clip_fingerprint(plain)
    assert clip_fingerprint(tmp_path / "rate.wav") != clip_fingerprint(plain)
    with pytest.raises(DatasetError, match="cannot be read"):
        clip_fingerprint(tmp_path / "missing.wav")


def test_items_heard_counts_every_noisy_copy_of_a_clip_heard(tmp_path: Path) -> None:
    frame = make_dataset(tmp_path)  # two clips (bonafide, world), each at two noise levels
    bonafide = frame[frame["class"] == "bonafide"]
    heard = training_fingerprints(tmp_path, bonafide)
    assert heard is not None and len(heard) == 1
    assert items_heard(tmp_path, frame, heard) == 2  # the bonafide clip's two noisy items
    assert items_heard(tmp_path, frame, []) == 0
    assert training_fingerprints(tmp_path, frame) == sorted(
        clip_fingerprint(tmp_path / clip) for clip in set(frame["clip_path"])
    )
    # A clip that is gone: no fingerprints for a model (it keeps none), an error for a test.
    (tmp_path / bonafide["clip_path"].iloc[0]).unlink()
    assert training_fingerprints(tmp_path, frame) is None
    with pytest.raises(DatasetError):
        items_heard(tmp_path, frame, heard)


def test_only_well_formed_fingerprints_are_kept_from_a_manifest() -> None:
    good = ["0123456789abcdef", "fedcba9876543210"]
    assert valid_fingerprints(list(reversed(good))) == good
    assert valid_fingerprints([]) == []
    for bad in (
        None,
        "0123456789abcdef",
        ["0123456789ABCDEF"],
        ["0123456789abcde"],
        ["../../etc/passwd"],
        [1234],
        ["0123456789abcdef"] * (MAX_FINGERPRINTS + 1),
    ):
        assert valid_fingerprints(bad) is None, bad
