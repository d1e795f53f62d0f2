"""``GET /health``: what an operator's monitor asks (is the database at this version's schema, is
there room to write, can reports be signed, how busy is scoring, which workers are alive), each
read cheaply so that a monitor polling it costs the verdicts nothing.

The answer is 503 only when the database cannot serve this version (unreachable, behind, or
lacking something it uses); anything else that is wrong makes the status ``degraded`` with a 200,
since verdicts are still given.
"""

from __future__ import annotations

import logging
from typing import Literal

import anyio
from pydantic import BaseModel, Field

from fakevoice import disk, signing, store
from fakevoice.api.schemas import examples
from fakevoice.errors import ServerConfigError
from fakevoice.inference import DETECTORS
from fakevoice.settings import Settings

logger = logging.getLogger(__name__)


class DatabaseState(BaseModel):
    ok: bool = Field(
        description="reachable, at this version's newest revision, and lacking no table, "
        "column or index this version uses"
    )
    revision: str | None
    head: str | None
    schema_ok: bool | None = Field(
        default=None,
        description="its tables, columns and indexes are those this version expects (null when "
        "the database cannot be read); false: the server log names the differences. One that "
        "lacks something this version uses is not ok (503); one with more (an operator's own "
        "index, a newer version's column) is degraded (200)",
    )


class CacheState(BaseModel):
    loaded: int = Field(description="models held in memory")
    capacity: int


class ScoringState(BaseModel):
    threads: int = Field(description="requests this process decodes and scores at once")
    busy: int = Field(description="requests being scored now")
    waiting: int = Field(description="requests waiting for their turn")


class SigningState(BaseModel):
    ok: bool = Field(description="the key that signs verdict reports can be read")


class StorageState(BaseModel):
    ok: bool = Field(description="the data folder can be written and has room (64 MiB or more)")
    free_mib: int | None = Field(description="free space on the data folder's disk, MiB")


class WorkersState(BaseModel):
    local: int = Field(description="local workers alive now (seen within the stale time)")
    ray: int = Field(description="Ray workers alive now")


class HealthOut(BaseModel):
    model_config = examples(
        {
            "status": "ok",
            "database": {"ok": True, "revision": "0020", "head": "0020", "schema_ok": True},
            "models": {"loaded": 1, "capacity": 4},
            "scoring": {"threads": 2, "busy": 1, "waiting": 0},
            "signing": {"ok": True},
            "storage": {"ok": True, "free_mib": 51200},
            "workers": {"local": 1, "ray": 0},
        }
    )
    status: Literal["ok", "degraded"]
    database: DatabaseState
    models: CacheState
    scoring: ScoringState
    signing: SigningState = Field(
        description="the report-signing key: a broken one makes the status degraded (verdicts "
        "still work; signed reports do not) while the answer stays 200"
    )
    storage: StorageState = Field(
        description="the data folder: read-only or full makes the status degraded (verdicts "
        "are still given; trainings, uploads and the analysis log may fail) while the answer "
        "stays 200"
    )
    workers: WorkersState | None = Field(
        default=None,
        description="job workers alive now, by backend (null when the database cannot be "
        "read); none means queued trainings, builds and tests wait. The status does not "
        "depend on it: verdicts need no worker",
    )


def health_report(settings: Settings, scoring: anyio.CapacityLimiter) -> tuple[HealthOut, int]:
    """The answer of ``GET /health`` and its status code."""
    workers: WorkersState | None = None
    try:
        revision, head = store.current_revision(), store.head_revision()
        missing, extra = store.schema_drift()
        schema_ok: bool | None = not missing and not extra
        ok = revision == head and not missing  # extras are the operator's, or newer
    except Exception:  # an unreachable database is what this endpoint reports
        logger.warning("health: the database cannot be read", exc_info=True)
        revision, head, ok, schema_ok = None, None, False, None
    if ok:
        try:
            workers = _workers(settings)
        except Exception:  # said as null; the status does not depend on the workers
            logger.warning("health: the workers cannot be read", exc_info=True)
    try:
        signing.private_key()
        signs = True
    except ServerConfigError as exc:
        logger.error("health: %s", exc)
        signs = False
    free = disk.free_bytes(settings.data_dir)
    room = disk.writable(settings.data_dir) and (free is None or free >= disk.FULL_DISK_BYTES)
    body = HealthOut(
        status="ok" if ok and schema_ok and signs and room else "degraded",
        storage=StorageState(ok=room, free_mib=None if free is None else free // 2**20),
        signing=SigningState(ok=signs),
        database=DatabaseState(ok=ok, revision=revision, head=head, schema_ok=schema_ok),
        models=CacheState(loaded=len(DETECTORS), capacity=DETECTORS.capacity),
        scoring=ScoringState(
            threads=int(scoring.total_tokens),
            busy=scoring.borrowed_tokens,
            waiting=scoring.statistics().tasks_waiting,
        ),
        workers=workers,
    )
    return body, 200 if ok else 503


def _workers(settings: Settings) -> WorkersState:
    with store.session_scope(readonly=True) as session:
        return WorkersState(**store.live_worker_counts(session, settings.stale_seconds))
