from __future__ import annotations

import subprocess
import sys

from fakevoice.cli import build_parser


def test_parser_knows_the_dataset_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(["dataset", "build-demo", "--size", "small", "--seed", "3"])
    assert args.size == "small" and args.seed == 3


def test_console_script_shows_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fakevoice.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "dataset" in out.stdout
