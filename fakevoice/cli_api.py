"""``fakevoice api``: serve the HTTP API under uvicorn (host, port and workers from settings)."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

# As fakevoice.api.monitoring, which is not imported here: importing it loads the whole app (torch
# included, about 3 s) into this parent process, which only starts the workers.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from fakevoice import services
    from fakevoice.settings import get_settings

    settings = get_settings()
    services.ensure_database()  # once here, so several workers do not all migrate at start
    workers = args.workers or settings.api_workers
    shared = None
    if settings.api_metrics and workers > 1:
        # Each worker writes its counters here; a scrape of any worker sums them all.
        folder = settings.data_dir / "prometheus"
        folder.mkdir(parents=True, exist_ok=True)
        shared = tempfile.mkdtemp(prefix="api-", dir=folder)
        os.environ[MULTIPROCESS_ENV] = shared
    try:
        uvicorn.run(
            "fakevoice.api:create_app",
            factory=True,
            host=args.host or settings.api_host,
            port=args.port or settings.api_port,
            workers=workers,
            log_level="debug" if args.verbose else "info",
        )
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("api", help="serve the HTTP API (OpenAPI at /docs)")
    p.add_argument("--host", default=None, help="address to listen on (default: settings)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: settings)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: settings)")
    p.set_defaults(handler=cmd_api)
