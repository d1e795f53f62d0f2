"""Seeded, grouped train / validation splits of a manifest.

Items of one utterance (its bonafide clip, the spoofs made from it, every noise level) always land
on the same side, so a detector is never validated on a sentence it trained on. Three modes:

* ``utterance`` (default): a seeded share of utterances goes to validation;
* ``speaker``: a seeded share of speakers (leave-speakers-out);
* ``generator``: unseen attacks. For a seeded share of the utterances that have held-out spoofs,
  those spoofs and the utterances' bonafide clips form the validation set; training gets the other utterances without
  the held-out generators. Two kinds of rows belong to neither side: held-out spoofs of training
  utterances (they would put one utterance on both sides) and seen-generator spoofs of validation
  utterances (validation is about unseen attacks). :func:`split_masks` drops them;
  :func:`split_valid_mask`, which has only two sides, counts them as validation, so that an unseen
  attack never reaches training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import pandas as pd

from fakevoice.datasets.manifest import BONAFIDE
from fakevoice.errors import DatasetError, InvalidSpecError

SplitBy = Literal["utterance", "speaker", "generator"]
SPLIT_MODES: tuple[str, ...] = get_args(SplitBy)

TRAIN, VALID, UNUSED = 0, 1, -1
"""Codes of :func:`split_assignments`."""


def split_valid_mask(
    df: pd.DataFrame,
    by: SplitBy = "utterance",
    valid_fraction: float = 0.2,
    seed: int = 0,
    holdout: Sequence[str] | None = None,
) -> np.ndarray:
    """Which manifest rows are validation items.

    Args:
        df: Manifest rows (needs ``utterance``, ``speaker`` and ``class``).
        by: Grouping, see the module docstring.
        valid_fraction: Share of groups (utterances or speakers) for validation, in (0, 1).
        seed: The same seed gives the same split.
        holdout: ``by="generator"`` only: generator names to hold out; ``None`` picks a seeded
            ``valid_fraction`` share of the generators present (at least one).

    Returns:
        ``(len(df),)`` bool, True for validation. In ``generator`` mode rows that belong to
        neither side are True too (see the module docstring; :func:`split_masks` drops them).

    Raises:
        InvalidSpecError: unknown mode, fraction outside (0, 1), or unknown holdout names.
        DatasetError: too few groups to split.
    """
    codes = split_assignments(df, by, valid_fraction, seed, holdout)
    return np.asarray(codes != TRAIN, dtype=bool)


def split_masks(
    df: pd.DataFrame,
    by: SplitBy = "utterance",
    valid_fraction: float = 0.2,
    seed: int = 0,
    holdout: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation masks; rows in neither are left out (``generator`` mode only).

    Arguments and errors as :func:`split_valid_mask`.

    Returns:
        ``(train, valid)``, each ``(len(df),)`` bool, never both True for a row.
    """
    codes = split_assignments(df, by, valid_fraction, seed, holdout)
    return codes == TRAIN, codes == VALID


def split_assignments(
    df: pd.DataFrame,
    by: SplitBy = "utterance",
    valid_fraction: float = 0.2,
    seed: int = 0,
    holdout: Sequence[str] | None = None,
) -> np.ndarray:
    """Side of every row: :data:`TRAIN`, :data:`VALID` or :data:`UNUSED`, as ``(len(df),)`` int8.

    Arguments and errors as :func:`split_valid_mask`.
    """
    if by not in SPLIT_MODES:
        raise InvalidSpecError(f"split_by must be one of {', '.join(SPLIT_MODES)}; got '{by}'.")
    if not 0.0 < float(valid_fraction) < 1.0:
        raise InvalidSpecError(
            f"valid_fraction must be between 0 and 1 (exclusive); got {valid_fraction!r}."
        )
    utterances = df["utterance"].astype(str).to_numpy()
    if by == "utterance":
        valid = np.isin(utterances, _choose(np.unique(utterances), valid_fraction, seed, by))
    elif by == "speaker":
        groups = _speaker_groups(df)
        valid = np.isin(groups, _choose(np.unique(groups), valid_fraction, seed, by))
    else:
        return _generator_assignments(df, valid_fraction, seed, holdout)
    return np.where(valid, VALID, TRAIN).astype(np.int8)


def _choose(keys: np.ndarray, fraction: float, seed: int, by: str) -> np.ndarray:
    """A seeded ``fraction`` share of ``keys`` (sorted unique), at least one and not all."""
    if keys.size < 2:
        raise DatasetError(
            f"A split by {by} needs at least two different {by}s; this selection has {keys.size}."
        )
    count = min(max(1, round(fraction * keys.size)), keys.size - 1)
    order = np.random.default_rng(seed).permutation(keys.size)
    return keys[np.sort(order[:count])]


def _speaker_groups(df: pd.DataFrame) -> np.ndarray:
    """Speaker of each row, merged with any speaker sharing an utterance with it.

    Normally an utterance has one speaker; merging keeps the one-utterance-one-side rule even if
    a manifest says otherwise.
    """
    speakers = df["speaker"].astype(str).to_numpy()
    parent: dict[str, str] = {s: s for s in np.unique(speakers)}

    def root(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    first_speaker: dict[str, str] = {}
    for utterance, speaker in zip(df["utterance"].astype(str), speakers, strict=True):
        other = first_speaker.setdefault(utterance, speaker)
        a, b = root(other), root(speaker)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(s) for s in speakers], dtype=object).astype(str)


def _generator_assignments(
    df: pd.DataFrame, fraction: float, seed: int, holdout: Sequence[str] | None
) -> np.ndarray:
    labels = df["class"].astype(str).to_numpy()
    present = sorted(set(labels) - {BONAFIDE})
    if len(present) < 2:
        raise DatasetError(
            "A split by generator needs spoofs of at least two generators; this selection has "
            f"{len(present)}."
        )
    if holdout is None:
        held = set(_choose(np.array(present), fraction, seed, "generator").tolist())
    else:
        held = set(holdout)
        unknown = sorted(held - set(present))
        if unknown or not held:
            raise InvalidSpecError(
                f"holdout must name generators of this selection ({', '.join(present)}); "
                f"got {', '.join(unknown) or 'none'}."
            )
        if held >= set(present):
            raise InvalidSpecError("holdout cannot hold out every generator: training needs one.")
    utterances = df["utterance"].astype(str).to_numpy()
    is_held = np.isin(labels, sorted(held))
    # Validation utterances come from those with held-out spoofs, so that validation has some.
    candidates = np.unique(utterances[is_held])
    chosen = candidates if candidates.size < 2 else _choose(candidates, fraction, seed, "utterance")
    valid_utterances = np.isin(utterances, chosen)
    is_bonafide = labels == BONAFIDE
    codes = np.full(labels.size, UNUSED, dtype=np.int8)
    codes[valid_utterances & (is_held | is_bonafide)] = VALID
    codes[~valid_utterances & ~is_held] = TRAIN
    return codes
