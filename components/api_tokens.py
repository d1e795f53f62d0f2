"""The API tokens of the signed-in user: create one (full access or verdicts only), see them
all, revoke one. The secret is shown once, when it is made."""

from __future__ import annotations

import streamlit as st

from components import confirmed
from fakevoice.errors import FakeVoiceError
from fakevoice.services import tokens
from fakevoice.store.records import Actor

TOKEN_ACCESS = {
    "full": "do everything you can (verdicts, training, uploads, sharing, deleting)",
    "verdicts": "only ask for verdicts and read or label your history",
}


def render(actor: Actor) -> None:
    """The token form, the list of ``actor``'s tokens and the revoke control."""
    st.caption("Tokens let scripts call the HTTP API as you: `Authorization: Bearer <token>`.")
    with st.form("new_token", clear_on_submit=True):
        # The form is cleared when sent: a name longer than the store takes could not be typed
        # again after its error, so the field stops at the limit.
        name = st.text_input(
            "Name of the new token", key="token_name", max_chars=tokens.MAX_TOKEN_NAME_LENGTH
        )
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
        placeholder="—",
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
            confirmed.attempt(
                lambda: tokens.revoke_token(actor, chosen),
                f"Token {active[chosen].name!r} was revoked.",
            )
