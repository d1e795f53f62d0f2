"""Profile page.

* ``?user=NAME``: the public view of a user: their public models with metrics (works signed out).
* Signed in, without ``?user`` (or with one's own name): my runs with results and downloads, a
  comparison of runs side by side, my models (share, rename, delete), API tokens
  (``components/api_tokens.py``), name / e-mail / password, and for administrators everyone's
  jobs (with Stop) and the users (``components/administration.py``). ``?run=ID`` opens one of my
  runs; anyone else's is "not found".
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from components import (
    administration,
    api_tokens,
    auth,
    confirmed,
    model_downloads,
    navigation,
    paging,
    report_view,
    run_comparison,
    sign_in,
    training_view,
)
from components.user_text import plain
from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.services import profile, profile_rows, results, tokens
from fakevoice.store.records import Actor, ModelRecord, UserRecord, record_id

USER_PARAM = "user"
RUN_PARAM = "run"


# --- public view ---------------------------------------------------------------------------------


def _public_view(username: str, *, own: bool = False) -> None:
    try:
        user = profile.public_user(username)
        models = profile.public_models(owner=user.username)
    except FakeVoiceError as exc:
        st.title("Profile")
        st.error(plain(str(exc)))  # it names the ?user= value as typed: never as markup
        return
    st.title(plain(user.display_name))
    st.caption(f"`{user.username}` · public models")
    if own:
        st.info("This is your page as visitors see it.", icon=":material/visibility:")
        st.page_link("pages/profile.py", label="Back to my profile", icon=":material/person:")
    if not models:
        st.info(f"{plain(user.display_name)} has not made any model public.")
        return
    # No owner column: the page is the owner's, named in its title.
    st.dataframe(
        profile_rows.public_model_rows(models, owner=False), hide_index=True, placeholder="—"
    )
    model_downloads.render(profile.ANONYMOUS, [p.model for p in models], "public_models")


# --- my runs -------------------------------------------------------------------------------------


def _downloads(res: results.RunResults, actor: Actor) -> None:
    """The run's files, as the Train page offers them (the same labels and file names)."""
    if not res.files and not res.has_bundle:
        st.caption("No files to download (yet).")
        return
    training_view.render_downloads(actor, res, key_prefix=f"profile_run{res.run.id}")


def _run_details(actor: Actor, entry: profile.RunEntry) -> None:
    run = entry.run
    try:
        res = results.run_results(actor, run.id)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    st.markdown(f"#### {plain(run.name)}")
    cols = st.columns(4)
    cols[0].metric("status", run.status)
    cols[1].metric("EER", "–" if entry.eer is None else f"{entry.eer:.1%}")
    cols[2].metric("accuracy", "–" if entry.accuracy is None else f"{entry.accuracy:.1%}")
    cols[3].metric("epochs", f"{len(res.history)}/{run.total_epochs}")  # finished epochs
    saved = training_view.model_epoch_words(res)
    if saved:
        st.caption(saved)
    if run.error:
        st.warning(run.error)
    before = report_view.before_calibration_words(res.metrics)
    if before:
        st.caption(before)
    if not res.history.empty:
        training_view.render_epoch_table(res.history)  # as on Train: epochs from 1, percentages
    images = [name for name in ("loss_curve.png", "confusion.png") if name in res.files]
    for column, name in zip(st.columns(max(len(images), 1)), images, strict=False):
        try:
            column.image(results.artefact_bytes(actor, run.id, name), caption=name)
        except FakeVoiceError as exc:
            column.error(str(exc))
    _downloads(res, actor)
    if entry.model is not None:
        _model_controls(actor, entry.model)
    confirmed.delete_step(
        f"run{run.id}",
        f"Delete run {run.name!r}" + (" and its model" if entry.model else ""),
        lambda: profile.delete_run(actor, run.id),
        f"Run {run.name!r} was deleted.",
        disabled=run.is_active,
    )


def _runs_section(actor: Actor) -> None:
    """A page of the actor's runs, newest first, found by name, and one opened (``?run=ID`` opens
    any of theirs, on this page or not)."""
    name = paging.find_box("profile_runs_find", "run name", "a part of the run's name (any case)")
    try:
        total = services.count_runs(actor, name=name)
        page = paging.page_of(total, "profile_runs_page")
        entries = profile.my_runs(actor, name=name, limit=page.rows, offset=page.offset)
        wanted = st.query_params.get(RUN_PARAM)
        wanted_id = record_id(wanted)
        by_id = {e.run.id: e for e in entries}
        if wanted_id is not None and wanted_id not in by_id:
            # Asked for by the URL, and not on this page: first in the box.
            found = profile.my_runs(actor, run_ids=[wanted_id])
            by_id = {e.run.id: e for e in found} | by_id
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if wanted is not None and wanted_id not in by_id:
        st.error(f"There is no run with id {wanted[:40]!r} among yours.")
    if total == 0:
        if name:
            st.caption("No run matches.")
        else:
            st.info("You have no runs yet: open Train to start one.")
        if not by_id:
            return
    else:
        st.caption(page.caption("run", narrowed=bool(name)))
        st.dataframe(profile_rows.run_rows(entries), hide_index=True, placeholder="—")
    ids = list(by_id)
    chosen = st.selectbox(
        "Open a run",
        ids,
        index=ids.index(wanted_id) if wanted_id in by_id else 0,
        format_func=lambda i: f"{by_id[i].run.name} (#{i})",  # the table says its status
        key="profile_run",
        help="a run on this page of the list (Find and Page above reach the others)",
    )
    _run_details(actor, by_id[chosen])


# --- my models -----------------------------------------------------------------------------------


def _model_controls(actor: Actor, model: ModelRecord) -> None:
    state = "public: everyone can see and use it" if model.is_public else "private: only you"
    st.caption(f"Model **{plain(model.name)}** ({model.arch}) is {state}.")
    share, rename = st.columns([1, 2])
    if model.is_public:
        if share.button("Make private", key=f"private_{model.id}", icon=":material/lock:"):
            confirmed.attempt(
                lambda: profile.set_model_public(actor, model.id, False),
                f"Model {model.name!r} is private now.",
            )
    elif share.button("Make public", key=f"public_{model.id}", icon=":material/public:"):
        confirmed.attempt(
            lambda: profile.set_model_public(actor, model.id, True),
            f"Model {model.name!r} is public now.",
        )
    with rename.form(f"rename_{model.id}", border=False):
        new_name = st.text_input("New name", value=model.name, key=f"rename_name_{model.id}")
        if st.form_submit_button("Rename"):
            confirmed.attempt(
                lambda: profile.rename_model(actor, model.id, new_name),
                f"Model renamed to {new_name.strip()!r}.",
            )


def _models_section(actor: Actor) -> None:
    """A page of the actor's models, newest first, found by name, with their downloads, and the
    controls of those on the page that no run made (imported)."""
    name = paging.find_box("my_models_find", "model name", "a part of the model's name (any case)")
    try:
        total = services.count_models(actor, own=True, name=name)
        page = paging.page_of(total, "my_models_page")
        models = profile.my_models(actor, name=name, limit=page.rows, offset=page.offset)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if total == 0:
        if name:
            st.caption("No model matches.")
        else:
            st.info("You have no models yet: a run that finishes leaves one.")
        return
    st.caption(page.caption("model", narrowed=bool(name)))
    st.dataframe(profile_rows.model_rows(models), hide_index=True, placeholder="—")
    model_downloads.render(actor, models, "my_models")
    # A run's model is managed with its run (Runs tab); models without a run (imported) here.
    for model in [m for m in models if m.run_id is None]:
        with st.container(border=True):
            _model_controls(actor, model)
            confirmed.delete_step(
                f"model{model.id}",
                f"Delete model {model.name!r}",
                lambda model=model: profile.delete_model(actor, model.id),
                f"Model {model.name!r} was deleted.",
            )


# --- tokens, account, administration -------------------------------------------------------------


def _sessions_section(user: UserRecord) -> None:
    st.subheader("Sessions")
    st.caption(
        "**Sign out everywhere** ends your sign-in in every browser, this one included (after "
        "using a shared computer, say); tabs still open elsewhere are signed out on their next "
        "click. API tokens keep working unless you revoke them too (or one by one under "
        "*API tokens*)."
    )
    try:
        active = len(tokens.active_tokens(user.actor, user.id))
    except FakeVoiceError as exc:
        st.error(str(exc))
        active = 0  # the sign-out buttons still work
    revoke = active > 0 and st.checkbox(
        f"Also revoke my API tokens ({active} active)",
        key="profile_revoke_tokens",
        help="if you think your account was used by someone else: scripts and systems that "
        "call the API with your tokens are refused from then on",
    )
    here, everywhere = st.columns(2)
    with here:
        auth.sign_out_button("profile_sign_out")
    if everywhere.button(
        "Sign out everywhere", key="profile_sign_out_everywhere", icon=":material/devices:"
    ):
        try:
            revoked = tokens.revoke_all_tokens(user.actor, user.id) if revoke else 0
            auth.sign_out_everywhere(user)
        except FakeVoiceError as exc:
            st.error(str(exc))
            return
        done = "You are signed out in every browser"
        if revoke:
            done += f"; {tokens.tokens_in_words(revoked)} revoked"
        confirmed.flash(done + ".")
        st.rerun()


def _my_profile(user: UserRecord) -> None:
    actor = user.actor
    st.title("My profile")
    st.page_link(
        "pages/profile.py",
        label="My public page",
        icon=":material/public:",
        query_params={USER_PARAM: user.username},
    )
    confirmed.show_flash()
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
        api_tokens.render(actor)
    with tabs[4]:
        sign_in.details_form(user)
        sign_in.change_password_form(user)
        _sessions_section(user)
    if user.is_admin:
        with tabs[5]:
            administration.render(user)


def main() -> None:
    viewer = auth.current_user()
    wanted = st.query_params.get(USER_PARAM)
    if wanted:  # the owner too: "My public page" shows what visitors see
        _public_view(wanted, own=viewer is not None and wanted == viewer.username)
        return
    if viewer is None:
        # What "Sign out everywhere" did, told once it is done (and kept through the run the
        # cookie's deletion brings).
        confirmed.show_flash(again=auth.cookie_rerun_follows())
        auth.require_actor("see your profile")
        return
    _my_profile(viewer)


navigation.through_app(Path(__file__).name)
main()
