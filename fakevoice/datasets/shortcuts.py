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
datasets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from fakevoice.datasets.cues import CUE_LABELS, CUE_NAMES, CUE_UNITS, clip_cues
from fakevoice.datasets.manifest import (
    CLIP_SAMPLE_RATE,
    read_clip,
    read_manifest,
    write_text_atomic,
)
from fakevoice.errors import DatasetError
from fakevoice.metrics.logistic import group_folds, held_out_scores

logger = logging.getLogger(__name__)

SHORTCUTS_NAME = "shortcuts.json"
AUDIT_VERSION = 1
MAX_AUDIT_CLIPS = 4000  # a larger dataset is audited on a seeded sample of its clips
MIN_CLASS_CLIPS = 20  # fewer clips of a class than this: its EER would mean little
STRONG_BELOW = 0.10  # an EER under this: the cues give the answer away
SOME_BELOW = 0.25  # under this: they help a detector noticeably

Severity = Literal["strong", "some", "none"]
HeldOut = Literal["speaker", "utterance"]


@dataclass(frozen=True)
class CueSeparation:
    """How one cue separates human clips from machine ones.

    Attributes:
        cue: A name of :data:`fakevoice.datasets.cues.CUE_NAMES`.
        eer: EER (fraction) with the cue as the score, in its better direction.
        bonafide_median: The cue's median over the human clips.
        spoof_median: Its median over the machine clips.
    """

    cue: str
    eer: float
    bonafide_median: float
    spoof_median: float

    @property
    def label(self) -> str:
        """The cue in words (``"silence before the speech"``)."""
        return CUE_LABELS.get(self.cue, self.cue)

    @property
    def unit(self) -> str:
        """What its medians are in (``"s"``, ``"dBFS"``...)."""
        return CUE_UNITS.get(self.cue, "")


@dataclass(frozen=True)
class Separation:
    """The cues against one set of machine clips (all of them, or one generator's).

    Attributes:
        spoof: ``"all"`` or the generator's class name.
        bonafide_clips: Human clips compared.
        spoof_clips: Machine clips compared.
        combined_eer: Cross-fitted EER of the cues together; ``None`` when a class has fewer than
            :data:`MIN_CLASS_CLIPS` clips or the clips cannot be split into folds.
        cues: Every cue alone, the most separating first.
    """

    spoof: str
    bonafide_clips: int
    spoof_clips: int
    combined_eer: float | None
    cues: list[CueSeparation]

    @property
    def against(self) -> str:
        """What the human clips are compared with, in words: ``"all machine clips"`` or the
        generator's name."""
        return "all machine clips" if self.spoof == "all" else self.spoof

    @property
    def best_cue(self) -> CueSeparation:
        return self.cues[0]

    @property
    def judged(self) -> bool:
        """Whether both sides have :data:`MIN_CLASS_CLIPS` clips: with fewer, one odd clip moves
        an EER by many points, so the comparison is shown but raises no alarm."""
        return min(self.bonafide_clips, self.spoof_clips) >= MIN_CLASS_CLIPS

    @property
    def lowest_eer(self) -> float:
        """The lowest EER any cue, or the cues together, reach."""
        eers = [self.best_cue.eer] + ([self.combined_eer] if self.combined_eer is not None else [])
        return min(eers)


@dataclass(frozen=True)
class ShortcutAudit:
    """The shortcut audit of a dataset (see the module's docstring).

    Attributes:
        clips: Clean clips audited.
        sampled_from: Clips the dataset has (more than ``clips`` when it was sampled).
        unreadable: Clips that could not be read (left out).
        held_out: What the cross-fitting held out: ``"speaker"`` or ``"utterance"``.
        pooled: Human clips against every machine clip.
        generators: Human clips against each generator with at least
            :data:`MIN_CLASS_CLIPS` clips, by name.
        too_few: Generators with fewer clips, not judged on their own.
    """

    clips: int
    sampled_from: int
    unreadable: int
    held_out: HeldOut
    pooled: Separation
    generators: dict[str, Separation]
    too_few: list[str] = field(default_factory=list)
    version: int = AUDIT_VERSION

    @property
    def comparisons(self) -> list[Separation]:
        return [self.pooled, *self.generators.values()]

    @property
    def worst(self) -> Separation:
        """The comparison where the cues separate best (pooled or one generator), among those
        with enough clips to judge when there are any."""
        judged = [s for s in self.comparisons if s.judged]
        return min(judged or self.comparisons, key=lambda s: s.lowest_eer)

    @property
    def severity(self) -> Severity:
        """``strong``, ``some`` or ``none``; ``none`` too when no comparison has enough clips."""
        if not self.worst.judged:
            return "none"
        eer = self.worst.lowest_eer
        return "strong" if eer < STRONG_BELOW else "some" if eer < SOME_BELOW else "none"

    def summary(self) -> str:
        """The finding in a sentence or two, for the page, the CLI and reports."""
        worst = self.worst
        against = "all machine clips" if worst.spoof == "all" else f"the {worst.spoof} clips"
        best = worst.best_cue
        if worst.combined_eer is not None and worst.combined_eer < best.eer:
            how = (
                f"the cues together reach {worst.combined_eer:.1%} EER on held-out {self.held_out}s"
            )
        else:
            how = f"the {best.label} alone reaches {best.eer:.1%} EER"
        if self.severity == "strong":
            return (
                f"Shortcut: simple cues give the answer away. Between human clips and {against}, "
                f"{how}. A detector can score this well without learning the synthesis; check "
                "whether the cue belongs to the attack or to how the clips were recorded and cut, "
                "and test on recordings from elsewhere."
            )
        if self.severity == "some":
            return (
                f"Possible shortcut: simple cues partly separate the classes. Between human clips "
                f"and {against}, {how}. A detector may lean on it; test it on recordings from "
                "elsewhere too."
            )
        if not self.worst.judged or all(c.combined_eer is None for c in self.comparisons):
            return (
                f"Too few clips for a firm answer ({self.pooled.bonafide_clips} human, "
                f"{self.pooled.spoof_clips} machine; {MIN_CLASS_CLIPS} of each are needed to "
                f"test the cues together on held-out {self.held_out}s). No cue alone separates "
                f"them well: the closest, between human clips and {against}, {how}."
            )
        return (
            "No shortcut found: no simple cue separates human from machine clips well (the "
            f"closest: between human clips and {against}, {how}; 50 % is chance)."
        )

    def generator_eers(self) -> dict[str, float]:
        """The lowest EER simple cues reach against each generator judged alone."""
        return {name: s.lowest_eer for name, s in self.generators.items()}

    def flagged(self, classes: Iterable[str] | None = None) -> list[Separation]:
        """The generators among ``classes`` (None: all) whose clips simple cues tell from the
        human ones (lowest EER under :data:`SOME_BELOW`), the most separable first; the pooled
        comparison instead when no generator has enough clips to be judged alone."""
        chosen = None if classes is None else set(classes)
        candidates = [s for n, s in self.generators.items() if chosen is None or n in chosen]
        if not self.generators:
            candidates = [self.pooled]
        return sorted(
            (s for s in candidates if s.judged and s.lowest_eer < SOME_BELOW),
            key=lambda s: s.lowest_eer,
        )

    def warning(
        self, classes: Iterable[str] | None = None, *, use: Literal["train", "test"] = "train"
    ) -> str | None:
        """A sentence for whoever is about to train on ``classes`` of the dataset (or has tested
        a model on it, ``use="test"``), or None when the audit flagged none of them."""
        flagged = self.flagged(classes)
        if not flagged:
            return None
        parts = [f"{s.against} ({s.lowest_eer:.0%} EER)" for s in flagged]
        named = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
        found = "simple cues (silence, level, bandwidth...) alone tell human clips from " + named
        if use == "test":
            return (
                f"Shortcut in this dataset: {found}. A model can score well on those without "
                "hearing the synthesis; weigh its EER on them (per generator, below) against "
                "the cues' own (Datasets > Shortcuts)."
            )
        return (
            f"Shortcut in this choice: {found}. A model may learn them instead of the voice, and "
            "its EER on this dataset will flatter it; leave those classes out to compare "
            "(Datasets > Shortcuts has the details)."
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity
        data["summary"] = self.summary()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShortcutAudit:
        """Read :meth:`to_dict`'s output (as kept in ``shortcuts.json``).

        Raises:
            DatasetError: the data is not an audit of this version.
        """
        try:
            if int(data["version"]) != AUDIT_VERSION:
                raise DatasetError("The shortcut audit was made by another version.")
            if data["held_out"] not in ("speaker", "utterance"):
                raise ValueError(f"held_out {data['held_out']!r}")
            return cls(
                clips=int(data["clips"]),
                sampled_from=int(data["sampled_from"]),
                unreadable=int(data["unreadable"]),
                held_out=data["held_out"],
                pooled=_separation_from_dict(data["pooled"]),
                generators={
                    str(k): _separation_from_dict(v) for k, v in data["generators"].items()
                },
                too_few=[str(name) for name in data.get("too_few", [])],
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise DatasetError(f"The shortcut audit cannot be read: {error}") from None


def _separation_from_dict(data: dict[str, Any]) -> Separation:
    combined = data["combined_eer"]
    cues = [CueSeparation(**cue) for cue in data["cues"]]
    if not cues:
        raise ValueError("a comparison has no cues")
    return Separation(
        spoof=str(data["spoof"]),
        bonafide_clips=int(data["bonafide_clips"]),
        spoof_clips=int(data["spoof_clips"]),
        combined_eer=None if combined is None else float(combined),
        cues=cues,
    )


# --- measuring -----------------------------------------------------------------------------------


def tied_eer(bonafide: np.ndarray, spoof: np.ndarray) -> float:
    """EER of scores that may tie (higher = more human), thresholds only between distinct values.

    The ASVspoof ranking (:func:`fakevoice.metrics.compute_eer`) puts tied bona fide trials
    before tied spoofs and may place a threshold inside a tie: harmless for a model's scores,
    but a cue such as "0.00 s of silence", shared by many clips of both classes, would then look
    worse than chance (all scores equal give 100 %). Here a threshold never splits a tie.
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
