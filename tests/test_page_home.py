"""The Home page and the app's navigation (AppTest, in-process)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest
from test_page_datasets import write_fixture_dataset
from test_page_profile import add_model

from fakevoice import accounts, store
from fakevoice.mail import outbox_dir
from fakevoice.settings import get_settings


def home_page() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=60)


def test_home_is_the_default_page_and_says_how_to_start(isolated_settings: Path) -> None:
    at = home_page().run()
    assert not at.exception
    assert at.title[0].value == "Fake Voice Workbench"
    text = " ".join(markdown.value for markdown in at.markdown)
    assert "fakevoice dataset build-demo" in text
    assert "Datasets" in text
    assert any("No dataset is built yet" in info.value for info in at.info)
    assert not at.dataframe


def test_home_lists_the_datasets_present(isolated_settings: Path) -> None:
    root = isolated_settings / "datasets"
    manifests = {name: write_fixture_dataset(root, name) for name in ("alpha", "beta")}
    at = home_page().run()
    assert not at.exception
    assert not at.info
    text = " ".join(markdown.value for markdown in at.markdown)
    assert "build-demo" not in text and "what the datasets below hold" in text  # built already
    table = at.dataframe[0].value
    assert list(table["dataset"]) == ["alpha", "beta"]
    assert list(table["items"]) == [len(manifests["alpha"]), len(manifests["beta"])]
    assert at.page_link[0].proto.page.endswith("datasets")


def test_navigation_reaches_the_datasets_page(isolated_settings: Path) -> None:
    at = home_page().run()
    at.switch_page("pages/datasets.py").run()
    assert not at.exception
    assert at.title[0].value == "Datasets"


# --- accounts on the home page -------------------------------------------------------------------

PASSWORD = "correct horse 42"
USER_KEY = "fakevoice_user_id"  # components.auth.USER_KEY, the sign-in contract


def button(at: AppTest, label: str) -> Any:
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} among {[b.label for b in at.button]}"
    return matches[0]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def sign_in_with(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="sign_in_username").input(username)
    at.text_input(key="sign_in_password").input(password)
    return button(at, "Sign in").click().run()


def register_with(at: AppTest, username: str, password: str, repeat: str | None = None) -> AppTest:
    at.text_input(key="register_username").input(username)
    at.text_input(key="register_email").input(f"{username}@example.org")
    at.text_input(key="register_password").input(password)
    at.text_input(key="register_repeat").input(password if repeat is None else repeat)
    return button(at, "Register").click().run()


def test_signed_out_home_offers_the_forms_and_lists_public_models_only(
    isolated_settings: Path,
) -> None:
    alice = accounts.register("alice", PASSWORD).actor
    public = add_model(alice, "shared detector", public=True, eer=0.125, accuracy=0.9)
    add_model(alice, "secret detector", public=False, eer=0.5, accuracy=0.5)
    at = home_page().run()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Sign in", "Register", "Forgot password"]
    table = at.dataframe[0].value
    assert list(table["model"]) == [public.name]
    row = table.iloc[0]
    assert (row["arch"], row["owner"]) == ("specnet", "alice")
    assert (row["EER (%)"], row["accuracy (%)"]) == (12.5, 90.0)
    assert row["EER 95 % interval"] == "6.2-25.0"  # the model's validation utterances redrawn
    assert "secret detector" not in str(table)


def test_register_signs_in_and_shows_the_dashboard(isolated_settings: Path) -> None:
    at = register_with(home_page().run(), "Newbie", PASSWORD)
    assert not at.exception
    assert not errors(at)
    assert at.session_state[USER_KEY] == accounts.authenticate("newbie", PASSWORD).id
    assert at.title[0].value == "Welcome, newbie"
    links = {link.proto.page.rsplit("/", 1)[-1] for link in at.page_link}
    assert {"train", "evaluate", "profile"} <= links


def test_register_errors_are_messages(isolated_settings: Path) -> None:
    accounts.register("alice", PASSWORD)
    at = home_page().run()
    register_with(at, "alice", PASSWORD)
    assert any("already taken" in e for e in errors(at))
    register_with(at, "bob", "x" * 80)
    assert any("at most 72 bytes" in e for e in errors(at))
    register_with(at, "bob", PASSWORD, repeat=PASSWORD + "!")
    assert any("differ" in e for e in errors(at))
    register_with(at, "b", PASSWORD)
    assert any("user name must be" in e for e in errors(at))
    assert not at.exception
    assert USER_KEY not in at.session_state
    assert accounts.user_by_username("bob") is None


def test_guessing_passwords_pauses_the_name_with_a_message(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKEVOICE_SIGN_IN_MAX_FAILURES", "2")
    get_settings.cache_clear()
    accounts.register("alice", PASSWORD)
    at = home_page().run()
    for guess in ("guess one", "guess two"):
        sign_in_with(at, "alice", guess)
        assert errors(at) == ["Wrong user name or password."]
    sign_in_with(at, "alice", PASSWORD)
    assert not at.exception
    (paused,) = errors(at)
    assert "Too many wrong passwords" in paused and "15 more minutes" in paused
    assert USER_KEY not in at.session_state


def test_sign_in_wrong_then_right_then_sign_out(isolated_settings: Path) -> None:
    user = accounts.register("alice", PASSWORD, display_name="Alice")
    at = sign_in_with(home_page().run(), "alice", "not the password")
    assert errors(at) == ["Wrong user name or password."]
    assert USER_KEY not in at.session_state
    sign_in_with(at, "alice", "y" * 100)
    assert any("72 bytes" in e for e in errors(at))
    sign_in_with(at, "alice", PASSWORD)
    assert not at.exception
    assert at.session_state[USER_KEY] == user.id
    assert at.title[0].value == "Welcome, Alice"
    # (AppTest runs app.py, with the sidebar's button, on the first run only: use the profile's.)
    at.switch_page("pages/profile.py").run()
    at.button(key="profile_sign_out").click().run()
    assert not at.exception
    assert USER_KEY not in at.session_state
    at.switch_page("pages/home.py").run()
    assert at.title[0].value == "Fake Voice Workbench"
    assert [t.label for t in at.tabs] == ["Sign in", "Register", "Forgot password"]


def test_sidebar_says_who_is_signed_in(isolated_settings: Path) -> None:
    user = accounts.register("root", PASSWORD, display_name="Ruth", is_admin=True)
    at = home_page()
    at.session_state[USER_KEY] = user.id
    at.run()
    assert "Signed in as **Ruth**" in at.sidebar.caption[0].value
    assert "administrator" in at.sidebar.caption[0].value
    assert at.sidebar.button(key="auth_sign_out").label == "Sign out"


def test_forgot_password_mails_a_code_that_sets_a_new_password(
    isolated_settings: Path, caplog: pytest.LogCaptureFixture
) -> None:
    accounts.register("alice", PASSWORD, email="alice@example.org")
    at = home_page().run()
    at.text_input(key="forgot_key").input("alice")
    with caplog.at_level(logging.INFO, logger="fakevoice"):
        button(at, "Send me a reset code").click().run()
    assert not at.exception
    assert "reset code is on its way" in at.success[0].value
    (kept,) = outbox_dir().glob("*.txt")  # the log backend's outbox
    found = re.search(r"Your reset code: (\S+)", kept.read_text())
    assert found is not None
    at.text_input(key="reset_key").input("alice")
    at.text_input(key="reset_code").input("wrong")
    at.text_input(key="reset_new").input("a new secret 1")
    at.text_input(key="reset_again").input("a new secret 1")
    button(at, "Set the new password and sign in").click().run()
    assert "code is wrong" in at.error[0].value
    at.text_input(key="reset_code").input(found.group(1))
    button(at, "Set the new password and sign in").click().run()
    assert not at.exception
    assert at.title[0].value == "Welcome, alice"
    assert accounts.authenticate("alice", "a new secret 1").username == "alice"


def test_dashboard_shows_my_runs_models_and_verdicts_not_others(isolated_settings: Path) -> None:
    alice = accounts.register("alice", PASSWORD).actor
    bob = accounts.register("bob", PASSWORD).actor
    with store.session_scope() as session:
        store.create_run(session, alice, "alice run", {"dataset": "demo", "arch": "specnet"})
        store.create_run(session, bob, "bob run", {"dataset": "demo", "arch": "resnet18"})
    model = add_model(alice, "alice model", public=False, eer=0.2, accuracy=0.8)
    add_model(bob, "bob model", public=False, eer=0.3, accuracy=0.7)
    add_model(bob, "bob shared", public=True, eer=0.25, accuracy=0.75)
    with store.session_scope() as session:
        store.add_analysis(
            session,
            alice,
            model_id=model.id,
            file_name="call.wav",
            duration=3.0,
            sample_rate=16000,
            verdict="human",
            probabilities={"bonafide": 0.9, "world": 0.1},
            threshold=0.6,
            source="page",
        )
    at = home_page()
    at.session_state[USER_KEY] = alice.user_id
    at.run()
    assert not at.exception
    tables = {}
    for frame in at.dataframe:
        columns = set(frame.value.columns)
        name = (
            "home_runs"
            if "status" in columns
            else "home_models"
            if "public" in columns
            else "home_public"
            if "owner" in columns
            else None
        )
        tables[name or ("home_verdicts" if "verdict" in columns else "other")] = frame.value
    assert list(tables["home_runs"]["run"]) == ["alice run"]
    assert list(tables["home_runs"]["status"]) == ["queued"]
    assert list(tables["home_models"]["model"]) == ["alice model"]
    assert list(tables["home_verdicts"]["file"]) == ["call.wav"]
    assert list(tables["home_verdicts"]["verdict"]) == ["human"]
    assert list(tables["home_verdicts"]["model"]) == ["alice model"]  # which said it
    # Everyone's public models, signed in too (bob's shared one, not his private one).
    assert list(tables.pop("home_public")["model"]) == ["bob shared"]
    assert "bob" not in " ".join(str(t) for t in tables.values())


def test_dashboard_follows_my_jobs_of_every_kind_in_progress(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER", "3")
    get_settings.cache_clear()
    alice = accounts.register("alice", PASSWORD).actor
    bob = accounts.register("bob", PASSWORD).actor
    with store.session_scope() as session:
        store.create_run(session, alice, "alice run", {"dataset": "demo", "arch": "specnet"})
        store.create_run(session, alice, "test m on demo", {"kind": "evaluate"}, kind="evaluate")
        store.create_run(session, alice, "render demo-lfcc", {"kind": "render"}, kind="render")
        store.create_run(session, bob, "bob run", {"dataset": "demo", "arch": "resnet18"})
    at = home_page()
    at.session_state[USER_KEY] = alice.user_id
    at.run()
    assert not at.exception
    assert "In progress" in [h.value for h in at.subheader]
    bars = [p.proto.text for p in at.get("progress")]
    # Oldest first: the order the workers take them in.
    assert bars == [
        "alice run: queued (0%)",
        "test m on demo: queued (0%)",
        r"render demo\-lfcc: queued (0%)",  # names shown as written, never as Markdown
    ]
    links = [link.proto.label for link in at.get("page_link")]
    assert {"Follow on Train", "Follow on Evaluate", "Follow on Datasets"} <= set(links)
    # No worker runs here: each job says it waits for one.
    waiting = [c.value for c in at.caption if c.value.startswith("No worker is running")]
    assert len(waiting) == 3, [c.value for c in at.caption]
    with store.session_scope() as session:
        for job in store.list_runs(session, alice, kind=None):
            store.request_stop(session, alice, job.id)
    at.run()
    assert "In progress" not in [h.value for h in at.subheader]
