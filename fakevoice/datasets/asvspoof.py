"""ASVspoof 2019 LA (logical access): protocol files and flac trials as recordings.

The layout is the one the challenge distributes::

    LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.train.trn.txt   (dev.trl, eval.trl)
    LA/ASVspoof2019_LA_train/flac/LA_T_1138215.flac                    (dev, eval)

Protocol lines are ``SPEAKER UTTERANCE - ATTACK KEY`` with KEY ``bonafide`` or ``spoof`` and
ATTACK ``-`` or ``A01``..``A19``. The class of a trial is ``bonafide`` or its attack id, so both
binary and multi-class detectors can be trained. The trials are imported as they are: ASVspoof is
already a dataset whose two classes share one channel, so no spoof is generated and
:func:`fakevoice.datasets.channel.equalise` is not applied.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakevoice.datasets.manifest import BONAFIDE
from fakevoice.datasets.sources import Recording
from fakevoice.errors import DatasetError, InvalidSpecError

logger = logging.getLogger(__name__)

PARTITIONS: dict[str, str] = {"train": "trn", "dev": "trl", "eval": "trl"}
PROTOCOL_DIR = "ASVspoof2019_LA_cm_protocols"
_ATTACK = re.compile(r"^A\d\d$")
_ID = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class Trial:
    """One protocol line: ``speaker``, ``utterance``, ``attack`` (``-`` or Axx), ``key``."""

    speaker: str
    utterance: str
    attack: str
    key: str

    @property
    def label(self) -> str:
        """``bonafide`` or the attack id."""
        return BONAFIDE if self.key == BONAFIDE else self.attack


def protocol_path(la_dir: Path, partition: str) -> Path:
    """Path of a partition's countermeasure protocol file."""
    return la_dir / PROTOCOL_DIR / f"ASVspoof2019.LA.cm.{partition}.{PARTITIONS[partition]}.txt"


def read_protocol(path: Path) -> list[Trial]:
    """Parse a CM protocol file.

    Raises:
        DatasetError: the file is missing or a line is not ``SPEAKER UTTERANCE - ATTACK KEY``.
    """
    if not path.is_file():
        raise DatasetError(f"The ASVspoof protocol file {path} is missing.")
    trials = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        valid = (
            len(fields) == 5
            and _ID.match(fields[0]) is not None
            and _ID.match(fields[1]) is not None
            and fields[4] in (BONAFIDE, "spoof")
            and (fields[3] == "-" or _ATTACK.match(fields[3]) is not None)
            and (fields[4] == BONAFIDE or fields[3] != "-")
        )
        if not valid:
            raise DatasetError(
                f"Line {number} of {path.name} is not 'SPEAKER UTTERANCE - ATTACK KEY': {line!r}"
            )
        trials.append(Trial(fields[0], fields[1], fields[3], fields[4]))
    return trials


def balanced_subset(trials: list[Trial], limit: int, seed: int) -> list[Trial]:
    """At most ``limit`` trials, classes taking turns (seeded order within each class).

    Returns:
        The chosen trials in protocol order.
    """
    by_label: dict[str, list[int]] = {}
    for index, trial in enumerate(trials):
        by_label.setdefault(trial.label, []).append(index)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(by_label[label])) for label in sorted(by_label)]
    chosen: list[int] = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(int(queue.pop(0)))
    return [trials[i] for i in sorted(chosen)]


def asvspoof_recordings(
    la_dir: Path, partitions: Sequence[str], limit: int | None = None, seed: int = 0
) -> list[Recording]:
    """The trials of some partitions as recordings (source ``asvspoof2019-la-<partition>``).

    Args:
        la_dir: The ``LA`` folder.
        partitions: Some of ``train``, ``dev``, ``eval``.
        limit: At most this many trials per partition, balanced over classes (seeded).
        seed: Seed of that choice.

    Raises:
        InvalidSpecError: unknown partition or a limit below 1.
        DatasetError: a protocol file or flac folder is missing, or flac files named in the
            protocol are absent.
    """
    if not la_dir.is_dir():
        raise DatasetError(f"'{la_dir}' is not a folder (expected the ASVspoof 2019 LA folder).")
    unknown = [p for p in partitions if p not in PARTITIONS]
    if unknown or not partitions:
        raise InvalidSpecError(
            f"partitions must be some of {', '.join(PARTITIONS)}; got {', '.join(unknown) or 'none'}."
        )
    if limit is not None and limit < 1:
        raise InvalidSpecError(f"limit must be at least 1; got {limit}.")
    recordings: list[Recording] = []
    for partition in dict.fromkeys(partitions):
        trials = read_protocol(protocol_path(la_dir, partition))
        if limit is not None:
            trials = balanced_subset(trials, limit, seed)
        flac_dir = la_dir / f"ASVspoof2019_LA_{partition}" / "flac"
        if not flac_dir.is_dir():
            raise DatasetError(f"The folder {flac_dir} with the {partition} flac files is missing.")
        missing = [t.utterance for t in trials if not (flac_dir / f"{t.utterance}.flac").is_file()]
        if missing:
            raise DatasetError(
                f"{len(missing)} of {len(trials)} {partition} trials have no flac file in "
                f"{flac_dir}, e.g. {missing[0]}.flac."
            )
        for t in trials:
            recordings.append(
                Recording(
                    key=t.utterance,
                    path=flac_dir / f"{t.utterance}.flac",
                    speaker=t.speaker,
                    language="en",
                    source=f"asvspoof2019-la-{partition}",
                    label=t.label,
                )
            )
    return recordings
