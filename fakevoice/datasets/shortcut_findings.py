"""What a shortcut audit found, and how it is said: the per-cue and per-generator separations,
the audit's severity, and its summary and warnings in words.

:mod:`fakevoice.datasets.shortcuts` measures the cues of a dataset's clips and builds a
:class:`ShortcutAudit`; pages, the API, the CLI and reports read what it found from here.
:meth:`ShortcutAudit.to_dict` and :meth:`ShortcutAudit.from_dict` are the form kept in
``shortcuts.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from fakevoice.datasets.cues import CUE_LABELS, CUE_UNITS
from fakevoice.errors import DatasetError

# 2: the level, peak, noise floor, silence and bandwidth of a clip are measured about its mean, so
# a DC offset no longer counts twice; an audit of another version is read as none (made again).
AUDIT_VERSION = 2
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
    """The shortcut audit of a dataset (see :mod:`fakevoice.datasets.shortcuts`).

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
