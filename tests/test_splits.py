"""Grouped, seeded splits: no utterance ever sits on both sides, for every mode."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fakevoice.datasets.splits import (
    SPLIT_MODES,
    split_assignments,
    split_masks,
    split_valid_mask,
)
from fakevoice.errors import DatasetError, InvalidSpecError

GENERATORS = ("world", "griffinlim", "lpc", "espeak", "piper")


def random_manifest(rng: np.random.Generator) -> pd.DataFrame:
    """A manifest-like frame: utterances of a few speakers, some classes each, noise levels."""
    rows = []
    n_speakers = int(rng.integers(2, 7))
    noises = ["snr_inf", "snr_20db", "snr_0db"][: int(rng.integers(1, 4))]
    for u in range(int(rng.integers(4, 40))):
        speaker = f"spk{rng.integers(n_speakers)}"
        classes = ["bonafide"] + [g for g in GENERATORS if rng.random() < 0.7]
        if len(classes) == 1:
            classes.append(GENERATORS[u % len(GENERATORS)])
        for label in classes:
            for noise in noises:
                rows.append(
                    {"utterance": f"u{u}", "speaker": speaker, "class": label, "noise": noise}
                )
    frame = pd.DataFrame(rows)
    # Every speaker and at least two generators present, so every mode can split.
    if (
        frame["speaker"].nunique() < 2
        or frame.loc[frame["class"] != "bonafide", "class"].nunique() < 2
    ):
        return random_manifest(rng)
    return frame.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)


def sides_of_utterances(frame: pd.DataFrame, train: np.ndarray, valid: np.ndarray) -> pd.Series:
    both = frame.assign(train=train, valid=valid).groupby("utterance")[["train", "valid"]].any()
    return both["train"] & both["valid"]


@pytest.mark.parametrize("by", SPLIT_MODES)
def test_no_utterance_on_both_sides(by: str, rng: np.random.Generator) -> None:
    for trial in range(40):
        frame = random_manifest(rng)
        train, valid = split_masks(frame, by=by, valid_fraction=0.3, seed=trial)  # type: ignore[arg-type]
        assert not np.any(train & valid)
        assert train.any() and valid.any()
        assert not sides_of_utterances(frame, train, valid).any()
        if by != "generator":
            assert np.all(train | valid)
            assert np.array_equal(
                valid, split_valid_mask(frame, by=by, valid_fraction=0.3, seed=trial)
            )  # type: ignore[arg-type]


def test_speaker_split_leaves_speakers_out(rng: np.random.Generator) -> None:
    for trial in range(20):
        frame = random_manifest(rng)
        valid = split_valid_mask(frame, by="speaker", seed=trial)
        assert not set(frame.loc[valid, "speaker"]) & set(frame.loc[~valid, "speaker"])


def test_generator_split_holds_attacks_out_of_training(rng: np.random.Generator) -> None:
    for trial in range(20):
        frame = random_manifest(rng)
        present = sorted(set(frame["class"]) - {"bonafide"})
        held = [present[trial % len(present)]]
        train, valid = split_masks(frame, by="generator", seed=trial, holdout=held)
        assert not frame.loc[train, "class"].isin(held).any()
        assert set(frame.loc[valid, "class"]) <= {"bonafide", *held}
        assert {"bonafide", *held} == set(frame.loc[valid, "class"])
        # The two-sided mask never trains on a held-out attack either.
        two_sided = split_valid_mask(frame, by="generator", seed=trial, holdout=held)
        assert not frame.loc[~two_sided, "class"].isin(held).any()
        assert np.all(valid <= two_sided)


def test_same_seed_same_split_and_seeds_differ(rng: np.random.Generator) -> None:
    frame = random_manifest(rng)
    while frame["utterance"].nunique() < 20:
        frame = random_manifest(rng)
    a = split_valid_mask(frame, seed=1)
    assert np.array_equal(a, split_valid_mask(frame.copy(), seed=1))
    assert any(not np.array_equal(a, split_valid_mask(frame, seed=s)) for s in range(2, 6))


def test_valid_fraction_is_respected_in_groups(rng: np.random.Generator) -> None:
    frame = pd.DataFrame(
        {"utterance": [f"u{i}" for i in range(100)], "speaker": "s", "class": "bonafide"}
    )
    for fraction in (0.1, 0.25, 0.5):
        valid = split_valid_mask(frame, valid_fraction=fraction, seed=3)
        assert valid.sum() == round(100 * fraction)


def test_bad_arguments_are_clear() -> None:
    frame = pd.DataFrame(
        {"utterance": ["a", "a", "b", "b"], "speaker": ["s", "s", "s", "s"],
         "class": ["bonafide", "world", "bonafide", "lpc"]}
    )  # fmt: skip
    with pytest.raises(InvalidSpecError, match="split_by"):
        split_assignments(frame, by="colour")  # type: ignore[arg-type]
    with pytest.raises(InvalidSpecError, match="valid_fraction"):
        split_valid_mask(frame, valid_fraction=1.0)
    with pytest.raises(DatasetError, match="two different speakers"):
        split_valid_mask(frame, by="speaker")
    with pytest.raises(InvalidSpecError, match="holdout"):
        split_valid_mask(frame, by="generator", holdout=["hifigan"])
    with pytest.raises(InvalidSpecError, match="every generator"):
        split_valid_mask(frame, by="generator", holdout=["world", "lpc"])
