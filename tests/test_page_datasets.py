"""The Datasets page (AppTest, in-process) and the dataset services it calls.

The fixture dataset is written by hand in the manifest layout of docs/CONTRACTS.md: small PNGs
made with PIL and short speech-like wav clips, two noise levels, three speakers' worth of
utterances, bonafide plus copy-synthesis generators and one TTS class that copied only one
utterance.
"""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import REPO, speechlike
from PIL import Image
from streamlit.testing.v1 import AppTest

from fakevoice import accounts, services
from fakevoice.errors import NotFoundError, PermissionDeniedError
from fakevoice.features import RENDER_VERSION
from fakevoice.settings import get_settings

MANIFEST_COLUMNS = (
    "item",
    "utterance",
    "speaker",
    "class",
    "generator",
    "noise",
    "clip_path",
    "image_path",
    "duration",
    "language",
    "source",
)
NOISES = ("snr_10db", "snr_inf")  # deliberately not in display order
UTTERANCES = {"u1": "alice", "u2": "alice", "u3": "bob"}
COPY_GENERATORS = ("world", "griffinlim")
TTS_ONLY_U1 = "piper"  # a class that has u1 only, so u1 is the one with every class
CLIP_SECONDS = 0.5
SAMPLE_RATE = 16000


def _classes_of(utterance: str) -> list[str]:
    extra = [TTS_ONLY_U1] if utterance == "u1" else []
    return ["bonafide", *COPY_GENERATORS, *extra]


def write_fixture_dataset(root: Path, name: str = "tiny") -> pd.DataFrame:
    """Write a complete small dataset folder under ``root/name``; returns its manifest."""
    folder = root / name
    rows = []
    for index, (utterance, speaker) in enumerate(UTTERANCES.items()):
        for cls_index, cls in enumerate(_classes_of(utterance)):
            clip = f"clips/{speaker}/{cls}/{utterance}.wav"
            (folder / clip).parent.mkdir(parents=True, exist_ok=True)
            samples = speechlike(CLIP_SECONDS, SAMPLE_RATE, seed=10 * index + cls_index)
            sf.write(folder / clip, samples, SAMPLE_RATE, subtype="PCM_16")
            for noise in NOISES:
                item = f"{utterance}__{cls}__{noise}"
                image = f"{noise}/{speaker}/{cls}/{item}.png"
                (folder / image).parent.mkdir(parents=True, exist_ok=True)
                pixels = np.random.default_rng(len(rows)).integers(0, 255, (32, 32, 3))
                Image.fromarray(pixels.astype(np.uint8)).save(folder / image)
                rows.append(
                    {
                        "item": item,
                        "utterance": utterance,
                        "speaker": speaker,
                        "class": cls,
                        "generator": "" if cls == "bonafide" else cls,
                        "noise": noise,
                        "clip_path": clip,
                        "image_path": image,
                        "duration": CLIP_SECONDS,
                        "language": "en",
                        "source": "test",
                    }
                )
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    manifest.to_csv(folder / "manifest.csv", index=False)
    spec = {"kind": "mel", "sample_rate": SAMPLE_RATE, "n_mels": 128, "colormap": "magma"}
    info = {
        "name": name,
        "created": "2024-01-01T00:00:00+00:00",
        "seed": 0,
        "size": "small",
        "feature_spec": spec,
        "generators": [*COPY_GENERATORS, TTS_ONLY_U1],
        "noise_levels": list(NOISES),
        "sources": ["test"],
        "counts": {"items": len(manifest)},
        "version": 1,
        "render_version": RENDER_VERSION,
    }
    (folder / "dataset.json").write_text(json.dumps(info))
    (folder / "ATTRIBUTION").write_text("Test clips made by speechlike(); public domain.\n")
    return manifest


@pytest.fixture
def dataset_root(isolated_settings: Path) -> Path:
    services.ensure_database()  # who owns a dataset is in the store
    return isolated_settings / "datasets"


@pytest.fixture
def tiny(dataset_root: Path) -> pd.DataFrame:
    return write_fixture_dataset(dataset_root)


def datasets_page() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/datasets.py")
    return at


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


# --- services ----------------------------------------------------------------------------------


def test_services_see_no_dataset_in_an_empty_folder(isolated_settings: Path) -> None:
    assert services.list_datasets(actor=None) == []


@pytest.mark.parametrize("bad", ["../x", "tiny/..", "/etc", "", "tiny/../tiny", "nope"])
def test_bad_dataset_names_raise_not_found(tiny: pd.DataFrame, bad: str) -> None:
    with pytest.raises(NotFoundError, match="no dataset named"):
        services.dataset_overview(bad, actor=None)
    with pytest.raises(NotFoundError):
        services.sample_items(bad, 1, 0, actor=None)


def test_overview_counts_match_the_manifest(tiny: pd.DataFrame) -> None:
    overview = services.dataset_overview("tiny", actor=None)
    assert overview.items == len(tiny)
    assert overview.speakers == len(set(UTTERANCES.values()))
    assert overview.classes[0] == "bonafide"
    assert set(overview.classes) == set(tiny["class"])
    assert overview.noise_levels == ["snr_inf", "snr_10db"]  # clean first
    assert overview.clips == tiny["clip_path"].nunique()
    assert overview.audio_hours == pytest.approx(overview.clips * CLIP_SECONDS / 3600)
    for column, frame in (
        ("noise", overview.by_noise),
        ("speaker", overview.by_speaker),
        ("class", overview.by_class),
    ):
        assert frame["items"].to_dict() == dict(Counter(tiny[column]))
    assert overview.feature_spec["kind"] == "mel"
    assert overview.attribution is not None and "speechlike" in overview.attribution


def test_comparison_has_bonafide_then_every_generator(tiny: pd.DataFrame) -> None:
    comparison = services.compare_utterance("tiny", "u1", "snr_10db", actor=None)
    labels = [panel.label for panel in comparison.panels]
    assert labels == ["bonafide", *sorted([*COPY_GENERATORS, TTS_ONLY_U1])]
    assert comparison.speaker == "alice"
    for panel in comparison.panels:
        assert Image.open(io.BytesIO(panel.image_png)).size == (32, 32)
        samples, rate = sf.read(io.BytesIO(panel.audio_wav))
        assert rate == SAMPLE_RATE
        assert samples.shape[0] == pytest.approx(CLIP_SECONDS * SAMPLE_RATE, abs=1)


def test_noisy_audio_differs_from_clean(tiny: pd.DataFrame) -> None:
    clean = services.compare_utterance("tiny", "u2", "snr_inf", actor=None).panels[0].audio_wav
    noisy = services.compare_utterance("tiny", "u2", "snr_10db", actor=None).panels[0].audio_wav
    clean_samples, _ = sf.read(io.BytesIO(clean))
    noisy_samples, _ = sf.read(io.BytesIO(noisy))
    residual = noisy_samples - clean_samples
    snr = 10 * np.log10(np.mean(clean_samples**2) / np.mean(residual**2))
    assert snr == pytest.approx(10.0, abs=1.5)


def test_random_sample_prefers_utterances_with_every_class(tiny: pd.DataFrame) -> None:
    for seed in range(3):
        (comparison,) = services.sample_items("tiny", 1, seed, actor=None)
        assert comparison.utterance == "u1"
        assert comparison.noise == "snr_inf"
    assert services.utterances("tiny", actor=None) == sorted(UTTERANCES)


def test_unknown_noise_level_is_a_user_error(tiny: pd.DataFrame) -> None:
    with pytest.raises(NotFoundError, match="no noise level"):
        services.compare_utterance("tiny", "u1", "snr_99db", actor=None)


# --- page --------------------------------------------------------------------------------------


def test_page_without_datasets_explains_how_to_build_one(isolated_settings: Path) -> None:
    at = datasets_page().run()
    assert_no_exception(at)
    assert any("No dataset is built yet" in info.value for info in at.info)
    assert any("build-demo" in code.value for code in at.code)
    assert not at.selectbox


def test_page_shows_counts_of_the_fixture_dataset(tiny: pd.DataFrame) -> None:
    at = datasets_page().run()
    assert_no_exception(at)
    assert not at.error
    assert at.selectbox(key="dataset").value == "tiny"
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Items"] == str(len(tiny))
    assert metrics["Speakers"] == str(tiny["speaker"].nunique())
    assert metrics["Classes"] == str(tiny["class"].nunique())
    assert metrics["Noise levels"] == str(len(NOISES))
    by_noise, by_speaker, by_class = (frame.value for frame in at.dataframe[:3])
    assert by_noise["items"].to_dict() == {
        "clean": int((tiny["noise"] == "snr_inf").sum()),
        "10 dB SNR": int((tiny["noise"] == "snr_10db").sum()),
    }
    assert by_speaker["items"].to_dict() == dict(Counter(tiny["speaker"]))
    assert by_class["items"].to_dict() == dict(Counter(tiny["class"]))
    assert "speechlike" in at.expander[0].text[0].value
    # The bars keep the table's order (clean first), not the alphabetical one of the chart.
    noise_chart = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert noise_chart["encoding"]["x"]["field"] == "noise"
    assert noise_chart["encoding"]["x"]["sort"] is None


def test_page_says_when_an_older_renderer_made_the_images(
    tiny: pd.DataFrame, dataset_root: Path
) -> None:
    assert services.dataset_overview("tiny", actor=None).render_notice is None
    at = datasets_page().run()
    assert not any("older renderer" in w.value for w in at.warning)
    info_path = dataset_root / "tiny" / "dataset.json"
    info = json.loads(info_path.read_text())
    del info["render_version"]  # as every dataset.json before the DC step
    info_path.write_text(json.dumps(info))
    at = datasets_page().run()
    assert_no_exception(at)
    (notice,) = [w.value for w in at.warning if "older renderer" in w.value]
    assert "fakevoice dataset render tiny tiny-r" in notice and "Render these clips" in notice
    assert notice == services.dataset_overview("tiny", actor=None).render_notice


def test_selection_counts_list_noise_levels_as_the_dataset_does(tiny: pd.DataFrame) -> None:
    # The Train page's table of a selection: clean first, then by falling SNR (as its picker).
    table = services.selection_counts("tiny", actor=None)
    assert list(table.columns) == services.dataset_overview("tiny", actor=None).noise_levels
    assert list(table.columns) == ["snr_inf", "snr_10db"]


def test_page_compare_shows_bonafide_and_each_generator(tiny: pd.DataFrame) -> None:
    at = datasets_page().run()
    at.selectbox(key="noise:tiny").set_value("snr_10db").run()
    at.selectbox(key="utterance:tiny").set_value("u2").run()
    assert_no_exception(at)
    expected = 1 + len(COPY_GENERATORS)  # u2 was not copied by the TTS class
    assert len(at.image) == expected
    assert len(at.get("audio")) == expected
    assert any("u2__world__snr_10db" in caption for im in at.image for caption in im.captions)

    at.selectbox(key="utterance:tiny").set_value("u1").run()
    assert len(at.image) == 1 + len(COPY_GENERATORS) + 1


def test_page_random_utterance_and_reshuffle(tiny: pd.DataFrame) -> None:
    at = datasets_page().run()
    assert at.selectbox(key="utterance:tiny").value == "random"
    assert len(at.image) == 1 + len(COPY_GENERATORS) + 1  # only u1 has every class
    seed = at.session_state["compare_seed"]
    at.button(key="reshuffle").click().run()
    assert_no_exception(at)
    assert at.session_state["compare_seed"] == seed + 1
    assert len(at.image) == 1 + len(COPY_GENERATORS) + 1


def test_bad_name_in_query_params_is_reported_not_used(tiny: pd.DataFrame) -> None:
    at = datasets_page()
    at.query_params["dataset"] = "../x"
    at.run()
    assert_no_exception(at)
    assert any("no dataset named '../x'" in error.value for error in at.error)
    assert at.selectbox(key="dataset").value == "tiny"
    assert len(at.dataframe) >= 3
    # The next run (a page load brings one at once) still says so: the URL keeps the name...
    at.run()
    assert at.query_params["dataset"] == "../x"
    assert any("no dataset named '../x'" in error.value for error in at.error)
    # ...until a dataset is chosen in the box.
    write_fixture_dataset(services.dataset_path("tiny", actor=None).parent, "another")
    at.run()
    at.selectbox(key="dataset").set_value("another").run()
    assert not at.error and at.query_params["dataset"] == "another"


def test_good_name_in_query_params_selects_that_dataset(tiny: pd.DataFrame) -> None:
    write_fixture_dataset(services.dataset_path("tiny", actor=None).parent, "another")
    at = datasets_page()
    at.query_params["dataset"] = "tiny"
    at.run()
    assert not at.error
    assert at.selectbox(key="dataset").value == "tiny"
    assert at.selectbox(key="dataset").options == ["another", "tiny"]


def test_stale_name_in_session_is_reported_not_used(tiny: pd.DataFrame) -> None:
    root = services.dataset_path("tiny", actor=None).parent
    write_fixture_dataset(root, "gone")
    at = datasets_page().run()
    at.selectbox(key="dataset").set_value("gone").run()
    assert at.selectbox(key="dataset").value == "gone"
    shutil.rmtree(root / "gone")  # deleted while the session still holds its name
    at.run()
    assert_no_exception(at)
    assert any("no dataset named 'gone'" in error.value for error in at.error)
    assert at.selectbox(key="dataset").value == "tiny"
    assert at.selectbox(key="dataset").options == ["tiny"]


def test_missing_image_is_an_error_message_not_a_traceback(tiny: pd.DataFrame) -> None:
    folder = services.dataset_path("tiny", actor=None)
    for path in (folder / "snr_inf").rglob("*.png"):
        path.unlink()
    at = datasets_page().run()
    assert_no_exception(at)
    assert any("missing" in error.value for error in at.error)


# --- rendering with other features (administrators) ----------------------------------------------


def signed_in(at: AppTest, username: str, *, admin: bool) -> AppTest:
    user = accounts.register(username, "correct horse battery staple", is_admin=admin)
    at.session_state["fakevoice_user_id"] = user.id
    return at


def test_only_administrators_see_the_render_form(tiny: pd.DataFrame) -> None:
    at = datasets_page().run()
    assert "Render these clips with other features" not in [e.label for e in at.expander]
    at = signed_in(datasets_page(), "viewer", admin=False).run()
    assert_no_exception(at)
    assert "Render these clips with other features" not in [e.label for e in at.expander]
    viewer = accounts.user_by_username("viewer")
    assert viewer is not None
    with pytest.raises(PermissionDeniedError, match="Only an administrator"):
        services.render_dataset("tiny", "mine", {"kind": "lfcc"}, actor=viewer.actor)


def test_an_administrator_renders_a_dataset_with_other_features_in_a_job(
    tiny: pd.DataFrame, dataset_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_page_evaluate import run_queued_jobs

    monkeypatch.setenv("FAKEVOICE_BUILD_WORKERS", "1")
    get_settings.cache_clear()
    at = signed_in(datasets_page(), "admin", admin=True).run()
    assert_no_exception(at)
    assert "Render these clips with other features" in [e.label for e in at.expander]
    at.text_input(key="render_name").set_value("tiny-lfcc")
    at.selectbox(key="render_kind").set_value("lfcc")
    at.number_input(key="render_n_mels").set_value(20)
    at.number_input(key="render_n_coeffs").set_value(12)
    at.number_input(key="render_height").set_value(20)
    at.number_input(key="render_width").set_value(48)
    at.button(key="render_submit").click().run()
    assert_no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Queued: 'tiny-lfcc', lfcc images of 'tiny'" in s.value for s in at.success)
    assert not (dataset_root / "tiny-lfcc").exists()  # the page only queued it
    assert "**Your renders**" in [m.value for m in at.markdown]
    assert any("tiny-lfcc: queued" in p.proto.text for p in at.get("progress"))

    at.button(key="render_submit").click().run()  # the same name while queued: refused
    assert any("is being made" in e.value for e in at.error)

    admin = accounts.user_by_username("admin")
    assert admin is not None
    (run,) = services.list_renders(admin.actor)
    assert run_queued_jobs() == ["succeeded"]
    info = json.loads((dataset_root / "tiny-lfcc" / "dataset.json").read_text())
    assert info["feature_spec"]["kind"] == "lfcc" and info["rendered_from"] == "tiny"
    assert "tiny-lfcc" in services.dataset_names(actor=None)
    image = Image.open(dataset_root / "tiny-lfcc" / tiny["image_path"].iloc[0])
    assert image.size == (48, 20)

    at.run()
    assert_no_exception(at)
    assert any("tiny-lfcc: rendered" in s.value for s in at.success)
    assert any("Rendered 20 lfcc images (20x48 pixels)" in c.value for c in at.caption)
    at.button(key=f"render_open:{run.id}").click().run()
    assert_no_exception(at)
    assert at.selectbox(key="dataset").value == "tiny-lfcc"
    at.button(key="render_submit").click().run()  # the name exists now: a message, nothing lost
    assert any("exists already" in e.value for e in at.error)
    assert len(services.list_renders(admin.actor)) == 1
    at.button(key=f"render_clear:{run.id}").click().run()
    assert_no_exception(at)
    assert services.list_renders(admin.actor) == []
    assert "tiny-lfcc" in services.dataset_names(actor=None)  # the dataset stays
