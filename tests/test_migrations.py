"""Alembic migrations, run programmatically on real databases (SQLite files; PostgreSQL when
FAKEVOICE_TEST_POSTGRES_URL is set): empty database to head, schema equal to the models."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text

# The backend fixture (SQLite file / scratch PostgreSQL schema) is shared with the store's tests.
from test_store import db_url  # noqa: F401

from fakevoice import store
from fakevoice.store.migrate import alembic_config
from fakevoice.store.records import UserRecord
from fakevoice.store.tables import Base

MODEL_TABLES = set(Base.metadata.tables)


def _table_names(url: str) -> set[str]:
    with store.get_engine(url).connect() as connection:
        return set(inspect(connection).get_table_names())


def test_upgrade_creates_every_table_from_empty(
    db_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no alembic.ini anywhere near: configuration is in code
    assert store.current_revision(db_url) is None
    assert _table_names(db_url) == set()
    store.upgrade(db_url)
    assert store.current_revision(db_url) == store.head_revision() == "0020"
    assert _table_names(db_url) == MODEL_TABLES | {"alembic_version"}
    assert MODEL_TABLES == {
        "users",
        "datasets",
        "runs",
        "batch_metrics",
        "epoch_metrics",
        "models",
        "model_files",
        "analyses",
        "api_tokens",
        "ended_cookies",
        "sign_in_failures",
        "workers",
    }


def test_migrated_schema_equals_models(db_url: str) -> None:  # noqa: F811
    store.upgrade(db_url)
    assert store.schema_differences(db_url) == []


def test_schema_comparison_notices_drift(db_url: str) -> None:  # noqa: F811
    store.upgrade(db_url)
    with store.get_engine(db_url).begin() as connection:
        connection.execute(text("DROP INDEX ix_runs_status"))
        connection.execute(text("ALTER TABLE users ADD COLUMN nickname VARCHAR(20)"))
    kinds = {
        (diff[0], getattr(diff[-1], "name", None)) for diff in store.schema_differences(db_url)
    }
    assert ("add_index", "ix_runs_status") in kinds
    assert ("remove_column", "nickname") in kinds
    # In words, for the log and the health check (measured once per process and database).
    missing, extra = store.schema_drift(db_url)
    (lacking,) = missing  # what the models have and the database lacks
    assert "add_index" in lacking and "ix_runs_status" in lacking
    (beyond,) = extra  # what the database has beyond them
    assert "remove_column" in beyond and "nickname" in beyond


def test_upgrade_again_keeps_data(db_url: str) -> None:  # noqa: F811
    store.upgrade(db_url)
    with store.session_scope(db_url) as session:
        store.create_user(session, "ada")
    store.upgrade(db_url)
    with store.session_scope(db_url, readonly=True) as session:
        assert store.get_user_by_username(session, "ada") is not None


def _row_of_ada_before(url: str, revision: str, row_sql: str) -> UserRecord:
    """Migrate to ``revision``, add the user ada and rows of hers (``row_sql``: statements
    separated by "; ", naming her as ``(SELECT id FROM users)``), migrate to the head, and
    return ada as she is then."""
    command.upgrade(alembic_config(url), revision)
    with store.get_engine(url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (username, display_name, is_admin, created_at) "
                "VALUES ('ada', 'Ada', false, CURRENT_TIMESTAMP)"
            )
        )
        for statement in row_sql.split("; "):
            connection.execute(text(statement))
    store.upgrade(url)
    with store.session_scope(url, readonly=True) as session:
        ada = store.get_user_by_username(session, "ada")
    assert ada is not None
    return ada


def test_runs_made_before_job_kinds_are_training_runs(db_url: str) -> None:  # noqa: F811
    ada = _row_of_ada_before(
        db_url,
        "0004",
        "INSERT INTO runs (owner_id, name, spec, status, progress, current_epoch, "
        "total_epochs, created_at, stop_requested, backend) VALUES ((SELECT id FROM users), "
        "'old run', '{}', 'succeeded', 1.0, 2, 2, CURRENT_TIMESTAMP, false, 'local')",
    )
    with store.session_scope(db_url, readonly=True) as session:
        (run,) = store.list_runs(session, ada.actor)
        assert run.name == "old run" and run.kind == "train"
        assert store.list_runs(session, ada.actor, kind="dataset") == []


def test_verdicts_logged_before_cautions_have_none(db_url: str) -> None:  # noqa: F811
    ada = _row_of_ada_before(
        db_url,
        "0005",
        "INSERT INTO analyses (owner_id, file_name, duration, sample_rate, verdict, "
        "probabilities, threshold, created_at, source) VALUES ((SELECT id FROM users), "
        "'old.wav', 2.0, 8000, 'human', '{\"bonafide\": 0.9}', 0.6, CURRENT_TIMESTAMP, 'page')",
    )
    assert ada.sessions_ended_at is None
    with store.session_scope(db_url, readonly=True) as session:
        (old,) = store.list_analyses(session, ada.actor)
    assert old.file_name == "old.wav" and old.cautions == []
    assert old.outcome is None and old.note is None  # nobody has said what it really was
    assert old.windows is None  # its timeline was not kept
    assert old.explanation is None  # nor why it was made


def test_an_upgrade_keeps_every_run_s_metrics_and_model_and_never_reuses_ids(
    db_url: str,  # noqa: F811
) -> None:
    """Revisions 0005, 0007 and 0009 rebuild ``runs`` on SQLite (copy, drop, rename): with
    foreign keys on, the drop deleted every epoch and batch metric and unlinked the models
    (``ON DELETE CASCADE``, ``SET NULL``). And rebuilt tables had lost ``AUTOINCREMENT``."""
    ada = _row_of_ada_before(
        db_url,
        "0004",
        "INSERT INTO runs (owner_id, name, spec, status, progress, current_epoch, "
        "total_epochs, created_at, stop_requested, backend) VALUES ((SELECT id FROM users), "
        "'old run', '{}', 'succeeded', 1.0, 2, 2, CURRENT_TIMESTAMP, false, 'local'); "
        "INSERT INTO epoch_metrics (run_id, epoch, train_loss, valid_loss, accuracy, macro_f1, "
        "eer, seconds) VALUES ((SELECT id FROM runs), 0, 0.7, 0.6, 0.8, 0.75, 0.2, 3.0); "
        "INSERT INTO batch_metrics (run_id, epoch, batch, step, train_loss, recorded_at) "
        "VALUES ((SELECT id FROM runs), 0, 0, 0, 0.7, CURRENT_TIMESTAMP); "
        "INSERT INTO models (owner_id, run_id, name, is_public, arch, class_names, "
        "sample_rate, clip_samples, path, files, metrics, created_at) VALUES ((SELECT id FROM "
        "users), (SELECT id FROM runs), 'old model', false, 'specnet', '[\"bonafide\", "
        "\"spoof\"]', 16000, 64600, '/nowhere', '{}', '{}', CURRENT_TIMESTAMP)",
    )
    assert store.schema_differences(db_url) == []
    with store.session_scope(db_url, readonly=True) as session:
        (run,) = store.list_runs(session, ada.actor)
        (epoch,) = store.list_epoch_metrics(session, ada.actor, run.id)
        (batch,) = store.list_batch_metrics(session, ada.actor, run.id)
        (model,) = store.list_models(session, ada.actor)
    assert epoch.eer == 0.2 and batch.train_loss == 0.7 and model.run_id == run.id
    # The newest run deleted, the next one gets a new id (SQLite's AUTOINCREMENT again).
    with store.session_scope(db_url) as session:
        newer = store.create_run(session, ada.actor, "newer", {"epochs": 1})
    with store.session_scope(db_url) as session:
        store.request_stop(session, ada.actor, newer.id)  # queued: cancelled at once
        store.delete_run(session, ada.actor, newer.id)
    with store.session_scope(db_url) as session:
        assert store.create_run(session, ada.actor, "newest", {"epochs": 1}).id > newer.id


def test_models_stored_before_0020_are_found_by_a_files_checksum(
    db_url: str,  # noqa: F811
) -> None:
    export, weights = "AB" * 32, "cd" * 32
    ada = _row_of_ada_before(
        db_url,
        "0019",
        "INSERT INTO models (owner_id, name, is_public, arch, class_names, sample_rate, "
        "clip_samples, path, files, metrics, created_at) VALUES ((SELECT id FROM users), "
        "'old model', false, 'specnet', '[\"bonafide\", \"spoof\"]', 16000, 64600, "
        f'\'/nowhere\', \'{{"model.pkl": "{export}", "model.safetensors": '
        f"\"{weights}\"}}', '{{}}', CURRENT_TIMESTAMP); "
        "INSERT INTO models (owner_id, name, is_public, arch, class_names, sample_rate, "
        "clip_samples, path, files, metrics, created_at) VALUES ((SELECT id FROM users), "
        "'no files', false, 'specnet', '[]', 16000, 64600, '/nowhere', '{}', '{}', "
        "CURRENT_TIMESTAMP)",
    )
    with store.session_scope(db_url, readonly=True) as session:
        found = store.find_model_by_sha256(session, ada.actor, export, "model.pkl")
        assert found is not None and found.name == "old model"
        assert store.find_model_by_sha256(session, ada.actor, weights, "model.safetensors")
        assert store.find_model_by_sha256(session, ada.actor, weights, "model.pkl") is None
    with store.session_scope(db_url) as session:
        store.delete_model(session, ada.actor, found.id)
    with store.get_engine(db_url).connect() as connection:  # its files' rows went with it
        assert connection.execute(text("SELECT count(*) FROM model_files")).scalar() == 0
    command.downgrade(alembic_config(db_url), "0019")
    assert "model_files" not in _table_names(db_url)


def test_a_database_migrated_by_early_copies_of_0006_and_0014_is_repaired(
    db_url: str,  # noqa: F811
) -> None:
    """Revisions 0006 and 0014 gained a table and two columns after some databases had passed
    them; 0016 adds what such a database lacks and keeps its rows."""
    command.upgrade(alembic_config(db_url), "0015")
    with store.get_engine(db_url).begin() as connection:
        connection.execute(text("DROP TABLE ended_cookies"))
        connection.execute(text("ALTER TABLE analyses DROP COLUMN cautions"))
        connection.execute(text("ALTER TABLE runs DROP COLUMN worker_deaths"))
        connection.execute(
            text(
                "INSERT INTO users (username, display_name, is_admin, created_at) "
                "VALUES ('ada', 'Ada', false, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO runs (owner_id, name, spec, status, progress, current_epoch, "
                "total_epochs, created_at, stop_requested, backend, kind) VALUES "
                "((SELECT id FROM users), 'early', '{}', 'succeeded', 1.0, 2, 2, "
                "CURRENT_TIMESTAMP, false, 'local', 'train')"
            )
        )
    assert store.schema_differences(db_url) != []  # what the operator's database looked like
    store.upgrade(db_url)
    assert store.schema_differences(db_url) == []
    with store.session_scope(db_url, readonly=True) as session:
        ada = store.get_user_by_username(session, "ada")
        assert ada is not None
        (run,) = store.list_runs(session, ada.actor)
    assert run.name == "early" and run.worker_deaths == 0
    store.upgrade(db_url)  # and a database that has them is left as it is
    assert store.schema_differences(db_url) == []


def test_tests_of_models_go_when_downgraded_before_their_revision(db_url: str) -> None:  # noqa: F811
    store.upgrade(db_url)
    with store.session_scope(db_url) as session:
        ada = store.create_user(session, "ada").actor
        store.create_run(session, ada, "a test", {"kind": "evaluate"}, kind="evaluate")
        store.create_run(session, ada, "a run", {"epochs": 1})
    command.downgrade(alembic_config(db_url), "0006")
    with store.get_engine(db_url).connect() as connection:
        assert connection.execute(text("SELECT name, kind FROM runs")).all() == [("a run", "train")]
    store.upgrade(db_url)
    assert store.schema_differences(db_url) == []


def test_downgrade_to_base_and_back(db_url: str) -> None:  # noqa: F811
    store.upgrade(db_url)
    command.downgrade(alembic_config(db_url), "base")
    assert _table_names(db_url) == {"alembic_version"}
    assert store.current_revision(db_url) is None
    store.upgrade(db_url)
    assert store.schema_differences(db_url) == []


def _upgrade_after(url: str, barrier: Any) -> None:
    """Child process: wait for the other one, then migrate."""
    barrier.wait()
    store.upgrade(url)


def test_two_processes_migrating_at_once_both_succeed(db_url: str) -> None:  # noqa: F811
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    processes = [context.Process(target=_upgrade_after, args=(db_url, barrier)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0]
    assert store.current_revision(db_url) == "0020"
    assert store.schema_differences(db_url) == []
