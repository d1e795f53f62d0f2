"""Train page: choose the data, the model and the training options, start a run, watch it learn,
stop it, and see its results.

Training never runs here: "Start training" queues a job that a worker process executes, and the
live panel only reads progress from the store. The open run's id sits in the URL (``?run=<id>``),
so the panel survives reloads and opens from another tab.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from components import navigation, paging, train_again, train_options, training_view
from components.auth import require_actor
from components.user_text import plain
from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.services import results
from fakevoice.store.records import Actor, RunRecord, record_id
from fakevoice.trainspec import TrainSpec

RUN_PARAM = "run"  # query parameter holding the open run's id
REFRESH_SECONDS = 1.5
NAME_KEY = "train_run_name"
RESET_NAME = "train_reset_name"
BATCH_CACHE = "train_batch_cache"
START_FROM = "train_start_from"  # (run name, spec) to put into the form on the next run

SpecBuilder = Callable[[], TrainSpec]


# --- the form ------------------------------------------------------------------------------------


def _default_name() -> str:
    return f"run {datetime.now():%Y-%m-%d %H:%M:%S}"


def _memory_note(actor: Actor, build: SpecBuilder) -> None:
    """The run's memory estimate, and a warning with a batch size that fits when it will not."""
    try:
        advice = services.memory_advice(build(), actor=actor)
    except FakeVoiceError:
        return  # the spec itself is refused; "Start training" says why
    warning = advice.warning()
    if warning is not None:
        st.warning(warning, icon=":material/memory:")
    else:
        st.caption(advice.summary())


def _suggest(actor: Actor, build: SpecBuilder) -> None:
    """Run the learning-rate finder and put its suggestion into the learning-rate field."""
    try:
        with st.spinner("Trying learning rates on a few batches..."):
            suggestion = results.suggest_learning_rate(actor, build())
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    st.session_state[train_options.SUGGESTED_LR] = suggestion
    st.toast(f"Suggested learning rate: {suggestion:.1e}")
    st.rerun()


def _new_run(actor: Actor, names: list[str]) -> None:
    """The whole form and the "Start training" button."""
    if st.session_state.pop(RESET_NAME, False) or NAME_KEY not in st.session_state:
        st.session_state[NAME_KEY] = _default_name()
    source = st.session_state.pop(START_FROM, None)
    if source is not None:
        run_name, spec = source
        notes = train_again.prefill(actor, TrainSpec.from_dict(spec), names)
        st.info(
            f"The form holds the options of run {run_name!r}: change what you want to compare "
            "and start it under a new name.",
            icon=":material/content_copy:",
        )
        for note in notes:
            st.warning(note)
    top = st.columns([2, 3])
    name = top[0].selectbox(
        "Dataset", names, key="train_dataset", help="a built dataset (see the Datasets page)"
    )
    run_name = top[1].text_input(
        "Run name", key=NAME_KEY, max_chars=128, help="unique among your runs; names its model"
    )
    noise_levels, speakers, classes = train_options.selection(actor, name)
    st.markdown("**Model**")
    options = train_options.model_options(actor, name)
    st.markdown("**Training**")
    lengths, suggest = train_options.length_options()
    options.update(lengths)
    options["augment"] = train_options.augment_options(options["arch"])
    options["callbacks"] = train_options.callback_options()
    options.update(train_options.split_options(actor, classes, name))

    def build() -> TrainSpec:
        return TrainSpec(
            dataset=name,
            noise_levels=noise_levels,
            speakers=speakers,
            classes=classes,
            **options,
        )

    _memory_note(actor, build)
    if suggest:
        _suggest(actor, build)
    if st.button("Start training", key="train_start", type="primary", icon=":material/play_arrow:"):
        try:
            run = services.submit_run(actor, run_name, build())
        except FakeVoiceError as exc:
            st.error(str(exc))
            return
        st.session_state[RESET_NAME] = True
        st.query_params[RUN_PARAM] = str(run.id)
        st.rerun()


# --- the run panel -------------------------------------------------------------------------------


def _progress_tables(actor: Actor, run_id: int) -> tuple[RunRecord, pd.DataFrame, pd.DataFrame]:
    """The run, all its batch losses and its epochs; batches are fetched incrementally."""
    cache = st.session_state.get(BATCH_CACHE)
    after = -1
    if cache is not None and cache["run_id"] == run_id and not cache["frame"].empty:
        after = int(cache["frame"]["step"].iloc[-1])
    progress = services.run_progress(actor, run_id, after_step=after)
    run = progress.run
    if cache is None or cache["run_id"] != run_id or cache["started_at"] != run.started_at:
        if after >= 0:  # the run restarted (resumed): read its batches again from the start
            progress = services.run_progress(actor, run_id)
        frame = results.batch_frame(progress.batches)
    else:
        frame = pd.concat([cache["frame"], results.batch_frame(progress.batches)])
    st.session_state[BATCH_CACHE] = {
        "run_id": run_id,
        "started_at": run.started_at,
        "frame": frame.reset_index(drop=True),
    }
    return run, frame, results.history_frame(progress.epochs)


def _live_panel(actor: Actor, run_id: int) -> None:
    """Progress, loss curves, epoch table and the Stop button; re-runs itself while active."""
    # A fragment's own reruns bypass main()'s handler, so it reports errors itself.
    try:
        _live_panel_body(actor, run_id)
    except FakeVoiceError as exc:
        st.error(str(exc))


def _live_panel_body(actor: Actor, run_id: int) -> None:
    stop_column, status_column = st.columns([1, 5])
    if stop_column.button(
        "Stop", key="train_stop", icon=":material/stop_circle:", help="stops within one batch"
    ):
        services.stop_run(actor, run_id)
    run, batches, history = _progress_tables(actor, run_id)
    if not run.is_active:
        st.rerun()  # the whole page, to show the results without the timer
    waiting = services.worker_note(run)  # no worker alive, a long wait, or a silent worker
    if run.status == "queued":
        if waiting is None:
            status_column.info("Queued: a worker takes it up as soon as it has room.")
    elif run.stop_requested:
        status_column.warning("Stopping at the end of the current batch...")
    else:
        status_column.caption(f"Running on {run.worker_id or 'a worker'}.")
    epoch = min(run.current_epoch + 1, max(1, run.total_epochs))
    st.progress(
        min(1.0, max(0.0, run.progress)),
        text=f"Epoch {epoch} of {run.total_epochs} ({run.progress:.0%} of the run)",
    )
    if run.notice:
        st.caption(run.notice)
    if waiting is not None:
        st.warning(waiting, icon=":material/hourglass_empty:")
    training_view.render_loss_chart(batches, history)
    training_view.render_epoch_table(history)


def _final_panel(actor: Actor, run: RunRecord) -> None:
    result = results.run_results(actor, run.id)
    epochs = len(result.history)
    if run.status == "succeeded":
        st.success(f"Finished after {epochs} epoch(s).")
    elif run.status == "cancelled":
        kept = (
            "its model is kept."
            if result.has_bundle
            else "it stopped before an epoch finished, so no model was saved."
        )
        st.warning(f"Stopped after {epochs} epoch(s); {kept}")
    elif run.status == "failed":
        st.error(f"This run failed: {run.error or 'no reason was recorded.'}")
    else:
        st.warning(f"This run was interrupted: {run.error or 'its worker stopped.'}")
    if run.notice:
        st.caption(run.notice)
    if run.status != "succeeded" and st.button(
        "Resume",
        key="train_resume",
        icon=":material/replay:",
        help="queue this run again, from its last finished epoch when it has one",
    ):
        services.resume_run(actor, run.id)
        st.rerun()
    if result.files or not result.history.empty:
        training_view.render_results(actor, result)


def _run_panel(actor: Actor, raw_id: str) -> None:
    run_id = record_id(raw_id)
    if run_id is None:
        st.error(f"{plain(repr(raw_id[:40]))} is not a run id.")  # shown as typed in the URL
        return
    try:
        run = services.get_run(actor, run_id)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    header, again, close = st.columns([4, 1, 1], vertical_alignment="bottom")
    header.subheader(f"Run {run.name!r}")
    if again.button(
        "Train again",
        key="train_again",
        icon=":material/content_copy:",
        help="a new run with this run's options in the form, to change one and compare",
    ):
        st.session_state[START_FROM] = (run.name, dict(run.spec))
        del st.query_params[RUN_PARAM]
        st.rerun()
    if close.button("Close", key="train_close", icon=":material/close:"):
        del st.query_params[RUN_PARAM]
        st.rerun()
    spec = run.spec
    st.caption(
        f"{spec.get('arch')} · {spec.get('task')} · dataset {spec.get('dataset')} · "
        f"{run.total_epochs} epoch(s) · batch {spec.get('batch_size')} · "
        f"learning rate {spec.get('learning_rate') or 'found at start'}"
    )
    if run.is_active:
        st.fragment(run_every=REFRESH_SECONDS)(_live_panel)(actor, run.id)
    else:
        _final_panel(actor, run)


def _runs_table(runs: list[RunRecord]) -> None:
    """The table of ``runs``: name, architecture, dataset, status, progress, creation time."""
    table = pd.DataFrame(
        {
            "id": [r.id for r in runs],
            "name": [r.name for r in runs],
            "arch": [r.spec.get("arch") for r in runs],
            "dataset": [r.spec.get("dataset") for r in runs],
            "status": [r.status for r in runs],
            "progress": [r.progress for r in runs],
            "created": [r.created_at for r in runs],
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn("progress"),
            "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm"),
        },
        placeholder="—",
    )


def _follow_runs(runs: list[RunRecord], read: Callable[[], list[RunRecord]]) -> None:
    """The table, read again (``read()``) every few seconds while a run on it is queued or
    running (as the live panel beside it is), and the whole page again when one ends or
    starts."""
    first = [runs]  # read once for this run; refreshes read again
    active = [r.id for r in runs if r.is_active]

    @st.fragment(run_every=REFRESH_SECONDS if active else None)
    def follow() -> None:
        now = first.pop() if first else read()
        if [r.id for r in now if r.is_active] != active:
            st.rerun()
        _runs_table(now)

    follow()


def _my_runs(actor: Actor) -> None:
    """A page of the actor's runs, newest first, found by name, and one to open."""
    name = paging.find_box("train_runs_find", "run name", "a part of the run's name (any case)")
    total = services.count_runs(actor, name=name)
    if total == 0:
        st.caption("No run matches." if name else "No runs yet.")
        return
    page = paging.page_of(total, "train_runs_page")

    def read() -> list[RunRecord]:
        return services.list_runs(actor, name=name, limit=page.rows, offset=page.offset)

    runs = read()
    st.caption(page.caption("run", narrowed=bool(name)))
    _follow_runs(runs, read)
    by_id = {r.id: r for r in runs}
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    chosen = left.selectbox(
        "Open a run",
        list(by_id),
        format_func=lambda i: f"{by_id[i].name} (#{i})",  # the table beside it says its status
        key="train_open_choice",
        help="a run on this page of the list (Find and Page above reach the others): "
        "show its live panel or results",
    )
    if right.button("Open", key="train_open", icon=":material/open_in_new:"):
        st.query_params[RUN_PARAM] = str(chosen)
        st.rerun()


def main() -> None:
    st.title("Train")
    actor = require_actor("train a detector")
    raw_id = st.query_params.get(RUN_PARAM)
    try:
        if raw_id is not None:
            _run_panel(actor, raw_id)
        names = services.dataset_names(actor=actor)
        with st.expander("New run", expanded=raw_id is None, icon=":material/add:"):
            if names:
                _new_run(actor, names)
            else:
                st.info(f"No dataset is built yet. {services.BUILD_HINT}")
        st.subheader("My runs")
        _my_runs(actor)
    except FakeVoiceError as exc:
        st.error(str(exc))


navigation.through_app(Path(__file__).name)
main()
