"""Driving Streamlit widgets the way a person does, shared by the browser journeys."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

TIMEOUT_MS = 90_000  # a slow, shared 2-core machine: a cold page imports torch and fastai
OPTION_TRY_MS = 10_000  # one attempt at the open option list, before it is opened again
NAV_TRY_MS = 15_000  # one click on a sidebar link, before it is clicked again
COOKIE_NAME = "fakevoice_auth"  # settings.cookie_name's default
HAS_COOKIE = "name => document.cookie.split('; ').some(c => c.startsWith(name + '='))"


def wait_for_script(page: Page) -> None:
    """Wait until the app is connected and its script has finished running."""
    from playwright.sync_api import expect

    app = page.get_by_test_id("stApp")
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=TIMEOUT_MS)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=TIMEOUT_MS)


def choose(page: Page, label: str, option: str | re.Pattern[str], typed: str | None = None) -> None:
    """Pick ``option`` in the selectbox labelled ``label``: click it, type, click the option.

    ``typed`` is what to type (``option`` itself by default). A rerun that lands while the list
    is open redraws the select and closes the list; the list is then opened again, until
    ``TIMEOUT_MS`` is spent.
    """
    from playwright.sync_api import Error, expect

    if typed is None:
        if not isinstance(option, str):
            raise TypeError("say what to type for a pattern option")
        typed = option
    combobox = page.get_by_role("combobox", name=label, exact=True)
    current = combobox.input_value()
    if option == current if isinstance(option, str) else option.search(current):
        return  # already chosen (a later form keeps the earlier choice)
    choice = page.get_by_role("option", name=option, exact=isinstance(option, str))
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        combobox.click()
        page.keyboard.type(typed)
        try:
            choice.click(timeout=OPTION_TRY_MS)
            break
        except Error:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")
            wait_for_script(page)
    expect(combobox).to_have_value(option, timeout=TIMEOUT_MS)
    wait_for_script(page)


def open_page(page: Page, title: str, heading: str | re.Pattern[str]) -> None:
    """Open a page from the sidebar navigation and wait for its ``<h1>`` ``heading``.

    The click waits for the running script first. A rerun that a component asks for just after
    the click (the sign-in cookie's writer does, once per sign-in) can still win over it and
    keep the old page; the link is then clicked again, until ``TIMEOUT_MS`` is spent.
    """
    from playwright.sync_api import expect

    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True)
    title_heading = page.locator("h1", has_text=heading)
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        wait_for_script(page)
        link.click()
        try:
            expect(title_heading).to_be_visible(timeout=NAV_TRY_MS)
            break
        except AssertionError:  # expect's failure
            if time.monotonic() > deadline:
                raise
    wait_for_script(page)
