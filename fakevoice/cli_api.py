"""``fakevoice api``: serve the HTTP API under uvicorn (host, port and workers from settings)."""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import socket
import tempfile
from collections.abc import Callable

from fakevoice.errors import FakeVoiceError

# As fakevoice.api.monitoring, which is not imported here: importing it loads the whole app (torch
# included, about 3 s) into this parent process, which only starts the workers.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
SUPERVISOR_ENV = "_FAKEVOICE_API_SUPERVISOR"  # as fakevoice.api.app, for the same reason


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from fakevoice import services
    from fakevoice.settings import get_settings

    settings = get_settings()
    host, port = args.host or settings.api_host, args.port or settings.api_port
    _check_free(host, port)
    services.ensure_database()  # once here, so several workers do not all migrate at start
    workers = args.workers or settings.api_workers
    shared = None
    if settings.api_metrics and workers > 1:
        # Each worker writes its counters here; a scrape of any worker sums them all.
        folder = settings.data_dir / "prometheus"
        folder.mkdir(parents=True, exist_ok=True)
        shared = tempfile.mkdtemp(prefix="api-", dir=folder)
        os.environ[MULTIPROCESS_ENV] = shared
    if workers > 1:  # its workers end with it, even when it is killed (SUPERVISOR_ENV)
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
    try:
        uvicorn.run(
            "fakevoice.api:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="debug" if args.verbose else "info",
        )
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
    return 0


def _check_free(host: str, port: int) -> None:
    """Refuse at once, in words, an address this process cannot listen on (uvicorn would log an
    error and exit 3)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc})"
            raise FakeVoiceError(
                f"{host}:{port} {reason}; choose another with --port or FAKEVOICE_API_PORT."
            ) from None


def _bounded(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be between {low} and {high}")
        return value

    return parse


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("api", help="serve the HTTP API (OpenAPI at /docs)")
    p.add_argument("--host", default=None, help="address to listen on (default: settings)")
    p.add_argument(
        "--port", type=_bounded(1, 65535, "the port"), help="TCP port (default: settings)"
    )
    p.add_argument(
        "--workers", type=_bounded(1, 64, "workers"), help="processes (default: settings)"
    )
    p.set_defaults(handler=cmd_api)
