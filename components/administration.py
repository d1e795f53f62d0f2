"""Administration (administrators only): everyone's jobs, with Stop for a runaway one, the job
workers, and the users, with sign-out everywhere (their API tokens too, if asked) and removal."""

from __future__ import annotations

import streamlit as st

from components import confirmed, paging
from fakevoice import accounts, services, sign_ins
from fakevoice.errors import FakeVoiceError
from fakevoice.services import profile, tokens
from fakevoice.store.records import ACTIVE_STATUSES, Actor, RunRecord, UserRecord

JOB_KINDS = {
    "train": "training run",
    "dataset": "dataset build",
    "evaluate": "test of models",
    "render": "dataset rendered again",
}


def render(user: UserRecord) -> None:
    """Everyone's jobs and the users, for the administrator ``user``."""
    actor = user.actor
    try:
        users = accounts.list_users(actor)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    st.markdown("#### Everyone's jobs")
    _everyones_jobs(actor)
    _workers(actor)
    st.markdown("#### Users")
    st.dataframe(
        [
            {"user": u.username, "name": u.display_name, "admin": u.is_admin, "email": u.email}
            for u in users
        ],
        hide_index=True,
        placeholder="—",
    )
    others = {u.id: u for u in users if u.id != user.id}
    if not others:
        return
    chosen = st.selectbox(
        "User",
        list(others),
        format_func=lambda i: others[i].username,
        key="admin_remove_choice",
    )
    name = others[chosen].username
    _sign_out_user(actor, chosen, name)
    confirmed.delete_step(
        f"user{chosen}",
        f"Remove user {name!r} with their runs, models and verdicts",
        lambda: profile.delete_user(actor, chosen),
        f"User {name!r} was removed.",
    )


def _sign_out_user(actor: Actor, user_id: int, name: str) -> None:
    """Sign ``user_id`` out everywhere; when they have active API tokens, revoke those too if the
    administrator ticks the box (one per user, so that a tick never carries over to the next)."""
    try:
        active = len(tokens.active_tokens(actor, user_id))
    except FakeVoiceError as exc:
        st.error(str(exc))
        active = 0  # signing out still works
    revoke = active > 0 and st.checkbox(
        f"Also revoke their API tokens ({active} active)", key=f"admin_revoke_tokens{user_id}"
    )
    if not st.button(
        f"Sign {name!r} out everywhere",
        key="admin_sign_out_user",
        icon=":material/devices:",
        help="Ends their sign-in in every browser; their password stays, and their API tokens "
        "unless revoked too.",
    ):
        return
    try:
        revoked = tokens.revoke_all_tokens(actor, user_id) if revoke else 0
        sign_ins.end_all_sessions(actor, user_id)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    done = f"User {name!r} is signed out in every browser"
    if revoke:
        done += f"; {tokens.tokens_in_words(revoked)} revoked"
    confirmed.flash(done + ".")
    st.rerun()


def _everyones_jobs(actor: Actor) -> None:
    """A page of every user's jobs, newest first, found by name, and Stop for any that is
    queued or running."""
    name = paging.find_box("admin_jobs_find", "job name", "a part of the job's name (any case)")
    try:
        total = services.count_runs(actor, all_users=True, kind=None, name=name)
        page = paging.page_of(total, "admin_jobs_page")
        runs = profile.all_runs(actor, name=name, limit=page.rows, offset=page.offset)
        # Every one of them, wherever it is listed: a few per user at most.
        active = profile.all_runs(actor, statuses=ACTIVE_STATUSES)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if total == 0:
        st.caption("No job matches." if name else "No jobs yet.")
    else:
        st.caption(page.caption("job", narrowed=bool(name)))
        st.dataframe(
            [
                {
                    "owner": owner,
                    "job": run.name,
                    "kind": JOB_KINDS[run.kind],
                    "arch": run.spec.get("arch", ""),
                    "dataset": run.dataset or "",
                    "status": run.status,
                    "progress": run.progress,
                    "date": run.created_at.strftime("%Y-%m-%d %H:%M"),
                }
                for run, owner in runs
            ],
            hide_index=True,
            column_config={
                "progress": st.column_config.ProgressColumn("progress", format="percent")
            },
            placeholder="—",
        )
    _stop_any_job(actor, active)


def _stop_any_job(actor: Actor, runs: list[tuple[RunRecord, str]]) -> None:
    """An administrator stops anyone's queued or running job (a runaway one holding a worker)."""
    active = {run.id: f"{run.name} ({owner}, {run.status})" for run, owner in runs}
    if not active:
        return
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    chosen = left.selectbox(
        "Queued or running job", list(active), format_func=active.__getitem__, key="admin_stop_job"
    )
    if right.button("Stop it", key="admin_stop_run", icon=":material/stop:"):
        confirmed.attempt(
            lambda: services.stop_run(actor, chosen),
            f"Asked {active[chosen]} to stop; its owner sees it stopped.",
        )


def _workers(actor: Actor) -> None:
    """The job workers of the last day: which are alive, their load, when each was last seen."""
    st.markdown("#### Job workers")
    try:
        workers = services.job_workers(actor)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if not any(state == "alive" for _, state in workers):
        st.warning(
            "No job worker is running: queued trainings, builds and tests wait until one starts "
            "(`fakevoice worker` on the server; `make run` starts one).",
            icon=":material/hourglass_empty:",
        )
    if not workers:
        return
    st.dataframe(
        [
            {
                "worker": f"{w.host}:{w.pid}",
                "backend": w.backend,
                "state": state,
                "jobs": f"{w.running} of {w.concurrency}",
                "started": w.started_at.strftime("%Y-%m-%d %H:%M"),
                "last seen": w.seen_at.strftime("%Y-%m-%d %H:%M:%S"),
            }
            for w, state in workers
        ],
        hide_index=True,
        placeholder="—",
    )
