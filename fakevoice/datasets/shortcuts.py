"""How well recording cues alone tell a dataset's human clips from its machine ones.

A dataset where the silence before the speech, the level or the bandwidth separates the classes
lets a detector score well without learning the synthesis (see :mod:`fakevoice.datasets.cues`).
The audit reads the dataset's clean clips, computes their cues and measures:

* each cue alone: its EER when the cue itself is the score (in whichever direction is better);
* the cues together: a logistic regression on the standardised cues and their squares, fitted
  on some speakers and scored on the others (cross-fitted, :mod:`fakevoice.metrics.logistic`: up
  to 5 folds of whole speakers, or of utterances when speakers cannot be held out), so its EER is
  what a model could reach on unseen speakers from these cues alone;
* both again for every generator against the human clips (a shortcut may belong to one
  generator, e.g. a TTS voice that starts speaking at the first sample).

50 % EER is chance; an EER of a few percent means the cues give the answer away. The result is
kept beside the manifest as ``shortcuts.json`` by every build, and computed on request for older
datasets. What the audit found, and how it is said, is :mod:`fakevoice.datasets.shortcut_findings`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fakevoice.datasets.cues import CUE_NAMES, clip_cues
from fakevoice.datasets.manifest import (
    CLIP_SAMPLE_RATE,
    read_clip,
    read_manifest,
    write_text_atomic,
)
from fakevoice.datasets.shortcut_findings import (
    MIN_CLASS_CLIPS,
    CueSeparation,
    HeldOut,
    Separation,
    ShortcutAudit,
)
from fakevoice.errors import DatasetError
from fakevoice.metrics.logistic import group_folds, held_out_scores

logger = logging.getLogger(__name__)

SHORTCUTS_NAME = "shortcuts.json"
MAX_AUDIT_CLIPS = 4000  # a larger dataset is audited on a seeded sample of its clips


# --- measuring -----------------------------------------------------------------------------------


def tied_eer(bonafide: np.ndarray, spoof: np.ndarray) -> float:
    """EER of scores that may tie (higher = more human), thresholds only between distinct values.

    A cue such as "0.00 s of silence" is shared by many clips of both classes. The official
    ASVspoof ranking would put a threshold inside such a tie and call the cue worse than chance
    (all scores equal give 100 %); :func:`fakevoice.metrics.compute_eer` crosses the tie as a
    random order would. A cue is a rule a person could apply, so here a threshold never splits
    a tie: the EER is at the best threshold there is.
    """
    values = np.unique(np.concatenate([bonafide, spoof]))
    thresholds = np.concatenate([[values[0] - 1.0], values])
    frr = np.searchsorted(np.sort(bonafide), thresholds, side="right") / bonafide.size
    far = 1.0 - np.searchsorted(np.sort(spoof), thresholds, side="right") / spoof.size
    index = int(np.argmin(np.abs(frr - far)))
    return float((frr[index] + far[index]) / 2)


def cue_separation(cue: str, bonafide: np.ndarray, spoof: np.ndarray) -> CueSeparation:
    """One cue as a score, in its better direction (a one-bit choice on the same clips)."""
    eer = min(tied_eer(bonafide, spoof), tied_eer(-bonafide, -spoof))
    return CueSeparation(cue, eer, float(np.median(bonafide)), float(np.median(spoof)))


def standardised_squares(train: np.ndarray, cues: np.ndarray) -> np.ndarray:
    """The cues standardised with the training part's mean and spread, their squares (so a
    cue whose extremes mark a class counts too) and the constant."""
    mean, scale = train.mean(axis=0), train.std(axis=0)
    scale[scale == 0] = 1.0
    standard = (cues - mean) / scale
    return np.hstack([standard, standard**2 - 1.0, np.ones((cues.shape[0], 1))])


def separation(frame: pd.DataFrame, spoof: str, held_out: HeldOut, seed: int) -> Separation:
    """The cues of ``frame`` (columns :data:`CUE_NAMES`, ``class``, ``speaker``, ``utterance``)
    against each other: human clips (``class == "bonafide"``) against the rest."""
    y = (frame["class"] == "bonafide").to_numpy(dtype=float)
    values = frame[list(CUE_NAMES)].to_numpy(dtype=float)
    cues = sorted(
        (
            cue_separation(name, values[y == 1, i], values[y == 0, i])
            for i, name in enumerate(CUE_NAMES)
        ),
        key=lambda c: c.eer,
    )
    combined = None
    if min(y.sum(), (1 - y).sum()) >= MIN_CLASS_CLIPS:
        folds = group_folds(frame[held_out].to_numpy(dtype=str), seed)
        if folds is not None:
            scores = held_out_scores(values, y, folds, standardised_squares)
            if scores is not None:
                combined = tied_eer(scores[y == 1], scores[y == 0])
    return Separation(spoof, int(y.sum()), int((1 - y).sum()), combined, cues)


def _held_out(frame: pd.DataFrame) -> HeldOut:
    """Speakers when at least two hold human clips and two hold machine clips, else utterances."""
    with_human = int(frame.loc[frame["class"] == "bonafide", "speaker"].nunique())
    with_machine = int(frame.loc[frame["class"] != "bonafide", "speaker"].nunique())
    return "speaker" if with_human >= 2 and with_machine >= 2 else "utterance"


def audit_cues(
    frame: pd.DataFrame, *, seed: int = 0, sampled_from: int | None = None, unreadable: int = 0
) -> ShortcutAudit:
    """Audit clips whose cues are known.

    Args:
        frame: One row per clip: :data:`CUE_NAMES`, ``class`` (``"bonafide"`` or a generator),
            ``speaker``, ``utterance``.
        seed: Seeds the dealing of groups into folds.
        sampled_from: Clips the dataset has, when ``frame`` is a sample.
        unreadable: Clips left out because they could not be read.

    Raises:
        DatasetError: the clips are not both human and machine.
    """
    human = int((frame["class"] == "bonafide").sum())
    if human == 0 or human == len(frame):
        raise DatasetError(
            "A shortcut audit compares human clips with machine ones; this dataset has "
            + ("no human clips." if human == 0 else "no machine clips.")
        )
    held_out = _held_out(frame)
    pooled = separation(frame, "all", held_out, seed)
    generators: dict[str, Separation] = {}
    too_few: list[str] = []
    bonafide = frame[frame["class"] == "bonafide"]
    for name in sorted(set(frame["class"]) - {"bonafide"}):
        rows = frame[frame["class"] == name]
        if len(rows) < MIN_CLASS_CLIPS:
            too_few.append(name)
            continue
        generators[name] = separation(pd.concat([bonafide, rows]), name, held_out, seed)
    return ShortcutAudit(
        clips=len(frame),
        sampled_from=len(frame) if sampled_from is None else sampled_from,
        unreadable=unreadable,
        held_out=held_out,
        pooled=pooled,
        generators=generators,
        too_few=too_few,
    )


def audit_dataset(
    dataset_dir: Path, *, seed: int = 0, max_clips: int = MAX_AUDIT_CLIPS
) -> ShortcutAudit:
    """Audit the clean clips of a built dataset (a seeded sample of ``max_clips`` when larger).

    Raises:
        DatasetError: the manifest cannot be read, no clip can, or a class is missing.
    """
    manifest = read_manifest(dataset_dir)
    clips = manifest.drop_duplicates("clip_path")[["clip_path", "class", "speaker", "utterance"]]
    total = len(clips)
    if total > max_clips:
        clips = clips.sample(n=max_clips, random_state=seed).sort_index()
    rows: list[dict[str, Any]] = []
    unreadable = 0
    for clip in clips.to_dict("records"):
        try:
            samples = read_clip(dataset_dir, str(clip["clip_path"]))
        except DatasetError as error:
            logger.warning("shortcut audit leaves out a clip: %s", error)
            unreadable += 1
            continue
        rows.append(
            {
                **clip_cues(samples, CLIP_SAMPLE_RATE),
                "class": clip["class"],
                "speaker": clip["speaker"],
                "utterance": clip["utterance"],
            }
        )
    if not rows:
        raise DatasetError("No clip of the dataset could be read for the shortcut audit.")
    return audit_cues(pd.DataFrame(rows), seed=seed, sampled_from=total, unreadable=unreadable)


def write_audit(dataset_dir: Path, audit: ShortcutAudit) -> None:
    """Keep the audit beside the manifest as ``shortcuts.json``."""
    write_text_atomic(
        Path(dataset_dir) / SHORTCUTS_NAME, json.dumps(audit.to_dict(), indent=2) + "\n"
    )


def read_audit(dataset_dir: Path) -> ShortcutAudit | None:
    """The kept audit, or ``None`` when the dataset has none (or one an older version wrote)."""
    path = Path(dataset_dir) / SHORTCUTS_NAME
    if not path.is_file():
        return None
    try:
        return ShortcutAudit.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, DatasetError) as error:
        logger.warning("ignoring %s: %s", path, error)
        return None


def audit_and_keep(dataset_dir: Path) -> ShortcutAudit | None:
    """Audit a dataset a build just wrote and keep the result; a build never fails on its audit."""
    try:
        audit = audit_dataset(dataset_dir)
    except DatasetError as error:
        logger.info("no shortcut audit for %s: %s", dataset_dir, error)
        return None
    write_audit(dataset_dir, audit)
    return audit
