"""``fakevoice user ...`` as a subprocess against a real SQLite file: exit codes and messages."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakevoice import accounts, services, sign_ins, store
from fakevoice.cli import main
from fakevoice.settings import get_settings

PASSWORD = "operator pass 1"


@pytest.fixture
def env(isolated_settings: Path) -> dict[str, str]:
    settings = get_settings()
    return {
        **os.environ,
        "FAKEVOICE_DATA_DIR": str(settings.data_dir),
        "FAKEVOICE_DATASET_DIR": str(settings.dataset_dir),
    }


def fakevoice(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakevoice.cli", "user", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def assert_user_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fakevoice: ") and words in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_create_an_admin_list_and_delete(env: dict[str, str]) -> None:
    created = fakevoice(
        env,
        "create",
        "Root",
        "--admin",
        "--password-stdin",
        "--email",
        "root@example.org",
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert "created administrator root" in created.stdout
    user = accounts.authenticate("root", PASSWORD)  # the password from stdin works, newline off
    assert user.is_admin and user.email == "root@example.org"

    assert fakevoice(env, "create", "bob", "--password-stdin", stdin=PASSWORD).returncode == 0
    listed = fakevoice(env, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["username"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {"bob", "root"}
    assert rows["root"]["admin"] is True and rows["bob"]["admin"] is False

    assert_user_error(fakevoice(env, "delete", "bob"), "add --yes")
    with store.session_scope(readonly=True) as session:
        assert store.get_user_by_username(session, "bob") is not None  # asked, not done
    deleted = fakevoice(env, "delete", "bob", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    # What was done, in the words of what was asked (their datasets go too).
    assert deleted.stdout == "deleted user bob with their runs, models, datasets and verdicts\n"
    with store.session_scope(readonly=True) as session:
        assert store.get_user_by_username(session, "bob") is None
        assert store.get_user_by_username(session, "root") is not None
    store.dispose_engines()


def test_deleting_the_cli_account_asks_for_more_than_yes(env: dict[str, str]) -> None:
    local = services.cli_actor()  # the account `fakevoice` commands act as, and own things as
    for asked in (["local"], ["local", "--yes"], ["LOCAL", "--yes"]):
        refused = fakevoice(env, "delete", *asked)
        assert_user_error(refused, "the account this command line acts as (FAKEVOICE_CLI_USER)")
        assert "--yes --cli-account" in refused.stderr
    assert accounts.user_by_username("local") is not None  # asked, not done

    deleted = fakevoice(env, "delete", "local", "--yes", "--cli-account")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.splitlines() == [
        "deleted user local with their runs, models, datasets and verdicts",
        "the next `fakevoice` command acts as a new, empty account local",
    ]
    assert accounts.user_by_username("local") is None
    assert services.cli_actor().user_id != local.user_id  # made again, empty

    # Which account is the command line's follows the setting; the others need --yes alone.
    accounts.register("robot", PASSWORD)
    robot_env = {**env, "FAKEVOICE_CLI_USER": "robot"}
    assert_user_error(fakevoice(robot_env, "delete", "robot", "--yes"), "--cli-account")
    assert fakevoice(robot_env, "delete", "local", "--yes").returncode == 0
    store.dispose_engines()


def test_user_errors_exit_2_with_one_line(env: dict[str, str]) -> None:
    accounts.register("alice", PASSWORD)
    assert_user_error(
        fakevoice(env, "create", "alice", "--password-stdin", stdin=PASSWORD), "already taken"
    )
    assert_user_error(
        fakevoice(env, "create", "carol", "--password-stdin", stdin="p" * 80 + "\n"), "72 bytes"
    )
    # stdin is not a terminal here, so without --password-stdin there is no way to ask.
    assert_user_error(fakevoice(env, "create", "carol"), "--password-stdin")
    assert_user_error(fakevoice(env, "delete", "nobody", "--yes"), "no user called 'nobody'")
    store.dispose_engines()


def test_wrong_settings_are_named_in_one_line(env: dict[str, str]) -> None:
    """A setting the operator got wrong is named, with what it must be, in one line and exit 2
    (never a traceback, never the value: it may be a secret)."""
    wrong = {
        "FAKEVOICE_API_PORT": ("abc", "FAKEVOICE_API_PORT: Input should be a valid integer"),
        "FAKEVOICE_COOKIE_KEY": ("short-secret", "FAKEVOICE_COOKIE_KEY"),
        "FAKEVOICE_JOB_BACKEND": ("celery", "FAKEVOICE_JOB_BACKEND: Input should be 'local'"),
        "FAKEVOICE_DATABASE_URL": ("nonsense", "the database cannot be used"),
    }
    for name, (value, words) in wrong.items():
        reply = fakevoice({**env, name: value}, "list")
        assert_user_error(reply, words)
        assert value not in reply.stderr or name == "FAKEVOICE_JOB_BACKEND"


def run_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = ""
) -> tuple[int, str, str]:
    """The same command through ``cli.main`` in this process (cheaper than a subprocess)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["user", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_more_rules_and_the_admin_role_in_process(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run_in_process(
        capsys, monkeypatch, "create", "carol", "--password-stdin", stdin="short\n"
    )
    assert (code, err.count("\n")) == (2, 1) and "at least 8" in err
    code, _, err = run_in_process(
        capsys, monkeypatch, "create", "bad name", "--password-stdin", stdin=PASSWORD
    )
    assert (code, err.count("\n")) == (2, 1) and "user name must" in err
    code, _, err = run_in_process(capsys, monkeypatch, "admin", "nobody")
    assert (code, err.count("\n")) == (2, 1) and "no user called 'nobody'" in err

    accounts.register("alice", PASSWORD)
    code, out, _ = run_in_process(capsys, monkeypatch, "admin", "alice")
    assert code == 0 and "now an administrator" in out
    assert accounts.authenticate("alice", PASSWORD).is_admin
    code, out, _ = run_in_process(capsys, monkeypatch, "admin", "alice", "--revoke")
    assert code == 0 and "no longer" in out
    assert not accounts.authenticate("alice", PASSWORD).is_admin
    code, out, _ = run_in_process(capsys, monkeypatch, "list")
    assert code == 0 and "alice" in out

    before = accounts.user_by_username("alice")
    assert before is not None and before.sessions_ended_at is None
    code, out, _ = run_in_process(capsys, monkeypatch, "sign-out", "alice")
    assert code == 0 and "alice is signed out in every browser" in out
    after = accounts.user_by_username("alice")
    assert after is not None and after.sessions_ended_at is not None
    assert not sign_ins.sign_in_still_valid(after, after.sessions_ended_at.timestamp() - 1)
    code, _, err = run_in_process(capsys, monkeypatch, "sign-out", "nobody")
    assert (code, err.count("\n")) == (2, 1) and "no user called 'nobody'" in err
    store.dispose_engines()


def test_sign_out_and_token_revoke_end_every_api_token_when_asked(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakevoice.services import tokens

    alice = accounts.register("alice", PASSWORD).actor
    bob = accounts.register("bob", PASSWORD).actor
    made = [tokens.create_token(alice, name)[1] for name in ("ci", "call centre")]
    _, bobs = tokens.create_token(bob, "bob's")
    code, out, _ = run_in_process(capsys, monkeypatch, "sign-out", "alice")
    assert (
        code == 0 and out.strip() == "alice is signed out in every browser (API tokens still work)"
    )
    assert all(tokens.authenticate(secret) is not None for secret in made)
    code, out, _ = run_in_process(capsys, monkeypatch, "sign-out", "alice", "--revoke-tokens")
    assert code == 0 and out.strip() == "alice is signed out in every browser; 2 API tokens revoked"
    assert all(tokens.authenticate(secret) is None for secret in made)
    assert tokens.authenticate(bobs) is not None
    code, out, _ = run_in_process(capsys, monkeypatch, "sign-out", "alice", "--revoke-tokens")
    assert code == 0 and out.strip().endswith("; 0 API tokens revoked")

    # Without signing anyone out: every active token of an account, or of the command line's own.
    code, out, _ = run_in_process(capsys, monkeypatch, "token", "revoke", "--all", "--user", "bob")
    assert (code, out.strip()) == (0, "1 API token revoked")
    assert tokens.authenticate(bobs) is None
    own = [tokens.create_token(services.cli_actor(), name)[1] for name in ("a", "b", "c")]
    code, out, _ = run_in_process(capsys, monkeypatch, "token", "revoke", "--all")
    assert (code, out.strip()) == (0, "3 API tokens revoked")
    assert all(tokens.authenticate(secret) is None for secret in own)
    bobs_user = accounts.user_by_username("bob")
    assert bobs_user is not None and bobs_user.sessions_ended_at is None  # not signed out

    for args, words in (
        (("token", "revoke"), "Name one token's id, or --all"),
        (("token", "revoke", "1", "--all"), "Name one token's id, or --all"),
        (("token", "revoke", "1", "--user", "bob"), "--user goes with --all"),
        (("token", "revoke", "--all", "--user", "nobody"), "no user called 'nobody'"),
        (("sign-out", "nobody", "--revoke-tokens"), "no user called 'nobody'"),
    ):
        code, _, err = run_in_process(capsys, monkeypatch, *args)
        assert (code, err.count("\n")) == (2, 1) and words in err, err
    store.dispose_engines()


def test_api_tokens_are_made_listed_and_revoked_from_the_shell(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakevoice.services import tokens

    accounts.register("alice", PASSWORD)
    code, out, err = run_in_process(
        capsys, monkeypatch, "token", "create", "call centre", "--user", "alice", "--verdicts-only"
    )
    assert code == 0 and out.startswith("fv_") and "(verdicts): shown once" in err
    secret = out.strip()
    found = tokens.authenticate(secret)
    alice = accounts.user_by_username("alice")
    assert alice is not None and found is not None
    assert (found.actor.user_id, found.scope) == (alice.id, "verdicts")

    # The command line's own account by default, full access unless asked.
    code, out, _ = run_in_process(capsys, monkeypatch, "token", "create", "ci", "--json")
    made = json.loads(out)
    assert code == 0 and made["scope"] == "full" and made["token"].startswith("fv_")
    own = tokens.authenticate(made["token"])
    assert own is not None and own.actor.user_id != alice.id

    code, out, _ = run_in_process(capsys, monkeypatch, "token", "list", "--user", "alice", "--json")
    (listed,) = json.loads(out)
    assert listed["name"] == "call centre" and listed["scope"] == "verdicts"
    assert secret not in out and listed["starts_with"] == secret[:11]
    code, out, _ = run_in_process(capsys, monkeypatch, "token", "revoke", str(listed["id"]))
    assert code == 0 and out.strip() == f"token {listed['id']} 'call centre' revoked"
    assert tokens.authenticate(secret) is None
    code, out, _ = run_in_process(capsys, monkeypatch, "token", "list", "--user", "alice")
    assert code == 0 and out.rstrip().endswith("revoked")

    for args, words in (
        (("token", "create", "x", "--user", "nobody"), "no user called 'nobody'"),
        (("token", "revoke", "99999"), "no API token with id 99999"),
        (("token", "create", " "), "token name must be"),
        (("token", "create", "ci"), "already have a token named 'ci'"),
    ):
        code, _, err = run_in_process(capsys, monkeypatch, *args)
        assert (code, err.count("\n")) == (2, 1) and words in err, err
    store.dispose_engines()
