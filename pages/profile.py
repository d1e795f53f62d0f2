"""Profile page.

* ``?user=NAME``: the public view of a user: their public models with metrics (works signed out).
* Signed in, without ``?user`` (or with one's own name): my runs with results and downloads, a
  comparison of runs side by side, my models (share, rename, delete), API tokens, name / e-mail /
  password, and for administrators
  everyone's jobs (with Stop) and the users. ``?run=ID`` opens one of my runs; anyone else's is "not found".
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from components import auth, model_downloads, run_comparison, sign_in, training_view
from fakevoice import accounts, services, sign_ins
from fakevoice.errors import FakeVoiceError
from fakevoice.services import profile, results, tokens
from fakevoice.store.records import Actor, ModelRecord, RunRecord, UserRecord

USER_PARAM = "user"
RUN_PARAM = "run"
_FLASH = "profile_flash"
_CONFIRM = "profile_confirm_delete"
JOB_KINDS = {
    "train": "training run",
    "dataset": "dataset build",
    "evaluate": "test of models",
    "render": "dataset rendered again",
}


def _flash(message: str) -> None:
    st.session_state[_FLASH] = message


def _show_flash() -> None:
    message = st.session_state.pop(_FLASH, None)
    if message:
        st.success(message)


def _attempt(action: Callable[[], object], done: str) -> None:
    """Run a service call; on success remember ``done`` and rerun, else show the error."""
    try:
        action()
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    _flash(done)
    st.rerun()


# --- public view ---------------------------------------------------------------------------------


def _public_view(username: str) -> None:
    try:
        user = profile.public_user(username)
        models = profile.public_models(owner=user.username)
    except FakeVoiceError as exc:
        st.title("Profile")
        st.error(str(exc))
        return
    st.title(user.display_name)
    st.caption(f"`{user.username}` · public models")
    if not models:
        st.info(f"{user.display_name} has not made any model public.")
        return
    st.dataframe(profile.public_model_rows(models), hide_index=True)
    model_downloads.render(profile.ANONYMOUS, [p.model for p in models], "public_models")


# --- my runs -------------------------------------------------------------------------------------


def _downloads(actor: Actor, run_id: int, res: results.RunResults) -> None:
    offered = [name for name in profile.RUN_FILES if name in res.files]
    if not offered and not res.has_bundle:
        st.caption("No files to download (yet).")
        return
    columns = st.columns(len(offered) + int(res.has_bundle))
    for column, name in zip(columns, offered, strict=False):
        column.download_button(
            name,
            data=lambda name=name: results.artefact_bytes(actor, run_id, name),
            file_name=f"run{run_id}_{name}",
            mime=profile.RUN_FILES[name],
            key=f"download_{run_id}_{name}",
            icon=":material/download:",
            on_click="ignore",
        )
    if res.has_bundle:
        columns[-1].download_button(
            "safe bundle (.zip)",
            data=lambda: results.bundle_zip(actor, run_id),
            file_name=f"run{run_id}_bundle.zip",
            mime="application/zip",
            key=f"download_{run_id}_bundle",
            icon=":material/download:",
            on_click="ignore",
        )


def _run_details(actor: Actor, entry: profile.RunEntry) -> None:
    run = entry.run
    try:
        res = results.run_results(actor, run.id)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    st.markdown(f"#### {run.name}")
    cols = st.columns(4)
    cols[0].metric("status", run.status)
    cols[1].metric("EER", "–" if entry.eer is None else f"{entry.eer:.1%}")
    cols[2].metric("accuracy", "–" if entry.accuracy is None else f"{entry.accuracy:.1%}")
    cols[3].metric("epochs", f"{len(res.history)}/{run.total_epochs}")  # finished epochs
    if run.error:
        st.warning(run.error)
    if not res.history.empty:
        training_view.render_epoch_table(res.history)  # as on Train: epochs from 1, percentages
    images = [name for name in ("loss_curve.png", "confusion.png") if name in res.files]
    for column, name in zip(st.columns(max(len(images), 1)), images, strict=False):
        try:
            column.image(results.artefact_bytes(actor, run.id, name), caption=name)
        except FakeVoiceError as exc:
            column.error(str(exc))
    _downloads(actor, run.id, res)
    if entry.model is not None:
        _model_controls(actor, entry.model)
    _delete_step(
        f"run{run.id}",
        f"Delete run {run.name!r}" + (" and its model" if entry.model else ""),
        lambda: profile.delete_run(actor, run.id),
        f"Run {run.name!r} was deleted.",
        disabled=run.is_active,
    )


def _runs_section(actor: Actor) -> None:
    try:
        entries = profile.my_runs(actor)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    wanted = st.query_params.get(RUN_PARAM)
    by_id = {e.run.id: e for e in entries}
    if wanted is not None and (not wanted.isdigit() or int(wanted) not in by_id):
        st.error(f"There is no run with id {wanted!r} among yours.")
    if not entries:
        st.info("You have no runs yet: open Train to start one.")
        return
    st.dataframe(profile.run_rows(entries), hide_index=True)
    ids = list(by_id)
    start = ids.index(int(wanted)) if wanted and wanted.isdigit() and int(wanted) in by_id else 0
    chosen = st.selectbox(
        "Open a run",
        ids,
        index=start,
        format_func=lambda i: f"{by_id[i].run.name} ({by_id[i].run.status})",
        key="profile_run",
    )
    _run_details(actor, by_id[chosen])


# --- my models -----------------------------------------------------------------------------------


def _model_controls(actor: Actor, model: ModelRecord) -> None:
    state = "public: everyone can see and use it" if model.is_public else "private: only you"
    st.caption(f"Model **{model.name}** ({model.arch}) is {state}.")
    share, rename = st.columns([1, 2])
    if model.is_public:
        if share.button("Make private", key=f"private_{model.id}", icon=":material/lock:"):
            _attempt(
                lambda: profile.set_model_public(actor, model.id, False),
                f"Model {model.name!r} is private now.",
            )
    elif share.button("Make public", key=f"public_{model.id}", icon=":material/public:"):
        _attempt(
            lambda: profile.set_model_public(actor, model.id, True),
            f"Model {model.name!r} is public now.",
        )
    with rename.form(f"rename_{model.id}", border=False):
        new_name = st.text_input("New name", value=model.name, key=f"rename_name_{model.id}")
        if st.form_submit_button("Rename"):
            _attempt(
                lambda: profile.rename_model(actor, model.id, new_name),
                f"Model renamed to {new_name.strip()!r}.",
            )


def _models_section(actor: Actor) -> None:
    try:
        models = profile.my_models(actor)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if not models:
        st.info("You have no models yet: a run that finishes leaves one.")
        return
    st.dataframe(profile.model_rows(models), hide_index=True)
    model_downloads.render(actor, models, "my_models")
    # A run's model is managed with its run (Runs tab); models without a run (imported) here.
    for model in [m for m in models if m.run_id is None]:
        with st.container(border=True):
            _model_controls(actor, model)
            _delete_step(
                f"model{model.id}",
                f"Delete model {model.name!r}",
                lambda model=model: profile.delete_model(actor, model.id),
                f"Model {model.name!r} was deleted.",
            )


def _delete_step(
    key: str,
    label: str,
    action: Callable[[], object],
    done: str,
    *,
    disabled: bool = False,
) -> None:
    """A delete button that asks once more before it acts."""
    if st.session_state.get(_CONFIRM) != key:
        help_text = "Stop the run first." if disabled else None
        if st.button(
            label + "…",
            key=f"delete_{key}",
            icon=":material/delete:",
            disabled=disabled,
            help=help_text,
        ):
            st.session_state[_CONFIRM] = key
            st.rerun()
        return
    st.warning(f"{label}? This cannot be undone.")
    yes, no = st.columns(2)
    if yes.button("Yes, delete", key=f"confirm_{key}", type="primary"):
        st.session_state.pop(_CONFIRM, None)
        _attempt(action, done)
    if no.button("Cancel", key=f"cancel_{key}"):
        st.session_state.pop(_CONFIRM, None)
        st.rerun()


# --- tokens, account, administration -------------------------------------------------------------

TOKEN_ACCESS = {
    "full": "do everything you can (verdicts, training, uploads, sharing, deleting)",
    "verdicts": "only ask for verdicts and read or label your history",
}


def _tokens_section(actor: Actor) -> None:
    st.caption("Tokens let scripts call the HTTP API as you: `Authorization: Bearer <token>`.")
    with st.form("new_token", clear_on_submit=True):
        name = st.text_input("Name of the new token", key="token_name")
        scope = st.radio(
            "It may",
            list(TOKEN_ACCESS),
            format_func=TOKEN_ACCESS.__getitem__,
            key="token_scope",
            help="a token kept in another system's settings (a call centre, a moderation "
            "pipeline) needs only verdicts: if it leaks, it cannot train, upload, share or "
            "delete anything of yours",
        )
        created = st.form_submit_button("Create token")
    if created:
        try:
            record, secret = tokens.create_token(actor, name, scope)
        except FakeVoiceError as exc:
            st.error(str(exc))
        else:
            st.success(f"Token {record.name!r} created. Copy it now: it is never shown again.")
            st.code(secret, language=None)
    try:
        mine = tokens.list_tokens(actor)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if not mine:
        st.caption("You have no tokens.")
        return
    st.dataframe(
        [
            {
                "name": t.name,
                "starts with": t.prefix,
                "may": "everything" if t.scope == "full" else "verdicts only",
                "created": t.created_at.strftime("%Y-%m-%d %H:%M"),
                "last used": t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "",
                "revoked": t.revoked_at.strftime("%Y-%m-%d %H:%M") if t.revoked_at else "",
            }
            for t in mine
        ],
        hide_index=True,
    )
    active = {t.id: t for t in mine if t.revoked_at is None}
    if active:
        chosen = st.selectbox(
            "Token to revoke",
            list(active),
            format_func=lambda i: f"{active[i].name} ({active[i].prefix}…)",
            key="token_revoke_choice",
        )
        if st.button("Revoke", key="token_revoke", icon=":material/block:"):
            _attempt(
                lambda: tokens.revoke_token(actor, chosen),
                f"Token {active[chosen].name!r} was revoked.",
            )


def _sessions_section(user: UserRecord) -> None:
    st.subheader("Sessions")
    st.caption(
        "**Sign out everywhere** ends your sign-in in every browser, this one included (after "
        "using a shared computer, say); tabs still open elsewhere are signed out on their next "
        "click. API tokens keep working: revoke them under *API tokens*."
    )
    here, everywhere = st.columns(2)
    with here:
        auth.sign_out_button("profile_sign_out")
    if everywhere.button(
        "Sign out everywhere", key="profile_sign_out_everywhere", icon=":material/devices:"
    ):
        try:
            auth.sign_out_everywhere(user)
        except FakeVoiceError as exc:
            st.error(str(exc))
            return
        st.rerun()


def _admin_section(user: UserRecord) -> None:
    actor = user.actor
    try:
        runs = profile.all_runs(actor)
        users = accounts.list_users(actor)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    st.markdown("#### Everyone's jobs")
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
        column_config={"progress": st.column_config.ProgressColumn("progress", format="percent")},
    )
    _stop_any_job(actor, runs)
    st.markdown("#### Users")
    st.dataframe(
        [
            {"user": u.username, "name": u.display_name, "admin": u.is_admin, "email": u.email}
            for u in users
        ],
        hide_index=True,
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
    if st.button(
        f"Sign {name!r} out everywhere",
        key="admin_sign_out_user",
        icon=":material/devices:",
        help="Ends their sign-in in every browser; their password and API tokens stay.",
    ):
        _attempt(
            lambda: sign_ins.end_all_sessions(actor, chosen),
            f"User {name!r} is signed out in every browser.",
        )
    _delete_step(
        f"user{chosen}",
        f"Remove user {name!r} with their runs, models and verdicts",
        lambda: profile.delete_user(actor, chosen),
        f"User {name!r} was removed.",
    )


def _stop_any_job(actor: Actor, runs: list[tuple[RunRecord, str]]) -> None:
    """An administrator stops anyone's queued or running job (a runaway one holding a worker)."""
    active = {run.id: f"{run.name} ({owner}, {run.status})" for run, owner in runs if run.is_active}
    if not active:
        return
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    chosen = left.selectbox(
        "Queued or running job", list(active), format_func=active.__getitem__, key="admin_stop_job"
    )
    if right.button("Stop it", key="admin_stop_run", icon=":material/stop:"):
        _attempt(
            lambda: services.stop_run(actor, chosen),
            f"Asked {active[chosen]} to stop; its owner sees it stopped.",
        )


def _my_profile(user: UserRecord) -> None:
    actor = user.actor
    st.title("My profile")
    st.page_link(
        "pages/profile.py",
        label="My public page",
        icon=":material/public:",
        query_params={USER_PARAM: user.username},
    )
    _show_flash()
    names = ["Runs", "Compare runs", "Models", "API tokens", "Account"] + (
        ["Administration"] if user.is_admin else []
    )
    tabs = st.tabs(names)
    with tabs[0]:
        _runs_section(actor)
    with tabs[1]:
        run_comparison.render(actor)
    with tabs[2]:
        _models_section(actor)
    with tabs[3]:
        _tokens_section(actor)
    with tabs[4]:
        sign_in.details_form(user)
        sign_in.change_password_form(user)
        _sessions_section(user)
    if user.is_admin:
        with tabs[5]:
            _admin_section(user)


def main() -> None:
    viewer = auth.current_user()
    wanted = st.query_params.get(USER_PARAM)
    if wanted and (viewer is None or wanted != viewer.username):
        _public_view(wanted)
        return
    if viewer is None:
        auth.require_actor("see your profile")
        return
    _my_profile(viewer)


main()
