"""Model uploads: safe bundles, official AASIST checkpoints, and fastai exports known by checksum.

The model is a real specnet trained for one epoch on the session's tiny dataset (its run folder
holds the fastai ``model.pkl`` and the safe bundle); uploads go into a real SQLite store.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SHARED, speechlike, zip_of
from test_training import quick_spec, tiny_dataset_root

from fakevoice import services, store
from fakevoice.artefacts import sha256_file
from fakevoice.bundle_figures import (
    CLEARED_VALUES,
    DROPPED_PARTS,
    MANIFEST_PARTS,
    dropped_parts_text,
)
from fakevoice.errors import ConflictError, FileTooLargeError, ModelFileError
from fakevoice.services import uploads
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, ModelRecord
from fakevoice.training import train
from fakevoice.training_callbacks import MemorySink

WINDOW = 16000  # samples: the trained model's window (1 s)
AASIST_L = SHARED / "aasist" / "AASIST-L.pth"
RUN_FILES = ("model.pkl", "model.safetensors", "manifest.json")


# --- shared helpers (the page tests use them too) ------------------------------------------------


def trained_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny multiclass specnet run folder (trained on first use, then shared)."""
    folder = tmp_path_factory.getbasetemp() / "fixture-runs" / "specnet"
    if not (folder / "manifest.json").is_file():
        spec = quick_spec(task="multiclass", clip_samples=WINDOW)
        result = train(spec, folder, MemorySink(), tiny_dataset_root(tmp_path_factory))
        assert result.status == "succeeded"
    return folder


def make_user(name: str) -> Actor:
    store.init_db()
    with store.session_scope() as session:
        return store.create_user(session, name).actor


def register_run_model(
    actor: Actor,
    run_dir: Path,
    name: str = "tiny specnet",
    public: bool = False,
    metrics: dict[str, Any] | None = None,
) -> ModelRecord:
    """Register a run folder as a stored model, as the worker does when a run succeeds (with
    ``metrics`` as its validation figures, none by default)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    with store.session_scope() as session:
        return store.add_model(
            session,
            actor,
            name=name,
            arch=manifest["arch"],
            class_names=manifest["class_names"],
            sample_rate=manifest["sample_rate"],
            clip_samples=manifest["clip_samples"],
            path=str(run_dir),
            files={n: sha256_file(run_dir / n) for n in RUN_FILES},
            feature_spec=manifest["feature_spec"],
            metrics=metrics,
            is_public=public,
        )


def bundle_zip(run_dir: Path, folder: str = "", manifest: dict | None = None) -> bytes:
    """A zip of the run's safe bundle (``folder`` prefixes the names; ``manifest`` replaces it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(run_dir / "model.safetensors", f"{folder}model.safetensors")
        if manifest is None:
            archive.write(run_dir / "manifest.json", f"{folder}manifest.json")
        else:
            archive.writestr(f"{folder}manifest.json", json.dumps(manifest))
    return buffer.getvalue()


def wav_bytes(seconds: float, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speechlike(seconds, seed=seed), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class FileCreatingPayload:
    """Unpickling this creates a file: proof that an upload was (or was not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def bob(alice: Actor) -> Actor:
    return make_user("bob")


def stored_folders() -> list[Path]:
    root = get_settings().data_dir / "models"
    return sorted(root.iterdir()) if root.is_dir() else []


# --- safe bundles --------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["", "my-model/"])
def test_bundle_zip_is_stored_and_scores_like_the_original(
    alice: Actor, run_dir: Path, folder: str
) -> None:
    original = register_run_model(alice, run_dir)
    imported = uploads.import_uploaded_model(
        alice, "uploaded", "bundle.zip", bundle_zip(run_dir, folder)
    )
    assert imported.owner_id == alice.user_id and imported.name == "uploaded"
    assert imported.arch == "specnet" and imported.class_names == original.class_names
    assert imported.clip_samples == WINDOW and imported.feature_spec == original.feature_spec
    (stored,) = stored_folders()
    assert Path(imported.path) == stored
    assert imported.files == {n: sha256_file(stored / n) for n in imported.files}
    assert set(imported.files) == {"model.safetensors", "manifest.json"}
    clip = wav_bytes(2.5, seed=3)
    mine = services.score_clip(alice, imported.id, clip, file_name="a.wav").verdict
    theirs = services.score_clip(alice, original.id, clip, file_name="a.wav").verdict
    for name, probability in theirs.probabilities.items():
        assert mine.probabilities[name] == pytest.approx(probability, abs=1e-5)
    assert len(mine.windows) == len(theirs.windows) > 1


def test_a_taken_name_is_refused_and_leaves_no_folder(alice: Actor, run_dir: Path) -> None:
    data = bundle_zip(run_dir)
    uploads.import_uploaded_model(alice, "same", "a.zip", data)
    with pytest.raises(ConflictError, match="already a model named 'same'"):
        uploads.import_uploaded_model(alice, "same", "b.zip", data)
    assert len(stored_folders()) == 1


def _manifest(run_dir: Path, **changes: object) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.update(changes)
    return manifest


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch": "resnet19"}, "arch must be one of specnet, resnet18"),
        ({"format": "something/9"}, "format must be"),
        ({"class_names": ["world", "griffinlim", "lpc"]}, "must include 'bonafide'"),
        ({"class_names": ["bonafide"]}, "class_names must be 2 to"),
        ({"input_kind": "waveform"}, "input_kind must be 'image' for specnet"),
        ({"clip_samples": 10**9}, "clip_samples must be between"),
        ({"feature_spec": {"kind": "wavelets"}}, "feature_spec is not valid"),
        ({"class_names": ["bonafide", "world"]}, "do not fit a specnet model with 2 classes"),
        ({"arch_config": {"input_pool": 3}}, "arch_config is invalid"),
        ({"arch_config": "pool"}, "arch_config is not an object"),
    ],
)
def test_bad_manifests_are_refused_with_the_reason(
    alice: Actor, run_dir: Path, changes: dict, message: str
) -> None:
    data = bundle_zip(run_dir, manifest=_manifest(run_dir, **changes))
    with pytest.raises(ModelFileError, match=message):
        uploads.import_uploaded_model(alice, "bad", "bad.zip", data)
    assert stored_folders() == []
    assert services.list_models(alice) == []


def _references(run_dir: Path) -> dict[str, Any]:
    """A calibration and a familiarity reference of the right shapes for the run's model (as a
    run on more data than the tiny set would have kept)."""
    from fakevoice.metrics.calibration import Calibration
    from fakevoice.metrics.familiarity import fit_familiarity
    from fakevoice.models.registry import build_inference_model

    manifest = json.loads((run_dir / "manifest.json").read_text())
    classes = len(manifest["class_names"])
    width = logit_layer_width(build_inference_model(manifest))
    rng = np.random.default_rng(0)
    targets = np.arange(120) % classes
    features = rng.normal(size=(120, width)) + targets[:, None]
    familiarity = fit_familiarity(features, targets, np.arange(120) // 3)
    assert familiarity is not None
    bias = tuple(0.0 if c == 0 else 0.5 for c in range(classes))
    calibration = Calibration(1.7, bias, 120, ece_before=0.2, ece_after=0.05, nll_after=0.4)
    return {"calibration": calibration.to_dict(), "familiarity": familiarity.to_dict()}


def logit_layer_width(model: torch.nn.Module) -> int:
    from fakevoice.metrics.familiarity import logit_layer

    layer = logit_layer(model)
    assert layer is not None
    return layer.in_features


def test_a_bundle_keeps_its_calibration_and_familiarity_reference(
    alice: Actor, run_dir: Path
) -> None:
    references = _references(run_dir)
    manifest = _manifest(run_dir, **references)
    manifest["calibration"]["dataset"] = "asvspoof-la"
    manifest["training_audio"] = ["fedcba9876543210", "0123456789abcdef"]
    uploaded = uploads.import_uploaded_model(
        alice, "calibrated", "c.zip", bundle_zip(run_dir, manifest=manifest)
    )
    stored = json.loads((Path(uploaded.path) / "manifest.json").read_text())
    assert stored["training_audio"] == ["0123456789abcdef", "fedcba9876543210"]
    assert stored["calibration"]["temperature"] == 1.7
    assert stored["calibration"]["ece_after"] == 0.05 and stored["calibration"]["dataset"] == (
        "asvspoof-la"
    )
    assert stored["familiarity"] == references["familiarity"]
    assert uploaded.metrics["calibration"] == stored["calibration"]
    detector = services.detector_for(uploaded)
    assert detector.calibration is not None and detector.calibration.temperature == 1.7
    assert detector.familiarity is not None
    # It scores as the same weights do with the same manifest in a run folder.
    original_dir = Path(uploaded.path).parent.parent / "original-run"
    original_dir.mkdir()
    for name in RUN_FILES:
        (original_dir / name).write_bytes((run_dir / name).read_bytes())
    (original_dir / "manifest.json").write_text(json.dumps(manifest))
    original = register_run_model(alice, original_dir, name="original")
    clip = wav_bytes(2.5, seed=4)
    mine = services.score_clip(alice, uploaded.id, clip, file_name="a.wav").verdict
    theirs = services.score_clip(alice, original.id, clip, file_name="a.wav").verdict
    assert mine.typicality is not None and mine.typicality == pytest.approx(theirs.typicality)
    for name, probability in theirs.probabilities.items():
        assert mine.probabilities[name] == pytest.approx(probability, abs=1e-5)


@pytest.mark.parametrize(
    "damage",
    [
        {"calibration": {"temperature": 900.0}},
        {"calibration": {"temperature": 1.0, "bias": [0.0]}},
        {"calibration": "warm"},
        {"familiarity": {"means": [[1.0]]}},
        {"familiarity": "close"},
        {"familiarity": "wider"},
        {"calibration": {"ece_after": 7.0}},
        {"calibration": {"dataset": "calls <img src=https://x.example/p.png> [verify](https://x)"}},
        {"training_audio": ["0123456789abcdef", "../../etc/passwd"]},
        {"training_audio": "0123456789abcdef"},
        {"train_spec": {"dataset": "tiny", "arch": "resnet19"}},
        {"train_spec": "the usual"},
    ],
)
def test_unusable_references_are_left_out_and_the_model_still_stored(
    alice: Actor, run_dir: Path, damage: dict[str, Any]
) -> None:
    references = _references(run_dir)
    manifest = _manifest(run_dir, **references)
    for key, value in damage.items():
        if value == "wider":  # a reference of another network's width
            wide = np.asarray(references["familiarity"]["means"])
            manifest[key] = {
                **references["familiarity"],
                "means": np.hstack([wide, wide]).tolist(),
                "components": np.hstack([references["familiarity"]["components"]] * 2).tolist(),
            }
        elif (
            isinstance(value, dict)
            and key == "calibration"
            and set(value)
            <= {
                "ece_after",
                "dataset",
            }
        ):
            manifest[key] = {**references[key], **value}
        else:
            manifest[key] = value
    uploaded = uploads.import_uploaded_model(
        alice, "kept", "k.zip", bundle_zip(run_dir, manifest=manifest)
    )
    stored = json.loads((Path(uploaded.path) / "manifest.json").read_text())
    (key,) = damage
    if damage == {"calibration": {"ece_after": 7.0}}:
        # The numbers that work are kept; an impossible figure is not.
        assert stored["calibration"]["temperature"] == 1.7
        assert stored["calibration"]["ece_after"] is None
    elif "dataset" in damage.get("calibration", {}):
        # Markup another user's report would print is left out; the calibration stays.
        assert stored["calibration"]["temperature"] == 1.7
        assert "dataset" not in stored["calibration"]
    else:
        assert key not in stored
    # Whoever uploads it is told which part was left out, or which of its values were cleared,
    # and why, in a sentence of its own.
    warning = uploads.upload_warning(uploaded)
    if key in stored:
        assert DROPPED_PARTS not in uploaded.metrics
        (field,) = damage["calibration"]
        why = {
            "dataset": "its dataset name (not a plain name of letters, digits, spaces, dots, "
            "dashes and underscores)",
            "ece_after": "its fit figure ece_after (out of range: an ECE outside 0 to 1, a "
            "negative NLL)",
        }[field]
        assert warning == (
            "Changed from its bundle: its calibration (calibration in manifest.json) is kept, "
            f"but not {why}; it was cleared."
        )
        assert uploaded.metrics[CLEARED_VALUES] == {"calibration": [field]}
        assert warning == dropped_parts_text(uploaded.metrics)[0]
        assert "x.example" not in warning and "7.0" not in warning  # never the bundle's words
    else:
        assert warning is not None and warning.startswith(
            f"Not kept from its bundle: {MANIFEST_PARTS[key][0]} ({key} in manifest.json), "
            f"because {uploaded.metrics[DROPPED_PARTS][key]}; so {MANIFEST_PARTS[key][1]}."
        )
        assert list(uploaded.metrics[DROPPED_PARTS]) == [key]
        assert warning == dropped_parts_text(uploaded.metrics)[0]
        assert CLEARED_VALUES not in uploaded.metrics
    services.score_clip(alice, uploaded.id, wav_bytes(1.5), file_name="a.wav")


def test_every_part_left_out_of_a_bundle_is_named_in_the_warning(
    alice: Actor, run_dir: Path
) -> None:
    manifest = _manifest(
        run_dir,
        calibration={"temperature": 900.0, "bias": [0.0, 0.0, 0.0]},
        familiarity="close",
        training_audio=["0123456789abcdef", "../../etc/passwd"],
        train_spec={"dataset": "tiny", "arch": "resnet19"},
    )
    uploaded = uploads.import_uploaded_model(
        alice, "bare", "b.zip", bundle_zip(run_dir, manifest=manifest)
    )
    assert uploads.upload_warning(uploaded) == (
        "Not kept from its bundle: its calibration (calibration in manifest.json), because its "
        "temperature or biases are missing or out of bounds, or it has not one bias per class; "
        "so its probabilities are the network's own, uncalibrated. "
        "Not kept from its bundle: its familiarity reference (familiarity in manifest.json), "
        "because its numbers are missing, malformed or out of bounds; so its verdicts carry no "
        "typicality, and no caution for a clip unlike its training audio. "
        "Not kept from its bundle: the fingerprints of its training clips (training_audio in "
        "manifest.json), because they are not a list of at most 50,000 fingerprints of 16 hex "
        "digits; so a test on a dataset cannot count the items whose audio it was trained on. "
        "Not kept from its bundle: its training recipe (train_spec in manifest.json), because "
        "it is not a training recipe this server can read; so its card cannot say what it was "
        "trained on, and a test on that dataset cannot set its training split apart."
    )
    stored = json.loads((Path(uploaded.path) / "manifest.json").read_text())
    assert not {"calibration", "familiarity", "training_audio", "train_spec"} & set(stored)
    # The run's own bundle, every part sound, warns of nothing.
    whole = uploads.import_uploaded_model(alice, "whole", "w.zip", bundle_zip(run_dir))
    assert uploads.upload_warning(whole) is None and DROPPED_PARTS not in whole.metrics


def test_every_value_cleared_from_a_kept_calibration_is_named_in_the_warning(
    alice: Actor, run_dir: Path
) -> None:
    """A calibration's dataset label with markup and an impossible fit figure were cleared
    while the calibration was kept, and nobody was told: the warning says which, in fixed words,
    and the model's card keeps it."""
    from fakevoice.services import model_files

    calibration = {
        **_references(run_dir)["calibration"],
        "dataset": "calls [verify](https://x.example)",
        "split": "train",
        "items": -4,
        "nll_before": -1.0,
        "ece_after": 7.0,
        "ece_held_out": None,  # not measured: nothing was cleared
    }
    manifest = _manifest(run_dir, calibration=calibration)
    uploaded = uploads.import_uploaded_model(
        alice, "changed", "c.zip", bundle_zip(run_dir, manifest=manifest)
    )
    warning = (
        "Changed from its bundle: its calibration (calibration in manifest.json) is kept, but "
        "not its dataset name (not a plain name of letters, digits, spaces, dots, dashes and "
        "underscores), its split (neither valid nor all), its item count (not a positive whole "
        "number) or its fit figures nll_before and ece_after (out of range: an ECE outside 0 to "
        "1, a negative NLL); they were cleared."
    )
    assert uploads.upload_warning(uploaded) == warning
    stored = json.loads((Path(uploaded.path) / "manifest.json").read_text())["calibration"]
    assert stored["temperature"] == 1.7 and stored["ece_after"] is None
    card = model_files.model_card(alice, uploaded.id).data.decode()
    assert f"- {warning}" in card
    # The run's own calibration, every value sound, is kept as it came, without a word.
    whole = uploads.import_uploaded_model(alice, "whole", "w.zip", bundle_zip(run_dir))
    assert uploads.upload_warning(whole) is None and CLEARED_VALUES not in whole.metrics


def test_wrong_zip_content_is_refused(alice: Actor, run_dir: Path) -> None:
    weights = (run_dir / "model.safetensors").read_bytes()
    manifest = (run_dir / "manifest.json").read_bytes()
    cases = {
        "no manifest.json": zip_of({"README.txt": b"hello"}),
        "no model.safetensors": zip_of({"manifest.json": manifest}),
        # Names that climb out of the archive or sit too deep are not bundle files.
        "no manifest.json ": zip_of({"../manifest.json": manifest, "model.safetensors": weights}),
        "no model.safetensors ": zip_of(
            {"a/b/model.safetensors": weights, "manifest.json": manifest}
        ),
        "not valid JSON": zip_of({"manifest.json": b"{nope", "model.safetensors": weights}),
        "not a valid safetensors": zip_of(
            {"manifest.json": manifest, "model.safetensors": b"x" * 64}
        ),
        "damaged": b"PK\x03\x04" + b"\x00" * 100,
    }
    for message, data in cases.items():
        with pytest.raises(ModelFileError, match=message.strip()):
            uploads.import_uploaded_model(alice, "bad", "bad.zip", data)
    assert stored_folders() == []


def test_a_bare_safetensors_file_or_junk_is_refused(alice: Actor, run_dir: Path) -> None:
    weights = (run_dir / "model.safetensors").read_bytes()
    with pytest.raises(ModelFileError, match="together with its manifest.json"):
        uploads.import_uploaded_model(alice, "w", "model.safetensors", weights)
    with pytest.raises(ModelFileError, match="not a model file"):
        uploads.import_uploaded_model(alice, "w", "model.zip", b"just some text")
    with pytest.raises(ModelFileError, match="empty"):
        uploads.import_uploaded_model(alice, "w", "model.zip", b"")


def test_too_large_uploads_are_refused(
    alice: Actor, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bundle_zip(run_dir)
    monkeypatch.setenv("FAKEVOICE_MAX_MODEL_UPLOAD_BYTES", str(len(data) - 1))
    get_settings.cache_clear()
    with pytest.raises(FileTooLargeError, match="uploads are limited to"):
        uploads.import_uploaded_model(alice, "big", "big.zip", data)
    # A manifest that unpacks far beyond its size in the zip (a small zip bomb).
    bomb = zip_of({"manifest.json": b" " * (3 << 20) + b"{}", "model.safetensors": b"x"})
    with pytest.raises(FileTooLargeError, match="manifest.json in the zip unpacks to"):
        uploads.import_uploaded_model(alice, "bomb", "bomb.zip", bomb)
    assert stored_folders() == []


# --- pickles: never unpickled --------------------------------------------------------------------


def test_an_arbitrary_pickle_is_refused_without_unpickling(alice: Actor, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(FileCreatingPayload(marker))
    pickle.loads(payload)  # noqa: S301 -- proves the payload works when unpickled ...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ModelFileError, match="never unpickles files it did not write"):
        uploads.import_uploaded_model(alice, "evil", "model.pkl", payload)
    # ... and the same payload inside torch's zip format goes to the tensors-only reader.
    buffer = io.BytesIO()
    torch.save({"weights": FileCreatingPayload(marker)}, buffer)
    with pytest.raises(ModelFileError, match="can be loaded safely"):
        uploads.import_uploaded_model(alice, "evil", "AASIST.pth", buffer.getvalue())
    assert not marker.exists()
    assert services.list_models(alice) == [] and stored_folders() == []


def test_the_pkl_of_a_stored_model_is_found_by_checksum(
    alice: Actor, bob: Actor, run_dir: Path
) -> None:
    model = register_run_model(alice, run_dir)
    exported = (run_dir / "model.pkl").read_bytes()
    assert model.files["model.pkl"] == hashlib.sha256(exported).hexdigest()
    found = uploads.import_uploaded_model(alice, "ignored", "renamed.pkl", exported)
    assert found.id == model.id
    assert [m.id for m in services.list_models(alice)] == [model.id]  # nothing new stored
    # Another user may not use alice's private model through its file ...
    with pytest.raises(ModelFileError, match="not exported by this server for a model you may"):
        uploads.import_uploaded_model(bob, "stolen", "model.pkl", exported)
    assert services.list_models(bob) == []
    # ... until she makes it public.
    with store.session_scope() as session:
        store.set_public(session, alice, model.id, True)
    assert uploads.import_uploaded_model(bob, "x", "model.pkl", exported).id == model.id


def test_a_private_model_with_the_same_export_does_not_hide_a_readable_one(
    alice: Actor, bob: Actor, run_dir: Path
) -> None:
    exported = (run_dir / "model.pkl").read_bytes()
    register_run_model(alice, run_dir, name="hers")  # private, and registered first
    shared = register_run_model(bob, run_dir, name="his", public=True)
    carol = make_user("carol")
    assert uploads.import_uploaded_model(carol, "x", "model.pkl", exported).id == shared.id
    # Its owner gets her own model back, not the public one.
    assert uploads.import_uploaded_model(alice, "x", "model.pkl", exported).name == "hers"


def test_an_unknown_fastai_export_is_refused(alice: Actor, run_dir: Path) -> None:
    """A real fastai model.pkl this server did not register is a pickle like any other."""
    with pytest.raises(ModelFileError, match="never unpickles"):
        uploads.import_uploaded_model(
            alice, "fa", "model.pkl", (run_dir / "model.pkl").read_bytes()
        )
    assert stored_folders() == []


# --- official AASIST ------------------------------------------------------------------------------


@pytest.mark.skipif(not AASIST_L.is_file(), reason="needs /work/shared/aasist/AASIST-L.pth")
def test_an_official_aasist_l_checkpoint_is_imported(alice: Actor) -> None:
    model = uploads.import_uploaded_model(alice, "aasist-l", "weights.bin", AASIST_L.read_bytes())
    assert model.arch == "aasist-l" and model.class_names == ["spoof", "bonafide"]
    assert model.clip_samples == 64600 and model.feature_spec is None
    verdict = services.score_clip(alice, model.id, wav_bytes(1.0), file_name="x.wav").verdict
    assert sum(verdict.probabilities.values()) == pytest.approx(1.0)
    assert np.isfinite(verdict.p_human)
