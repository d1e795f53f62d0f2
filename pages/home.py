"""Home page. Signed out: what the workbench does, how to start, the public models, the datasets
and the sign-in / register forms. Signed in: a dashboard of my runs, models and verdicts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st

from components import auth, model_downloads, navigation, sign_in
from components.user_text import plain
from fakevoice import services
from fakevoice.datasets.catalog import DatasetSummary
from fakevoice.errors import FakeVoiceError
from fakevoice.services import profile, profile_rows
from fakevoice.store.records import Actor, UserRecord

DASHBOARD_ROWS = 5

INTRO = """
Is this voice a person or a machine? The workbench helps you find out:

1. **Build a dataset**: real speakers plus machine-made copies of what they said (vocoders and
   text-to-speech voices), at several noise levels, turned into spectrogram images.
2. **Train a detector** on those images (CNNs) or on the raw waveforms (AASIST).
3. **Judge it**: accuracy, confusion matrix, ROC and equal error rate.
4. **Ask for a verdict** on a recording: *human*, *machine-generated* or *inconclusive*.
"""

START = """
**Start here**

1. Build the demo dataset (a few minutes on a laptop; nothing is downloaded) with
   `fakevoice dataset build-demo`, or run `make run`, which builds it when missing and starts
   this app.
2. Open **Datasets** to see what it holds and listen to a human clip next to its machine copies.
"""

START_BUILT = """
**Start here**

1. Register or sign in (on the right).
2. Open **Datasets** to see what the datasets below hold and listen to a human clip next to its
   machine copies; then **Train** a detector on one, or get a verdict on **Evaluate**.
"""


def _when(iso: str) -> str:
    """An ISO time as the other tables show times (``2026-11-23 18:42``); as it is if unreadable."""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _datasets() -> list[DatasetSummary] | FakeVoiceError:
    """The datasets the visitor may see, or why they cannot be listed."""
    try:
        return services.list_datasets(actor=auth.current_actor())
    except FakeVoiceError as exc:
        return exc


def _datasets_present(summaries: list[DatasetSummary] | FakeVoiceError) -> None:
    st.subheader("Datasets")
    if isinstance(summaries, FakeVoiceError):
        st.error(str(summaries))
        return
    if not summaries:
        st.info(
            "No dataset is built yet: build one from your recordings on Datasets, or run "
            "`fakevoice dataset build-demo`."
        )
        return
    st.dataframe(
        [{"dataset": s.name, "items": s.items, "created": _when(s.created)} for s in summaries],
        hide_index=True,
        placeholder="—",
        column_config={"items": st.column_config.NumberColumn(format="localized")},
    )
    st.page_link("pages/datasets.py", label="Open Datasets", icon=":material/dataset:")


def _public_models() -> None:
    st.subheader("Public models")
    try:
        models = profile.public_models()
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if not models:
        st.caption("No model has been made public yet.")
        return
    st.dataframe(profile_rows.public_model_rows(models), hide_index=True, placeholder="—")
    model_downloads.render(
        profile.ANONYMOUS,
        [p.model for p in models],
        "home_public",
        owners={p.model.id: p.owner for p in models},
    )


def _account_forms() -> None:
    tab_in, tab_register, tab_forgot = st.tabs(["Sign in", "Register", "Forgot password"])
    with tab_in:
        sign_in.sign_in_form()
    with tab_register:
        sign_in.register_form()
    with tab_forgot:
        sign_in.forgot_password_form()


def _signed_out() -> None:
    st.title("Fake Voice Workbench")
    summaries = _datasets()
    intro, forms = st.columns([3, 2], gap="large")
    with intro:
        st.markdown(INTRO)
        # Told to build the demo only while there is nothing to look at yet.
        st.markdown(START_BUILT if isinstance(summaries, list) and summaries else START)
    with forms:
        _account_forms()
    _datasets_present(summaries)
    _public_models()


def _dashboard(user: UserRecord, actor: Actor) -> None:
    st.title(f"Welcome, {plain(user.display_name)}")
    links = st.columns(3)
    links[0].page_link("pages/train.py", label="Train a detector", icon=":material/model_training:")
    links[1].page_link("pages/evaluate.py", label="Get a verdict", icon=":material/graphic_eq:")
    links[2].page_link("pages/profile.py", label="My profile", icon=":material/person:")
    try:
        runs = profile.my_runs(actor, limit=DASHBOARD_ROWS)
        models = profile.my_models(actor, limit=DASHBOARD_ROWS)
        verdicts = services.list_analyses(actor, limit=DASHBOARD_ROWS)
        shown = {v.model_id for v in verdicts if v.model_id is not None}
        names = services.model_names(actor, shown) if shown else {}
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    _jobs_in_progress(actor)
    st.subheader("My latest runs")
    if runs:
        st.dataframe(profile_rows.run_rows(runs), hide_index=True, placeholder="—")
    else:
        st.caption("No run yet: open Train to start one.")
    st.subheader("My models")
    if models:
        st.dataframe(profile_rows.model_rows(models), hide_index=True, placeholder="—")
    else:
        st.caption(
            "No model of your own yet: a run that finishes leaves one. Public models (below) "
            "judge clips on Evaluate too."
        )
    st.subheader("My recent verdicts")
    if verdicts:
        st.dataframe(
            [
                {
                    "file": v.file_name,
                    # The same clip, several models: each verdict names its own.
                    "model": services.verdict_model_name(v, names),
                    "verdict": v.verdict,
                    "P(human)": v.probabilities.get("bonafide"),
                    "seconds": round(v.duration, 1),
                    "when": v.created_at.strftime("%Y-%m-%d %H:%M"),
                }
                for v in verdicts
            ],
            hide_index=True,
            placeholder="—",
        )
    else:
        st.caption("No verdict yet: open Evaluate and give it a recording.")
    _datasets_present(_datasets())
    _public_models()  # everyone's to use, signed in or not


JOB_PAGES = {  # where each kind of job is followed (tests: Evaluate, mode "Test on a dataset")
    "train": ("pages/train.py", "Train"),
    "dataset": ("pages/datasets.py", "Datasets"),
    "evaluate": ("pages/evaluate.py", "Evaluate"),
    "render": ("pages/datasets.py", "Datasets"),
}


def _jobs_in_progress(actor: Actor) -> None:
    """My queued and running jobs of every kind, refreshed every 5 s while there are any."""
    if not profile.my_active_jobs(actor):
        return

    @st.fragment(run_every=5)
    def panel() -> None:
        jobs = profile.my_active_jobs(actor)
        if not jobs:
            st.rerun()  # all done: the tables below have changed
        st.subheader("In progress")
        for job in jobs:
            page, where = JOB_PAGES[job.kind]
            left, right = st.columns([4, 1], vertical_alignment="center")
            # A job's name may hold other users' model names (a test): shown as written.
            name = plain(job.name)
            left.progress(job.progress, text=f"{name}: {job.status} ({job.progress:.0%})")
            if (waiting := services.worker_note(job)) is not None:  # no worker, or a long wait
                left.caption(waiting)
            right.page_link(page, label=f"Follow on {where}")

    panel()


def main() -> None:
    user = auth.current_user()
    if user is None:
        _signed_out()
    else:
        _dashboard(user, user.actor)


navigation.through_app(Path(__file__).name)
main()
