"""Verdict history: each analysis belongs to the user who asked for it, and only they list it."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, func, insert, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from fakevoice.errors import InvalidSpecError, NotFoundError
from fakevoice.store.db import lower_text
from fakevoice.store.records import (
    ANALYSIS_OUTCOMES,
    VERDICT_LABELS,
    Actor,
    AnalysisFilter,
    AnalysisRecord,
    AnalysisSource,
    field_names,
    is_sha256,
    record_from_row,
    to_record,
)
from fakevoice.store.tables import (
    ANALYSIS_SOURCES,
    MAX_NOTE_LENGTH,
    AnalysisRow,
    ModelRow,
    utcnow,
)

logger = logging.getLogger(__name__)

MAX_PAGE = 1000
MAX_WINDOWS = 5000  # a 600 s clip in 4 s windows overlapping by half has 300
MAX_EXPLANATION_BYTES = 64 * 1024


def add_analysis(
    session: Session,
    actor: Actor,
    *,
    model_id: int,
    file_name: str,
    duration: float,
    sample_rate: int,
    verdict: str,
    probabilities: Mapping[str, float],
    threshold: float,
    source: AnalysisSource = "page",
    file_sha256: str | None = None,
    cautions: Sequence[str] = (),
    windows: Sequence[Mapping[str, Any]] | None = None,
    typicality: float | None = None,
) -> AnalysisRecord:
    """Record a verdict the actor asked for with a model they may read.

    Args:
        file_name: the client's file name, kept for display only (cut to 255 characters).
        duration: seconds of audio; sample_rate: the file's original rate, Hz.
        verdict: e.g. "human", "machine", "inconclusive".
        probabilities: class name -> probability (0-1).
        threshold: the confidence threshold the verdict used (0-1).
        source: which face asked: "page", "api" or "cli".
        file_sha256: hex sha256 of the bytes judged (64 lowercase hex digits), when known.
        cautions: why the verdict deserves less trust, in sentences (:mod:`fakevoice.cautions`).
        windows: the per-window timeline (``start``, ``end`` in seconds, ``p_human``,
            ``top_class`` each), at most :data:`MAX_WINDOWS`; kept rounded (ms, 1e-6).
        typicality: how familiar the clip was to the model, 0 to 1 (None: not measured).

    Raises:
        NotFoundError: the model does not exist or the actor may not read it.
    """
    if source not in ANALYSIS_SOURCES:
        raise InvalidSpecError(
            f"source must be one of {', '.join(ANALYSIS_SOURCES)}; got {source!r}"
        )
    if file_sha256 is not None and not is_sha256(file_sha256):
        raise InvalidSpecError("file_sha256 must be 64 lowercase hexadecimal digits")
    timeline = None if windows is None else _timeline(windows)
    entry = AnalysisRecord(
        id=0,  # given by the insert
        owner_id=actor.user_id,
        model_id=model_id,
        # Shown, never a path; printable only (PostgreSQL text holds no NUL, pages no escapes).
        file_name="".join(c if c.isprintable() else "?" for c in str(file_name))[:255],
        duration=float(duration),
        sample_rate=int(sample_rate),
        verdict=verdict,
        probabilities={str(k): float(v) for k, v in probabilities.items()},
        threshold=float(threshold),
        created_at=utcnow(),
        source=source,
        file_sha256=file_sha256,
        cautions=[str(caution) for caution in cautions],
        windows=timeline,
        typicality=_typicality(typicality),
    )
    values = {name: getattr(entry, name) for name in field_names(AnalysisRecord) if name != "id"}
    analysis_id = session.scalar(_insert_analysis(any_model=actor.is_admin), values)
    if analysis_id is None:
        raise NotFoundError(f"There is no model with id {model_id}.")
    return dataclasses.replace(entry, id=int(analysis_id))


def _typicality(value: float | None) -> float | None:
    if value is None:
        return None
    if not 0.0 <= float(value) <= 1.0:  # NaN fails too
        raise InvalidSpecError(f"typicality must be between 0 and 1; got {value!r}")
    return float(value)


def _timeline(windows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A verdict's windows as stored: checked, in time order, rounded."""
    if len(windows) > MAX_WINDOWS:
        raise InvalidSpecError(
            f"A verdict keeps at most {MAX_WINDOWS} windows; got {len(windows)}."
        )
    try:
        timeline = [
            {
                "start": round(float(w["start"]), 3),
                "end": round(float(w["end"]), 3),
                # As many digits as the verdict's own probabilities show (a report printing both
                # to 3 places read 0.297 and 0.296 for one window kept at 4).
                "p_human": round(float(w["p_human"]), 6),
                "top_class": str(w["top_class"])[:64],
            }
            for w in windows
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidSpecError(f"A window is start, end, p_human and top_class: {exc}") from None
    return sorted(timeline, key=lambda w: (w["start"], w["end"]))


@functools.cache
def _insert_analysis(*, any_model: bool) -> ReturningInsert[int]:
    """``INSERT INTO analyses ... SELECT ... FROM models WHERE`` the model is readable, returning
    the new id (none when it is not): the check and the write are one statement, built once,
    since every API verdict runs it.

    Args:
        any_model: any existing model will do (administrators), not only readable ones.
    """
    analyses = cast(Table, AnalysisRow.__table__)
    models = ModelRow.__table__.c
    names = [name for name in field_names(AnalysisRecord) if name != "id"]
    row = [
        models.id if name == "model_id" else bindparam(name, type_=analyses.c[name].type)
        for name in names
    ]
    wanted = models.id == bindparam("model_id")
    if not any_model:
        wanted = wanted & or_(models.owner_id == bindparam("owner_id"), models.is_public)
    return insert(analyses).from_select(names, select(*row).where(wanted)).returning(analyses.c.id)


UNCHANGED: Any = object()  # label_analysis: leave this field as it is


def label_analysis(
    session: Session,
    actor: Actor,
    analysis_id: int,
    *,
    outcome: str | None | object = UNCHANGED,
    note: str | None | object = UNCHANGED,
) -> AnalysisRecord:
    """Say what a judged clip really was (``human``, ``machine-generated``, or None: unknown)
    and/or keep a note with the verdict (None or empty: no note). Only the verdict's owner may:
    a history is personal, administrators included.

    Raises:
        NotFoundError: no such verdict of the actor's.
        InvalidSpecError: an unknown outcome, or a note longer than 500 characters.
    """
    row = session.get(AnalysisRow, analysis_id)
    if row is None or row.owner_id != actor.user_id:
        raise NotFoundError(f"You have no verdict with id {analysis_id}.")
    if outcome is not UNCHANGED:
        if outcome is not None and outcome not in ANALYSIS_OUTCOMES:
            raise InvalidSpecError(
                f"What the clip really was must be one of {', '.join(ANALYSIS_OUTCOMES)} "
                f"(or unknown); got {outcome!r}."
            )
        row.outcome = cast(str | None, outcome)
    if note is not UNCHANGED:
        text = (cast(str | None, note) or "").replace("\x00", "").strip()
        if len(text) > MAX_NOTE_LENGTH:
            raise InvalidSpecError(f"A note holds at most {MAX_NOTE_LENGTH} characters.")
        row.note = text or None
    session.flush()
    logger.info("verdict %d labelled by user %d", analysis_id, actor.user_id)
    return to_record(AnalysisRecord, row)


def rethreshold_analysis(
    session: Session, actor: Actor, analysis_id: int, *, threshold: float, verdict: str
) -> AnalysisRecord:
    """Keep the verdict its owner settled on after moving the threshold on the clip just judged
    (the probabilities stay as the model gave them). Only the verdict's owner may.

    Raises:
        NotFoundError: no such verdict of the actor's.
        InvalidSpecError: a threshold outside 0.5 to 1, or an unknown verdict label.
    """
    if not 0.5 <= float(threshold) <= 1.0:
        raise InvalidSpecError(f"The threshold must be between 0.5 and 1; got {threshold}.")
    if verdict not in VERDICT_LABELS:
        raise InvalidSpecError(f"A verdict is one of {', '.join(VERDICT_LABELS)}; got {verdict!r}.")
    row = session.get(AnalysisRow, analysis_id)
    if row is None or row.owner_id != actor.user_id:
        raise NotFoundError(f"You have no verdict with id {analysis_id}.")
    row.threshold, row.verdict = float(threshold), verdict
    session.flush()
    return to_record(AnalysisRecord, row)


def keep_explanation(
    session: Session, actor: Actor, analysis_id: int, explanation: Mapping[str, Any]
) -> AnalysisRecord:
    """Keep why a verdict was made with it (it replaces any kept before). Only the verdict's
    owner may, as for :func:`label_analysis`.

    Args:
        explanation: JSON-ready, at most :data:`MAX_EXPLANATION_BYTES` as JSON (an
            ``Explanation.to_dict()`` is about 10 KB with its 32 x 32 heatmap, 1 KB without).

    Raises:
        NotFoundError: no such verdict of the actor's.
        InvalidSpecError: not a JSON object, or too large.
    """
    row = session.get(AnalysisRow, analysis_id)
    if row is None or row.owner_id != actor.user_id:
        raise NotFoundError(f"You have no verdict with id {analysis_id}.")
    try:
        size = len(json.dumps(dict(explanation), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError(f"An explanation must be a JSON object: {exc}") from None
    if size > MAX_EXPLANATION_BYTES:
        raise InvalidSpecError(
            f"An explanation kept with a verdict is at most {MAX_EXPLANATION_BYTES // 1024} KiB."
        )
    row.explanation = dict(explanation)
    session.flush()
    return to_record(AnalysisRecord, row)


def get_analysis(session: Session, actor: Actor, analysis_id: int) -> AnalysisRecord:
    """One analysis of the actor's (administrators: anyone's). Raises NotFoundError."""
    row = session.get(AnalysisRow, analysis_id)
    if row is None or not actor.can_read(row.owner_id):
        raise NotFoundError(f"You have no verdict with id {analysis_id}.")
    return to_record(AnalysisRecord, row)


def list_analyses(
    session: Session,
    actor: Actor,
    *,
    limit: int = 50,
    offset: int = 0,
    where: AnalysisFilter | None = None,
) -> list[AnalysisRecord]:
    """The actor's own analyses, newest first, one page (``limit`` at most 1000), only those
    ``where`` selects.

    Read as table columns, not ORM objects (as the verdict path reads): the CSV export and the
    field performance read a whole history this way, a page at a time, and the ORM's per-row
    bookkeeping and copies of the JSON columns cost several times the query.
    """
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidSpecError(f"limit must be 1 to {MAX_PAGE} and offset at least 0.")
    columns = AnalysisRow.__table__.c
    query = (
        select(*(columns[name] for name in field_names(AnalysisRecord)))
        .where(*_conditions(actor, where or AnalysisFilter()))
        .order_by(AnalysisRow.created_at.desc(), AnalysisRow.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [record_from_row(AnalysisRecord, row) for row in session.execute(query)]


def count_analyses(session: Session, actor: Actor, where: AnalysisFilter | None = None) -> int:
    """How many analyses the actor has (that ``where`` selects), for paging."""
    conditions = _conditions(actor, where or AnalysisFilter())
    query = select(func.count(AnalysisRow.id)).where(*conditions)
    return int(session.scalar(query) or 0)


def _conditions(actor: Actor, where: AnalysisFilter) -> list[ColumnElement[bool]]:
    """The actor's own analyses (never anyone else's, administrators included), narrowed."""
    conditions: list[ColumnElement[bool]] = [AnalysisRow.owner_id == actor.user_id]
    text = where.text.replace("\x00", "").strip()  # PostgreSQL text holds no NUL
    if text:
        matches = [
            lower_text(column).contains(text.lower(), autoescape=True)
            for column in (AnalysisRow.file_name, AnalysisRow.note)
        ]
        if (prefix := where.hash_prefix) is not None:
            matches.append(AnalysisRow.file_sha256.startswith(prefix, autoescape=True))
        conditions.append(or_(*matches))
    if where.outcome == "known":
        conditions.append(AnalysisRow.outcome.is_not(None))
    elif where.outcome == "unknown":
        conditions.append(AnalysisRow.outcome.is_(None))
    elif where.outcome:
        conditions.append(AnalysisRow.outcome == where.outcome)
    if where.verdicts:
        conditions.append(AnalysisRow.verdict.in_(where.verdicts))
    if where.model_id is not None:
        conditions.append(AnalysisRow.model_id == where.model_id)
    if where.since is not None:
        conditions.append(AnalysisRow.created_at >= where.since)
    if where.until is not None:
        conditions.append(AnalysisRow.created_at < where.until)
    if where.file_sha256 is not None:
        conditions.append(AnalysisRow.file_sha256 == where.file_sha256.lower())
    if where.before_id is not None:
        conditions.append(AnalysisRow.id < where.before_id)
    return conditions
