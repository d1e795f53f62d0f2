"""A throwaway PostgreSQL server for the store and job tests.

``FAKEVOICE_TEST_POSTGRES_URL`` wins when set (a server you run yourself). Otherwise the Debian
``postgresql`` package's binaries (``make test`` installs it) start a private cluster in a temporary
folder on a free loopback port, with ``fsync`` off; it is stopped at the end of the session. As
root, the cluster runs as the ``postgres`` system user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

ENV_URL = "FAKEVOICE_TEST_POSTGRES_URL"


class PostgresUnavailable(Exception):
    """Why no PostgreSQL server could be had (the tests that need one skip with this reason)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _binaries() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (`make test` installs Debian's postgresql package when apt "
            f"is usable), and {ENV_URL} is not set"
        )
    return Path(found[-1]).parent


def start_postgres() -> tuple[str, Callable[[], None]]:
    """A SQLAlchemy URL of a running server and a function that stops it (a no-op for ENV_URL)."""
    url = os.environ.get(ENV_URL)
    if url:
        return url, lambda: None
    bindir = _binaries()
    root = Path(tempfile.mkdtemp(prefix="fakevoice-pg-"))
    root.chmod(0o755)
    data, sockets = root / "data", root / "sockets"
    data.mkdir()
    sockets.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no 'postgres' user") from None
        for path in (data, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*args: str) -> None:
        result = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed: {result.stderr.strip()[-500:]}"
            )

    run(str(bindir / "initdb"), "-D", str(data), "-U", "fakevoice", "--auth=trust", "-E", "UTF8")
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(data / "server.log"),
        "-w",
        "start",
    )

    def stop() -> None:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)

    return f"postgresql+psycopg://fakevoice@127.0.0.1:{port}/postgres", stop
