"""Lists of background jobs (dataset builds, renders, tests of models): the panel that follows
them, where each job stands with its Stop / Resume buttons, and the buttons' action followed by a
rerun of the page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.store.records import Actor, RunRecord

REFRESH = timedelta(seconds=2)
DATASET_KEY = "dataset"  # the Datasets page's dataset box (and query parameter)
OPEN_KEY = "dataset_to_open"  # a dataset an Open button asked the Datasets page to show


def panel(
    title: str,
    jobs: Callable[[], list[RunRecord]],
    row: Callable[[RunRecord], None],
    *,
    first: list[RunRecord] | None = None,
) -> None:
    """The jobs of ``jobs()`` (the latest few, newest first) under ``title``, one ``row`` each;
    nothing when there are none. ``first``: what ``jobs()`` gives now, when the page has read it
    already.

    The panel refreshes every 2 s while one of them is queued or running, and runs the whole page
    again when one ends (or a new one starts), since what it made (a dataset, a result) shows
    elsewhere on the page.
    """
    now = [jobs() if first is None else first]  # read once for this run; refreshes read again
    if not now[0]:
        return  # nothing to follow: no panel
    active = [run.id for run in now[0] if run.is_active]

    @st.fragment(run_every=REFRESH if active else None)
    def follow() -> None:
        runs = now.pop() if now else jobs()
        if [run.id for run in runs if run.is_active] != active:
            st.rerun()
        st.markdown(f"**{title}**")
        for run in runs:
            row(run)

    follow()


def act(action: Callable[[], object]) -> None:
    """Do what a button asks, then run the page again (or say why it cannot be done)."""
    try:
        action()
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    st.rerun()


def status_line(
    actor: Actor,
    run: RunRecord,
    title: str,
    *,
    done: str,
    key: str,
    stop: Callable[[], object],
    columns: tuple[DeltaGenerator, DeltaGenerator],
    detail: str = "",
) -> None:
    """Where a job stands, in the left column, and Stop (active) or Resume (interrupted) in the
    right one.

    Args:
        title: what the job makes, e.g. the dataset's name.
        done: the word for a job that succeeded ("built", "done").
        key: prefix of the buttons' keys (``<key>_stop:<run id>``, ``<key>_resume:<run id>``).
        stop: what the Stop button does.
        detail: more words for an active job's progress, e.g. ", model 2 of 3".
    """
    left, right = columns
    when = f"{run.created_at:%Y-%m-%d %H:%M}"
    if run.is_active:
        text = f"{title}: {run.status} ({run.progress:.0%}{detail}) · {when}"
        left.progress(run.progress, text=text)
        if (waiting := services.worker_note(run)) is not None:  # no worker, or a long wait
            left.warning(waiting, icon=":material/hourglass_empty:")
        if right.button("Stop", key=f"{key}_stop:{run.id}", icon=":material/stop:"):
            act(stop)
    elif run.status == "succeeded":
        left.success(f"{title}: {done} · {when}", icon=":material/check_circle:")
    elif run.status == "cancelled":
        left.info(f"{title}: stopped · {when}", icon=":material/stop_circle:")
    else:
        left.error(f"{title}: {run.status} · {when}. {run.error or ''}", icon=":material/error:")
        if run.status == "interrupted" and right.button(
            "Resume", key=f"{key}_resume:{run.id}", icon=":material/replay:"
        ):
            act(lambda: services.resume_run(actor, run.id))


def dataset_job_row(
    actor: Actor,
    run: RunRecord,
    *,
    done: str,
    key: str,
    stop: Callable[[], object],
    clear: Callable[[], object],
    caption: str,
) -> None:
    """A job that makes a dataset (a build, a render), named after it: where it stands, Stop or
    Resume, Open once it is made, Clear once it is over, and ``caption`` under it."""
    name = str(run.spec.get("name", run.name))
    left, right, right_most = st.columns([8, 2, 2])
    status_line(actor, run, name, done=done, key=key, stop=stop, columns=(left, right))
    if run.status == "succeeded" and right.button(
        "Open", key=f"{key}_open:{run.id}", icon=":material/open_in_new:"
    ):
        # The dataset box may be made already in this run: the page takes the name next run.
        st.session_state[OPEN_KEY] = name
        st.rerun()  # the whole page, not just this panel
    if not run.is_active and right_most.button(
        "Clear", key=f"{key}_clear:{run.id}", icon=":material/close:", help="take it off this list"
    ):
        act(clear)
    st.caption(caption)
