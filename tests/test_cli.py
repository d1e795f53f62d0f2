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


def _modules_loaded_by(code: str) -> set[str]:
    """Which of torch, torchvision and fastai are imported after ``code`` runs in a new Python."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in HEAVY if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", f"HEAVY = ('torch', 'torchvision', 'fastai')\n{probe}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(out.stdout.split())


def test_listing_runs_and_scoring_load_only_what_they_need() -> None:
    # torch, torchvision and fastai take seconds to import; a command pays only for what it uses.
    assert _modules_loaded_by("from fakevoice.services import list_runs, stop_run") == set()
    assert _modules_loaded_by("from fakevoice.services import list_models, score_clip") == {"torch"}
    assert _modules_loaded_by("from fakevoice.services import submit_run") == set()
    assert {"torch", "fastai"} <= _modules_loaded_by("from fakevoice.training import train")
