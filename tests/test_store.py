"""The store's repositories on real databases: SQLite files in tmp_path, and PostgreSQL when
FAKEVOICE_TEST_POSTGRES_URL names a server (each test then gets a scratch schema)."""

from __future__ import annotations

import dataclasses
import multiprocessing
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text, update
from sqlalchemy.engine import make_url

from fakevoice import store
from fakevoice.errors import (
    ConflictError,
    InvalidSpecError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
)
from fakevoice.settings import get_settings
from fakevoice.store import Actor, BatchMetric, EpochMetric
from fakevoice.store.job_queue import resume_interrupted_run
from fakevoice.store.tables import AnalysisRow, RunRow, WorkerRow

SPEC = {"dataset": "demo", "arch": "specnet", "epochs": 3}


# --- databases ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh schema on FAKEVOICE_TEST_POSTGRES_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'store.sqlite').as_posix()}"
        store.dispose_engines()
        return
    postgres_url = request.getfixturevalue("postgres_url")
    schema = f"fv_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        store.dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def db(db_url: str, isolated_settings: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated database, with at most 2 active runs per user."""
    monkeypatch.setenv("FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER", "2")
    get_settings.cache_clear()
    store.upgrade(db_url)
    return db_url


@dataclass(frozen=True)
class People:
    owner: Actor
    other: Actor
    admin: Actor


@pytest.fixture
def people(db: str) -> People:
    with store.session_scope(db) as session:
        owner = store.create_user(session, "ada").actor
        other = store.create_user(session, "bob").actor
        admin = store.create_user(session, "root", is_admin=True).actor
    return People(owner, other, admin)


def _add_model(db: str, actor: Actor, name: str, *, public: bool = False, sha: str = "ab") -> int:
    with store.session_scope(db) as session:
        model = store.add_model(
            session,
            actor,
            name=name,
            arch="specnet",
            class_names=["bonafide", "world"],
            sample_rate=16000,
            clip_samples=64600,
            path=f"/models/{name}",
            files={"model.safetensors": sha * 32, "manifest.json": "cd" * 32},
            feature_spec={"kind": "mel"},
            metrics={"eer": 0.1},
            is_public=public,
        )
    return model.id


# --- engine ------------------------------------------------------------------------------------


def test_sqlite_connections_use_wal_and_pragmas(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'sub' / 'db.sqlite').as_posix()}"
    try:
        store.init_db(url)
        with store.get_engine(url).connect() as connection:
            read = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
            wal_file_exists = (tmp_path / "sub" / "db.sqlite-wal").exists()
    finally:
        store.dispose_engines()
    # synchronous: 1 is NORMAL (0 OFF, 2 FULL).
    assert read == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 10000,
        "synchronous": 1,
    }
    assert wal_file_exists


def test_default_database_lives_in_data_dir(isolated_settings: Path) -> None:
    try:
        store.init_db()
        with store.session_scope() as session:
            store.create_user(session, "solo")
        with store.session_scope(readonly=True) as session:
            assert store.get_user_by_username(session, "solo") is not None
    finally:
        store.dispose_engines()
    assert (isolated_settings / "data" / "fakevoice.sqlite").is_file()


def test_session_scope_rolls_back_on_error(db: str) -> None:
    with pytest.raises(ConflictError), store.session_scope(db) as session:
        store.create_user(session, "carol")
        store.create_user(session, "carol")
    with store.session_scope(db, readonly=True) as session:
        assert store.get_user_by_username(session, "carol") is None


# --- users -------------------------------------------------------------------------------------


def test_users_create_find_and_admin_only_delete(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        with pytest.raises(ConflictError):
            store.create_user(session, "ada")
        ada = store.get_user_by_username(session, " ada ")
        assert ada is not None and ada.id == people.owner.user_id and ada.display_name == "ada"
        assert store.get_or_create_user(session, "ada").id == ada.id
        run = store.create_run(session, people.owner, "r1", SPEC)
        with pytest.raises(PermissionDeniedError):
            store.delete_user(session, people.other, ada.id)
        with pytest.raises(PermissionDeniedError):
            store.list_users(session, people.other)
    with store.session_scope(db) as session:
        deleted = store.delete_user(session, people.admin, ada.id)
        assert deleted.username == "ada"
        assert [u.username for u in store.list_users(session, people.admin)] == ["bob", "root"]
    with store.session_scope(db, readonly=True) as session:
        with pytest.raises(NotFoundError):
            store.get_run(session, people.admin, run.id)  # cascaded with its owner


# --- runs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "sees"), [("owner", True), ("other", False), ("admin", True)])
def test_run_ownership(db: str, people: People, who: str, sees: bool) -> None:
    actor = getattr(people, who)
    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, "mine", SPEC)
    with store.session_scope(db) as session:
        listed = store.list_runs(session, actor, all_users=actor.is_admin)
        assert (run.id in [r.id for r in listed]) is sees
        if sees:
            assert store.get_run(session, actor, run.id) == run
            assert store.request_stop(session, actor, run.id).status == "cancelled"
            assert store.delete_run(session, actor, run.id).id == run.id
        else:
            for action in (store.get_run, store.request_stop, store.delete_run):
                with pytest.raises(NotFoundError, match="no run with id"):
                    action(session, actor, run.id)
            with pytest.raises(PermissionDeniedError):
                store.list_runs(session, actor, all_users=True)
    with store.session_scope(db, readonly=True) as session:
        with pytest.raises(NotFoundError):
            store.get_run(session, actor, 999_999)  # a missing id reads the same as a hidden one


def test_run_fields_round_trip(db: str, people: People) -> None:
    before = datetime.now(UTC)
    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, " spaced ", SPEC, artefact_dir="/runs/1")
    with store.session_scope(db, readonly=True) as session:
        again = store.get_run(session, people.owner, run.id)
    assert again == run
    assert (again.name, again.status, again.total_epochs, again.spec) == (
        "spaced",
        "queued",
        3,
        SPEC,
    )
    assert again.created_at.tzinfo is not None and again.created_at.utcoffset() == timedelta(0)
    assert (
        before - timedelta(seconds=5) < again.created_at < datetime.now(UTC) + timedelta(seconds=5)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        again.status = "running"  # type: ignore[misc]


def test_duplicate_run_name_is_a_conflict_per_owner(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        store.create_run(session, people.owner, "baseline", SPEC)
    with pytest.raises(ConflictError, match="baseline"), store.session_scope(db) as session:
        store.create_run(session, people.owner, "baseline", SPEC)
    with store.session_scope(db) as session:
        store.create_run(session, people.other, "baseline", SPEC)
        assert len(store.list_runs(session, people.admin, all_users=True)) == 2


def test_concurrent_run_limit(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        first = store.create_run(session, people.owner, "a", SPEC)
        store.create_run(session, people.owner, "b", SPEC)
    with pytest.raises(LimitExceededError), store.session_scope(db) as session:
        store.create_run(session, people.owner, "c", SPEC)
    with store.session_scope(db) as session:
        store.create_run(session, people.other, "c", SPEC)  # the limit is per user
        assert store.claim_next_queued_run(session, "w1") is not None  # running still counts
    with pytest.raises(LimitExceededError), store.session_scope(db) as session:
        store.create_run(session, people.owner, "c", SPEC)
    with store.session_scope(db) as session:
        assert store.set_status(session, first.id, "succeeded", worker_id="w1")
        assert store.create_run(session, people.owner, "c", SPEC).status == "queued"
        assert store.count_active_runs(session, people.owner.user_id) == 2


def test_stop_cancels_queued_and_flags_running(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        running = store.create_run(session, people.owner, "running", SPEC)
        assert store.claim_next_queued_run(session, "w1") is not None
        queued = store.create_run(session, people.owner, "queued", SPEC)
    with store.session_scope(db) as session:
        assert not store.is_stop_requested(session, running.id)
        stopped = store.request_stop(session, people.owner, running.id)
        assert (stopped.status, stopped.stop_requested) == ("running", True)
        assert store.is_stop_requested(session, running.id)
        cancelled = store.request_stop(session, people.owner, queued.id)
        assert cancelled.status == "cancelled" and cancelled.finished_at is not None
        assert store.set_status(session, running.id, "cancelled", worker_id="w1")
        assert store.get_run(session, people.owner, running.id).finished_at is not None


def test_claim_takes_oldest_and_respects_backend(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        ray_run = store.create_run(session, people.owner, "on ray", SPEC, backend="ray")
        local_run = store.create_run(session, people.other, "local", SPEC)
    with store.session_scope(db) as session:
        claimed = store.claim_next_queued_run(session, "w1")
        assert claimed is not None and claimed.id == local_run.id
        assert (claimed.status, claimed.worker_id) == ("running", "w1")
        assert claimed.started_at is not None and claimed.heartbeat_at is not None
        assert store.claim_next_queued_run(session, "w1") is None
        on_ray = store.claim_next_queued_run(session, "ray-1", backend="ray")
        assert on_ray is not None and on_ray.id == ray_run.id


def _claim_until_empty(url: str, worker_id: str, barrier: Any, results: Any) -> None:
    """Child process: claim runs one at a time until none is left; report the ids."""
    barrier.wait()
    claimed = []
    while True:
        with store.session_scope(url) as session:
            run = store.claim_next_queued_run(session, worker_id)
        if run is None:
            break
        claimed.append(run.id)
    results.put((worker_id, claimed))


def test_two_processes_never_claim_the_same_run(db: str) -> None:
    users = 8
    per_user = 2
    expected = []
    with store.session_scope(db) as session:
        for u in range(users):
            actor = store.create_user(session, f"user{u}").actor
            for r in range(per_user):
                expected.append(store.create_run(session, actor, f"run{r}", SPEC).id)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(target=_claim_until_empty, args=(db, f"w{i}", barrier, results))
        for i in range(2)
    ]
    for worker in workers:
        worker.start()
    reports = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    claimed = reports["w0"] + reports["w1"]
    assert sorted(claimed) == sorted(expected)  # every run once: none lost, none twice
    with store.session_scope(db, readonly=True) as session:
        for run_id in reports["w0"]:
            assert store.get_run_for_worker(session, run_id).worker_id == "w0"


def _fall_silent(session: Any, run_id: int) -> None:
    """As if the run's worker had last sent a heartbeat ten minutes ago (it died)."""
    session.execute(
        update(RunRow)
        .where(RunRow.id == run_id)
        .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=10))
    )


def test_stale_heartbeat_marks_run_interrupted(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        dead = store.create_run(session, people.owner, "dead worker", SPEC)
        store.claim_next_queued_run(session, "w-dead")
        alive = store.create_run(session, people.owner, "alive worker", SPEC)
        store.claim_next_queued_run(session, "w-alive")
        # w-dead's last heartbeat was ten minutes ago.
        _fall_silent(session, dead.id)
    with store.session_scope(db) as session:
        assert store.record_progress(session, alive.id, "w-alive", progress=1.7, current_epoch=2)
        assert store.mark_orphans_interrupted(session, 3600) == []
        assert store.mark_orphans_interrupted(session, 60) == [dead.id]
        assert store.mark_orphans_interrupted(session, 60) == []
    with store.session_scope(db) as session:
        run = store.get_run(session, people.owner, dead.id)
        assert run.status == "interrupted" and run.finished_at is not None
        assert run.error is not None and "heartbeat" in run.error
        assert not store.heartbeat(session, dead.id, "w-dead")  # the worker learns it lost the run
        assert not store.set_status(session, dead.id, "succeeded", worker_id="w-dead")
        kept = store.get_run(session, people.owner, alive.id)
        assert (kept.status, kept.progress, kept.current_epoch) == ("running", 1.0, 2)
    # Much later, the alive worker is stale too.
    an_hour_later = datetime.now(UTC) + timedelta(hours=1)
    with store.session_scope(db) as session:
        assert store.mark_orphans_interrupted(session, 60, now=an_hour_later) == [alive.id]


def test_a_stop_asked_before_the_worker_died_is_kept(db: str, people: People) -> None:
    """A run its user asked to stop, whose worker then died, ends cancelled: it is not queued
    again by the automatic resume (which had cleared the stop and trained it on)."""
    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, "stopped then orphaned", SPEC)
        store.claim_next_queued_run(session, "w-dead")
        assert store.request_stop(session, people.owner, run.id).stop_requested
        _fall_silent(session, run.id)
    with store.session_scope(db) as session:
        assert store.mark_orphans_interrupted(session, 60) == [run.id]
        assert not resume_interrupted_run(session, run.id, resume_from_epoch=None)
    with store.session_scope(db) as session:
        ended = store.get_run(session, people.owner, run.id)
        assert ended.status == "cancelled" and ended.finished_at is not None
        assert "Stopped as asked" in (ended.error or "")
    # An interrupted run whose stop came late (the worker shut down) ends cancelled on resume.
    with store.session_scope(db) as session:
        late = store.create_run(session, people.owner, "stop came late", SPEC)
        store.claim_next_queued_run(session, "w1")
        store.set_status(session, late.id, "interrupted", worker_id="w1")
        session.execute(update(RunRow).where(RunRow.id == late.id).values(stop_requested=True))
    with store.session_scope(db) as session:
        assert not resume_interrupted_run(session, late.id, resume_from_epoch=None)
        assert store.get_run(session, people.owner, late.id).status == "cancelled"


def test_a_run_whose_worker_keeps_dying_fails_instead_of_looping(db: str, people: People) -> None:
    """Its worker died under it three times without an epoch finishing between: it fails with
    words instead of being resumed for ever; an epoch done starts the count again, and so does
    its user resuming it."""
    from fakevoice.store.job_queue import MAX_WORKER_DEATHS

    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, "crash loop", SPEC)

    def die() -> str:
        with store.session_scope(db) as session:
            store.claim_next_queued_run(session, "w-dead")
            _fall_silent(session, run.id)
        with store.session_scope(db) as session:
            assert store.mark_orphans_interrupted(session, 60) == [run.id]
            resume_interrupted_run(session, run.id, resume_from_epoch=None)
            return store.get_run(session, people.owner, run.id).status

    assert [die() for _ in range(MAX_WORKER_DEATHS - 1)] == ["queued"] * (MAX_WORKER_DEATHS - 1)
    with store.session_scope(db) as session:  # an epoch done: progress, the count starts again
        store.append_epoch_metrics(session, run.id, [EpochMetric(epoch=0)])
    assert [die() for _ in range(MAX_WORKER_DEATHS - 1)] == ["queued"] * (MAX_WORKER_DEATHS - 1)
    assert die() == "failed"
    with store.session_scope(db) as session:
        failed = store.get_run(session, people.owner, run.id)
        assert failed.error is not None and f"{MAX_WORKER_DEATHS} times in a row" in failed.error
        again = store.requeue_run(session, people.owner, run.id)  # its user resumes it
    assert again.status == "queued" and again.worker_deaths == 0


def test_requeue_resumes_and_drops_later_metrics(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, "resumable", SPEC)
        store.claim_next_queued_run(session, "w1")
        store.append_batch_metrics(
            session,
            run.id,
            [BatchMetric(epoch=e, batch=0, step=e, train_loss=1.0) for e in range(3)],
        )
        store.append_epoch_metrics(session, run.id, [EpochMetric(epoch=e) for e in range(3)])
        assert store.set_status(session, run.id, "failed", worker_id="w1", error="out of memory")
    with store.session_scope(db) as session:
        again = store.requeue_run(session, people.owner, run.id, resume_from_epoch=1)
        assert (again.status, again.resume_from_epoch, again.error) == ("queued", 1, None)
        assert [m.epoch for m in store.list_epoch_metrics(session, people.owner, run.id)] == [0]
        assert [m.step for m in store.list_batch_metrics(session, people.owner, run.id)] == [0]
        with pytest.raises(ConflictError):
            store.requeue_run(session, people.owner, run.id)


def test_safety_net_status_change_is_quiet_about_finished_runs(
    db: str, people: People, caplog: pytest.LogCaptureFixture
) -> None:
    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, "finished", SPEC)
        store.claim_next_queued_run(session, "w1")
        assert store.set_status(session, run.id, "succeeded", worker_id="w1")
    with caplog.at_level("WARNING", logger="fakevoice.store.job_queue"):
        with store.session_scope(db) as session:
            # A worker reaping the ended child: the run already finished, nothing to say.
            assert not store.set_status(
                session, run.id, "failed", worker_id="w1", if_still_running=True
            )
        assert not caplog.records
        with store.session_scope(db) as session:
            assert not store.set_status(session, run.id, "failed", worker_id="w1")
        assert "not moved to failed" in caplog.text
    with store.session_scope(db) as session:
        assert store.get_run(session, people.owner, run.id).status == "succeeded"


def test_worker_resumes_interrupted_run_after_last_epoch(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, "long", SPEC)
        store.claim_next_queued_run(session, "w1")
        store.append_epoch_metrics(session, run.id, [EpochMetric(epoch=0), EpochMetric(epoch=1)])
        store.append_batch_metrics(
            session, run.id, [BatchMetric(epoch=e, batch=0, step=e, train_loss=0.5) for e in (1, 2)]
        )
        assert not store.resume_interrupted_run(session, run.id, resume_from_epoch=2)  # running
        assert store.set_status(session, run.id, "interrupted", worker_id="w1")
    with store.session_scope(db) as session:
        resume_at = store.completed_epochs(session, run.id)
        assert resume_at == 2
        assert store.resume_interrupted_run(session, run.id, resume_from_epoch=resume_at)
        assert not store.resume_interrupted_run(session, run.id, resume_from_epoch=resume_at)
    with store.session_scope(db) as session:
        again = store.claim_next_queued_run(session, "w2")
        assert again is not None and (again.id, again.resume_from_epoch) == (run.id, 2)
        assert [m.step for m in store.list_batch_metrics(session, people.owner, run.id)] == [1]
        assert store.completed_epochs(session, run.id + 1) == 0


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_round_trip_and_incremental_reads(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, "metrics", SPEC)
        store.claim_next_queued_run(session, "w1")
    batches = [
        BatchMetric(epoch=s // 4, batch=s % 4, step=s, train_loss=1.0 / (s + 1), lr=1e-3 * s)
        for s in range(10)
    ]
    with store.session_scope(db) as session:
        assert store.append_batch_metrics(session, run.id, batches[:6]) == 6
    with store.session_scope(db) as session:
        assert store.append_batch_metrics(session, run.id, batches[6:]) == 4
        first = EpochMetric(epoch=0, train_loss=0.9, valid_loss=0.8, accuracy=0.6, eer=0.3)
        second = EpochMetric(0, 0.7, 0.6, 0.7, 0.65, 0.25, 12.5)  # a rerun of epoch 0 replaces it
        store.append_epoch_metrics(session, run.id, [first])
        store.append_epoch_metrics(session, run.id, [second, EpochMetric(epoch=1, eer=0.2)])
    with store.session_scope(db, readonly=True) as session:
        read = store.list_batch_metrics(session, people.owner, run.id)
        assert [(m.epoch, m.batch, m.step, m.train_loss, m.lr) for m in read] == [
            (m.epoch, m.batch, m.step, m.train_loss, m.lr) for m in batches
        ]
        assert all(m.recorded_at is not None and m.recorded_at.tzinfo for m in read)
        newer = store.list_batch_metrics(session, people.owner, run.id, after_step=6, limit=2)
        assert [m.step for m in newer] == [7, 8]
        assert store.list_epoch_metrics(session, people.admin, run.id) == [
            second,
            EpochMetric(epoch=1, eer=0.2),
        ]
        for read_metrics in (store.list_batch_metrics, store.list_epoch_metrics):
            with pytest.raises(NotFoundError):
                read_metrics(session, people.other, run.id)


def _finished(db: str, actor: Actor, name: str, eers: list[float], kind: Any = "train") -> int:
    """A run of ``actor``'s that ran an epoch per figure of ``eers`` and succeeded."""
    with store.session_scope(db) as session:
        run = store.create_run(session, actor, name, SPEC, kind=kind)
        store.set_status(session, run.id, "running")
        store.append_epoch_metrics(
            session, run.id, [EpochMetric(epoch=i, eer=eer) for i, eer in enumerate(eers)]
        )
        store.set_status(session, run.id, "succeeded")
    return run.id


def test_runs_are_listed_a_page_at_a_time_and_counted(db: str, people: People) -> None:
    trained = [_finished(db, people.owner, f"run {i}", []) for i in range(5)]
    built = _finished(db, people.owner, "build", [], kind="dataset")
    theirs = _finished(db, people.other, "their run", [])
    with store.session_scope(db, readonly=True) as session:
        everything = store.list_runs(session, people.owner)
        assert [r.id for r in everything] == trained[::-1]
        pages = [store.list_runs(session, people.owner, limit=2, offset=o) for o in (0, 2, 4, 6)]
        assert [[r.id for r in page] for page in pages] == [
            trained[:2:-1],
            trained[2:0:-1],
            trained[:1],
            [],
        ]
        assert store.count_runs(session, people.owner) == 5
        assert store.count_runs(session, people.owner, kind=None) == 6
        assert store.count_runs(session, people.owner, kind="dataset") == 1
        assert store.count_runs(session, people.owner, statuses=("queued",)) == 0
        assert store.count_runs(session, people.admin, all_users=True, kind=None) == 7
        mine = store.list_runs(session, people.owner, kind=None, limit=1)
        assert [r.id for r in mine] == [built]
        everyone = store.list_runs(session, people.admin, all_users=True, kind=None, limit=1)
        assert [r.id for r in everyone] == [theirs]
        with pytest.raises(PermissionDeniedError):
            store.count_runs(session, people.owner, all_users=True)


def test_the_last_epoch_of_each_run_is_read_in_one_statement(db: str, people: People) -> None:
    runs = [_finished(db, people.owner, f"run {i}", [0.4, 0.3, 0.1 * i]) for i in range(4)]
    unfinished = _finished(db, people.owner, "no epoch", [])
    theirs = _finished(db, people.other, "theirs", [0.2])
    with store.session_scope(db, readonly=True) as session:
        with sent_statements(db) as sent:
            last = store.last_epoch_metrics(session, people.owner)
        assert len([s for s in sent if not s.startswith("BEGIN")]) == 1
        expected = {
            run_id: store.list_epoch_metrics(session, people.owner, run_id)[-1] for run_id in runs
        }
        assert last == expected
        assert last[runs[2]].epoch == 2 and last[runs[2]].eer == pytest.approx(0.2)
        assert unfinished not in last and theirs not in last
        assert store.last_epoch_metrics(session, people.owner, runs[1:2]) == {
            runs[1]: expected[runs[1]]
        }
        assert store.last_epoch_metrics(session, people.admin) == {}  # one's own runs only


@contextmanager
def sent_statements(url: str | None = None) -> Iterator[list[str]]:
    """The SQL statements sent to the database of ``url`` (default: the configured one) while
    the block runs."""
    engine = store.get_engine(url)
    sent: list[str] = []

    def keep(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", keep)


def test_runs_and_models_are_found_by_a_part_of_their_name(db: str, people: People) -> None:
    ids = {
        name: _finished(db, people.owner, name, [])
        for name in ("Ünïcødé Run", "50% off", "a_b", "axb")
    }
    _finished(db, people.other, "their Ünïcødé run", [])
    with store.session_scope(db, readonly=True) as session:

        def found(name: str, **options: Any) -> list[int]:
            return [r.id for r in store.list_runs(session, people.owner, name=name, **options)]

        assert found(" ünïCØDÉ ") == [ids["Ünïcødé Run"]]  # any case, any alphabet
        assert found("%") == [ids["50% off"]] and found("_") == [ids["a_b"]]  # not wildcards
        assert found("") == found("  ") == list(ids.values())[::-1]
        assert store.count_runs(session, people.owner, name="a") == 2
        assert store.count_runs(session, people.admin, all_users=True, name="ünï") == 2
        chosen = [ids["a_b"], ids["axb"]]
        assert found("", run_ids=chosen) == chosen[::-1]
        assert found("x", run_ids=chosen) == [ids["axb"]]
    with store.session_scope(db) as session:
        for name in ("Baseline LFCC", "baseline mel", "other"):
            store.add_model(
                session,
                people.owner,
                name=name,
                arch="specnet",
                class_names=["bonafide", "spoof"],
                sample_rate=16000,
                clip_samples=16000,
                path=f"/models/{name}",
                files={},
            )
    with store.session_scope(db, readonly=True) as session:
        models = store.list_models(session, people.owner, own=True, name="BASELINE", limit=1)
        assert [m.name for m in models] == ["baseline mel"]
        paged = store.list_models(session, people.owner, own=True, name="baseline", offset=1)
        assert [m.name for m in paged] == ["Baseline LFCC"]
        assert store.count_models(session, people.owner, own=True, name="base") == 2
        assert store.count_models(session, people.other) == 0  # private ones are not counted
        assert store.count_models(session, people.admin, all_users=True) == 3
        with pytest.raises(PermissionDeniedError):
            store.count_models(session, people.owner, all_users=True)


def test_a_nan_epoch_figure_reads_as_none_on_every_backend(
    db: str, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An epoch without an EER (a validation split lacking bona fide items) has a NaN one.
    SQLite stores NaN as NULL, PostgreSQL kept it: there a run's ``best_eer`` was ``min`` over
    a leading NaN, NaN. Not measured is None on both, also for a NaN stored before."""
    from fakevoice.services import comparison
    from fakevoice.store.tables import EpochMetricRow

    nan = float("nan")
    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, "no human items", SPEC)
        store.claim_next_queued_run(session, "w1")
    with store.session_scope(db) as session:
        store.append_epoch_metrics(
            session,
            run.id,
            [
                EpochMetric(epoch=0, train_loss=0.9, valid_loss=nan, eer=nan),
                EpochMetric(epoch=1, eer=0.3),
                EpochMetric(epoch=2, eer=0.2),
                EpochMetric(epoch=3, eer=0.4),
            ],
        )
    with store.session_scope(db, readonly=True) as session:
        read = store.list_epoch_metrics(session, people.owner, run.id)
    assert read[0] == EpochMetric(epoch=0, train_loss=0.9)
    monkeypatch.setenv("FAKEVOICE_DATABASE_URL", db)
    get_settings.cache_clear()
    (summary,) = comparison.run_summaries(people.owner)
    assert (summary["best_eer"], summary["final_eer"], summary["epochs"]) == (0.2, 0.4, 4)
    # A NaN the store kept before (PostgreSQL) reads as None too.
    with store.session_scope(db) as session:
        session.execute(
            update(EpochMetricRow)
            .where(EpochMetricRow.run_id == run.id, EpochMetricRow.epoch == 3)
            .values(eer=nan)
        )
    with store.session_scope(db, readonly=True) as session:
        assert store.list_epoch_metrics(session, people.owner, run.id)[3] == EpochMetric(epoch=3)
    (summary,) = comparison.run_summaries(people.owner)
    assert (summary["best_eer"], summary["final_eer"]) == (0.2, 0.2)


# --- models ------------------------------------------------------------------------------------

# (who, public, may read, error on write: None = allowed)
MODEL_MATRIX = [
    ("owner", False, True, None),
    ("owner", True, True, None),
    ("other", False, False, NotFoundError),
    ("other", True, True, PermissionDeniedError),
    ("admin", False, True, None),
    ("admin", True, True, None),
]


@pytest.mark.parametrize(("who", "public", "reads", "write_error"), MODEL_MATRIX)
def test_model_ownership(
    db: str,
    people: People,
    who: str,
    public: bool,
    reads: bool,
    write_error: type[Exception] | None,
) -> None:
    actor = getattr(people, who)
    model_id = _add_model(db, people.owner, "detector", public=public)
    with store.session_scope(db, readonly=True) as session:
        assert (model_id in [m.id for m in store.list_models(session, actor)]) is (
            reads and (public or who == "owner")  # admins list everyone's only when asked
        )
        if reads:
            assert store.get_model(session, actor, model_id).name == "detector"
        else:
            with pytest.raises(NotFoundError, match="no model with id"):
                store.get_model(session, actor, model_id)
    writes = [
        lambda s: store.set_public(s, actor, model_id, not public),
        lambda s: store.rename_model(s, actor, model_id, "renamed"),
        lambda s: store.delete_model(s, actor, model_id),
    ]
    for write in writes:
        if write_error is None:
            with store.session_scope(db) as session:
                write(session)
        else:
            with pytest.raises(write_error), store.session_scope(db) as session:
                write(session)
    with store.session_scope(db, readonly=True) as session:
        remaining = store.list_models(session, people.admin, all_users=True)
        assert [m.id for m in remaining] == ([] if write_error is None else [model_id])


def test_names_of_models_and_users_are_read_without_their_records(db: str, people: People) -> None:
    private = _add_model(db, people.owner, "private")
    public = _add_model(db, people.owner, "shared", public=True)
    theirs = _add_model(db, people.other, "theirs")
    with store.session_scope(db, readonly=True) as session:
        assert store.model_names(session, people.owner) == {private: "private", public: "shared"}
        assert store.model_names(session, people.other) == {public: "shared", theirs: "theirs"}
        assert store.model_names(session, people.other, [private, public]) == {public: "shared"}
        assert store.model_names(session, people.owner, []) == {}
        users = store.usernames(session, [people.owner.user_id, people.admin.user_id, 10**6])
        assert users == {people.owner.user_id: "ada", people.admin.user_id: "root"}
        assert store.usernames(session, []) == {}
        newest = store.list_models(session, people.owner, own=True, limit=1)
        assert [m.id for m in newest] == [public]
        assert [m.id for m in store.list_models(session, people.other, own=True)] == [theirs]


def test_model_names_sharing_and_checksum_lookup(db: str, people: People) -> None:
    first = _add_model(db, people.owner, "a", sha="0f")
    _add_model(db, people.owner, "b", sha="1e")
    _add_model(db, people.other, "a", sha="2d", public=True)  # names are per owner
    with pytest.raises(ConflictError):
        _add_model(db, people.owner, "a")
    with pytest.raises(ConflictError), store.session_scope(db) as session:
        store.rename_model(session, people.owner, first, "b")
    with store.session_scope(db) as session:
        shared = store.set_public(session, people.owner, first, True)
        assert shared.is_public
        names = sorted((m.owner_id, m.name) for m in store.list_models(session, people.other))
        assert names == sorted([(people.owner.user_id, "a"), (people.other.user_id, "a")])
        weights = "model.safetensors"
        found = store.find_model_by_sha256(session, people.other, ("0F" * 32).upper(), weights)
        assert found is not None and found.id == first and found.files["manifest.json"] == "cd" * 32
        assert store.find_model_by_sha256(session, people.other, "ff" * 32, weights) is None
        # Another file of the model, or a model the actor may not read: no match.
        assert store.find_model_by_sha256(session, people.other, "0f" * 32, "x.pkl") is None
        assert store.find_model_by_sha256(session, people.other, "1e" * 32, weights) is None
        assert store.find_model_by_sha256(session, people.owner, "1e" * 32, weights) is not None
        with pytest.raises(PermissionDeniedError):
            store.list_models(session, people.owner, all_users=True)


def test_find_model_by_key_prefers_own_then_public_and_names_over_ids(
    db: str, people: People
) -> None:
    own = _add_model(db, people.owner, "shared-name", sha="0f")
    theirs = _add_model(db, people.other, "shared-name", sha="1e", public=True)
    secret = _add_model(db, people.other, "secret", sha="2d")
    with store.session_scope(db) as session:
        find = store.find_model_by_key
        assert find(session, people.owner, "shared-name").id == own  # type: ignore[union-attr]
        assert find(session, people.other, " shared-name ").id == theirs  # type: ignore[union-attr]
        assert find(session, people.admin, "shared-name").id == theirs  # type: ignore[union-attr]
        assert find(session, people.owner, "secret") is None  # private, by name
        assert find(session, people.owner, "absent") is None
        # by id: the owner's and public models; someone else's private one only for admins
        assert find(session, people.owner, str(own)).id == own  # type: ignore[union-attr]
        assert find(session, people.owner, str(theirs)).id == theirs  # type: ignore[union-attr]
        assert find(session, people.owner, str(secret)) is None
        assert find(session, people.admin, str(secret)).id == secret  # type: ignore[union-attr]
        assert find(session, people.owner, "9" * 19) is None  # no such id, nor an overflow
    named_like_an_id = _add_model(db, people.owner, str(theirs), sha="3c")
    with store.session_scope(db) as session:
        found = store.find_model_by_key(session, people.owner, str(theirs))
        assert found is not None and found.id == named_like_an_id  # a name wins over an id


def test_verdict_path_records_equal_what_the_orm_reads(db: str, people: People) -> None:
    """find_active_token, find_model_by_key and add_analysis build their records from Core rows
    (the API runs them on every request): every field must come out as the ORM reads it."""
    from fakevoice.store import tokens as token_store

    model_id = _add_model(db, people.owner, "parity", public=True)
    with store.session_scope(db) as session:
        token = token_store.add_token(
            session, people.owner, name="parity", prefix="fv_parity", token_hash="9a" * 32
        )
        analysis = store.add_analysis(
            session,
            people.other,
            model_id=model_id,
            file_name="x" * 300,
            duration=1.5,
            sample_rate=8000,
            verdict="machine",
            probabilities={"bonafide": 0.25, "world": 0.75},
            threshold=0.7,
            source="cli",
            file_sha256="ef" * 32,
        )
    with store.session_scope(db, readonly=True) as session:
        found = store.find_model_by_key(session, people.owner, "parity")
        assert found == store.get_model(session, people.owner, model_id)
        assert found is not None and found.created_at.tzinfo is not None
        assert found.metrics == {"eer": 0.1} and found.feature_spec == {"kind": "mel"}
        by_hash = token_store.find_active_token(session, "9a" * 32)
        assert by_hash == (token, people.owner)
        assert token_store.list_tokens(session, people.owner) == [by_hash[0]]
        stored = store.get_analysis(session, people.other, analysis.id)
        assert stored == analysis and len(stored.file_name) == 255
        assert stored.created_at.tzinfo is not None


def test_history_pages_are_read_as_columns_equal_to_the_records(db: str, people: People) -> None:
    """list_analyses builds its records from Core rows (the CSV export reads a whole history
    through it): every field must come out as the ORM reads it, JSON columns included."""
    model_id = _add_model(db, people.owner, "judge")
    ids = [_analyse(db, people.owner, model_id, f"{i}.wav") for i in range(3)]
    window = {"start": 0.0, "end": 4.0, "p_human": 0.25, "top_class": "world"}
    with store.session_scope(db) as session:
        row = session.get(AnalysisRow, ids[1])
        assert row is not None
        row.windows, row.cautions, row.outcome = [window], ["short clip"], "human"
        row.explanation, row.typicality, row.note = {"bands": [{"low": 0}]}, 0.5, "case 7"
    loaded = [0]

    def count(*_: Any) -> None:
        loaded[0] += 1

    event.listen(AnalysisRow, "load", count)
    try:
        with store.session_scope(db, readonly=True) as session:
            listed = store.list_analyses(session, people.owner)
    finally:
        event.remove(AnalysisRow, "load", count)
    assert loaded == [0]  # no ORM object per verdict
    with store.session_scope(db, readonly=True) as session:
        assert listed == [store.get_analysis(session, people.owner, i) for i in ids[::-1]]
    assert listed[1].windows == [window] and listed[1].explanation == {"bands": [{"low": 0}]}
    assert listed[1].created_at.tzinfo is not None


def test_model_can_name_only_a_visible_run(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, "trainer", SPEC)
    with pytest.raises(NotFoundError), store.session_scope(db) as session:
        store.add_model(
            session,
            people.other,
            name="stolen",
            arch="specnet",
            class_names=["bonafide", "spoof"],
            sample_rate=16000,
            clip_samples=64600,
            path="/x",
            files={},
            run_id=run.id,
        )


# --- analyses ----------------------------------------------------------------------------------


def _analyse(db: str, actor: Actor, model_id: int, name: str = "clip.wav") -> int:
    with store.session_scope(db) as session:
        analysis = store.add_analysis(
            session,
            actor,
            model_id=model_id,
            file_name=name,
            duration=2.5,
            sample_rate=44100,
            verdict="human",
            probabilities={"bonafide": 0.9, "world": 0.1},
            threshold=0.6,
            source="api",
        )
    return analysis.id


def test_analysis_ownership_and_paging(db: str, people: People) -> None:
    private = _add_model(db, people.owner, "private")
    public = _add_model(db, people.owner, "public", public=True)
    mine = [_analyse(db, people.owner, private, f"{i}.wav") for i in range(3)]
    theirs = _analyse(db, people.other, public, "../../etc/passwd")
    with pytest.raises(NotFoundError):
        _analyse(db, people.other, private)  # cannot use someone's private model
    with pytest.raises(NotFoundError):
        _analyse(db, people.owner, private + public + 1)  # nor one that does not exist
    by_admin = _analyse(db, people.admin, private)  # administrators may use any model
    with store.session_scope(db, readonly=True) as session:
        listed = store.list_analyses(session, people.owner)
        assert [a.id for a in listed] == mine[::-1]
        assert [a.id for a in store.list_analyses(session, people.owner, limit=2, offset=1)] == [
            mine[1],
            mine[0],
        ]
        assert [a.id for a in store.list_analyses(session, people.other)] == [theirs]
        assert [a.id for a in store.list_analyses(session, people.admin)] == [by_admin]
        assert store.count_analyses(session, people.owner) == 3
        record = store.get_analysis(session, people.admin, theirs)
        assert (record.file_name, record.probabilities, record.source) == (
            "../../etc/passwd",
            {"bonafide": 0.9, "world": 0.1},
            "api",
        )
        with pytest.raises(NotFoundError):
            store.get_analysis(session, people.owner, theirs)
    with store.session_scope(db) as session:
        store.delete_model(session, people.owner, public)
    with store.session_scope(db, readonly=True) as session:
        # The verdict stays in the history; the foreign key (enforced) lets go of the model.
        assert store.get_analysis(session, people.other, theirs).model_id is None


def test_a_verdicts_timeline_is_kept_checked_in_time_order_and_rounded(
    db: str, people: People
) -> None:
    from fakevoice.store.analyses import MAX_WINDOWS

    model_id = _add_model(db, people.owner, "m")

    def add(windows: Any) -> int:
        with store.session_scope(db) as session:
            return store.add_analysis(
                session,
                people.owner,
                model_id=model_id,
                file_name="call.wav",
                duration=6.0,
                sample_rate=16000,
                verdict="human",
                probabilities={"bonafide": 0.9, "spoof": 0.1},
                threshold=0.6,
                windows=windows,
            ).id

    later = {"start": 2.0, "end": 6.0, "p_human": 0.123456789, "top_class": "spoof"}
    first = {"start": 0.0, "end": 4.0004, "p_human": 0.9, "top_class": "bonafide"}
    kept, unknown, empty = add([later, first]), add(None), add([])
    with store.session_scope(db, readonly=True) as session:
        assert store.get_analysis(session, people.owner, kept).windows == [
            {"start": 0.0, "end": 4.0, "p_human": 0.9, "top_class": "bonafide"},
            {"start": 2.0, "end": 6.0, "p_human": 0.123457, "top_class": "spoof"},
        ]
        assert store.get_analysis(session, people.owner, unknown).windows is None
        assert store.get_analysis(session, people.owner, empty).windows == []
    for bad in ([{"start": 0.0, "end": 1.0}], [{**first, "p_human": "high"}], [None]):
        with pytest.raises(InvalidSpecError, match="A window is"):
            add(bad)
    with pytest.raises(InvalidSpecError, match=f"at most {MAX_WINDOWS} windows"):
        add([first] * (MAX_WINDOWS + 1))
    with store.session_scope(db, readonly=True) as session:
        assert store.count_analyses(session, people.owner) == 3  # nothing half-written


# --- datasets ----------------------------------------------------------------------------------


def test_dataset_visibility(db: str, people: People) -> None:
    with store.session_scope(db) as session:
        shared = store.register_dataset(
            session, None, name="demo", path="/d/demo", items=10, spec={"seed": 0}
        )
        own = store.register_dataset(
            session, people.owner, name="mine", path="/d/mine", items=5, spec={}
        )
        rebuilt = store.register_dataset(
            session, None, name="demo", path="/d/demo", items=12, spec={"seed": 1}
        )
        assert (rebuilt.id, rebuilt.items, rebuilt.spec) == (shared.id, 12, {"seed": 1})
    with store.session_scope(db) as session:
        assert [d.name for d in store.list_datasets(session, people.other)] == ["demo"]
        assert [d.name for d in store.list_datasets(session, people.owner)] == ["demo", "mine"]
        with pytest.raises(NotFoundError):
            store.get_dataset(session, people.other, own.id)
        with pytest.raises(PermissionDeniedError):
            store.register_dataset(
                session, people.other, name="x", path="/d/mine", items=1, spec={}
            )
        with pytest.raises(PermissionDeniedError):
            store.delete_dataset(session, people.owner, shared.id)
        assert store.delete_dataset(session, people.admin, shared.id).id == shared.id


def test_a_job_waiting_on_a_worker_says_so(
    db: str, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued while no worker of its backend is alive (said at once, with when one was last
    seen), queued a while behind others, or running with no heartbeat for longer than the stale
    time (its worker may be gone): each gets a sentence; a fresh job with a live worker none."""
    from dataclasses import replace as changed

    from fakevoice.services.runs import QUEUED_NOTE_SECONDS, worker_note

    monkeypatch.setenv("FAKEVOICE_DATABASE_URL", db)
    monkeypatch.setenv("FAKEVOICE_STALE_SECONDS", "300")
    get_settings.cache_clear()
    stale = get_settings().stale_seconds
    with store.session_scope(db) as session:
        run = store.create_run(session, people.owner, "waiting", SPEC)
    now = run.created_at
    nobody = worker_note(run, now)
    assert nobody is not None and nobody.startswith("No worker is running (none seen in the last")
    assert "fakevoice worker" in nobody
    with store.session_scope(db) as session:
        store.worker_seen(session, "w-local", backend="local", concurrency=2, running=2)
    assert worker_note(run, now) is None  # a live worker: it is picked up soon
    later = now + timedelta(seconds=QUEUED_NOTE_SECONDS + 10)
    note = worker_note(run, later)
    assert note is not None and note.startswith("Queued for 40 s: other jobs are ahead of it")
    assert "(1 worker running 2 of at most 2 jobs at once)" in note
    with store.session_scope(db) as session:  # room, yet still queued: it is said as it is
        store.worker_seen(session, "w-local", backend="local", concurrency=2, running=1)
    roomy = worker_note(run, later)
    assert roomy == (
        "Queued for 40 s (1 worker running 1 of at most 2 jobs at once): a worker takes it up soon."
    )
    # Only workers of the backend it was queued for claim it: that one is named.
    on_ray = worker_note(changed(run, backend="ray"), later)
    assert on_ray is not None and on_ray.startswith("No worker for the ray backend is running")
    assert "FAKEVOICE_JOB_BACKEND=ray" in on_ray
    # A worker unseen for longer than the stale time, or shut down, is not running.
    gone = worker_note(run, now + timedelta(seconds=stale + 60))
    assert gone is not None and "the last one was seen" in gone and "ago" in gone
    with store.session_scope(db) as session:
        store.worker_stopped(session, "w-local")
    stopped = worker_note(run, now)
    assert stopped is not None and stopped.startswith("No worker is running (the last one")
    running = changed(run, status="running", started_at=now, heartbeat_at=now)
    assert worker_note(running, now + timedelta(seconds=5)) is None
    silent = worker_note(running, now + timedelta(minutes=6))
    assert silent is not None and silent.startswith("No word from its worker for 6 min")
    assert worker_note(changed(run, status="succeeded"), later) is None
    # A run made days ago and queued again just now has not waited: measured from its requeue.
    with store.session_scope(db) as session:
        store.worker_seen(session, "w-local", backend="local", concurrency=2, running=0)
        session.execute(
            update(RunRow)
            .where(RunRow.id == run.id)
            .values(created_at=datetime.now(UTC) - timedelta(days=2))
        )
        store.claim_next_queued_run(session, "w1")
        store.set_status(session, run.id, "failed", worker_id="w1", error="out of memory")
        again = store.requeue_run(session, people.owner, run.id)
    assert again.created_at < again.queued_at  # type: ignore[operator]
    assert worker_note(again) is None


def test_workers_report_themselves_and_old_reports_are_forgotten(db: str) -> None:
    """A worker's first report records its start, later ones its load; one shut down or unseen
    for the stale time is not alive; rows unseen for a day are removed."""
    with store.session_scope(db) as session:
        store.worker_seen(session, "w-a", backend="local", concurrency=2, running=0)
        store.worker_seen(session, "w-b", backend="ray", concurrency=4, running=1)
        store.worker_seen(session, "w-a", backend="local", concurrency=2, running=1)
    with store.session_scope(db) as session:
        alive = {w.id: w for w in store.live_workers(session, 60)}
        assert set(alive) == {"w-a", "w-b"}
        assert alive["w-a"].running == 1 and alive["w-a"].started_at <= alive["w-a"].seen_at
        assert alive["w-a"].host and alive["w-a"].pid > 0
        assert [w.id for w in store.live_workers(session, 60, backend="ray")] == ["w-b"]
        store.worker_stopped(session, "w-b")
    with store.session_scope(db) as session:
        assert [w.id for w in store.live_workers(session, 60)] == ["w-a"]
        (ray,) = [w for w in store.list_workers(session) if w.id == "w-b"]
        assert ray.stopped_at is not None and ray.running == 0
        session.execute(
            update(WorkerRow)
            .where(WorkerRow.id == "w-b")
            .values(seen_at=datetime.now(UTC) - timedelta(days=2))
        )
        assert store.last_worker_seen(session, "ray") < datetime.now(UTC) - timedelta(days=1)  # type: ignore[operator]
        assert store.forget_old_workers(session) == 1
        assert [w.id for w in store.list_workers(session)] == ["w-a"]
        assert store.last_worker_seen(session, "ray") is None


def test_the_sqlite_file_is_the_servers_users_only(tmp_path: Path) -> None:
    """It holds password and token hashes: made owner-only, and narrowed if it was not."""
    fresh = tmp_path / "fresh.sqlite"
    store.init_db(f"sqlite:///{fresh}")
    assert fresh.stat().st_mode & 0o777 == 0o600
    store.dispose_engines()
    old = tmp_path / "old.sqlite"
    old.touch(mode=0o644)
    old.chmod(0o644)
    store.init_db(f"sqlite:///{old}")
    assert old.stat().st_mode & 0o777 == 0o600
    store.dispose_engines()


def test_a_clients_file_name_is_kept_printable(db: str, people: People) -> None:
    """Shown, never a path: control characters (a NUL, which PostgreSQL text cannot hold; a line
    end) become question marks."""
    model_id = _add_model(db, people.owner, "names", public=True)
    with store.session_scope(db) as session:
        kept = store.add_analysis(
            session,
            people.owner,
            model_id=model_id,
            file_name="call\x00\n.wav",
            duration=1.0,
            sample_rate=16000,
            verdict="human",
            probabilities={"bonafide": 1.0},
            threshold=0.6,
            source="api",
        )
    assert kept.file_name == "call??.wav"
