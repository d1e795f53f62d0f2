"""The dataset commands: user errors exit 2 with one line, listing reads built folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import speechlike
from test_training import DATASET, FEATURES, quick_spec, tiny_dataset_root

from fakevoice import services, store
from fakevoice.cli import main
from fakevoice.datasets.manifest import manifest_frame, read_manifest, write_manifest
from fakevoice.features import RENDER_VERSION
from fakevoice.inference import Detector
from fakevoice.services.datasets import find_dataset
from fakevoice.training import train
from fakevoice.training_callbacks import MemorySink
from fakevoice.training_data import prepare_data
from fakevoice.trainspec import TrainSpec

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
        (["dataset", "build-demo", "--size", "small", "--image-size", "8x8"], "image_height must"),
        (["dataset", "import-folder", "{empty}", "--features", "mfcc", "--n-mels", "0"], "n_mels"),
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
    assert listed[0]["speakers"] == 2 and listed[0]["owner"] is None  # shared
    assert listed[0]["shortcuts"] is None  # written by hand: no audit kept

    # A user's dataset (built from their recordings) is listed with its owner.
    with store.session_scope() as session:
        ann = store.create_user(session, "ann")
    services.record_owner(ann.id, "mine", root / "mine", items=6)
    out = run_cli("dataset", "list", env={"FAKEVOICE_DATASET_DIR": str(root)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:7] == ["mine", "6", "items", "ann", "shortcuts:", "not", "audited"]


# --- dataset render -------------------------------------------------------------------------------


@pytest.fixture
def tiny_settings(isolated_settings: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Isolated settings whose dataset folder holds a copy of the tiny training dataset."""
    source = tiny_dataset_root(tmp_path_factory) / DATASET
    shutil.copytree(source, isolated_settings / "datasets" / DATASET)
    return isolated_settings / "datasets"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([DATASET, "new"], "Say which features to render"),
        (["nosuch", "new", "--features", "lfcc"], "There is no dataset named 'nosuch'"),
        ([DATASET, "../escape", "--features", "lfcc"], "A dataset name is"),
        ([DATASET, ".hidden", "--features", "lfcc"], "A dataset name is"),
        ([DATASET, DATASET, "--features", "lfcc"], "already exists"),
        ([DATASET, "new", "--image-size", "wide"], "--image-size must be rows x columns"),
        ([DATASET, "new", "--n-fft", "8"], "n_fft must be an integer in [16"),
        ([DATASET, "new", "--features", "lfcc", "--n-coeffs", "500"], "n_coeffs must be"),
    ],
)
def test_render_user_errors_exit_2_and_write_nothing(
    args: list[str], message: str, tiny_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in tiny_settings.iterdir())
    code = main(["dataset", "render", *args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in tiny_settings.iterdir()) == before


def test_rendered_dataset_trains_a_model_that_uses_its_features(
    tiny_settings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["dataset", "render", DATASET, "tiny-linear", "--features", "linear", "--n-fft", "256",
         "--hop-length", "64", "--image-size", "64x96", "--workers", "1", "--json"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    spec = report["feature_spec"]
    assert spec["kind"] == "linear" and (spec["image_height"], spec["image_width"]) == (64, 96)
    assert spec["n_mels"] == FEATURES.n_mels  # fields not given come from the source
    assert report["images"] == len(read_manifest(tiny_settings / DATASET))

    result = train(quick_spec(dataset="tiny-linear"), tmp_path / "run", MemorySink(), tiny_settings)
    assert result.status == "succeeded"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["feature_spec"] == spec  # the model renders clips as its dataset did
    detector = Detector.from_bundle(tmp_path / "run")
    verdict = detector.predict_samples(speechlike(2.0), 16000)
    assert verdict.label in {"human", "machine-generated", "inconclusive"}
    assert abs(sum(verdict.probabilities.values()) - 1.0) < 1e-5


# --- dataset show ---------------------------------------------------------------------------------


def show(name: str, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str, str]:
    code = main(["dataset", "show", name, *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_gives_the_counts_and_the_split_that_training_will_see(
    tiny_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = show(DATASET, capsys, "--json")
    assert code == 0
    shown = json.loads(out)
    manifest = read_manifest(tiny_settings / DATASET)
    assert shown["name"] == DATASET and shown["path"] == str(tiny_settings / DATASET)
    assert shown["owner"] is None and shown["items"] == len(manifest)
    classes = {c["name"]: c["items"] for c in shown["classes"]}
    assert classes == manifest["class"].value_counts().to_dict()
    assert [c["name"] for c in shown["classes"]][0] == "bonafide"
    assert shown["generators"] == ["griffinlim", "world"]
    speakers = {s["name"]: s["items"] for s in shown["speakers"]}
    assert speakers == manifest["speaker"].value_counts().to_dict()
    assert [(n["name"], n["label"]) for n in shown["noise_levels"]] == [("snr_inf", "clean")]
    assert shown["feature_spec"] == FEATURES.to_dict() and shown["sample_rate"] == 16000
    assert shown["clip_seconds"]["shortest"] == pytest.approx(manifest["duration"].min(), abs=1e-3)
    assert shown["build"]["seed"] == 0 and shown["build"]["version"] == 1
    assert (shown["shortcuts"], shown["shortcuts_judged"]) == (None, None)  # not audited yet

    # The split shown is the one `fakevoice train` makes with its defaults.
    splits = shown["splits"]
    data = prepare_data(TrainSpec(dataset=DATASET), tiny_settings)
    by_utterance = splits["by"]["utterance"]
    assert (splits["valid_fraction"], splits["seed"]) == (0.2, 0)
    assert (by_utterance["train"], by_utterance["valid"]) == (len(data.train), len(data.valid))
    for mode, split in splits["by"].items():  # every item lands somewhere, once
        assert split["train"] + split["valid"] + split["unused"] == len(manifest), mode


def test_show_names_the_owner_and_the_audit_as_list_does(
    tiny_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dataset", "audit", DATASET]) == 0  # as the CLI's account, which sees shared ones
    capsys.readouterr()
    with store.session_scope() as session:
        ann = store.create_user(session, "ann")
    services.record_owner(ann.id, DATASET, tiny_settings / DATASET, items=30)
    assert main(["dataset", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)[0]

    code, out, _ = show(DATASET, capsys, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["owner"] == listed["owner"] == "ann"
    assert shown["owner_id"] == ann.id
    for key in ("shortcuts", "shortcuts_judged"):
        assert shown[key] == listed[key]
    assert shown["shortcut_summary"]

    code, out, _ = show(DATASET, capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"dataset '{DATASET}', ann"
    assert f"  folder: {tiny_settings / DATASET}" in lines
    assert "  generators: griffinlim, world" in lines
    assert any(line.startswith("    --split-by utterance") for line in lines)
    words = "too few clips" if listed["shortcuts_judged"] is False else listed["shortcuts"]
    assert f"  shortcuts: {words}" in lines
    # The operator audits a user's dataset as they list and show it (the CLI's own account
    # does not see ann's: it answered "no dataset named").
    assert main(["dataset", "audit", DATASET, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"] == shown["shortcut_summary"]


def test_show_of_an_unknown_dataset_says_so_in_one_line(
    tiny_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = show("nosuch", capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "There is no dataset named 'nosuch';" in err and DATASET in err
    assert "that you may use" not in err  # the operator may use every one
    assert "Traceback" not in err


def test_a_dataset_an_older_renderer_made_says_so_and_renders_again_as_it_is(
    tiny_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Images made before each clip lost its DC offset (no ``render_version`` in dataset.json):
    the list, the service and ``train`` say so and how to render them again; ``dataset render``
    then needs no feature option."""
    services.ensure_database()  # who owns a dataset is in the store
    info_path = tiny_settings / DATASET / "dataset.json"
    info = json.loads(info_path.read_text())
    assert not find_dataset(DATASET, actor=None).older_renderer  # as the fixture made it
    info_path.write_text(json.dumps({k: v for k, v in info.items() if k != "render_version"}))
    again = f"fakevoice dataset render {DATASET} {DATASET}-r{RENDER_VERSION}"
    assert main(["dataset", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["older_renderer"] is True and listed["render_version"] == 1
    assert main(["dataset", "list"]) == 0
    out = capsys.readouterr().out
    assert "images were made by an older renderer" in out and again in out
    code, out, _ = show(DATASET, capsys)
    assert code == 0 and "  renderer: The images of 'tiny' were made by an older" in out
    note = services.render_warning(DATASET, "specnet", actor=None)
    assert note is not None and "older renderer" in note and again in note
    assert services.render_warning(DATASET, "aasist-l", actor=None) is None  # reads the clips
    assert services.render_warning("gone", "specnet", actor=None) is None
    train = ["train", "--dataset", DATASET, "--arch", "specnet", "--epochs", "1"]
    assert main([*train, "--name", "old images"]) == 0
    assert "warning: The images of 'tiny' were made by an older renderer" in (
        capsys.readouterr().err
    )
    info_path.write_text(json.dumps({**info, "render_version": "soon"}))  # unreadable: older
    assert find_dataset(DATASET, actor=None).render_version == 1
    # Clips through the shared channel (its 80 Hz high-pass) had no offset to leave in: their
    # old images are what this renderer makes, and nothing asks to render them again.
    info_path.write_text(json.dumps({**info, "render_version": "soon", "equalised": True}))
    equalised = find_dataset(DATASET, actor=None)
    assert equalised.render_version == 1 and not equalised.older_renderer
    assert services.render_warning(DATASET, "specnet", actor=None) is None
    info_path.write_text(json.dumps({**info, "render_version": "soon"}))

    assert (
        main(["dataset", "render", DATASET, f"{DATASET}-r{RENDER_VERSION}", "--workers", "1"]) == 0
    )
    capsys.readouterr()
    rendered = find_dataset(f"{DATASET}-r{RENDER_VERSION}", actor=None)
    assert rendered.render_version == RENDER_VERSION and not rendered.older_renderer
    assert rendered.feature_spec == info["feature_spec"]  # the same features
    assert services.render_warning(rendered.name, "specnet", actor=None) is None
    assert main(["dataset", "render", rendered.name, "again"]) == 2  # current: say what changes
    assert "Say which features to render" in capsys.readouterr().err
