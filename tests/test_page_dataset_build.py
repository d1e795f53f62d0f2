"""AppTest of the Datasets page's parts for one's own datasets: the build form, the panel that
follows builds (with Stop), the privacy of a user's dataset and its deletion."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
from conftest import speechlike
from streamlit.testing.v1 import AppTest
from test_page_datasets import assert_no_exception, datasets_page, signed_in, write_fixture_dataset

from fakevoice import accounts, services, store
from fakevoice.store.records import Actor

BUILD_EXPANDER = "Build a dataset from your recordings"


def user(name: str) -> Actor:
    found = accounts.user_by_username(name)
    assert found is not None
    return found.actor


def recordings_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(2):
            clip = io.BytesIO()
            sf.write(clip, speechlike(1.5, 16000, seed=i), 16000, format="WAV")
            archive.writestr(f"ann/{i}.wav", clip.getvalue())
    return buffer.getvalue()


@pytest.fixture
def dataset_root(isolated_settings: Path) -> Path:
    services.ensure_database()
    return isolated_settings / "datasets"


def test_visitors_see_no_build_form(dataset_root: Path) -> None:
    at = datasets_page().run()
    assert_no_exception(at)
    assert BUILD_EXPANDER not in [e.label for e in at.expander]


def test_the_form_says_what_is_wrong_and_queues_nothing(dataset_root: Path) -> None:
    at = signed_in(datasets_page(), "ann", admin=False).run()
    assert_no_exception(at)
    (expander,) = [e for e in at.expander if e.label == BUILD_EXPANDER]
    at.text_input(key="build_name").set_value("../etc")
    at.button(key="build_submit").click().run()
    assert any("dataset name" in e.value for e in at.error), [e.value for e in at.error]
    at.text_input(key="build_name").set_value("mine")
    at.button(key="build_submit").click().run()  # no file uploaded
    assert any("holds no clip" in e.value for e in at.error), [e.value for e in at.error]
    assert services.list_dataset_builds(user("ann")) == []


def test_the_panel_follows_a_build_and_stops_it(dataset_root: Path) -> None:
    at = signed_in(datasets_page(), "ann", admin=False).run()
    ann = user("ann")
    run = services.submit_dataset_build(ann, "calls", [("r.zip", recordings_zip())])
    at.run()
    assert_no_exception(at)
    assert any("Your dataset builds" in m.value for m in at.markdown)
    assert any("calls: queued" in p.proto.text for p in at.get("progress"))
    # No worker runs here: the build's line says so, and how to start one.
    assert any(w.value.startswith("No worker is running") for w in at.warning)
    what = "2 recordings, copies by world, griffinlim, mel_griffinlim, lpc; clean, 20 dB SNR"
    assert any(c.value.startswith(what) for c in at.caption), [c.value for c in at.caption]
    at.button(key=f"build_stop:{run.id}").click().run()
    assert_no_exception(at)
    assert services.list_dataset_builds(ann)[0].status == "cancelled"
    assert any("calls: stopped" in i.value for i in at.info)
    at.button(key=f"build_clear:{run.id}").click().run()  # off the list
    assert_no_exception(at)
    assert services.list_dataset_builds(ann) == []
    assert not any("Your dataset builds" in m.value for m in at.markdown)


def test_a_users_dataset_is_theirs_and_they_may_delete_it(dataset_root: Path) -> None:
    write_fixture_dataset(dataset_root, "private")
    write_fixture_dataset(dataset_root, "shared")
    owner = accounts.register("ann", "correct horse battery staple")
    with store.session_scope() as session:
        store.register_dataset(
            session,
            owner.actor,
            name="private",
            path=store.folder_key(dataset_root / "private"),
            items=1,
            spec={},
        )
    other: AppTest = signed_in(datasets_page(), "bob", admin=False).run()
    assert_no_exception(other)
    assert other.selectbox(key="dataset").options == ["shared"]
    assert "Delete this dataset" not in [e.label for e in other.expander]  # shared: admins only

    at = datasets_page()
    at.session_state["fakevoice_user_id"] = owner.id
    at.run()
    assert at.selectbox(key="dataset").options == ["private", "shared"]
    at.selectbox(key="dataset").set_value("private").run()
    assert any("Built from your recordings" in c.value for c in at.caption)
    at.checkbox(key="delete_sure:private").check().run()
    at.button(key="delete:private").click().run()
    assert_no_exception(at)
    assert not (dataset_root / "private").exists()
    assert services.dataset_names(actor=owner.actor) == ["shared"]
