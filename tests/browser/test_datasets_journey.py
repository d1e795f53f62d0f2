"""A person's first visit, in a real browser: Home, then Datasets, then human vs machine.

The server is a real ``streamlit run app.py`` reading a demo dataset that the real CLI built;
the expected numbers come from that dataset's ``manifest.csv``, read here with pandas.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from fakevoice.datasets.shortcuts import read_audit

from .widgets import TIMEOUT_MS, choose, open_page, wait_for_script

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from .conftest import StreamlitServer

pytestmark = pytest.mark.browser
expect = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing"
).expect

NOISE = "snr_10db"
AUDIO_DURATION_TOLERANCE_S = 0.05


def _read_manifest(dataset: Path) -> pd.DataFrame:
    return pd.read_csv(dataset / "manifest.csv", dtype=str, keep_default_na=False)


def _metric(page: Page, label: str) -> Locator:
    return (
        page.get_by_test_id("stMetric")
        .filter(has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
        .get_by_test_id("stMetricValue")
    )


def _noise_label(noise: str) -> str:
    """How the page names a noise level: ``snr_inf`` is "clean", ``snr_10db`` "10 dB SNR"."""
    if noise == "snr_inf":
        return "clean"
    match = re.fullmatch(r"snr_(-?\d+(?:\.\d+)?)db", noise)
    return f"{float(match.group(1)):g} dB SNR" if match else noise


def _grid_rows(scope: Page | Locator) -> Locator:
    """Body rows of the first data grid in ``scope`` (the grid's accessible table)."""
    return scope.get_by_test_id("stDataFrame").first.locator("table tbody tr")


def _grid_items(rows: Locator) -> dict[str, int]:
    """``{first cell: second cell}`` of each row: a label and its item count."""
    table = {}
    for row in rows.all():
        label, items, *_ = row.locator("td").all_text_contents()
        table[label] = int(items.replace(",", ""))
    return table


def _richest_utterance(manifest: pd.DataFrame, noise: str) -> tuple[str, list[str]]:
    """The utterance with a bonafide item and the most classes at ``noise``, and its classes."""
    at_noise = manifest[manifest["noise"] == noise]
    with_bonafide = set(at_noise.loc[at_noise["class"] == "bonafide", "utterance"])
    classes = (
        at_noise[at_noise["utterance"].isin(with_bonafide)].groupby("utterance")["class"].unique()
    )
    utterance = min(classes.index, key=lambda u: (-len(classes[u]), u))
    return utterance, sorted(classes[utterance])


def test_home_to_datasets_compare_human_and_machine(
    app_page: Page,
    streamlit_server: StreamlitServer,
    browser_dataset: Path,
    clean_only_dataset: Path,
    screenshot: Callable[[Page, str], Path],
) -> None:
    page = app_page
    manifest = _read_manifest(browser_dataset)
    clean_only = _read_manifest(clean_only_dataset)
    assert 0 < len(clean_only) < len(manifest)
    dataset = browser_dataset.name
    url = streamlit_server.url

    # Home: the title, the introduction and the built dataset in the table.
    page.goto(url)
    wait_for_script(page)
    expect(page.locator("h1", has_text="Fake Voice Workbench")).to_be_visible()
    expect(page.get_by_text("Build a dataset")).to_be_visible()
    expect(_grid_rows(page)).to_have_count(2, timeout=TIMEOUT_MS)
    assert _grid_items(_grid_rows(page)) == {
        clean_only_dataset.name: len(clean_only),
        dataset: len(manifest),
    }
    screenshot(page, "home")

    # Sidebar navigation to Datasets.
    open_page(page, "Datasets", "Datasets")
    expect(page).to_have_url(re.compile(r"/datasets"))

    # The first dataset is shown; choosing the other one changes the counts to its manifest's.
    expect(page.get_by_role("combobox", name="Dataset")).to_have_value(clean_only_dataset.name)
    expect(_metric(page, "Items")).to_have_text(f"{len(clean_only):,}", timeout=TIMEOUT_MS)
    choose(page, "Dataset", dataset)
    expect(_metric(page, "Items")).to_have_text(f"{len(manifest):,}", timeout=TIMEOUT_MS)
    expect(_metric(page, "Speakers")).to_have_text(str(manifest["speaker"].nunique()))
    expect(_metric(page, "Classes")).to_have_text(str(manifest["class"].nunique()))
    expected = {
        _noise_label(str(noise)): items for noise, items in manifest.groupby("noise").size().items()
    }
    per_noise = _grid_rows(page.get_by_role("tabpanel", name="Per noise level"))
    expect(per_noise).to_have_count(len(expected), timeout=TIMEOUT_MS)
    assert _grid_items(per_noise) == expected

    # The build kept its shortcut audit: the page says what simple cues alone give away.
    audit = read_audit(browser_dataset)
    assert audit is not None, "the CLI build kept no shortcuts.json"
    shortcuts = page.get_by_test_id("stExpander").filter(has_text="Shortcuts")
    if shortcuts.locator("details").first.get_attribute("open") is None:
        shortcuts.locator("summary").first.click()
    first_sentence = audit.summary().split(". ")[0]
    expect(shortcuts).to_contain_text(first_sentence, timeout=TIMEOUT_MS)
    expect(shortcuts).to_contain_text(audit.pooled.best_cue.label)

    # Pick a noise level and an utterance: bonafide plus every generator, each with audio.
    utterance, classes = _richest_utterance(manifest, NOISE)
    assert "bonafide" in classes
    generators = [c for c in classes if c != "bonafide"]
    choose(page, "Noise level", _noise_label(NOISE))
    choose(page, "Utterance", utterance)
    caption = page.get_by_test_id("stCaptionContainer").filter(has_text=f"Utterance {utterance}")
    expect(caption).to_contain_text(_noise_label(NOISE), timeout=TIMEOUT_MS)

    images = page.get_by_test_id("stImage").locator("img")
    expect(images).to_have_count(1 + len(generators), timeout=TIMEOUT_MS)
    for label in ("human (bonafide)", *generators):  # each panel's title (a table may name them)
        title = page.locator("strong").filter(has_text=re.compile(rf"^{re.escape(label)}$"))
        expect(title).to_be_visible()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'))"
        ".every(img => img.complete && img.naturalWidth > 0)",
        timeout=TIMEOUT_MS,
    )

    audio = page.locator("audio")
    expect(audio).to_have_count(1 + len(generators))
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('audio'))"
        ".every(a => a.readyState >= 1 && a.duration > 0)",
        timeout=TIMEOUT_MS,
    )
    played_seconds = audio.evaluate_all("players => players.map(a => a.duration)")
    rows = manifest[(manifest["utterance"] == utterance) & (manifest["noise"] == NOISE)]
    seconds = rows.set_index("class")["duration"].astype(float)
    expected_seconds = [seconds["bonafide"], *(seconds[g] for g in generators)]
    assert played_seconds == pytest.approx(expected_seconds, abs=AUDIO_DURATION_TOLERANCE_S)

    page.evaluate("() => document.activeElement?.blur()")  # no focus ring in the picture
    page.mouse.move(0, 0)
    screenshot(page, "datasets")
