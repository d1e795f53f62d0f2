"""A link to a page opened first after the server restarts: the visitor is still signed in.

Streamlit routes by the ``pages/`` folder until ``app.py`` has called ``st.navigation`` once since
the server started; before, a link such as ``/profile?user=NAME`` ran the page file by itself
(the folder's file names as the sidebar, nobody signed in from their cookie). Here a user signs
in, the server is restarted on the same data folder (so the same cookie key), and the first
request of the new server is such a link.

The server is this test's own, reached as ``localhost``: the session's server is
``127.0.0.1``, and cookies are kept per host, so the two never share a sign-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .conftest import _environment, _stop, _wait_healthy, start_streamlit
from .widgets import COOKIE_NAME, HAS_COOKIE, TIMEOUT_MS, wait_for_script

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

pytestmark = pytest.mark.browser
expect = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing"
).expect

USERNAME = "linker"
PASSWORD = "a link in a mail"
NAV_TITLES = ("Home", "Datasets", "Train", "Evaluate", "Profile")


def _register(context: BrowserContext, url: str) -> None:
    page = context.new_page()
    page.goto(url)
    wait_for_script(page)
    page.get_by_role("tab", name="Register").click()
    for key, value in {
        "register_username": USERNAME,
        "register_password": PASSWORD,
        "register_repeat": PASSWORD,
    }.items():
        page.locator(f".st-key-{key}").locator("input").fill(value)
    page.get_by_test_id("stFormSubmitButton").filter(has_text="Register").click()
    expect(page.get_by_test_id("stSidebar")).to_contain_text(
        f"Signed in as {USERNAME}", timeout=TIMEOUT_MS
    )
    # The cookie is written in the browser by the run after the form: the server must not stop
    # before it is there.
    page.wait_for_function(HAS_COOKIE, arg=COOKIE_NAME, timeout=TIMEOUT_MS)
    wait_for_script(page)
    page.close()


def test_a_link_opened_first_after_a_restart_goes_through_the_app(
    browser_context: BrowserContext, tmp_path: Path
) -> None:
    env = _environment(tmp_path)
    log = tmp_path / "streamlit.log"
    process, url = start_streamlit(env, log)
    try:
        _wait_healthy(process, url, log)
        _register(browser_context, url.replace("127.0.0.1", "localhost"))
    finally:
        _stop(process)

    process, url = start_streamlit(env, log)  # the same data folder: the same cookie key
    try:
        _wait_healthy(process, url, log)
        page = browser_context.new_page()
        try:
            page.goto(url.replace("127.0.0.1", "localhost") + f"/profile?user={USERNAME}")
            sidebar = page.get_by_test_id("stSidebar")
            expect(sidebar).to_contain_text(f"Signed in as {USERNAME}", timeout=TIMEOUT_MS)
            wait_for_script(page)
            # The app's navigation, not the pages/ folder's file names.
            links = page.get_by_test_id("stSidebarNavLink")
            expect(links).to_have_count(len(NAV_TITLES))
            for title in NAV_TITLES:
                expect(links.filter(has_text=title)).to_have_count(1)
            expect(links.filter(has_text="app")).to_have_count(0)
            # The link's page and query: the user's public profile.
            assert page.url.endswith(f"/profile?user={USERNAME}"), page.url
            expect(page.get_by_role("heading", name=USERNAME).first).to_be_visible()
        finally:
            page.close()
    finally:
        _stop(process)
        print(log.read_text(errors="replace")[-3000:])
