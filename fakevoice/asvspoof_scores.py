"""ASVspoof 2019 score files: read countermeasure and ASV score files, report EER and min t-DCF.

The parsers take the challenge's plain-text formats (``UTTERANCE ATTACK KEY SCORE`` for
countermeasures, ``SPEAKER ATTACK KEY SCORE`` for the ASV system) and explain a malformed line by
its number; :func:`asvspoof_report` computes the metrics of :mod:`fakevoice.metrics` on them. They
check our metrics against published systems' score files (the known-answer tests).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fakevoice.errors import DatasetError
from fakevoice.metrics import (
    ASVSPOOF2019_COST,
    TDCFCostModel,
    asv_error_rates,
    compute_eer,
    compute_tdcf_curve,
    curve_minimum,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CMScores:
    """Countermeasure scores of an ASVspoof score file (``UTTERANCE ATTACK KEY SCORE`` lines).

    Attributes:
        utterance: ``(n,)`` utterance ids.
        attack: ``(n,)`` attack ids (``A01`` ... ``A19``; ``-`` for bona fide).
        key: ``(n,)`` ``bonafide`` or ``spoof``.
        score: ``(n,)`` float64 scores, higher = more bona fide.
    """

    utterance: np.ndarray
    attack: np.ndarray
    key: np.ndarray
    score: np.ndarray

    @property
    def bonafide(self) -> np.ndarray:
        """Scores of bona fide trials."""
        return self.score[self.key == "bonafide"]

    @property
    def spoof(self) -> np.ndarray:
        """Scores of all spoof trials."""
        return self.score[self.key == "spoof"]

    @property
    def attacks(self) -> list[str]:
        """Sorted attack ids of the spoof trials."""
        return sorted(set(self.attack[self.key == "spoof"].tolist()))

    def spoof_of(self, attack: str) -> np.ndarray:
        """Scores of the spoof trials of one attack."""
        return self.score[(self.key == "spoof") & (self.attack == attack)]


@dataclass(frozen=True)
class ASVScores:
    """ASV scores of an ASVspoof ASV score file (``SOURCE KEY SCORE`` lines).

    Attributes:
        source: ``(n,)`` ``bonafide`` or the attack id of the trial.
        key: ``(n,)`` ``target``, ``nontarget`` or ``spoof``.
        score: ``(n,)`` float64 ASV scores, higher = more likely the claimed speaker.
    """

    source: np.ndarray
    key: np.ndarray
    score: np.ndarray

    @property
    def target(self) -> np.ndarray:
        return self.score[self.key == "target"]

    @property
    def nontarget(self) -> np.ndarray:
        return self.score[self.key == "nontarget"]

    @property
    def spoof(self) -> np.ndarray:
        return self.score[self.key == "spoof"]

    def spoof_of(self, attack: str) -> np.ndarray:
        """ASV scores of the spoof trials of one attack."""
        return self.score[(self.key == "spoof") & (self.source == attack)]


def _unreadable(path: Path, exc: OSError) -> DatasetError:
    """Why the score file ``path`` could not be opened, in words (not "[Errno 21] ...")."""
    if isinstance(exc, FileNotFoundError):
        return DatasetError(f"Score file {path} does not exist.")
    if isinstance(exc, IsADirectoryError):
        return DatasetError(f"{path} is a folder, not a score file; give the file in it.")
    return DatasetError(f"Score file {path} could not be read: {exc.strerror or exc}.")


def _read_columns(
    path: Path, n_columns: int, keys: tuple[str, ...], key_column: int
) -> list[list[str]]:
    """Split a whitespace-separated score file into rows; DatasetError on anything malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _unreadable(path, exc) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"Score file {path} could not be read as text: {exc}.") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != n_columns:
            raise DatasetError(
                f"{path.name} line {number}: expected {n_columns} columns, got {len(parts)}."
            )
        if parts[key_column] not in keys:
            raise DatasetError(
                f"{path.name} line {number}: key must be one of {', '.join(keys)}; "
                f"got '{parts[key_column]}'."
            )
        try:
            score = float(parts[-1])
        except ValueError:
            raise DatasetError(
                f"{path.name} line {number}: score '{parts[-1]}' is not a number."
            ) from None
        if math.isnan(score):
            raise DatasetError(f"{path.name} line {number}: score is NaN.")
        rows.append(parts)
    if not rows:
        raise DatasetError(f"Score file {path} holds no scores.")
    return rows


def read_cm_scores(path: Path) -> CMScores:
    """Read a countermeasure score file: lines ``UTTERANCE ATTACK KEY SCORE``.

    Raises:
        DatasetError: the file is missing, empty or has a malformed line (its number is given).
    """
    rows = _read_columns(path, 4, ("bonafide", "spoof"), key_column=2)
    columns = list(zip(*rows, strict=True))
    scores = CMScores(
        utterance=np.array(columns[0]),
        attack=np.array(columns[1]),
        key=np.array(columns[2]),
        score=np.array(columns[3], dtype=np.float64),
    )
    logger.info("read %d CM scores from %s", scores.score.size, path)
    return scores


def read_workbench_scores(path: Path) -> CMScores:
    """A test's or a run's per-item scores as this workbench writes them (``fakevoice evaluate
    --scores``, a run's ``valid_scores.csv``: ``item``, ``class``, ``p_human`` columns) as
    countermeasure scores: the attack is the item's class (``-`` for bona fide) and the score the
    log-odds of human (the EER is the same as of P(human); a t-DCF threshold sweep needs a score
    without a ceiling).

    Raises:
        DatasetError: the file is missing, lacks those columns, holds no rows, or has a P(human)
            outside 0 to 1.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(
            path, dtype={"item": str, "class": str}, keep_default_na=False, encoding="utf-8-sig"
        )
    except OSError as exc:
        raise _unreadable(path, exc) from None
    except (UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"Score file {path} could not be read as CSV: {exc}.") from None
    missing = {"item", "class", "p_human"} - set(frame.columns)
    if missing:
        raise DatasetError(f"{Path(path).name} lacks the column(s) {', '.join(sorted(missing))}.")
    if "model" in frame.columns and frame["model"].nunique() > 1:
        models = ", ".join(sorted(map(str, frame["model"].unique()))[:8])
        raise DatasetError(
            f"{Path(path).name} holds the scores of several models ({models}): keep one "
            "model's rows (or write each model's scores to a file of its own)."
        )
    if not len(frame):  # its header alone (a test that scored nothing, a file cut short)
        raise DatasetError(f"{Path(path).name} holds no scores: it has a header and no rows.")
    p_human = pd.to_numeric(frame["p_human"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(p_human).all() or (p_human < 0).any() or (p_human > 1).any():
        raise DatasetError(f"{Path(path).name}: p_human must be numbers from 0 to 1 on every row.")
    human = (frame["class"] == "bonafide").to_numpy()
    clipped = np.clip(p_human, 1e-12, 1 - 1e-12)
    return CMScores(
        utterance=frame["item"].to_numpy(dtype=str),
        attack=np.where(human, "-", frame["class"].to_numpy(dtype=str)),
        key=np.where(human, "bonafide", "spoof"),
        score=np.log(clipped) - np.log1p(-clipped),
    )


def read_any_cm_scores(path: Path) -> CMScores:
    """An ASVspoof countermeasure score file, or a workbench scores CSV (its header names the
    ``item``, ``class`` and ``p_human`` columns; a spreadsheet's byte-order mark is fine)."""
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    header = {name.strip() for name in first.lstrip("\ufeff").split(",")}
    if {"item", "class", "p_human"} <= header:
        return read_workbench_scores(path)
    return read_cm_scores(path)


def read_asv_scores(path: Path) -> ASVScores:
    """Read an ASVspoof ASV score file: lines ``SOURCE KEY SCORE``, KEY target/nontarget/spoof.

    Raises:
        DatasetError: the file is missing, empty or has a malformed line (its number is given).
    """
    rows = _read_columns(path, 3, ("target", "nontarget", "spoof"), key_column=1)
    columns = list(zip(*rows, strict=True))
    scores = ASVScores(
        source=np.array(columns[0]),
        key=np.array(columns[1]),
        score=np.array(columns[2], dtype=np.float64),
    )
    logger.info("read %d ASV scores from %s", scores.score.size, path)
    return scores


def asvspoof_report(
    cm: CMScores, asv: ASVScores | None = None, cost_model: TDCFCostModel = ASVSPOOF2019_COST
) -> dict[str, Any]:
    """EER (pooled and per attack) and, given ASV scores, min t-DCF of a countermeasure.

    Args:
        cm: countermeasure scores.
        asv: the organisers' ASV scores for the same partition, or ``None`` to skip the t-DCF.
        cost_model: t-DCF priors and costs.

    Returns:
        A JSON-able dict: ``n_bonafide``, ``n_spoof``, ``eer`` (fraction), ``eer_threshold``,
        ``min_tdcf`` and ``min_tdcf_threshold`` (``None`` without ASV scores), ``per_attack``
        (attack -> ``{"eer", "min_tdcf"}``) and ``cautions`` (sentences for the reader: the ASV
        scores name none of the countermeasure's attacks).

    Raises:
        InvalidSpecError: bona fide or spoof trials are missing, or the ASV scores are unusable.
    """
    eer, eer_threshold = compute_eer(cm.bonafide, cm.spoof)
    report: dict[str, Any] = {
        "n_bonafide": int(cm.bonafide.size),
        "n_spoof": int(cm.spoof.size),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "min_tdcf": None,
        "min_tdcf_threshold": None,
        "per_attack": {},
        "cautions": [],
    }
    asv_rates = None
    if asv is not None:
        asv_attacks = sorted(set(asv.source[asv.key == "spoof"].tolist()))
        if cm.attacks and asv_attacks and not set(cm.attacks) & set(asv_attacks):
            # The eval scores with the dev ASV file (say) give a pooled figure that looks right
            # and is not: say so rather than drop each attack's min t-DCF in silence.
            report["cautions"].append(
                f"The ASV scores name none of these scores' attacks ({_attack_span(cm.attacks)}; "
                f"theirs: {_attack_span(asv_attacks)}): are both files of the same partition "
                "(dev or eval)? The min t-DCF above takes the ASV file's spoof trials as they "
                "are, and no attack has one of its own."
            )
        asv_rates = asv_error_rates(asv.target, asv.nontarget, asv.spoof)
        min_tdcf, threshold = curve_minimum(
            *compute_tdcf_curve(cm.bonafide, cm.spoof, asv_rates, cost_model)
        )
        report.update(min_tdcf=min_tdcf, min_tdcf_threshold=threshold)
    for attack in cm.attacks:
        attack_cm = cm.spoof_of(attack)
        entry: dict[str, float | None] = {"eer": compute_eer(cm.bonafide, attack_cm)[0]}
        entry["min_tdcf"] = None
        if asv is not None and asv_rates is not None and asv.spoof_of(attack).size:
            # As the official per-attack breakdown: the ASV threshold stays fixed, its spoof miss
            # rate is that of this attack's trials.
            attack_asv = asv_error_rates(
                asv.target, asv.nontarget, asv.spoof_of(attack), asv_rates.threshold
            )
            curve, thresholds = compute_tdcf_curve(cm.bonafide, attack_cm, attack_asv, cost_model)
            entry["min_tdcf"] = curve_minimum(curve, thresholds)[0]
        report["per_attack"][attack] = entry
    return report


def _attack_span(attacks: list[str]) -> str:
    """``A07 to A19`` for a sorted list of attack names (a single name alone)."""
    return attacks[0] if len(attacks) == 1 else f"{attacks[0]} to {attacks[-1]}"
