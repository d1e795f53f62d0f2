"""Actions a page confirms: a service call whose success is told after the rerun it causes,
and a delete button that asks once more before it acts."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from fakevoice.errors import FakeVoiceError

_FLASH = "confirmed_flash"  # the success to tell after the rerun
_CONFIRM = "confirmed_delete"  # the key of the delete step that asks once more


def flash(message: str) -> None:
    """Tell ``message`` (a success) on the next run of the page."""
    st.session_state[_FLASH] = message


def show_flash(*, again: bool = False) -> None:
    """The success :func:`flash` left, once, in a container drawn on every run: the elements
    after it (a page's tabs) keep their place, so the tab an action was taken on stays open.

    Args:
        again: show it on the next run too (the run the sign-in cookie's component asks for
            after a sign-out, which would otherwise take the message away as it appears).
    """
    message = st.session_state.get(_FLASH) if again else st.session_state.pop(_FLASH, None)
    slot = st.container()
    if message:
        slot.success(message)


def attempt(action: Callable[[], object], done: str) -> None:
    """Run a service call; on success remember ``done`` and rerun, else show the error."""
    try:
        action()
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    flash(done)
    st.rerun()


def delete_step(
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
        attempt(action, done)
    if no.button("Cancel", key=f"cancel_{key}"):
        st.session_state.pop(_CONFIRM, None)
        st.rerun()
