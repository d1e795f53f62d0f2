"""The dataset commands: user errors exit 2 with one line, listing reads built folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakevoice.cli import main
from fakevoice.datasets.manifest import manifest_frame, write_manifest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakevoice.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_bad_folder_exits_2_with_one_line(tmp_path: Path) -> None:
    out = run_cli(
        "dataset", "import-folder", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a folder" in lines[0] and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dataset", "import-folder", "{empty}"], "has no subfolders"),
        (["dataset", "import-folder", "{nothing}"], "has no audio files"),
        (["dataset", "build-demo", "--size", "small", "--generators", "nosuch"], "generator must"),
        (["dataset", "build-demo", "--size", "small", "--noise", "loud"], "noise"),
        (["dataset", "import-asvspoof", "{empty}"], "protocol file"),
    ],
)
def test_user_errors_in_process(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "nothing" / "spk").mkdir(parents=True)
    (tmp_path / "nothing" / "spk" / "notes.txt").write_text("no audio here")
    args = [a.format(empty=tmp_path / "empty", nothing=tmp_path / "nothing") for a in args]
    code = main([*args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err


def test_list_shows_built_datasets(isolated_settings: Path) -> None:
    root = isolated_settings / "datasets"
    rows = [
        {"item": f"u{i}__{c}__snr_inf", "utterance": f"u{i}", "speaker": f"s{i % 2}",
         "class": c, "generator": "" if c == "bonafide" else c, "noise": "snr_inf",
         "clip_path": f"clips/s{i % 2}/{c}/u{i}.wav", "image_path": f"snr_inf/s/{c}/u{i}.png",
         "duration": 1.0, "language": "en", "source": "test"}
        for i in range(3) for c in ("bonafide", "world")
    ]  # fmt: skip
    write_manifest(root / "mine", manifest_frame(rows))
    (root / "not-a-dataset").mkdir()
    out = run_cli("dataset", "list", "--json", env={"FAKEVOICE_DATASET_DIR": str(root)})
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert [d["name"] for d in listed] == ["mine"]
    assert listed[0]["items"] == 6 and listed[0]["classes"] == ["bonafide", "world"]
    assert listed[0]["speakers"] == 2
