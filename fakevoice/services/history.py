"""A user's verdict history: list it a page at a time, narrowed by file, verdict, model and time,
count it, and export it as CSV for a case file or a spreadsheet.

Only the user's own verdicts are ever listed (administrators included: a history is personal).
The search text matches a part of the file name or of the owner's note, or the start of the
SHA-256 of the bytes judged, so an analyst can ask "was this exact file judged before?" with the
hash from a report.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from fakevoice import store
from fakevoice.batch import spreadsheet_safe
from fakevoice.errors import LimitExceededError, NotFoundError
from fakevoice.store.analyses import UNCHANGED
from fakevoice.store.records import Actor, AnalysisFilter, AnalysisRecord

MAX_EXPORT_ROWS = 100_000
GONE = "(a model no longer available)"
EXPORT_PAGE = 1000
CSV_COLUMNS = (
    "id",
    "time_utc",
    "file",
    "file_sha256",
    "model_id",
    "model",
    "verdict",
    "p_human",
    "top_class",
    "threshold",
    "duration_s",
    "sample_rate",
    "via",
    "typicality",
    "cautions",
    "outcome",
    "note",
)


def list_analyses(
    actor: Actor, *, limit: int = 50, offset: int = 0, where: AnalysisFilter | None = None
) -> list[AnalysisRecord]:
    """The actor's verdicts, newest first, one page, only those ``where`` selects."""
    with store.session_scope(readonly=True) as session:
        return store.list_analyses(session, actor, limit=limit, offset=offset, where=where)


def count_analyses(actor: Actor, where: AnalysisFilter | None = None) -> int:
    """How many of the actor's verdicts ``where`` selects."""
    with store.session_scope(readonly=True) as session:
        return store.count_analyses(session, actor, where)


@dataclass(frozen=True)
class EarlierVerdicts:
    """The actor's verdicts on the same bytes before one of theirs: how many, and the latest with
    its model's name (None once the model is deleted or no longer visible)."""

    count: int
    latest: AnalysisRecord | None
    latest_model: str | None


def earlier_verdicts(actor: Actor, analysis: AnalysisRecord) -> EarlierVerdicts:
    """What the actor's history says about the bytes of ``analysis`` before it: "was this exact
    file judged before, and what was said then?" (none when its SHA-256 is unknown)."""
    if analysis.file_sha256 is None:
        return EarlierVerdicts(0, None, None)
    where = AnalysisFilter(file_sha256=analysis.file_sha256, before_id=analysis.id)
    with store.session_scope(readonly=True) as session:
        count = store.count_analyses(session, actor, where)
        found = store.list_analyses(session, actor, limit=1, where=where) if count else []
        latest = found[0] if found else None
        model = None
        if latest is not None and latest.model_id is not None:
            model = store.model_names(session, actor, [latest.model_id]).get(latest.model_id)
    return EarlierVerdicts(count, latest, model)


def get_verdict(actor: Actor, analysis_id: int) -> AnalysisRecord:
    """One verdict of the actor's own history, with its timeline when it was kept.

    Raises:
        NotFoundError: no such verdict of the actor's (administrators included: a history is
            personal).
    """
    with store.session_scope(readonly=True) as session:
        analysis = store.get_analysis(session, actor, analysis_id)
    if analysis.owner_id != actor.user_id:
        raise NotFoundError(f"You have no verdict with id {analysis_id}.")
    return analysis


def label_verdict(
    actor: Actor, analysis_id: int, *, outcome: str | None = UNCHANGED, note: str | None = UNCHANGED
) -> AnalysisRecord:
    """Record what a judged clip really was (``human``, ``machine-generated``, None: unknown)
    and/or the owner's note (a case number, say); what is not given stays as it is.

    Raises:
        NotFoundError: no such verdict of the actor's.
        InvalidSpecError: an unknown outcome, or a note over 500 characters.
    """
    with store.session_scope() as session:
        return store.label_analysis(session, actor, analysis_id, outcome=outcome, note=note)


def rethreshold_verdict(actor: Actor, analysis_id: int, threshold: float) -> AnalysisRecord:
    """Keep a verdict of the actor's at the threshold they settled on after it was made (on the
    Evaluate page, moving the slider for the clip just judged): its label is decided again from
    the probabilities kept with it, so the history, its reports and the page say the same.

    Raises:
        NotFoundError: no such verdict of the actor's.
        InvalidSpecError: a threshold outside 0.5 to 1.
    """
    from fakevoice.inference import BONAFIDE, decide

    with store.session_scope() as session:
        analysis = store.get_analysis(session, actor, analysis_id)
        if analysis.threshold == threshold:
            return analysis
        verdict, _ = decide(analysis.probabilities, BONAFIDE, threshold)
        return store.rethreshold_analysis(
            session, actor, analysis_id, threshold=threshold, verdict=verdict
        )


@dataclass(frozen=True)
class FieldPerformance:
    """How one model's verdicts did on the clips whose truth the user has recorded.

    Attributes:
        model: the model's name as it is now (:data:`GONE` once deleted or no longer shared).
        confirmed: verdicts with a known outcome; ``humans`` and ``machines`` of them.
        correct / wrong / inconclusive: verdicts that named the outcome, named the other one, or
            were inconclusive.
        eer: the EER of P(human) against the outcomes (None unless both kinds are known).
    """

    model_id: int | None
    model: str
    confirmed: int
    humans: int
    machines: int
    correct: int
    wrong: int
    inconclusive: int
    eer: float | None

    @property
    def accuracy(self) -> float | None:
        """Correct among the verdicts that decided (inconclusive ones left out)."""
        decided = self.correct + self.wrong
        return self.correct / decided if decided else None


def field_performance(actor: Actor) -> list[FieldPerformance]:
    """Per model, how its verdicts did on the actor's clips of known outcome, most confirmed
    first (at most :data:`MAX_EXPORT_ROWS` verdicts are counted, the newest)."""
    from fakevoice.metrics import compute_eer

    where = AnalysisFilter(outcome="known")
    by_model: dict[int | None, list[AnalysisRecord]] = {}
    with store.session_scope(readonly=True) as session:
        total = min(store.count_analyses(session, actor, where), MAX_EXPORT_ROWS)
        names = store.model_names(session, actor)
        for analysis in itertools.chain.from_iterable(_pages(session, actor, where, total)):
            by_model.setdefault(analysis.model_id, []).append(analysis)
    rows = []
    for model_id, found in by_model.items():
        humans = [_p_human(a) for a in found if a.outcome == "human"]
        machines = [_p_human(a) for a in found if a.outcome != "human"]
        eer = None
        scores = [*humans, *machines]
        if humans and machines and None not in scores:
            eer = compute_eer(humans, machines)[0]
        decided = [a for a in found if a.verdict != "inconclusive"]
        correct = sum(a.verdict == a.outcome for a in decided)
        rows.append(
            FieldPerformance(
                model_id=model_id,
                model=names.get(model_id, GONE) if model_id is not None else GONE,
                confirmed=len(found),
                humans=len(humans),
                machines=len(machines),
                correct=correct,
                wrong=len(decided) - correct,
                inconclusive=len(found) - len(decided),
                eer=eer,
            )
        )
    return sorted(rows, key=lambda r: (-r.confirmed, r.model))


def _p_human(analysis: AnalysisRecord) -> float | None:
    """The verdict's P(human), None when it has none."""
    from fakevoice.inference import BONAFIDE

    value = analysis.probabilities.get(BONAFIDE)
    return None if value is None else float(value)


def verdict_model_name(analysis: AnalysisRecord, names: Mapping[int, str]) -> str:
    """The model of a verdict in a list of verdicts (the page's tables, ``fakevoice history``):
    its name when the reader may see it (``names``, :func:`model_names`), its number once no
    longer shared with them, "(deleted)" once deleted."""
    if analysis.model_id is None:
        return "(deleted)"
    return names.get(analysis.model_id, f"model #{analysis.model_id}")


def model_names(actor: Actor, model_ids: Collection[int] | None = None) -> dict[int, str]:
    """The names of the models the actor may see now, by id (only of ``model_ids`` when given):
    to name the model of a verdict."""
    with store.session_scope(readonly=True) as session:
        return store.model_names(session, actor, model_ids)


def _pages(
    session: Session, actor: Actor, where: AnalysisFilter | None, total: int
) -> Iterator[list[AnalysisRecord]]:
    """The first ``total`` verdicts ``where`` selects, newest first, :data:`EXPORT_PAGE` at a
    time."""
    for offset in range(0, total, EXPORT_PAGE):
        yield store.list_analyses(session, actor, limit=EXPORT_PAGE, offset=offset, where=where)


def analyses_csv(actor: Actor, where: AnalysisFilter | None = None) -> str:
    """The selected verdicts as one CSV text (:func:`analyses_csv_chunks` joined), for a page's
    download button, which needs the whole file.

    Raises:
        LimitExceededError: more than :data:`MAX_EXPORT_ROWS` verdicts are selected.
    """
    return "".join(analyses_csv_chunks(actor, where))


def analyses_csv_chunks(actor: Actor, where: AnalysisFilter | None = None) -> Iterator[str]:
    """The selected verdicts as CSV, newest first, in pieces to send or write as they are read:
    the header, then one piece per :data:`EXPORT_PAGE` verdicts. A row holds the model's name
    (as it is now; empty once deleted), P(human), the most probable class and the cautions.

    The count is checked now, before any piece: a caller can still refuse the export.

    Raises:
        LimitExceededError: more than :data:`MAX_EXPORT_ROWS` verdicts are selected.
    """
    total = count_analyses(actor, where)
    if total > MAX_EXPORT_ROWS:
        raise LimitExceededError(
            f"{total} verdicts match; an export holds at most {MAX_EXPORT_ROWS}. "
            "Narrow the time range or the search."
        )
    return _csv_chunks(actor, where)


def _csv_chunks(actor: Actor, where: AnalysisFilter | None) -> Iterator[str]:
    # One read transaction for the whole file, counted again in it: verdicts made meanwhile do
    # not shift the pages (at most the newest MAX_EXPORT_ROWS, should many arrive).
    with store.session_scope(readonly=True) as session:
        total = min(store.count_analyses(session, actor, where), MAX_EXPORT_ROWS)
        names = store.model_names(session, actor)
        yield _csv_text([CSV_COLUMNS])
        for page in _pages(session, actor, where, total):
            yield _csv_text(_csv_row(a, names) for a in page)


def _csv_text(rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def _csv_row(analysis: AnalysisRecord, names: dict[int, str]) -> list[object]:
    probabilities = analysis.probabilities
    top = max(probabilities, key=probabilities.__getitem__) if probabilities else ""
    model = names.get(analysis.model_id, "") if analysis.model_id is not None else ""
    row: list[object] = [
        analysis.id,
        analysis.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        analysis.file_name,
        analysis.file_sha256 or "",
        analysis.model_id if analysis.model_id is not None else "",
        model,
        analysis.verdict,
        "" if (p_human := _p_human(analysis)) is None else round(p_human, 6),
        top,
        analysis.threshold,
        round(analysis.duration, 3),
        analysis.sample_rate,
        analysis.source,
        "" if analysis.typicality is None else round(analysis.typicality, 6),
        " ".join(analysis.cautions),
        analysis.outcome or "",
        analysis.note or "",
    ]
    return [spreadsheet_safe(value) for value in row]
