"""The Home page and the app's navigation (AppTest, in-process)."""

from __future__ import annotations

from pathlib import Path

from conftest import REPO
from streamlit.testing.v1 import AppTest
from test_page_datasets import write_fixture_dataset


def home_page() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=60)


def test_home_is_the_default_page_and_says_how_to_start(isolated_settings: Path) -> None:
    at = home_page().run()
    assert not at.exception
    assert at.title[0].value == "Fake Voice Workbench"
    text = " ".join(markdown.value for markdown in at.markdown)
    assert "fakevoice dataset build-demo" in text
    assert "Datasets" in text
    assert any("No dataset is built yet" in info.value for info in at.info)
    assert not at.dataframe


def test_home_lists_the_datasets_present(isolated_settings: Path) -> None:
    root = isolated_settings / "datasets"
    manifests = {name: write_fixture_dataset(root, name) for name in ("alpha", "beta")}
    at = home_page().run()
    assert not at.exception
    assert not at.info
    table = at.dataframe[0].value
    assert list(table["dataset"]) == ["alpha", "beta"]
    assert list(table["items"]) == [len(manifests["alpha"]), len(manifests["beta"])]
    assert at.page_link[0].proto.page.endswith("datasets")


def test_navigation_reaches_the_datasets_page(isolated_settings: Path) -> None:
    at = home_page().run()
    at.switch_page("pages/datasets.py").run()
    assert not at.exception
    assert at.title[0].value == "Datasets"
