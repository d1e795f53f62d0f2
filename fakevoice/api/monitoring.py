"""Prometheus metrics of the API, at ``GET /metrics`` (text exposition format).

* ``fakevoice_http_requests_total{method, route, status}``: requests answered, by route template
  (``/v1/runs/{run_id}``, never the raw path: ids do not make new series; unknown paths count as
  ``unmatched``);
* ``fakevoice_http_request_duration_seconds{method, route}``: how long they took (histogram);
* ``fakevoice_verdicts_total{verdict, arch}``: verdicts given, single and batch;
* ``fakevoice_scoring_threads``, ``fakevoice_scoring_busy``, ``fakevoice_scoring_waiting``:
  the scoring queue (as ``/health`` reports it), and ``fakevoice_models_loaded``: detectors held
  in memory; ``fakevoice_jobs{kind, status}``: every user's queued and running jobs, and
  ``fakevoice_workers{backend}``: the job workers alive (both from the database); read when
  scraped, so they cost the requests nothing.

With several uvicorn workers (``api_workers`` > 1) ``fakevoice api`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder, so the counters and histograms are summed over
every worker whichever one answers the scrape; the gauges are those of the worker that answers.
``FAKEVOICE_API_METRICS=false`` turns the endpoint and the counting off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import anyio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fakevoice.store.tables import RUN_KINDS

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"
ROUTE_PATH_KEY = "fakevoice.route_path"  # a request answered before routing, on a known route


class ApiMetrics:
    """The metrics of one API app: its own registry (so that apps made in one process, as tests
    do, do not share series), or the worker files' registry in multiprocess mode."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self.registry = CollectorRegistry()
        # In multiprocess mode values live in the files; the objects register nowhere.
        own = None if self.multiprocess else self.registry
        self.requests = Counter(
            "fakevoice_http_requests",
            "HTTP requests answered",
            ("method", "route", "status"),
            registry=own,
        )
        self.duration = Histogram(
            "fakevoice_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ("method", "route"),
            buckets=DURATION_BUCKETS,
            registry=own,
        )
        self.verdicts = Counter(
            "fakevoice_verdicts", "Verdicts given", ("verdict", "arch"), registry=own
        )
        self._gauges = _Gauges()
        self.registry.register(self._gauges)
        if self.multiprocess:
            multiprocess.MultiProcessCollector(self.registry)

    def watch_scoring(self, limiter: anyio.CapacityLimiter, loaded: Callable[[], int]) -> None:
        """Report this scoring queue and the number of models in memory when scraped."""
        self._gauges.limiter = limiter
        self._gauges.loaded = loaded

    def count_verdict(self, verdict: str, arch: str) -> None:
        self.verdicts.labels(verdict, arch).inc()

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format."""
        return generate_latest(self.registry)


class _Gauges(Collector):
    """The scoring queue and the model cache, read at scrape time."""

    def __init__(self) -> None:
        self.limiter: anyio.CapacityLimiter | None = None
        self.loaded: Callable[[], int] | None = None

    def collect(self) -> Iterator[Metric]:
        if self.limiter is not None:
            stats = self.limiter.statistics()
            values = (
                ("threads", "Requests one API process scores at once", self.limiter.total_tokens),
                ("busy", "Requests being scored now", stats.borrowed_tokens),
                ("waiting", "Requests waiting to be scored", stats.tasks_waiting),
            )
            for name, text, value in values:
                yield GaugeMetricFamily(f"fakevoice_scoring_{name}", text, value=float(value))
        if self.loaded is not None:
            yield GaugeMetricFamily(
                "fakevoice_models_loaded", "Detectors held in memory", value=float(self.loaded())
            )
        yield from self._jobs_and_workers()

    @staticmethod
    def _jobs_and_workers() -> Iterator[GaugeMetricFamily]:
        """The job queue of the whole server and the workers alive, from the database (the same
        from every API worker)."""
        from fakevoice import store
        from fakevoice.settings import get_settings

        jobs = GaugeMetricFamily(
            "fakevoice_jobs",
            "Jobs queued and running (training runs, dataset builds, tests), every user's",
            labels=("kind", "status"),
        )
        workers = GaugeMetricFamily(
            "fakevoice_workers",
            "Job workers alive (seen within the stale time)",
            labels=("backend",),
        )
        # An unreachable database (or table): /health reports it; the scrape goes on without.
        try:
            with store.session_scope(readonly=True) as session:
                counts = store.active_job_counts(session)
        except Exception:
            counts = None
        if counts is not None:
            for kind in RUN_KINDS:
                for status in ("queued", "running"):
                    jobs.add_metric((kind, status), float(counts.get((kind, status), 0)))
        yield jobs
        try:
            with store.session_scope(readonly=True) as session:
                alive = store.live_worker_counts(session, get_settings().stale_seconds)
        except Exception:
            return
        for backend, count in alive.items():
            workers.add_metric((backend,), float(count))
        yield workers


class MetricsMiddleware:
    """Count and time every HTTP request by its route template and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or scope.get(
                ROUTE_PATH_KEY, UNMATCHED
            )
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.duration.labels(method, route).observe(time.perf_counter() - started)
