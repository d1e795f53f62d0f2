"""The Evaluate page's verdict history: the user's verdicts a page at a time, found by file name or
SHA-256, narrowed by verdict, model and dates, and exported as CSV (all that match)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from components.verdict_view import history_table, model_label
from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.services.history import MAX_EXPORT_ROWS
from fakevoice.store.records import VERDICT_LABELS, Actor, AnalysisFilter, ModelRecord

PAGE_ROWS = 20


def render(actor: Actor, models: list[ModelRecord]) -> None:
    """The filters, the page of verdicts they select, paging and the CSV download."""
    st.subheader("Verdict history")
    try:
        where = _filters(actor, models)
        total = services.count_analyses(actor, where)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    narrowed = where != AnalysisFilter()
    if total == 0:
        st.caption("No verdict matches." if narrowed else "No verdicts yet.")
        return
    pages = math.ceil(total / PAGE_ROWS)
    page = 1
    if pages > 1:
        page = int(
            st.number_input("Page", min_value=1, max_value=pages, value=1, key="history_page")
        )
    rows = services.list_analyses(
        actor, limit=PAGE_ROWS, offset=(page - 1) * PAGE_ROWS, where=where
    )
    what = f"{total} verdict{'s' if total != 1 else ''}" + (" match" if narrowed else "")
    st.caption(f"{what}; newest first (times in UTC), page {min(page, pages)} of {pages}.")
    history_table(rows, models)
    too_many = total > MAX_EXPORT_ROWS
    st.download_button(
        "History (CSV)",
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


def _filters(actor: Actor, models: list[ModelRecord]) -> AnalysisFilter:
    """The history's filter from its widgets (InvalidSpecError for a bad one)."""
    by_id = {m.id: m for m in models}
    left, middle, model_column, dates_column = st.columns([3, 3, 3, 3])
    text = left.text_input(
        "Find",
        key="history_find",
        max_chars=200,
        placeholder="file name or SHA-256",
        help="a part of the file name, or the first characters (6 or more) of the SHA-256 of "
        "the file's bytes, as in a verdict report",
    )
    verdicts = middle.multiselect("Verdict", VERDICT_LABELS, key="history_verdicts")
    model_id = model_column.selectbox(
        "By model",
        [None, *by_id],
        format_func=lambda i: "any model" if i is None else model_label(by_id[i], actor.user_id),
        key="history_model",
    )
    chosen = dates_column.date_input("Dates", value=(), key="history_dates", format="YYYY-MM-DD")
    days = [d for d in (chosen if isinstance(chosen, tuple) else (chosen,)) if isinstance(d, date)]
    since = datetime.combine(days[0], time(), UTC) if days else None
    until = datetime.combine(days[-1], time(), UTC) + timedelta(days=1) if days else None
    return AnalysisFilter(
        text=text.strip(), verdicts=tuple(verdicts), model_id=model_id, since=since, until=until
    )
