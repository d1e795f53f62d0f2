"""What the lists read as records grow: the pages, services, API and CLI that list runs, models
and verdicts send as many SQL statements for many records as for a few, and load the rows they
show, not every row (bench/store_scale.py times them on a busy user's year of records).

Counts of statements and of loaded rows are what is checked, never times.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO
from sqlalchemy import event
from streamlit.testing.v1 import AppTest
from test_page_profile import add_model, finished_run
from test_store import sent_statements

from fakevoice import services, store
from fakevoice.cli import main as cli
from fakevoice.errors import LimitExceededError, NotFoundError
from fakevoice.services import profile, tokens, uploads
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, EpochMetric
from fakevoice.store.tables import ModelRow, RunRow

USER_KEY = "fakevoice_user_id"  # components.auth.USER_KEY


@contextlib.contextmanager
def rows_loaded(table: type[Any]) -> Iterator[list[int]]:
    """How many ORM rows of ``table`` are loaded while the block runs (``[n]``)."""
    loaded = [0]

    def count(*_: Any) -> None:
        loaded[0] += 1

    event.listen(table, "load", count)
    try:
        yield loaded
    finally:
        event.remove(table, "load", count)


def failed_run(actor: Actor, name: str, eers: list[float], kind: Any = "train") -> int:
    """A run of ``actor``'s without a model that ran an epoch per figure of ``eers``, then
    failed (a dataset build or a test with ``kind``)."""
    with store.session_scope() as session:
        run = store.create_run(session, actor, name, {"arch": "specnet"}, kind=kind)
        store.set_status(session, run.id, "running")
        store.append_epoch_metrics(
            session,
            run.id,
            [EpochMetric(epoch=i, eer=eer, accuracy=0.5) for i, eer in enumerate(eers)],
        )
        store.set_status(session, run.id, "failed", error="stopped by the test")
    return run.id


def statement_count(action: Any) -> int:
    """The SQL statements ``action()`` sends (a warm-up call first: engines, caches)."""
    action()
    with sent_statements() as sent:
        action()
    return len(sent)


def page(name: str, actor: Actor) -> Any:
    def render() -> AppTest:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
        at.session_state[USER_KEY] = actor.user_id
        if name != "home":
            at.switch_page(f"pages/{name}.py")
        at.run()
        assert not at.exception, at.exception
        return at

    return render


# --- my runs (Home, Profile) ---------------------------------------------------------------------


def test_my_runs_reads_as_much_for_many_runs_as_for_a_few(alice: Actor) -> None:
    with_model, _ = finished_run(alice, "with a model", eer=0.125, accuracy=0.9)
    failed_run(alice, "failed 0", [0.4, 0.3])
    few = statement_count(lambda: profile.my_runs(alice))
    for i in range(1, 8):
        failed_run(alice, f"failed {i}", [0.4, 0.01 * i])
    assert statement_count(lambda: profile.my_runs(alice)) == few
    entries = profile.my_runs(alice)
    assert [e.run.name for e in entries] == [f"failed {i}" for i in range(7, -1, -1)] + [
        "with a model"
    ]
    by_name = {e.run.name: e for e in entries}
    assert (by_name["with a model"].eer, by_name["with a model"].accuracy) == (0.125, 0.9)
    assert by_name["with a model"].model is not None
    assert by_name["with a model"].model.run_id == with_model.id
    assert (by_name["failed 3"].eer, by_name["failed 3"].accuracy) == (0.03, 0.5)  # last epoch
    assert by_name["failed 0"].model is None
    newest = profile.my_runs(alice, limit=3)
    assert newest == entries[:3]
    assert [m.name for m in profile.my_models(alice, limit=1)] == ["with a model"]


def test_home_and_profile_read_as_much_for_many_runs_as_for_a_few(alice: Actor) -> None:
    finished_run(alice, "with a model")
    failed_run(alice, "failed 0", [0.4, 0.3])
    home, my_profile = page("home", alice), page("profile", alice)
    few = (statement_count(home), statement_count(my_profile))
    for i in range(1, 9):
        failed_run(alice, f"failed {i}", [0.4, 0.3])
    assert (statement_count(home), statement_count(my_profile)) == few
    at = home()
    latest = at.dataframe[0].value  # "My latest runs": five, newest first
    assert list(latest["run"]) == [f"failed {i}" for i in range(8, 3, -1)]
    assert list(latest["EER (%)"]) == [30.0] * 5
    table = my_profile().dataframe[0].value  # every run on the profile
    assert len(table) == 10 and table["run"].iloc[-1] == "with a model"


def test_train_and_profile_load_a_page_of_runs_and_models_however_many(alice: Actor) -> None:
    """The run and model lists show a page at a time (and the comparison offers the newest
    few): they load that many rows, never every one of the user's, administrators' included."""
    with store.session_scope() as session:
        root = store.create_user(session, "root", is_admin=True).actor
    for i in range(3):
        failed_run(alice, f"failed {i}", [0.4])
        add_model(alice, f"imported {i}", public=False, eer=0.1, accuracy=0.9)
    train, my_profile, admin = page("train", alice), page("profile", alice), page("profile", root)
    few = [statement_count(p) for p in (train, my_profile, admin)]
    for i in range(3, 80):
        failed_run(alice, f"failed {i}", [0.4])
    for i in range(3, 25):
        add_model(alice, f"imported {i}", public=False, eer=0.1, accuracy=0.9)
    assert [statement_count(p) for p in (train, my_profile, admin)] == few

    def loaded(render: Any) -> tuple[int, int]:
        with rows_loaded(RunRow) as runs, rows_loaded(ModelRow) as models:
            render()
        return runs[0], models[0]

    assert loaded(train) == (20, 0)
    # A page of runs, the 50 newest offered to compare (and one more: "more match"), the run
    # opened and the two compared read again by their ids, and a page of models.
    assert loaded(my_profile) == (20 + 51 + 3, 20)
    assert loaded(admin) == (20, 0)  # a page of everyone's jobs; root has none of their own


# --- owners of public models (Home, Profile, Evaluate) -------------------------------------------


def test_owners_of_public_models_are_named_in_one_statement(alice: Actor) -> None:
    def sharer(name: str) -> None:
        with store.session_scope() as session:
            owner = store.create_user(session, name).actor
            store.add_model(
                session,
                owner,
                name=f"{name}'s model",
                arch="specnet",
                class_names=["bonafide", "world"],
                sample_rate=16000,
                clip_samples=16000,
                path=str(get_settings().data_dir / "models" / name),
                files={},
                metrics={"eer": 0.2, "accuracy": 0.8},
                is_public=True,
            )

    sharer("bob")
    evaluate = page("evaluate", alice)
    few = (statement_count(profile.public_models), statement_count(evaluate))
    for name in ("carol", "dave", "erin", "frank"):
        sharer(name)
    assert (statement_count(profile.public_models), statement_count(evaluate)) == few
    shared = profile.public_models()
    assert [(p.model.name, p.owner) for p in shared] == [
        (f"{name}'s model", name) for name in ("frank", "erin", "dave", "carol", "bob")
    ]
    assert profile.model_owners([p.model for p in shared[:2]]) == {
        shared[0].model.id: "frank",
        shared[1].model.id: "erin",
    }


# --- job lists (Datasets, Evaluate, the API, the CLI) --------------------------------------------


@pytest.mark.parametrize(
    ("kind", "listing"),
    [
        ("dataset", services.list_dataset_builds),
        ("evaluate", services.list_evaluations),
        ("render", services.list_renders),
    ],
)
def test_the_latest_jobs_of_a_kind_load_only_those_shown(
    alice: Actor, kind: str, listing: Any
) -> None:
    ids = [failed_run(alice, f"{kind} {i}", [], kind=kind) for i in range(8)]
    failed_run(alice, "a training run", [])
    with rows_loaded(RunRow) as loaded:
        latest = listing(alice, limit=3)
    assert [run.id for run in latest] == ids[:-4:-1]
    assert loaded == [3]
    assert [run.id for run in listing(alice)] == ids[::-1]


def test_the_api_loads_one_page_of_runs(isolated_settings: Path) -> None:
    from test_api import thread_server

    store.init_db()
    with store.session_scope() as session:
        alice = store.create_user(session, "alice").actor
    ids = [failed_run(alice, f"run {i}", []) for i in range(7)]
    headers = {"Authorization": f"Bearer {tokens.create_token(alice, 'tests')[1]}"}
    with thread_server(get_settings()) as url:
        with rows_loaded(RunRow) as loaded:
            page = httpx.get(f"{url}/v1/runs?limit=2&offset=4", headers=headers).json()
        assert loaded == [2]
        assert [item["id"] for item in page["items"]] == [ids[2], ids[1]]
        assert (page["total"], page["next_offset"]) == (7, 6)
        last = httpx.get(f"{url}/v1/runs?limit=2&offset=6", headers=headers).json()
        assert ([item["id"] for item in last["items"]], last["next_offset"]) == ([ids[0]], None)


def test_the_api_lists_models_a_page_at_a_time(isolated_settings: Path) -> None:
    from test_api import thread_server

    store.init_db()
    with store.session_scope() as session:
        alice = store.create_user(session, "alice").actor
        bob = store.create_user(session, "bob").actor
    mine = [add_model(alice, f"Mine {i}", public=False, eer=0.1, accuracy=0.9).id for i in range(5)]
    shared = add_model(bob, "Shared", public=True, eer=0.1, accuracy=0.9).id
    add_model(bob, "Private", public=False, eer=0.1, accuracy=0.9)
    headers = {"Authorization": f"Bearer {tokens.create_token(alice, 'tests')[1]}"}
    with thread_server(get_settings()) as url:
        with rows_loaded(ModelRow) as loaded:
            page = httpx.get(f"{url}/v1/models?limit=2&offset=2", headers=headers)
        assert page.status_code == 200, page.text
        assert loaded == [3]  # the page, and one more to know that more follow
        assert [m["id"] for m in page.json()] == [mine[3], mine[2]]
        assert (page.headers["X-Total-Count"], page.headers["X-Next-Offset"]) == ("6", "4")
        last = httpx.get(f"{url}/v1/models?limit=2&offset=4", headers=headers)
        assert [m["id"] for m in last.json()] == [mine[1], mine[0]]
        assert "X-Next-Offset" not in last.headers
        everything = httpx.get(f"{url}/v1/models", headers=headers)  # as clients always asked
        assert [m["id"] for m in everything.json()] == [shared, *mine[::-1]]
        assert everything.headers["X-Total-Count"] == "6"
        found = httpx.get(f"{url}/v1/models", params={"q": "MINE 3"}, headers=headers)
        assert ([m["id"] for m in found.json()], found.headers["X-Total-Count"]) == ([mine[3]], "1")
        for bad in ("limit=0", "limit=501", "offset=-1"):
            assert httpx.get(f"{url}/v1/models?{bad}", headers=headers).status_code == 422
    anonymous = get_settings().model_copy(update={"api_allow_anonymous": True})
    with store.session_scope() as session:  # the account anonymous callers act as
        guest = store.get_or_create_user(session, anonymous.api_anonymous_user).actor
    add_model(guest, "its own", public=False, eer=0.1, accuracy=0.9)
    with thread_server(anonymous) as url:
        public = httpx.get(f"{url}/v1/models?limit=1")
        assert [m["id"] for m in public.json()] == [shared]
        assert public.headers["X-Total-Count"] == "1" and "X-Next-Offset" not in public.headers


def test_a_job_named_on_the_command_line_is_found_without_reading_the_others(
    alice: Actor,
) -> None:
    with store.session_scope() as session:
        bob = store.create_user(session, "bob").actor
    ids = [failed_run(alice, f"run {i}", []) for i in range(5)]
    build = failed_run(alice, "build", [], kind="dataset")
    named_like_an_id = failed_run(alice, str(ids[0]), [])
    theirs = failed_run(bob, "run 1", [])
    with rows_loaded(RunRow) as loaded:
        found = services.find_run(alice, "run 3")
    assert (found.id, loaded) == (ids[3], [1])
    assert services.find_run(alice, " build ").id == build  # any kind of job
    assert services.find_run(alice, str(ids[0])).id == named_like_an_id  # a name wins
    assert services.find_run(alice, str(ids[2])).id == ids[2]
    assert services.find_run(bob, "run 1").id == theirs
    with pytest.raises(NotFoundError):
        services.find_run(bob, str(ids[2]))  # another user's, by id
    with pytest.raises(NotFoundError):
        services.find_run(bob, "run 3")


def listed(*argv: str) -> tuple[int, str, str]:
    """``fakevoice ARGV``: its exit code, stdout and stderr."""
    with (
        contextlib.redirect_stdout(io.StringIO()) as out,
        contextlib.redirect_stderr(io.StringIO()) as err,
    ):
        code = cli(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_the_cli_lists_the_newest_runs_and_models_and_says_how_many_more(
    alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [failed_run(alice, f"run {i}", []) for i in range(5)]
    build = failed_run(alice, "build", [], kind="dataset")
    models = [add_model(alice, f"model {i}", public=False, eer=0.1, accuracy=0.9) for i in range(4)]
    monkeypatch.setenv("FAKEVOICE_CLI_USER", "alice")
    get_settings.cache_clear()
    with rows_loaded(RunRow) as loaded:
        code, out, _ = listed("runs", "--limit", "2")
    assert (code, loaded) == (0, [2])
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:2]] == [str(ids[4]), str(ids[3])]
    assert lines[2:] == ["(2 of 5 shown, newest first; --limit N shows more)"]
    code, out, _ = listed("runs", "--jobs", "--limit", "1")
    assert out.split()[0] == str(build) and "(1 of 6 shown" in out
    code, out, err = listed("runs", "--json", "--limit", "3")
    assert [run["id"] for run in json.loads(out)] == ids[:1:-1]
    assert err.strip() == "(3 of 5 shown, newest first; --limit N shows more)"
    code, out, _ = listed("runs")  # fewer than the default 50: all of them, no line
    assert len(out.splitlines()) == 5 and "shown" not in out
    with rows_loaded(ModelRow) as loaded:
        code, out, _ = listed("models", "--limit", "3")
    assert (code, loaded) == (0, [3])
    assert [line.split()[0] for line in out.splitlines()[:3]] == [str(m.id) for m in models[:0:-1]]
    assert out.splitlines()[3] == "(3 of 4 shown, newest first; --limit N shows more)"
    code, out, _ = listed("models", "list", "--limit", "4")
    assert len(out.splitlines()) == 4 and "shown" not in out
    # Before the `list` subcommand or after it, the same (its own default had overwritten them).
    code, out, _ = listed("models", "--limit", "2", "list")
    assert len(out.splitlines()) == 3 and "(2 of 4 shown" in out
    code, out, _ = listed("models", "--json", "list")
    assert len(json.loads(out)) == 4
    for bad in ("0", "1001"):
        code, _, err = listed("runs", "--limit", bad)
        assert code == 2 and "--limit must be 1 to 1000" in err
        assert listed("models", "--limit", bad)[0] == 2


def test_the_history_names_its_models_without_loading_them(
    alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = add_model(alice, "judge", public=False, eer=0.1, accuracy=0.9)
    for i in range(3):
        verdict(alice, model.id, f"call {i}.wav")
    monkeypatch.setenv("FAKEVOICE_CLI_USER", "alice")
    get_settings.cache_clear()
    with contextlib.redirect_stdout(io.StringIO()) as out, rows_loaded(ModelRow) as loaded:
        assert cli(["history"]) == 0
    assert loaded == [0]
    lines = [line for line in out.getvalue().splitlines() if ".wav" in line]
    assert len(lines) == 3 and all("judge" in line for line in lines)


def verdict(actor: Actor, model_id: int, file_name: str, sha256: str | None = None) -> int:
    """A verdict of ``actor``'s on a clip called ``file_name``, by the model ``model_id``."""
    with store.session_scope() as session:
        return store.add_analysis(
            session,
            actor,
            model_id=model_id,
            file_name=file_name,
            duration=2.0,
            sample_rate=16000,
            verdict="human",
            probabilities={"bonafide": 0.9, "world": 0.1},
            threshold=0.5,
            source="cli",
            file_sha256=sha256,
        ).id


# --- the history's CSV, sent and written as it is read -------------------------------------------


def test_the_history_csv_is_sent_and_written_a_page_at_a_time(
    alice: Actor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from test_api import thread_server

    from fakevoice.services import history

    model = add_model(alice, "judge", public=False, eer=0.1, accuracy=0.9)
    for i in range(8):
        verdict(alice, model.id, f"call {i}.wav")
    monkeypatch.setattr(history, "EXPORT_PAGE", 3)
    read: list[int] = []  # the size of the CSV file written so far, at each page read
    out = tmp_path / "history.csv"
    listing = store.list_analyses

    def list_analyses(*args: Any, **kwargs: Any) -> Any:
        read.append(out.stat().st_size if out.exists() else -1)
        return listing(*args, **kwargs)

    monkeypatch.setattr(store, "list_analyses", list_analyses)
    whole = services.analyses_csv(alice)
    assert len(whole.splitlines()) == 9 and len(read) == 3
    read.clear()
    chunks = services.analyses_csv_chunks(alice)
    assert next(chunks).startswith("id,time_utc,file,") and read == []  # the header first
    assert next(chunks).count("\n") == 3 and len(read) == 1  # then one page
    assert "".join(chunks) and len(read) == 3
    assert "".join(services.analyses_csv_chunks(alice)) == whole
    # The command line writes each page before it reads the next.
    monkeypatch.setenv("FAKEVOICE_CLI_USER", "alice")
    get_settings.cache_clear()
    read.clear()
    with contextlib.redirect_stdout(io.StringIO()) as said:
        assert cli(["history", "--csv", str(out)]) == 0
    assert said.getvalue().strip() == f"8 verdicts written to {out}"
    assert out.read_bytes().decode("utf-8") == whole
    assert read[0] < read[1] < read[2]  # the header, then the first page, were on disk already
    # The API streams it (no length known ahead), and refuses too many before the first byte.
    headers = {"Authorization": f"Bearer {tokens.create_token(alice, 'tests')[1]}"}
    with thread_server(get_settings()) as url:
        sent = httpx.get(f"{url}/v1/analyses", params={"format": "csv"}, headers=headers)
        assert (sent.status_code, sent.text) == (200, whole)
        assert sent.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in sent.headers
        monkeypatch.setattr(history, "MAX_EXPORT_ROWS", 7)
        refused = httpx.get(f"{url}/v1/analyses", params={"format": "csv"}, headers=headers)
        assert refused.status_code == 413 and "at most 7" in refused.text
    with pytest.raises(LimitExceededError, match="8 verdicts match"):
        services.analyses_csv_chunks(alice)  # at once, before any piece is asked for
    assert cli(["history", "--csv", str(tmp_path / "refused.csv")]) == 2
    assert not (tmp_path / "refused.csv").exists()


# --- the indexes the lists need ------------------------------------------------------------------


def query_plan(statement: str, parameters: Any) -> str:
    """SQLite's plan for one statement the store sent, in words."""
    with store.get_engine().connect() as connection:
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return " | ".join(str(row[-1]) for row in rows)


@contextlib.contextmanager
def plans_of(table: str) -> Iterator[list[str]]:
    """The query plans of the statements on ``table`` sent while the block runs."""
    sent: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if f"FROM {table}" in statement or f"UPDATE {table}" in statement:
            sent.append((statement, parameters))

    engine = store.get_engine()
    event.listen(engine, "before_cursor_execute", keep)
    plans: list[str] = []
    try:
        yield plans
    finally:
        event.remove(engine, "before_cursor_execute", keep)
        plans.extend(query_plan(statement, parameters) for statement, parameters in sent)


def test_lists_and_lookups_read_their_rows_through_an_index(alice: Actor) -> None:
    model = add_model(alice, "judge", public=False, eer=0.1, accuracy=0.9)
    for i in range(3):
        failed_run(alice, f"build {i}", [], kind="dataset")
    for _ in range(3):
        verdict(alice, model.id, "call.wav", sha256="ab" * 32)
    with plans_of("runs") as plans:
        services.list_dataset_builds(alice, limit=2)
    # The newest of a kind straight from the index: no sort of all the user's jobs.
    (plan,) = plans
    assert "ix_runs_owner_id_kind_created_at" in plan and "B-TREE" not in plan
    latest = services.list_analyses(alice, limit=1)[0]
    with plans_of("analyses") as plans:
        earlier = services.earlier_verdicts(alice, latest)
    assert earlier.count == 2 and earlier.latest_model == "judge"
    assert len(plans) == 2  # how many, and the latest of them
    assert all("ix_analyses_owner_id_file_sha256" in plan for plan in plans)


def test_an_uploaded_export_is_recognised_in_one_indexed_lookup(alice: Actor) -> None:
    """The upload check found a model by its ``model.pkl``'s checksum by reading every model's
    list of files on the server."""
    with store.session_scope() as session:
        bob = store.create_user(session, "bob").actor
    theirs, _ = finished_run(bob, "theirs")
    mine, _ = finished_run(alice, "mine")
    for i in range(3):
        add_model(bob, f"other {i}", public=False, eer=0.1, accuracy=0.9)
    pkl = (profile.run_folder(mine.id) / "model.pkl").read_bytes()
    with plans_of("models") as plans, sent_statements() as sent:
        found = uploads.exported_model(alice, pkl)
    assert found is not None and found.name == "mine"
    (plan,) = plans
    assert [s.split()[0] for s in sent] == ["BEGIN", "SELECT"]
    assert "ix_model_files_sha256_file_name" in plan
    assert "SCAN models" not in plan
    # Another user's private export is not found (nor revealed); an administrator finds it.
    theirs_pkl = (profile.run_folder(theirs.id) / "model.pkl").read_bytes()
    assert uploads.exported_model(alice, theirs_pkl) is None
    with store.session_scope() as session:
        root = store.create_user(session, "root", is_admin=True).actor
    assert getattr(uploads.exported_model(root, theirs_pkl), "name", None) == "theirs"
