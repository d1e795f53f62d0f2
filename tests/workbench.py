"""A module's own workbench for tests: settings and the store pointed at a folder of its own, and
the run helpers the job tests share."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fakevoice import store
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, RunBackend, RunRecord
from fakevoice.trainspec import TrainSpec

FAKEVOICE = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "fakevoice"


@contextmanager
def active_workbench(
    env: dict[str, str], *, unset: tuple[str, ...] = ()
) -> Iterator[dict[str, str]]:
    """Within the block, settings come from ``env`` (environment variables, which worker processes
    started in it inherit) and its database exists; engines are closed at the end."""
    with pytest.MonkeyPatch.context() as patch:
        for key in unset:
            patch.delenv(key, raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        store.init_db()
        try:
            yield env
        finally:
            store.dispose_engines()
    get_settings.cache_clear()


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """A real ``fakevoice worker`` process with the settings ``env`` (``--once``: it exits when
    nothing is left to do); its output is piped."""
    return subprocess.Popen(
        [str(FAKEVOICE), "worker", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def make_user(name: str) -> Actor:
    """The user called ``name`` (made on first use) as an acting user."""
    with store.session_scope() as session:
        return store.get_or_create_user(session, name).actor


# --- runs in the store, as the workers see them ----------------------------------------------------


def submit(actor: Actor, name: str, spec: TrainSpec, backend: RunBackend = "local") -> int:
    """Queue ``spec`` as a run of ``actor``'s straight in the store (as the services do)."""
    with store.session_scope() as session:
        return store.create_run(session, actor, name, spec.to_dict(), backend=backend).id


def get_run(actor: Actor, run_id: int) -> RunRecord:
    with store.session_scope(readonly=True) as session:
        return store.get_run(session, actor, run_id)


def epochs_of(actor: Actor, run_id: int) -> list[int]:
    """The epochs whose metrics the run has written so far."""
    with store.session_scope(readonly=True) as session:
        return [m.epoch for m in store.list_epoch_metrics(session, actor, run_id)]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true (returned), or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def start_ray_worker() -> threading.Thread:
    """The Ray backend's worker in a thread of this process, leaving when the queue is empty."""
    from fakevoice.jobs.ray_backend import RayWorker

    worker = RayWorker(concurrency=1)
    thread = threading.Thread(target=worker.run, kwargs={"exit_when_idle": True}, daemon=True)
    thread.start()
    return thread
