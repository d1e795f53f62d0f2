"""ASVspoof 2019 LA import from the real protocol lines (a few) and generated flac files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED, speechlike

from fakevoice.datasets.asvspoof import balanced_subset, protocol_path, read_protocol
from fakevoice.datasets.builder import import_asvspoof
from fakevoice.datasets.manifest import read_clip, read_manifest, validate_manifest
from fakevoice.errors import DatasetError

PROTOCOLS = SHARED / "asvspoof2019"
pytestmark = pytest.mark.skipif(
    not (PROTOCOLS / "ASVspoof2019.LA.cm.train.trn.txt").is_file(),
    reason="shared/asvspoof2019 protocol files are not present",
)


def protocol_lines(name: str, bonafide: int, spoof: int) -> list[str]:
    lines = (PROTOCOLS / name).read_text().splitlines()
    real = [line for line in lines if line.endswith(" bonafide")][:bonafide]
    attacks: dict[str, str] = {}
    for line in lines:
        attack = line.split()[3]
        if line.endswith(" spoof") and attack not in attacks:
            attacks[attack] = line
    return real + sorted(attacks.values())[:spoof]


def make_la(root: Path) -> dict[str, list[str]]:
    """An LA folder with a few real protocol lines per partition and a flac file for each."""
    chosen = {
        "train": protocol_lines("ASVspoof2019.LA.cm.train.trn.txt", 2, 3),
        "dev": protocol_lines("ASVspoof2019.LA.cm.dev.trl.txt", 1, 2),
    }
    for partition, lines in chosen.items():
        path = protocol_path(root, partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        flac_dir = root / f"ASVspoof2019_LA_{partition}" / "flac"
        flac_dir.mkdir(parents=True)
        for i, line in enumerate(lines):
            utterance = line.split()[1]
            sf.write(flac_dir / f"{utterance}.flac", speechlike(1.2, seed=i), 16000)
    return chosen


def test_import_keeps_protocol_labels_and_audio(tmp_path: Path) -> None:
    chosen = make_la(tmp_path / "LA")
    report = import_asvspoof(
        tmp_path / "LA", tmp_path / "out", noise_levels=[None], workers=1, progress=False
    )
    frame = read_manifest(tmp_path / "out")
    assert validate_manifest(tmp_path / "out", frame) == []
    expected = {}
    for partition, lines in chosen.items():
        for line in lines:
            speaker, utterance, _, attack, key = line.split()
            expected[utterance] = (speaker, "bonafide" if key == "bonafide" else attack, partition)
    assert report.items == len(expected) == len(frame)
    for row in frame.itertuples():
        speaker, label, partition = expected[row.utterance]
        assert (row.speaker, row._4, row.source) == (speaker, label, f"asvspoof2019-la-{partition}")
        assert row.generator == ("" if label == "bonafide" else label)
        # Imported as it is: no channel, so the clip is the flac's audio (to PCM16 precision).
        original, _ = sf.read(
            tmp_path / "LA" / f"ASVspoof2019_LA_{partition}" / "flac" / f"{row.utterance}.flac",
            dtype="float32",
        )
        clip = read_clip(tmp_path / "out", row.clip_path)
        assert clip.shape == original.shape
        assert np.max(np.abs(clip - original)) < 2e-4
    assert {c for c in frame["class"] if c != "bonafide"} <= {f"A{i:02d}" for i in range(1, 20)}


def test_limit_balances_classes(tmp_path: Path) -> None:
    trials = read_protocol(PROTOCOLS / "ASVspoof2019.LA.cm.train.trn.txt")
    subset = balanced_subset(trials, 14, seed=0)
    labels = [t.label for t in subset]
    assert len(subset) == 14 and labels.count("bonafide") == 2  # 7 classes take turns
    assert subset == balanced_subset(trials, 14, seed=0)
    assert subset != balanced_subset(trials, 14, seed=1)


def test_missing_pieces_are_clear_errors(tmp_path: Path) -> None:
    la = tmp_path / "LA"
    with pytest.raises(DatasetError, match="not a folder"):
        import_asvspoof(la, tmp_path / "out", progress=False)
    chosen = make_la(la)
    with pytest.raises(DatasetError, match="protocol file .* is missing"):
        import_asvspoof(la, tmp_path / "out", partitions=["eval"], progress=False)
    missing = chosen["dev"][0].split()[1]
    (la / "ASVspoof2019_LA_dev" / "flac" / f"{missing}.flac").unlink()
    with pytest.raises(DatasetError, match=f"no flac file.*{missing}"):
        import_asvspoof(la, tmp_path / "out", progress=False)
    protocol_path(la, "train").write_text("LA_0079 LA_T_1 bonafide\n")
    with pytest.raises(DatasetError, match="SPEAKER UTTERANCE - ATTACK KEY"):
        import_asvspoof(la, tmp_path / "out", partitions=["train"], progress=False)
