"""What the lists read as records grow: the pages, services, API and CLI that list runs, models
and verdicts send as many SQL statements for many records as for a few, and load the rows they
show, not every row (bench/store_scale.py times them on a busy user's year of records).

Counts of statements and of loaded rows are what is checked, never times.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from fakevoice import services, store
from fakevoice.services import tokens
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, EpochMetric
from fakevoice.store.tables import RunRow


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
