"""The ``fakevoice`` command.

Every subcommand exits 0 on success and 2 on a user error, printing one line to stderr and never
a traceback for a :class:`~fakevoice.errors.FakeVoiceError`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import ArgumentError as SQLAlchemyArgumentError
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError

from fakevoice.errors import FakeVoiceError, InvalidSpecError

Handler = Callable[[argparse.Namespace], int]


def print_json(payload: Any) -> None:
    """``--json`` output of every command: indented, dates and paths as text."""
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def read_limited(path: str, what: str, limit: int) -> bytes:
    """The bytes of the file ``path`` (``-``: stdin), read up to ``limit`` bytes and refused
    beyond, in words that name ``what`` it should be ("the report", "the spec").

    Raises:
        InvalidSpecError: it cannot be read, or it is larger than ``limit``.
    """
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with Path(path).open("rb") as handle:
                data = handle.read(limit + 1)
    except OSError as exc:
        raise InvalidSpecError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from None
    if len(data) > limit:
        size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"
        raise InvalidSpecError(f"{path} is over {size}: too large to be {what}.")
    return data


LIST_LIMIT = 50  # rows a listing prints unless --limit says otherwise
MAX_LIST_LIMIT = 1000


def add_limit_option(parser: argparse.ArgumentParser, what: str, *, nested: bool = False) -> None:
    """``--limit N``: how many of ``what`` a listing prints, newest first (1 to 1000).

    ``nested``: ``parser`` is a subcommand of a parser that has the option too (``fakevoice
    models --limit 5 list``): it sets ``limit`` only when given, or its default would overwrite
    the parent's value."""
    parser.add_argument(
        "--limit",
        type=int,
        default=argparse.SUPPRESS if nested else LIST_LIMIT,
        help=f"how many {what} to list, newest first (1-{MAX_LIST_LIMIT}) [{LIST_LIMIT}]",
    )


def check_limit(limit: int) -> int:
    """``limit`` when within 1 to :data:`MAX_LIST_LIMIT`; InvalidSpecError otherwise."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidSpecError(f"--limit must be 1 to {MAX_LIST_LIMIT}; got {limit}.")
    return limit


def print_more(shown: int, total: int, *, json_output: bool) -> None:
    """The line under a listing that shows only the newest ``shown`` of ``total``: how many
    there are and how to see more (on stderr under ``--json``, which stays one document)."""
    if total > shown:
        line = f"({shown} of {total} shown, newest first; --limit N shows more)"
        print(line, file=sys.stderr if json_output else sys.stdout)


# --- entry ---------------------------------------------------------------------------------------


SERVICE_COMMANDS = frozenset({"worker", "api"})


def _accept_verbose_after(parser: argparse.ArgumentParser) -> None:
    """``-v`` after any subcommand (``fakevoice worker -v``, ``fakevoice dataset build-demo
    -v``) as before it. A subcommand's default would overwrite the main parser's ``-v``, so
    theirs has none: it sets ``verbose`` only when given."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                subparser.add_argument(
                    "-v",
                    "--verbose",
                    action="store_true",
                    default=argparse.SUPPRESS,
                    help="log more",
                )
                _accept_verbose_after(subparser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fakevoice", description="Fake Voice Workbench")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    from fakevoice import (
        cli_api,
        cli_datasets,
        cli_evaluate,
        cli_model_admin,
        cli_models,
        cli_reports,
        cli_runs,
        cli_train,
        cli_users,
    )

    cli_datasets.add_commands(sub)
    cli_train.add_commands(sub)
    cli_runs.add_commands(sub)
    cli_models.add_commands(sub)
    cli_evaluate.add_commands(sub)
    cli_model_admin.add_commands(sub)
    cli_users.add_commands(sub)
    cli_api.add_commands(sub)
    cli_reports.add_commands(sub)
    _accept_verbose_after(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The long-running services log what they do, with the time, for the operator's journal;
    # a command says only what went wrong unless asked (-v).
    service = args.command in SERVICE_COMMANDS
    quiet, verbose = (logging.INFO, logging.DEBUG) if service else (logging.WARNING, logging.INFO)
    logging.basicConfig(
        level=verbose if args.verbose else quiet,
        format=("%(asctime)s " if service else "") + "%(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except FakeVoiceError as exc:
        print(f"fakevoice: {exc}", file=sys.stderr)
        return 2
    except (SQLAlchemyArgumentError, SQLAlchemyOperationalError) as exc:
        # A database URL that names no database, or a server that does not answer: the
        # operator's settings, said in one line (-v logs the whole error).
        logging.getLogger(__name__).debug("database error", exc_info=True)
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(
            f"fakevoice: the database cannot be used (FAKEVOICE_DATABASE_URL): {first}",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # the reader went away (`... --csv - | head`)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush does not fail again
            return 1
        # A folder that cannot be made or read (FAKEVOICE_DATA_DIR on a read-only disk...).
        logging.getLogger(__name__).debug("system error", exc_info=True)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"fakevoice: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fakevoice: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
