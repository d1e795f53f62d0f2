"""Runs side by side, for the Profile page: key figures, EER per noise level and per generator,
where their recipes differ, validation EER by epoch, and the table as CSV (from
:mod:`fakevoice.services.comparison`)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from components import paging, training_view, which_is_better
from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.metrics.bootstrap import MIN_GROUPS
from fakevoice.services import comparison
from fakevoice.store.records import Actor, RunRecord

CHOSEN = "profile_compare_runs"  # the runs chosen (a widget key)
CHOICES = 50  # runs offered besides those chosen


def render(actor: Actor) -> None:
    """Runs side by side: key figures, EER per noise level and generator, EER by epoch."""
    try:
        chosen = _choose_runs(actor)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if chosen is None:
        return
    by_id = {run.id: run for run in chosen}
    chosen_ids = list(by_id)
    try:
        compared = comparison.compare_runs(actor, chosen_ids)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    table = compared.table.drop(columns=["created", "mlflow_run_id"])
    # ISO text in the CSV; a time to the minute on the page, as Train's run table shows it.
    table["finished"] = pd.to_datetime(table["finished"], errors="coerce")
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "finished": st.column_config.DatetimeColumn(
                "finished (UTC)", format="YYYY-MM-DD HH:mm"
            ),
            **training_view.percent_columns(
                compared.table.columns, comparison.NUMERIC_COLUMNS - {"macro_f1"}
            ),
            # F1 as a score from 0 to 1, as the run's own view shows it.
            "macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f"),
        },
        placeholder="—",
    )
    st.caption(
        "eer low to eer high: the stored model's EER interval (95 %, its validation utterances "
        "drawn again): runs whose intervals overlap may not really differ. EER columns named "
        "after a noise level or a generator: the final model's EER at that level or against "
        "that generator, on its validation split. Lower is better; 50 % is a coin toss."
    )
    which_is_better.render(compared.pairs, "runs scored on the same validation items")
    if len(chosen) > 1 and compared.without_scores:
        st.caption(
            "Not in a pair: "
            + ", ".join(compared.without_scores)
            + " (trained before runs kept their validation scores; train again to pair them)."
        )
    scored = [
        i
        for i in chosen_ids
        if by_id[i].status == "succeeded" and by_id[i].name not in compared.without_scores
    ]
    if len(scored) > 1 and scored[0] == chosen_ids[0] and not compared.pairs:
        st.caption(
            "Which is better? cannot be said here: these runs share too few validation "
            f"utterances with both human and machine items ({MIN_GROUPS} are needed) to draw "
            "them again (different datasets, splits or seeds, or small validation splits)."
        )
    if len(chosen) > 1:
        if compared.differences.empty:
            st.caption("Their recipes are the same: only their names and times differ.")
        else:
            st.markdown("**Where their recipes differ**")
            st.dataframe(compared.differences, width="stretch", placeholder="—")
    if not compared.curves.dropna(subset=["eer"]).empty:
        chart = (
            alt.Chart(compared.curves.dropna(subset=["eer"]))
            .mark_line(point=True)
            .encode(
                # Whole epochs: runs of one epoch gave a single tick labelled "1.000000".
                x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d")),
                y=alt.Y("eer:Q", title="validation EER", axis=alt.Axis(format="%")),
                color=alt.Color("run:N", title="run"),
                tooltip=["run", "epoch", alt.Tooltip("eer:Q", format=".2%")],
            )
            .properties(height=280)
        )
        st.altair_chart(chart, width="stretch")
    st.download_button(
        "Run comparison (CSV)",
        compared.csv(),
        file_name="runs-comparison.csv",
        mime="text/csv",
        key="profile_compare_csv",
        on_click="ignore",
        icon=":material/download:",
        help="one row per run, as the first table, with its creation time and MLflow run id",
    )


def _choose_runs(actor: Actor) -> list[RunRecord] | None:
    """The runs chosen to compare, in the order chosen (None: nothing to compare yet).

    The box offers the runs chosen already and the newest :data:`CHOICES` whose name holds what
    the Find box says: any run can be found, and no more than that is read.
    """
    if services.count_runs(actor) < 2:
        st.info("Compare runs here once you have two or more (open Train to start one).")
        return None
    name = paging.find_box(
        "profile_compare_find",
        "run name",
        f"a part of a run's name (any case): the newest {CHOICES} runs that match are offered "
        "beside those chosen",
    )
    kept = st.session_state.get(CHOSEN, [])
    found = services.list_runs(actor, name=name, limit=CHOICES + 1)
    kept_runs = {run.id: run for run in services.list_runs(actor, run_ids=kept)} if kept else {}
    by_id = {i: kept_runs[i] for i in kept if i in kept_runs} | {r.id: r for r in found[:CHOICES]}
    if len(found) > CHOICES:
        st.caption(
            f"The newest {CHOICES} runs that match are offered: find others by a part of "
            "their name."
        )
    elif not found:
        st.caption("No run matches.")
    finished = [run.id for run in found if run.status == "succeeded"][:2]
    chosen = st.multiselect(
        "Runs to compare",
        list(by_id),
        default=None if kept else finished or [r.id for r in found[:2]],
        # No status in the label: a widget keeps a label it showed while the run went on.
        format_func=lambda i: f"{by_id[i].name} ({by_id[i].spec.get('arch', '')}, #{i})",
        max_selections=comparison.MAX_COMPARED,
        key=CHOSEN,
        help=f"up to {comparison.MAX_COMPARED} of your runs",
    )
    if not chosen:
        st.info("Choose the runs to compare.")
        return None
    return [by_id[i] for i in chosen]
