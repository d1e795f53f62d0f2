"""Who is signed in, for every page; the one module that talks to streamlit-authenticator.

Contract shared by all pages: the signed-in user's id lives in
``st.session_state["fakevoice_user_id"]`` (an int). :func:`current_actor` turns it into the
store's :class:`~fakevoice.store.records.Actor`, or ``None`` when nobody is signed in (or the
user was deleted meanwhile). Tests sign a user in by setting that key.

Accounts themselves (bcrypt hashes, checks, resets) are :mod:`fakevoice.accounts`; the cookie key
and which sign-ins are over, :mod:`fakevoice.sign_ins`. This module adds the browser side:
:func:`start` (called by ``app.py`` on every run) builds a streamlit-authenticator ``Authenticate``
from the database's credentials, signs a returning visitor in from its signed cookie (key from
:func:`fakevoice.sign_ins.cookie_key`, expiry ``settings.cookie_expiry_days``), and sets or deletes
that cookie after :func:`sign_in` / :func:`sign_out`. The cookie is written on the run *after* the
form, so that the cookie component is sent in a run that is not cut short by ``st.rerun()``.

Every session remembers when it was signed in and which cookie it holds. :func:`sign_out` also
refuses that cookie on the server, so a browser whose deletion never arrived (a tab closed at once)
is not signed in again. A password change or "Sign out everywhere" (:func:`sign_out_everywhere`)
ends the sign-ins made before it: cookies are refused, and a session still open in another
browser is signed out on its next run.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import streamlit as st
import streamlit_authenticator as stauth
from streamlit.delta_generator import DeltaGenerator
from streamlit_authenticator.utilities import LoginError

from components.user_text import plain
from fakevoice import accounts, sign_ins, store
from fakevoice.errors import NotFoundError
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, UserRecord

logger = logging.getLogger(__name__)

USER_KEY = "fakevoice_user_id"
_COOKIE_ACTION = "_fakevoice_cookie_action"
_SIGNED_IN_AT = "_fakevoice_signed_in_at"  # epoch seconds
_COOKIE_EXPIRES = "_fakevoice_cookie_expires"  # this browser's cookie's signed expiry, epoch s
_COOKIE_WRITTEN = "_fakevoice_cookie_written"  # this run set or deleted the cookie
SESSION_ENDED = "You were signed out: your password was changed or every session was ended."
CookieAction = Literal["set", "delete"]


def current_user() -> UserRecord | None:
    """The signed-in user, or None."""
    user_id = st.session_state.get(USER_KEY)
    if not isinstance(user_id, int):
        return None
    try:
        with store.session_scope(readonly=True) as session:
            user = store.get_user(session, user_id)
    except NotFoundError:
        st.session_state.pop(USER_KEY, None)
        return None
    # A session signed in without a recorded time (tests set USER_KEY) counts from now.
    signed_in_at = st.session_state.setdefault(_SIGNED_IN_AT, time.time())
    if not sign_ins.sign_in_still_valid(user, signed_in_at):
        logger.info("ending an older session of %s", user.username)
        sign_out()
        st.toast(SESSION_ENDED, icon=":material/logout:")
        return None
    return user


def current_actor() -> Actor | None:
    """The signed-in user as the acting user of service calls, or None."""
    user = current_user()
    return user.actor if user is not None else None


def require_actor(what: str = "use this page") -> Actor:
    """The signed-in actor; otherwise a sign-in prompt and ``st.stop()``."""
    actor = current_actor()
    if actor is None:
        st.info(f"Sign in (or register) on the Home page to {what}.")
        st.page_link("pages/home.py", label="Go to sign in", icon=":material/login:")
        st.stop()
    return actor


def start() -> None:
    """Once per script run, before the page: the sign-in cookie's part of the job."""
    store.init_db()
    settings = get_settings()
    authenticator = stauth.Authenticate(
        sign_ins.credentials(),
        cookie_name=settings.cookie_name,
        cookie_key=sign_ins.cookie_key(),
        cookie_expiry_days=settings.cookie_expiry_days,
        auto_hash=False,
        login_sleep_time=0,
    )
    action: CookieAction | None = st.session_state.pop(_COOKIE_ACTION, None)
    st.session_state[_COOKIE_WRITTEN] = action is not None
    if action == "set":
        authenticator.cookie_controller.set_cookie()
        # Its signed expiry names this browser's sign-in, so that "Sign out" can end it.
        expires = getattr(authenticator.cookie_controller.cookie_model, "exp_date", None)
        if isinstance(expires, float):
            st.session_state[_COOKIE_EXPIRES] = expires
    elif action == "delete":
        authenticator.cookie_controller.delete_cookie()
    if st.session_state.get(USER_KEY) is None and not st.session_state.get("logout"):
        _restore_from_cookie(authenticator, settings.cookie_name, settings.cookie_expiry_days)


def _restore_from_cookie(
    authenticator: stauth.Authenticate, cookie_name: str, expiry_days: float
) -> None:
    if not isinstance(st.context.cookies.get(cookie_name), str):
        return  # no cookie sent with the page request
    try:
        # Checks the cookie's signature and expiry; on success it fills the library's own
        # session keys (its return value is None then, so those are read instead).
        authenticator.login(location="unrendered")
    except LoginError:  # a valid cookie of an account that no longer exists
        return
    username = st.session_state.get("username")
    if not st.session_state.get("authentication_status") or not isinstance(username, str):
        return
    user = accounts.user_by_username(username)
    if user is None:
        return
    expires = sign_ins.cookie_expiry(st.context.cookies.get(cookie_name), sign_ins.cookie_key())
    issued = None if expires is None else expires - expiry_days * 86400.0
    if (
        expires is None
        or not sign_ins.sign_in_still_valid(user, issued)
        or sign_ins.cookie_sign_in_ended(user.id, expires)
    ):
        # Signed out in this browser (the deletion never reached it), or signed in before the
        # password changed, before "Sign out everywhere" or before the account with this name
        # was made: that session ends here.
        logger.info("refusing an ended sign-in cookie of %s", user.username)
        _forget_library_sign_in()
        st.session_state[_COOKIE_ACTION] = "delete"
        return
    st.session_state[USER_KEY] = user.id
    st.session_state[_SIGNED_IN_AT] = issued
    st.session_state[_COOKIE_EXPIRES] = expires
    logger.info("user %s signed in again from their cookie", user.username)


def sign_in(user: UserRecord) -> None:
    """Mark ``user`` as signed in for this session; the cookie follows on the next run."""
    st.session_state[USER_KEY] = user.id
    st.session_state[_SIGNED_IN_AT] = time.time()
    # streamlit-authenticator's own session keys, which its cookie code reads.
    st.session_state["username"] = user.username
    st.session_state["name"] = user.display_name
    st.session_state["authentication_status"] = True
    st.session_state["logout"] = False
    st.session_state[_COOKIE_ACTION] = "set"


def cookie_rerun_follows() -> bool:
    """Whether this run set or deleted the sign-in cookie: the cookie's component asks for one
    more run once the browser has done it, and a message shown only in this run is gone at once."""
    return bool(st.session_state.get(_COOKIE_WRITTEN))


def sign_out() -> None:
    """Forget the signed-in user in this session, and end this browser's cookie: it is refused on
    the server from now on and deleted in the browser on the next run."""
    user_id = st.session_state.pop(USER_KEY, None)
    st.session_state.pop(_SIGNED_IN_AT, None)
    expires = st.session_state.pop(_COOKIE_EXPIRES, None)
    if isinstance(user_id, int) and isinstance(expires, float):
        sign_ins.end_cookie_sign_in(user_id, expires)
    _forget_library_sign_in()
    st.session_state["logout"] = True
    st.session_state[_COOKIE_ACTION] = "delete"


def _forget_library_sign_in() -> None:
    """Clear streamlit-authenticator's own session keys (its cookie code reads them)."""
    for key in ("username", "name", "authentication_status", "email", "roles"):
        st.session_state[key] = None


def sign_out_everywhere(user: UserRecord) -> None:
    """End every sign-in of ``user`` (other browsers on their next run) and sign out here.

    Raises:
        NotFoundError: the account was removed meanwhile.
    """
    sign_ins.end_all_sessions(user.actor, user.id)
    sign_out()


def renew_sign_in(user: UserRecord) -> None:
    """After ``user`` changed their password in this session: this session and its browser stay
    signed in (a new cookie follows on the next run); sign-ins elsewhere end."""
    if st.session_state.get(USER_KEY) != user.id:
        return
    st.session_state[_SIGNED_IN_AT] = time.time()
    st.session_state["username"] = user.username  # the new cookie names it
    st.session_state[_COOKIE_ACTION] = "set"


def sidebar_status() -> None:
    """In the sidebar: who is signed in, with a sign-out button."""
    user = current_user()
    if user is None:
        return
    role = " (administrator)" if user.is_admin else ""
    st.sidebar.caption(f"Signed in as **{plain(user.display_name)}** · `{user.username}`{role}")
    sign_out_button("auth_sign_out", st.sidebar)


def sign_out_button(key: str, where: DeltaGenerator | None = None) -> None:
    """A "Sign out" button (in ``where``, default the current container)."""
    if (where or st).button("Sign out", key=key, icon=":material/logout:"):
        sign_out()
        st.rerun()
