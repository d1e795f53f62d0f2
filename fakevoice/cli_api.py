"""``fakevoice api``: serve the HTTP API under uvicorn (host, port and workers from settings)."""

from __future__ import annotations

import argparse


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from fakevoice import services
    from fakevoice.settings import get_settings

    settings = get_settings()
    services.ensure_database()  # once here, so several workers do not all migrate at start
    uvicorn.run(
        "fakevoice.api:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        workers=args.workers or settings.api_workers,
        log_level="debug" if args.verbose else "info",
    )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("api", help="serve the HTTP API (OpenAPI at /docs)")
    p.add_argument("--host", default=None, help="address to listen on (default: settings)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: settings)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: settings)")
    p.set_defaults(handler=cmd_api)
