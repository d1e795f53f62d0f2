"""Your verdict history over HTTP: searched and paged (or CSV), one verdict with its timeline
and kept explanation, what a judged clip really was (and a note), and a verdict as a report.

Every verdict the API, the Evaluate page or the CLI makes is kept here (the analyses table, through
:mod:`fakevoice.services`); a caller sees only their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from fakevoice import services
from fakevoice.api.auth import SignedInDep
from fakevoice.api.routes import MAX_ID
from fakevoice.api.schemas import BandOut, WindowOut
from fakevoice.errors import InvalidSpecError
from fakevoice.services import reports
from fakevoice.store.records import AnalysisFilter, AnalysisRecord

AnalysisId = Annotated[int, Path(ge=1, le=MAX_ID)]


class AnalysisOut(BaseModel):
    id: int
    model_id: int | None
    file_name: str
    verdict: str
    probabilities: dict[str, float]
    threshold: float
    duration: float
    sample_rate: int
    created_at: datetime
    source: str
    file_sha256: str | None = Field(
        default=None, description="sha256 of the judged bytes, hex (none for older verdicts)"
    )
    cautions: list[str] = Field(
        default_factory=list, description="why the verdict deserves less trust, when it was made"
    )
    typicality: float | None = Field(
        default=None,
        description="how familiar the clip was to the model, 0 to 1 (as in POST /v1/predict); "
        "null when the model keeps no reference or the verdict is older than it",
    )
    outcome: Literal["human", "machine-generated"] | None = Field(
        default=None, description="what the clip really was, when you have recorded it"
    )
    note: str | None = Field(default=None, description="your note, e.g. a case number")

    @classmethod
    def of(cls, analysis: AnalysisRecord) -> Self:
        values = vars(analysis).copy()
        values.pop("owner_id")
        for detail in ("windows", "explanation"):  # lists stay light: these are per verdict
            if detail not in cls.model_fields:
                values.pop(detail)
        return cls(**values)


class KeptExplanationOut(BaseModel):
    """Why a verdict was made, as kept with it when you asked."""

    start: float = Field(description="the explained window's start, seconds")
    end: float
    p_human: float = Field(description="P(human) of that window")
    bands: list[BandOut] = Field(description="lowest band first")
    segments: list[float] = Field(description="share per equal slice of the window's time")
    heatmap: list[list[float]] | None = Field(
        default=None,
        description="image models: the attribution over the model's spectrogram, kept at most "
        "32 cells a side, 0 to 1, row 0 the highest frequency; null for waveform models and for "
        "explanations kept before heatmaps were",
    )
    method: str


class AnalysisDetail(AnalysisOut):
    """One verdict of your history, with the timeline it was made of and, when you asked,
    why."""

    windows: list[WindowOut] | None = Field(
        default=None,
        description="the per-window scores (the timeline), as at the verdict; none for verdicts "
        "made before the history kept them",
    )
    explanation: KeptExplanationOut | None = Field(
        default=None,
        description="where the decision was most sensitive, kept when you asked why (the "
        "Evaluate page, `fakevoice predict --explain`, `POST /v1/explain` with `analysis`)",
    )


class AnalysisLabel(BaseModel):
    """What a judged clip really was and/or a note; a field left out stays as it is."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"outcome": "machine-generated", "note": "case 2026-114"}]},
    )
    outcome: Literal["human", "machine-generated"] | None = Field(
        default=None, description="null: not known (clears an earlier outcome)"
    )
    note: str | None = Field(default=None, max_length=500, description="null or empty: no note")


class AnalysesPage(BaseModel):
    items: list[AnalysisOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last")
    total: int = Field(description="how many verdicts match, on every page")


def build_history_router() -> APIRouter:
    router = APIRouter()

    @router.get(
        "/v1/analyses",
        tags=["verdicts"],
        summary="Your verdict history, newest first",
        response_model=AnalysesPage,
        responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV"}},
    )
    def list_analyses(
        caller: SignedInDep,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
        q: Annotated[
            str,
            Query(
                max_length=200,
                description="a part of the file name or of your note, or the start of the "
                "file's SHA-256 (6 hex digits or more)",
            ),
        ] = "",
        verdict: Annotated[
            list[Literal["human", "machine-generated", "inconclusive"]] | None,
            Query(description="only these verdicts (repeat the parameter for several)"),
        ] = None,
        model: Annotated[int | None, Query(ge=1, le=MAX_ID, description="a model's id")] = None,
        outcome: Annotated[
            Literal["known", "unknown", "human", "machine-generated"] | None,
            Query(description="what the clips really were, where you recorded it"),
        ] = None,
        since: Annotated[datetime | None, Query(description="at or after (ISO 8601)")] = None,
        until: Annotated[datetime | None, Query(description="before (ISO 8601)")] = None,
        format: Annotated[
            Literal["json", "csv"],
            Query(description="csv: every match (at most 100,000), not one page"),
        ] = "json",
    ) -> Any:
        where = AnalysisFilter(
            text=q.strip(),
            verdicts=tuple(verdict or ()),
            model_id=model,
            since=since,
            until=until,
            outcome=outcome or "",
        )
        if format == "csv":
            # Sent as it is read (a 100,000-verdict file is some 17 MB); refused (413) before
            # the first byte when too many match.
            return StreamingResponse(
                services.analyses_csv_chunks(caller.actor, where),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="verdict-history.csv"'},
            )
        found = services.list_analyses(caller.actor, limit=limit + 1, offset=offset, where=where)
        return AnalysesPage(
            items=[AnalysisOut.of(a) for a in found[:limit]],
            limit=limit,
            offset=offset,
            next_offset=offset + limit if len(found) > limit else None,
            total=services.count_analyses(caller.actor, where),
        )

    @router.get(
        "/v1/analyses/{analysis_id}",
        tags=["verdicts"],
        summary="One verdict of your history, with its timeline",
    )
    def get_analysis(analysis_id: AnalysisId, caller: SignedInDep) -> AnalysisDetail:
        """Everything the history keeps of a verdict: the probabilities, the cautions, what you
        recorded since, and the per-window timeline (none for verdicts made before it was
        kept)."""
        return AnalysisDetail.of(services.get_verdict(caller.actor, analysis_id))

    @router.patch(
        "/v1/analyses/{analysis_id}",
        tags=["verdicts"],
        summary="Record what a judged clip really was, and a note",
    )
    def label_analysis(
        analysis_id: AnalysisId,
        body: AnalysisLabel,
        caller: SignedInDep,
    ) -> AnalysisOut:
        """`outcome` (`human`, `machine-generated`, or null: unknown) and `note` (a case number,
        say) are kept with the verdict in your history; a field you leave out stays as it is.
        The outcomes show how each model has done on your confirmed cases."""
        given = {name: getattr(body, name) for name in body.model_fields_set}
        if not given:
            raise InvalidSpecError("Give an outcome, a note, or both.")
        return AnalysisOut.of(services.label_verdict(caller.actor, analysis_id, **given))

    @router.get(
        "/v1/analyses/{analysis_id}/report",
        tags=["verdicts"],
        summary="A verdict of your history as a report",
        responses={
            200: {"content": {"application/json": {}, "text/markdown": {}}},
        },
    )
    def analysis_report(
        analysis_id: AnalysisId,
        caller: SignedInDep,
        format: Annotated[Literal["json", "markdown"], Query(description="answer format")] = "json",
    ) -> Response:
        """The file's SHA-256, the model and its weights' hash, every probability and the
        cautions, as kept in your history, with what you recorded since (what the clip really
        was, your note), and the timeline where the history kept it."""
        report = reports.history_report(caller.actor, analysis_id)
        if format == "markdown":
            return Response(reports.report_markdown(report), media_type="text/markdown")
        return Response(reports.report_json(report), media_type="application/json")

    return router
