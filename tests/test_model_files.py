"""A stored model's files for those who may use it (``services.model_files``), and the
``fakevoice models`` commands that list, show, export, import, share, rename and delete models.

The model is a real specnet trained for one epoch on the session's tiny dataset (its run folder
holds the fastai export and the safe bundle); the store is a real SQLite file; the CLI runs its
real entry point in this process.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
from conftest import speechlike
from test_cli_workflow import run_in_process
from test_uploads import make_user, register_run_model

from fakevoice import services, store
from fakevoice.cautions import model_cautions
from fakevoice.errors import ModelFileError, NotFoundError, PermissionDeniedError
from fakevoice.services import model_files, profile
from fakevoice.services.uploads import import_uploaded_model
from fakevoice.store.records import Actor


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    sf.write(path, speechlike(2.5, seed=11), 16000)
    return path


def own_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the trained run's folder that a test may change."""
    return Path(shutil.copytree(run_dir, tmp_path / "run-copy"))


def p_human(actor: Actor, model_id: int, clip: Path) -> float:
    return services.score_clip(actor, model_id, clip, file_name="clip.wav").verdict.p_human


# --- the service -----------------------------------------------------------------------------


def test_the_bundle_is_taken_back_and_scores_alike(alice: Actor, run_dir: Path, clip: Path) -> None:
    bob = make_user("bob")
    original = register_run_model(alice, run_dir, name="tiny specnet")
    found = model_files.model_bundle(alice, original.id)
    assert found.file_name == "tiny_specnet-bundle.zip"
    assert found.media_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(found.data)) as archive:
        assert sorted(archive.namelist()) == ["manifest.json", "model.safetensors"]
        manifest = json.loads(archive.read("manifest.json"))
        assert archive.read("model.safetensors") == (run_dir / "model.safetensors").read_bytes()
    assert manifest["arch"] == "specnet" and manifest["class_names"] == original.class_names

    # Private: bob may not have it (nor learn it exists); once shared, he may.
    with pytest.raises(NotFoundError):
        model_files.model_bundle(bob, original.id)
    profile.set_model_public(alice, original.id, True)
    copy = import_uploaded_model(bob, "from alice", found.file_name, found.data)
    assert copy.owner_id == bob.user_id and copy.id != original.id
    assert copy.feature_spec == original.feature_spec
    assert p_human(bob, copy.id, clip) == pytest.approx(p_human(alice, original.id, clip), abs=1e-6)


def test_the_fastai_export_is_handed_out_and_known_again(alice: Actor, run_dir: Path) -> None:
    trained = register_run_model(alice, run_dir)
    export = model_files.model_export(alice, trained.id)
    assert export.data == (run_dir / "model.pkl").read_bytes()
    assert export.file_name == "tiny_specnet.pkl"
    # Uploaded again, it is the same model (found by checksum, never unpickled).
    again = import_uploaded_model(alice, "anything", export.file_name, export.data)
    assert again.id == trained.id

    # A model stored from a bundle has no fastai export: a 404 in words.
    bundle = model_files.model_bundle(alice, trained.id)
    uploaded = import_uploaded_model(alice, "uploaded", "b.zip", bundle.data)
    assert not model_files.has_fastai_export(uploaded)
    with pytest.raises(NotFoundError, match="has no fastai export: only models trained here"):
        model_files.model_export(alice, uploaded.id)


def test_a_file_changed_or_lost_on_disk_is_not_handed_out(
    alice: Actor, run_dir: Path, tmp_path: Path
) -> None:
    folder = own_copy(run_dir, tmp_path)
    model = register_run_model(alice, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["class_names"] = list(reversed(manifest["class_names"]))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="manifest.json of model 'tiny specnet' changed"):
        model_files.model_bundle(alice, model.id)
    (folder / "model.pkl").unlink()
    with pytest.raises(ModelFileError, match="model.pkl of model 'tiny specnet' is missing"):
        model_files.model_export(alice, model.id)


def test_the_model_card_says_what_the_model_is_and_where_it_is_weak(
    alice: Actor, run_dir: Path
) -> None:
    bob = make_user("bob")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # One generator it misses, one it catches (the tiny run's own figures are whatever they are).
    metrics["generator_eer"] = {"griffinlim": 0.45, "world": 0.05}
    # In the alphabetical order a bundle's signed figures come back in (snr_10db < snr_inf).
    metrics["noise_eer"] = {"snr_0db": 0.4, "snr_10db": 0.3, "snr_inf": 0.1}
    name = "tiny [specnet](https://x.example/a)"
    model = register_run_model(alice, run_dir, name=name, metrics=metrics)
    card = model_files.model_card(alice, model.id)
    assert card.file_name == "tiny_specnet_https_x.example_a-card.md"
    assert card.media_type.startswith("text/markdown")
    text = card.data.decode()
    # The name as typed, in a code span: never a link.
    assert text.startswith(f"# Model card: `{name}`\n")
    assert text.count("](https://x.example/a)") == 1 and f"`{name}`" in text
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert f"- Dataset `{manifest['train_spec']['dataset']}`" in text
    assert (
        f"{metrics['train_items']} items to train on, {metrics['valid_items']} to validate on"
        in (text)
    )
    assert f"Fingerprints of its {len(manifest['training_audio']):,} training clips" in text
    assert f"- EER {100 * metrics['eer']:.1f} %, AUC {metrics['auc']:.3f}" in text
    assert "| `griffinlim` | 45.0 % |" in text and "| `world` | 5.0 % |" in text
    assert "it often misses `griffinlim` (45.0 % EER)." in text and "misses `world`" not in text
    noise_rows = [line.split(" | ")[0] for line in text.splitlines() if " dB SNR`" in line]
    assert text.index("| `clean` | 10.0 % |") < text.index("| `10 dB SNR` | 30.0 % |")
    assert noise_rows == ["| `10 dB SNR`", "| `0 dB SNR`"]  # clean first, then falling SNR
    assert "It sees spectrogram magnitudes only" in text  # a mel model
    # The recipe is the run's own, ready for `fakevoice train --spec`.
    recipe = json.loads(text.split("```json\n")[1].split("\n```")[0])
    assert recipe == manifest["train_spec"]
    # However its generators went, a model near chance is named so before anything else.
    # In the words and by the bars of the verdict's caution (model_cautions), to the letter.
    for eer, words in (
        (0.45, "- Its validation EER is 45.0 %: even on audio like its training data it tells"),
        (0.396, "- Its validation EER is 39.6 %: on audio like its training data it misjudges"),
        (0.19, None),
    ):
        metrics["eer"] = eer
        rated = register_run_model(alice, run_dir, name=f"eer {eer}", metrics=metrics)
        limits = model_files.model_card(alice, rated.id).data.decode().split("## Weak spots")[1]
        first = limits.split("\n")[2]
        assert first.startswith(words) if words else first.startswith("- On its own validation")
        judged = [first.split(": ", 1)[1]] if words else []
        assert judged == [caution.split(": ", 1)[1] for caution in model_cautions({"eer": eer})]
    # Private: bob may not read it; once public, he may, and learns whose it is.
    with pytest.raises(NotFoundError):
        model_files.model_card(bob, model.id)
    profile.set_model_public(alice, model.id, True)
    shared = model_files.model_card(bob, model.id).data.decode()
    assert "by `alice`, public" in shared


def test_a_card_names_the_learning_rate_the_finder_chose(
    alice: Actor, run_dir: Path, tmp_path: Path
) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["learning_rate"] == 1e-3  # the run's own rate, kept with its figures
    fixed = model_files.model_card(alice, register_run_model(alice, run_dir).id).data.decode()
    assert "finder" not in fixed  # the recipe names the rate itself
    # A run that left the rate to fastai's finder: its recipe says null, the card the answer.
    folder = own_copy(run_dir, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["train_spec"]["learning_rate"] = None
    (folder / "manifest.json").write_text(json.dumps(manifest))
    metrics["learning_rate"] = 0.0031622
    found = register_run_model(alice, folder, name="found", metrics=metrics)
    text = model_files.model_card(alice, found.id).data.decode()
    assert "left to fastai's finder, which chose 0.00316 at the start of the run" in text


def test_a_card_of_a_model_not_trained_here_says_so(alice: Actor, run_dir: Path) -> None:
    bundle = model_files.model_bundle(alice, register_run_model(alice, run_dir).id)
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    for key in ("train_spec", "training_audio", "calibration", "familiarity"):
        manifest.pop(key, None)
    from test_uploads import bundle_zip

    uploaded = import_uploaded_model(
        alice, "theirs", "t.zip", bundle_zip(run_dir, manifest=manifest)
    )
    text = model_files.model_card(alice, uploaded.id).data.decode()
    assert "Not trained here: the workbench knows nothing of its training data" in text
    assert "- Source: `uploaded bundle (t.zip)`" in text
    assert "No validation figures were kept with this model." in text
    assert "## Recipe" not in text


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet18 clean v2", "resnet18_clean_v2-bundle.zip"),
        ("..\\..\\evil", "evil-bundle.zip"),
        ("réseau: été/2026", "r_seau_t_2026-bundle.zip"),
        ("...", "model-{id}-bundle.zip"),
    ],
)
def test_download_names_come_from_the_model_name_made_plain(
    alice: Actor, run_dir: Path, name: str, expected: str
) -> None:
    model = register_run_model(alice, run_dir, name=name)
    file_name = model_files.bundle_file_name(model)
    assert file_name == expected.format(id=model.id)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", file_name)


# --- fakevoice models ------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``fakevoice ARGS`` in this process: exit code, stdout, stderr."""
    done = run_in_process(capsys, *args)
    return done.returncode, done.stdout, done.stderr


def test_models_commands_export_import_share_rename_and_delete(
    isolated_settings: Path,
    run_dir: Path,
    clip: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    me = services.cli_actor()
    trained = register_run_model(me, run_dir, name="tiny specnet")

    code, out, _ = cli(capsys, "models")  # the list, as before
    assert code == 0 and re.search(
        rf"^\s+{trained.id}  tiny specnet\s+specnet\s+private", out, re.M
    )
    code, out, _ = cli(capsys, "models", "show", "tiny specnet")
    assert code == 0 and out.startswith(f"model {trained.id} 'tiny specnet' (specnet), private")
    assert "files: safe bundle, fastai export" in out
    code, out, _ = cli(capsys, "models", "show", str(trained.id), "--json")
    shown = json.loads(out)
    assert shown["mine"] is True and set(shown["files"]) >= {"model.pkl", "manifest.json"}

    # Export: the bundle to a folder, the fastai export to a file; nothing is overwritten.
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, _ = cli(capsys, "models", "export", "tiny specnet", "-o", str(out_dir))
    bundle = out_dir / "tiny_specnet-bundle.zip"
    assert code == 0 and out.strip().endswith(f"safe bundle written to {bundle}")
    code, _, err = cli(capsys, "models", "export", "tiny specnet", "-o", str(out_dir))
    assert code == 2 and err == f"fakevoice: {bundle} exists already; --force replaces it.\n"
    pkl = tmp_path / "mine.pkl"
    code, out, _ = cli(capsys, "models", "export", "tiny specnet", "--fastai", "-o", str(pkl))
    assert code == 0 and pkl.read_bytes() == (run_dir / "model.pkl").read_bytes()
    code, out, _ = cli(capsys, "models", "export", "tiny specnet", "--card", "-o", str(out_dir))
    card = out_dir / "tiny_specnet-card.md"
    assert code == 0 and out.strip().endswith(f"model card written to {card}")
    assert card.read_text().startswith("# Model card: `tiny specnet`")
    with pytest.raises(SystemExit):  # one file at a time
        cli(capsys, "models", "export", "tiny specnet", "--card", "--fastai")

    # Import: the bundle becomes a new model that scores alike; the fastai export is known.
    code, out, _ = cli(capsys, "models", "import", str(bundle), "--name", "copy", "--json")
    imported = json.loads(out)
    assert code == 0 and imported["name"] == "copy" and imported["stored"] is True
    assert p_human(me, imported["id"], clip) == pytest.approx(
        p_human(me, trained.id, clip), abs=1e-6
    )
    code, out, _ = cli(capsys, "models", "import", str(pkl), "--name", "again")
    assert code == 0
    assert out.strip() == (
        f"{pkl} is the fastai export of model {trained.id} 'tiny specnet': nothing stored"
    )
    code, _, err = cli(capsys, "models", "import", str(tmp_path), "--name", "dir")
    assert code == 2 and "is a folder; give the model file" in err

    # Share, rename, delete (only with --yes).
    code, out, _ = cli(capsys, "models", "share", "copy")
    assert code == 0 and out.strip() == (
        f"model {imported['id']} 'copy' is public: everyone may use it"
    )
    code, out, _ = cli(capsys, "models", "rename", "copy", "copy v2")
    assert code == 0 and out.strip() == f"model {imported['id']} 'copy' is now called 'copy v2'"
    code, _, err = cli(capsys, "models", "rename", "copy v2", "tiny specnet")
    assert code == 2 and "already a model named 'tiny specnet'" in err
    code, _, err = cli(capsys, "models", "delete", "copy v2")
    assert code == 2 and "cannot be undone: add --yes" in err
    folder = Path(services.get_model(me, imported["id"]).path)
    code, out, _ = cli(capsys, "models", "delete", "copy v2", "--yes")
    assert code == 0 and not folder.exists()
    code, _, err = cli(capsys, "models", "show", "copy v2")
    assert code == 2 and "There is no model called 'copy v2'" in err


def test_models_export_to_a_new_folder_named_with_a_slash(
    isolated_settings: Path,
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``-o exports/`` names a folder (made): the bundle goes into it, not into a file called
    ``exports``."""
    register_run_model(services.cli_actor(), run_dir, name="tiny specnet")
    folder = tmp_path / "exports"
    code, out, _ = cli(capsys, "models", "export", "tiny specnet", "-o", f"{folder}/")
    bundle = folder / "tiny_specnet-bundle.zip"
    assert code == 0 and out.strip().endswith(f"safe bundle written to {bundle}")
    assert folder.is_dir() and zipfile.is_zipfile(bundle)


def test_models_commands_leave_other_peoples_models_alone(
    isolated_settings: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = make_user("alice")
    private = register_run_model(alice, run_dir, name="alice private")
    shared = register_run_model(alice, run_dir, name="alice shared", public=True)
    services.cli_actor()

    code, out, _ = cli(capsys, "models", "list", "--json")
    assert [(m["name"], m["mine"]) for m in json.loads(out)] == [("alice shared", False)]
    code, _, err = cli(capsys, "models", "export", str(private.id))
    assert code == 2 and f"no model called '{private.id}'" in err
    code, _, err = cli(capsys, "models", "unshare", "alice shared")
    assert code == 2 and "only its owner may change it" in err
    with store.session_scope(readonly=True) as session:
        assert store.get_model(session, alice, shared.id).is_public
    with pytest.raises(PermissionDeniedError):
        profile.delete_model(services.cli_actor(), shared.id)


def test_models_import_refuses_a_file_over_the_model_limit_unread(
    isolated_settings: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fakevoice.settings import get_settings

    monkeypatch.setenv("FAKEVOICE_MAX_MODEL_UPLOAD_BYTES", str(1024 * 1024))
    get_settings.cache_clear()
    big = tmp_path / "big.zip"
    big.write_bytes(b"\0" * (2 * 1024 * 1024))
    code, _, err = cli(capsys, "models", "import", str(big), "--name", "big")
    assert code == 2
    assert err == (
        f"fakevoice: {big} is 2.0 MiB; models are taken up to 1.0 MiB "
        "(FAKEVOICE_MAX_MODEL_UPLOAD_BYTES).\n"
    )
    assert services.list_models(services.cli_actor()) == []
