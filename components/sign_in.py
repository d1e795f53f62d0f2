"""The account forms: sign in, register, forgot password (home page); details and password
(profile page). Each calls :mod:`fakevoice.accounts` and shows its error in words."""

from __future__ import annotations

import streamlit as st

from components import auth
from fakevoice import accounts
from fakevoice.errors import FakeVoiceError
from fakevoice.store.records import UserRecord

RESET_SENT = (
    "If an account with that name or address has an e-mail address, a reset code is on its way "
    "to it. Enter it below with a new password within 30 minutes; until then your password "
    "stays as it is."
)


def sign_in_form() -> None:
    """User name + password; on success the session is signed in and the app reruns."""
    with st.form("sign_in", clear_on_submit=False):
        st.subheader("Sign in")
        username = st.text_input("User name", key="sign_in_username", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="sign_in_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            user = accounts.authenticate(username, password)
        except FakeVoiceError as exc:
            st.error(str(exc))
            return
        auth.sign_in(user)
        st.rerun()


def register_form() -> None:
    """A new account; signed in straight away."""
    with st.form("register"):
        st.subheader("Register")
        username = st.text_input(
            "User name", key="register_username", help=f"{accounts.USERNAME_RULE}."
        )
        display_name = st.text_input("Your name (optional)", key="register_name")
        email = st.text_input(
            "E-mail (optional; needed to reset a forgotten password)", key="register_email"
        )
        password = st.text_input(
            "Password",
            type="password",
            key="register_password",
            help=f"{accounts.MIN_PASSWORD_CHARS} characters or more, at most "
            f"{accounts.MAX_PASSWORD_BYTES} bytes.",
        )
        repeated = st.text_input("Repeat the password", type="password", key="register_repeat")
        submitted = st.form_submit_button("Register")
    if submitted:
        if password != repeated:
            st.error("The two passwords differ; type the same one twice.")
            return
        try:
            user = accounts.register(
                username, password, email=email, display_name=display_name, self_service=True
            )
        except FakeVoiceError as exc:
            st.error(str(exc))
            return
        auth.sign_in(user)
        st.rerun()


def forgot_password_form() -> None:
    """Ask for a one-time reset code by mail, then set a new password with it."""
    with st.form("forgot_password", clear_on_submit=True):
        st.subheader("Forgot your password?")
        key = st.text_input("User name or e-mail address", key="forgot_key")
        submitted = st.form_submit_button("Send me a reset code")
    if submitted:
        try:
            accounts.request_password_reset(key)
        except FakeVoiceError as exc:
            st.error(str(exc))
        else:
            st.success(RESET_SENT)
    with st.form("reset_with_code", clear_on_submit=False):
        st.subheader("Have a code? Set a new password")
        account = st.text_input("User name or e-mail address", key="reset_key")
        code = st.text_input("Reset code from the mail", key="reset_code")
        new = st.text_input(
            "New password", type="password", key="reset_new", autocomplete="new-password"
        )
        again = st.text_input(
            "New password again", type="password", key="reset_again", autocomplete="new-password"
        )
        chosen = st.form_submit_button("Set the new password and sign in")
    if chosen:
        if new != again:
            st.error("The two passwords differ; type the same one twice.")
            return
        try:
            user = accounts.reset_password(account, code, new)
        except FakeVoiceError as exc:
            st.error(str(exc))
            return
        auth.sign_in(user)
        st.rerun()


def details_form(user: UserRecord) -> None:
    """Change display name and e-mail address."""
    with st.form("account_details"):
        st.subheader("Name and e-mail")
        display_name = st.text_input("Name", value=user.display_name, key="details_name")
        email = st.text_input("E-mail", value=user.email or "", key="details_email")
        submitted = st.form_submit_button("Save")
    if submitted:
        try:
            accounts.update_details(user.id, display_name=display_name, email=email)
        except FakeVoiceError as exc:
            st.error(str(exc))
            return
        st.success("Saved.")


def change_password_form(user: UserRecord) -> None:
    """The current password, then the new one twice."""
    with st.form("change_password", clear_on_submit=True):
        st.subheader("Change password")
        current = st.text_input("Current password", type="password", key="password_current")
        new = st.text_input("New password", type="password", key="password_new")
        repeated = st.text_input("Repeat the new password", type="password", key="password_repeat")
        submitted = st.form_submit_button("Change password")
    if submitted:
        if new != repeated:
            st.error("The two new passwords differ; nothing was changed.")
            return
        try:
            accounts.change_password(user.id, current, new)
        except FakeVoiceError as exc:
            st.error(str(exc))
            return
        auth.renew_sign_in(user)
        st.success("Your password was changed. Other browsers signed in as you are signed out.")
