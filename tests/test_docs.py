"""The README and docs/*.md name only settings, commands, flags and routes that exist.

Each test reads the Markdown as a person would and checks one class of claim against the code:
every ``FAKEVOICE_*`` variable is a setting (and a configuration table's default is the
setting's), every ``fakevoice ...`` command parses with the flags and choices it is shown with,
and every ``METHOD /path`` is a route of the API. A renamed flag or setting, a changed default or
a dropped route then fails here instead of leaving the docs wrong.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from fakevoice.cli import build_parser
from fakevoice.settings import NOT_SETTINGS, Settings

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SETTINGS = {name.upper(): field for name, field in Settings.model_fields.items()}
UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


def doc_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def code_spans(text: str) -> Iterator[str]:
    """The inline code spans of Markdown text (a span may wrap onto the next line)."""
    outside_blocks = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for match in re.finditer(r"`([^`\n]+(?:\n[^`\n]+)?)`", outside_blocks):
        yield " ".join(match.group(1).split())


def code_block_lines(text: str) -> Iterator[tuple[str, str]]:
    """(heading, line) for each line of the fenced blocks, with the ``##`` heading above them."""
    heading, inside = "", False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            yield heading, line
        elif line.startswith("## "):
            heading = line[3:].strip()


# --- settings ---------------------------------------------------------------------------------


def test_every_fakevoice_variable_named_in_the_docs_is_a_setting() -> None:
    for path in DOCS:
        for name in set(re.findall(r"\bFAKEVOICE_([A-Z][A-Z0-9_]*[A-Z0-9])\b", doc_text(path))):
            if f"FAKEVOICE_{name}".startswith(NOT_SETTINGS) or name == "NAME":
                continue
            assert name in SETTINGS, f"{path.name} names FAKEVOICE_{name}, which is no setting"


def table_rows(text: str, first_header: str) -> Iterator[tuple[str, str]]:
    """(names cell, default cell) of each row of the Markdown table whose first header is
    ``first_header`` (case-insensitive)."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.lower().startswith(f"| {first_header.lower()} |"):
            for row in lines[start + 2 :]:
                if not row.startswith("|"):
                    break
                cells = [cell.strip() for cell in row.strip().strip("|").split(" | ")]
                yield cells[0], cells[1]


def setting_names(cell: str) -> list[str]:
    """The settings a table's first cell names; ``_PORT`` after ``FAKEVOICE_API_HOST`` is
    ``API_PORT`` (the shorthand keeps what the name before it shares)."""
    names: list[str] = []
    for token in re.findall(r"`([A-Z_*][A-Z0-9_*]*)`", cell):
        token = token.removeprefix("FAKEVOICE_")
        if token.startswith("_") and names:
            parts = names[-1].split("_")
            candidates = ["_".join(parts[:cut]) + token for cut in range(len(parts) - 1, 0, -1)]
            token = next((c for c in candidates if c in SETTINGS), candidates[0])
        names.append(token)
    return names


def split_defaults(cell: str) -> list[str]:
    """A default cell's values, split on ``, `` and `` / `` outside parentheses."""
    values, depth, current = [], 0, ""
    for index, char in enumerate(cell):
        depth += char == "("
        depth -= char == ")"
        rest = cell[index:]
        if depth == 0 and (rest.startswith(", ") or rest.startswith(" / ")):
            values.append(current)
            current = ""
        elif not (depth == 0 and current == "" and char in " /"):
            current += char
    return [*values, current]


def parsed_default(text: str) -> object:
    """A default as the docs write it: ``50 MiB``, ``0 (= CPU cores)``, ``true``, ``auto``."""
    text = re.sub(r"\(.*\)", "", text).replace("`", "").split(" = ")[0].strip()
    number = re.fullmatch(r"(-?\d[\d,]*(?:\.\d+)?)\s*(KiB|MiB|GiB)?", text)
    if number:
        return float(number.group(1).replace(",", "")) * UNITS.get(number.group(2) or "", 1)
    return {"true": True, "false": False}.get(text, text)


def documented_defaults() -> Iterator[tuple[str, str, object]]:
    """(doc, setting, default as written) for every configuration table of the docs."""
    for path in DOCS:
        text = doc_text(path)
        for header in ("setting", "variable"):
            for names_cell, default_cell in table_rows(text, header):
                names = setting_names(names_cell)
                values = split_defaults(default_cell)
                assert names, f"{path.name}: no setting in the row {names_cell!r}"
                if len(values) == 1 and len(names) > 1:
                    names = names[:1]  # `JOB_BACKEND` / `RAY_ADDRESS`: `local` is the first's
                assert len(values) == len(names), (
                    f"{path.name}: {len(names)} settings but {len(values)} defaults in the row "
                    f"{names_cell} | {default_cell}"
                )
                for name, value in zip(names, values, strict=True):
                    yield path.name, name, parsed_default(value)


def test_configuration_tables_name_settings_with_their_defaults() -> None:
    rows = list(documented_defaults())
    assert len({name for _, name, _ in rows}) >= 30  # README's table and API.md's, read whole
    for doc, name, written in rows:
        if name.endswith("*"):
            prefix = name.rstrip("*")
            assert any(s.startswith(prefix) for s in SETTINGS), f"{doc}: no {name} settings"
            continue
        assert name in SETTINGS, f"{doc}'s table names {name}, which is no setting"
        default: Any = SETTINGS[name].default
        if default is None or isinstance(default, Path | SecretStr):
            continue  # written in words ("generated into ...", "SQLite in DATA_DIR")
        if isinstance(default, bool) or isinstance(default, str):
            assert written == default, f"{doc}: {name} defaults to {default!r}, not {written!r}"
        else:
            assert written == float(default), f"{doc}: {name} defaults to {default}, not {written}"


# --- the command line -------------------------------------------------------------------------


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def documented_commands() -> Iterator[tuple[str, str]]:
    """(doc, command) for each ``fakevoice ...`` the docs show: in code spans, and in the lines of
    code blocks (a ``|`` between commands, a ``# comment`` cut off; ``rename M NEW`` after
    ``fakevoice models share M`` is ``fakevoice models rename M NEW``)."""
    for path in DOCS:
        text = doc_text(path)
        for span in code_spans(text):
            if span.startswith("fakevoice "):
                yield path.name, span
        for _, line in code_block_lines(text):
            line = re.sub(r"\s#\s.*$", "", line)
            start = re.search(r"(?<![\w/.-])fakevoice (?=[a-z])(?!import )", line)
            if start is None:
                continue
            group = ""
            for segment in line[start.start() :].split(" | "):
                segment = segment.strip()
                if not segment.startswith("fakevoice "):
                    segment = f"{group} {segment}"
                group = " ".join(resolve(segment)[0].prog.split()[:-1])
                yield path.name, segment


def resolve(command: str) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub)parser a command runs and the words after its subcommands."""
    parser = build_parser()
    words = command.split()[1:]
    while words:
        choices = subparsers(parser)
        word = words[0].strip("[]")
        if word in parser._option_string_actions and choices:
            words = words[1:]  # an option before the subcommand: `fakevoice -v worker`
            continue
        alternatives = word.split("|")
        if not choices or not all(a in choices for a in alternatives):
            break
        parser = choices[alternatives[0]]
        words = words[1:]
    return parser, words


def test_every_documented_command_parses_with_its_flags() -> None:
    commands = list(documented_commands())
    assert len(commands) >= 60  # README's block and every command named in the docs
    for doc, command in commands:
        parser, words = resolve(command)
        assert parser.prog != "fakevoice", f"{doc}: `{command}` names no subcommand"
        options = {o: a for a in parser._actions for o in a.option_strings}
        for index, word in enumerate(words):
            for flag in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", word):
                assert flag in options, f"{doc}: `{command}`: {parser.prog} has no {flag}"
                action = options[flag]
                following = words[index + 1].strip("[]") if index + 1 < len(words) else ""
                if action.choices is not None and "|" in following:
                    for value in following.split("|"):
                        assert value in action.choices, (
                            f"{doc}: `{command}`: {flag} takes {sorted(action.choices)}, "
                            f"not {value!r}"
                        )
        # Subcommands left over that the parser does not know (``fakevoice modles``).
        if subparsers(parser) and words and re.fullmatch(r"[a-z][a-z-]+", words[0]):
            pytest.fail(f"{doc}: `{command}`: {parser.prog} has no subcommand {words[0]!r}")


# --- the HTTP API -----------------------------------------------------------------------------


def api_routes() -> dict[tuple[str, str], set[str]]:
    """(method, path with ``{}`` for each parameter) -> the query parameters of that route."""
    from fakevoice.api.app import create_app

    app = create_app()
    routes = {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path)): {
            p["name"] for p in op.get("parameters", []) if p["in"] == "query"
        }
        for path, ops in app.openapi()["paths"].items()
        for method, op in ops.items()
    }
    routes |= {("GET", path): set() for path in ("/docs", "/redoc", "/openapi.json")}
    return routes


def documented_routes() -> Iterator[tuple[str, str, str, list[str]]]:
    """(doc, method, path, query parameters) for each ``METHOD /path?a=..`` the docs write
    (``|`` alternatives of the last part, e.g. ``/v1/models/{id}/bundle|card``, each)."""
    pattern = rf"\b({'|'.join(METHODS)})\s+(/[\w{{}}/.|\\-]*)(\[?\?[^\s`]*)?"
    for path in DOCS:
        for method, route, query in re.findall(pattern, doc_text(path)):
            route = route.replace("\\|", "|").rstrip(".")
            head, _, last = route.rpartition("/")
            names = re.findall(r"[?&](\w+)=", query)
            for part in last.split("|"):
                yield path.name, method, re.sub(r"\{[^}]*\}", "{}", f"{head}/{part}"), names


def test_every_documented_route_exists_with_its_query_parameters() -> None:
    routes = api_routes()
    found = list(documented_routes())
    assert len(found) >= 40
    assert any(names for *_, names in found)  # `GET /v1/runs?kind=train&...` read whole
    for doc, method, route, names in found:
        assert (method, route) in routes, f"{doc} names {method} {route}, which the API lacks"
        for name in names:
            assert name in routes[method, route], f"{doc}: {method} {route} takes no ?{name}="


# --- files ------------------------------------------------------------------------------------


def test_every_repository_file_and_link_the_docs_name_exists() -> None:
    """Links (the screenshots, the other docs) and files in code spans (``bench/api.py``), each
    named from the repository's root."""
    checked = 0
    for path in DOCS:
        text = doc_text(path)
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target:
                checked += 1
                assert (path.parent / target).exists(), f"{path.name} links to missing {target}"
        for span in code_spans(text):
            if re.fullmatch(r"(?:[\w.-]+/)*[\w.-]+\.(?:py|md|yml|toml|sh|txt|example)", span):
                checked += 1
                assert (REPO / span).exists(), f"{path.name} names {span}, which is not in the repo"
    assert checked >= 20
