"""The Evaluate page's verdict history: the user's verdicts a page at a time, found by file name,
note or SHA-256, narrowed by verdict, model, recorded outcome and dates, and exported as CSV (all
that match); one verdict's timeline (and why it was made, when asked) can be seen again, what a clip really was can be recorded
with a note, and the outcomes show how each model has done on the user's own confirmed cases."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from components import confirmed, explanation_view, paging, upload_megabytes
from components.user_text import plain
from components.verdict_view import history_table, model_label, timeline_chart
from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.explain import Explanation
from fakevoice.inference import WindowScore
from fakevoice.services import reports
from fakevoice.services.history import MAX_EXPORT_ROWS
from fakevoice.store.records import (
    ANALYSIS_OUTCOMES,
    VERDICT_LABELS,
    Actor,
    AnalysisFilter,
    AnalysisRecord,
    ModelRecord,
)
from fakevoice.store.tables import MAX_NOTE_LENGTH

CHOICE = "history_label_choice"  # the verdict chosen in the form (a widget key)
PICK_IN_HISTORY = "history_pick"  # set by a page that just made a verdict: the form picks it
SAVED = "history_saved"  # the verdict whose outcome was just saved, for the run after the save
# A verdict's report, as the Evaluate page offers it for a verdict just made and here for one of
# the history.
REPORT_MARKDOWN = "Verdict report (Markdown)"
REPORT_JSON = "Verdict report (JSON)"
REPORT_FORMATS = (
    (REPORT_MARKDOWN, reports.report_markdown, "md", "text/markdown"),
    (REPORT_JSON, reports.report_json, "json", "application/json"),
)
UNKNOWN = "unknown"
OUTCOMES = (UNKNOWN, *ANALYSIS_OUTCOMES)
OUTCOME_FILTERS = {
    "": "any",
    "known": "recorded",
    "unknown": "not recorded",
    "human": "human",
    "machine-generated": "machine-generated",
}


def render(actor: Actor, models: list[ModelRecord], owners: Mapping[int, str]) -> None:
    """The filters, the page of verdicts they select, paging and the CSV download.

    Args:
        owners: The owner's user name by model id, for the model filter.
    """
    st.subheader("Verdict history")
    # A verdict just made on the page, for the form to pick: taken now, whatever is shown.
    picked = st.session_state.pop(PICK_IN_HISTORY, None)
    just_saved = st.session_state.pop(SAVED, None)
    try:
        where = _filters(actor, models, owners)
        total = services.count_analyses(actor, where)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    narrowed = where != AnalysisFilter()
    if total == 0:
        confirmed.show_flash()  # an outcome just saved took the last match off the page
        st.caption("No verdict matches." if narrowed else "No verdicts yet.")
        return
    page = paging.page_of(total, "history_page")
    rows = services.list_analyses(actor, limit=page.rows, offset=page.offset, where=where)
    st.caption(page.caption("verdict", narrowed=narrowed))
    history_table(rows, models)
    _label_form(actor, rows, {m.id: m.name for m in models}, picked, just_saved)
    too_many = total > MAX_EXPORT_ROWS
    st.download_button(
        "Verdict history (CSV)",
        data=lambda: services.analyses_csv(actor, where),
        file_name="verdict-history.csv",
        mime="text/csv",
        key="history_csv",
        on_click="ignore",
        disabled=too_many,
        icon=":material/download:",
        help=f"an export holds at most {MAX_EXPORT_ROWS} verdicts; narrow the dates"
        if too_many
        else "every verdict that matches, with its SHA-256, P(human) and cautions",
    )


def verdict_choice_label(analysis: AnalysisRecord, model_names: dict[int, str]) -> str:
    """How a verdict is named where one is picked: its number, to the second, the model, the
    file and what was said (two verdicts on the same file in the same minute stay apart)."""
    if analysis.model_id is None:
        model = "a deleted model"
    else:  # a model no longer shared with the reader keeps its number
        model = model_names.get(analysis.model_id, f"model {analysis.model_id}")
    return (
        f"#{analysis.id} · {analysis.created_at:%Y-%m-%d %H:%M:%S} · {model} · "
        f"{analysis.file_name} · {analysis.verdict}"
    )


def _label_form(
    actor: Actor,
    rows: list[AnalysisRecord],
    model_names: dict[int, str],
    picked: int | None,
    just_saved: int | None,
) -> None:
    """Record what a clip on this page really was, and a note (a case number, say).

    Args:
        picked: A verdict just made on the page, for the form to choose.
        just_saved: The verdict whose outcome the last run saved.
    """
    by_id = {a.id: a for a in rows}
    with st.expander(
        "Record what a clip really was, see its timeline and why, download its report",
        icon=":material/fact_check:",
    ):
        # The choice stays with its verdict while others arrive (the API, another tab): it moves
        # only to a verdict just made on this page, or when it is no longer on this page.
        if picked in by_id:
            st.session_state[CHOICE] = picked
        elif (gone := st.session_state.get(CHOICE)) is not None and gone not in by_id:
            del st.session_state[CHOICE]
            # A verdict whose outcome was just saved may leave the filter's matches ("not
            # recorded"): the success beside the form says what happened to it.
            if gone != just_saved:
                st.info(
                    f"Verdict #{gone}, chosen before, is not on this page of the history now: "
                    "choose it again (page or filters) before saving what it really was.",
                    icon=":material/info:",
                )
        chosen = st.selectbox(
            "Which verdict",
            list(by_id),
            format_func=lambda i: verdict_choice_label(by_id[i], model_names),
            key=CHOICE,
            help="a verdict on this page of the history (the newest first)",
        )
        analysis = by_id[chosen]
        _timeline(analysis)
        kept = Explanation.from_dict(analysis.explanation)
        if kept is not None:
            st.markdown("**Why: kept when you asked**")
            explanation_view.render(kept, "the model")
        with st.form("history_label_form", border=False):
            outcome = st.radio(
                "It really was",
                OUTCOMES,
                index=OUTCOMES.index(analysis.outcome or UNKNOWN),
                horizontal=True,
                key=f"history_label_outcome:{chosen}",
            )
            note = st.text_input(
                "Note",
                value=analysis.note or "",
                max_chars=MAX_NOTE_LENGTH,
                key=f"history_label_note:{chosen}",
                placeholder="a case number, who confirmed it…",
            )
            saved = st.form_submit_button("Save", icon=":material/save:", key="history_label_save")
        if saved:
            recorded = None if outcome == UNKNOWN else outcome
            try:
                services.label_verdict(actor, chosen, outcome=recorded, note=note)
            except FakeVoiceError as exc:
                st.error(str(exc))
            else:
                confirmed.flash(saved_words(analysis, recorded))
                st.session_state[SAVED] = chosen
                st.rerun()
        confirmed.show_flash()  # what Save did, told after the rerun it causes
        left, right = st.columns(2)
        for column, (label, render, suffix, mime) in zip(
            (left, right), REPORT_FORMATS, strict=True
        ):
            column.download_button(
                label,
                data=lambda render=render: render(reports.history_report(actor, chosen)),
                file_name=f"verdict-{chosen}.{suffix}",
                mime=mime,
                key=f"history_report_{suffix}",
                on_click="ignore",
                help="the verdict as kept in your history, with its timeline and what you "
                "recorded since",
            )
    _field_performance(actor)


def saved_words(analysis: AnalysisRecord, outcome: str | None) -> str:
    """What saving an outcome did, e.g. "Saved: verdict #12 (call.wav) really was human."."""
    verdict = f"verdict #{analysis.id} ({plain(analysis.file_name)})"
    if outcome is None:
        return f"Saved: {verdict} has no recorded outcome."
    return f"Saved: {verdict} really was {outcome}."


def _timeline(analysis: AnalysisRecord) -> None:
    """Where in the clip the verdict's windows sounded human or machine-made, as at the verdict."""
    if analysis.windows is None:
        st.caption("No timeline: this verdict was made before the history kept them.")
    elif len(analysis.windows) > 1:
        timeline_chart([WindowScore(**window) for window in analysis.windows], analysis.threshold)


def _field_performance(actor: Actor) -> None:
    """How each model did on the clips whose truth the user recorded (read on demand: it reads
    every recorded verdict)."""
    if not st.toggle(
        "How my models did on clips whose truth I recorded",
        key="history_field_performance",
        help="per model: verdicts right, wrong and inconclusive, accuracy and EER",
    ):
        return
    rows = services.field_performance(actor)
    if not rows:
        st.caption("No outcome recorded yet: open a verdict above and say what it really was.")
        return
    st.dataframe(
        [
            {
                "model": r.model,
                "confirmed": r.confirmed,
                "human / machine": f"{r.humans} / {r.machines}",
                "correct": r.correct,
                "wrong": r.wrong,
                "inconclusive": r.inconclusive,
                "accuracy": r.accuracy,
                "EER": r.eer,
            }
            for r in rows
        ],
        hide_index=True,
        column_config={
            "accuracy": st.column_config.NumberColumn(format="percent"),
            "EER": st.column_config.NumberColumn(
                format="percent", help="of P(human) against the outcomes; both kinds needed"
            ),
        },
        placeholder="—",
    )


def _filters(actor: Actor, models: list[ModelRecord], owners: Mapping[int, str]) -> AnalysisFilter:
    """The history's filter from its widgets (InvalidSpecError for a bad one)."""
    by_id = {m.id: m for m in models}
    left, middle, model_column, outcome_column, dates_column = st.columns([3, 3, 3, 2, 3])
    text = paging.find_box(
        "history_find",
        "file name, note or SHA-256",
        "a part of the file name or of your note, or the first characters (6 or more) of "
        "the SHA-256 of the file's bytes, as in a verdict report",
        column=left,
    )
    verdicts = middle.multiselect("Verdict", VERDICT_LABELS, key="history_verdicts")
    model_id = model_column.selectbox(
        "By model",
        [None, *by_id],
        format_func=lambda i: (
            "any model" if i is None else model_label(by_id[i], actor.user_id, owners)
        ),
        key="history_model",
    )
    outcome = outcome_column.selectbox(
        "Really",
        list(OUTCOME_FILTERS),
        format_func=OUTCOME_FILTERS.__getitem__,
        key="history_outcome",
        help="what the clips really were, where you recorded it",
    )
    chosen = dates_column.date_input("Dates", value=(), key="history_dates", format="YYYY-MM-DD")
    days = [d for d in (chosen if isinstance(chosen, tuple) else (chosen,)) if isinstance(d, date)]
    since = datetime.combine(days[0], time(), UTC) if days else None
    until = datetime.combine(days[-1], time(), UTC) + timedelta(days=1) if days else None
    return AnalysisFilter(
        text=text,
        verdicts=tuple(verdicts),
        model_id=model_id,
        since=since,
        until=until,
        outcome=outcome,
    )


def check_report() -> None:
    """Is a JSON verdict report one this server signed, unchanged? (:mod:`fakevoice.signing`)"""
    from fakevoice import signing

    try:
        key_id = signing.key_id()
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    with st.expander("Check a verdict report", icon=":material/verified:"):
        st.caption(
            "Every JSON verdict report this server writes is signed (Ed25519, key "
            f"`{key_id}`). Upload one to see whether it is unchanged since; a digit "
            "changed anywhere shows. Anyone can also check it without the server with the "
            "public key (`fakevoice report key`, `GET /v1/reports/key`)."
        )
        upload = st.file_uploader(
            "A JSON verdict report",
            type=["json"],
            key="history_check_report",
            max_upload_size=upload_megabytes(signing.MAX_REPORT_BYTES),
        )
        if upload is None:
            return
        data = upload.getvalue()
        if len(data) > signing.MAX_REPORT_BYTES:
            st.error("This file is too large to be a verdict report.")
            return
        found = signing.verify_bytes(data)
        if found.valid:
            st.success(found.message, icon=":material/verified:")
        else:
            st.error(found.message, icon=":material/gpp_bad:")
