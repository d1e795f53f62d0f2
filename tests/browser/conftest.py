"""Real-browser test infrastructure: a built dataset, a running Streamlit server, headless Chromium.

Everything is session-scoped and built once:

* ``browser_dataset_root`` builds a small demo dataset with the real CLI
  (``fakevoice dataset build-demo --size small``) into a temporary dataset folder;
* ``streamlit_server`` starts ``streamlit run app.py`` as a subprocess on a free port, with
  ``FAKEVOICE_DATASET_DIR`` / ``FAKEVOICE_DATA_DIR`` pointing at temporary folders, and waits for
  ``/_stcore/health`` to answer ``ok``; beside it a real ``fakevoice worker`` process with the same
  environment trains the runs the Train page queues; both are stopped at the end;
* ``browser_context`` drives Debian's Chromium (``/usr/bin/chromium``) through the Python
  ``playwright`` package with a fresh profile; ``playwright install`` is never needed. Its
  microphone is Chromium's fake capture device playing ``microphone_wav`` (a few human clips of
  the demo dataset), with the permission granted, so ``st.audio_input`` can record.

The browser tests skip with a reason when Chromium or the ``playwright`` package is missing
(``make test`` installs Chromium with apt). Screenshots go to ``test-artifacts/screenshots/``
(git-ignored); with ``FAKEVOICE_UPDATE_SCREENSHOTS=1`` (``make screenshots``) they are also copied
to ``docs/screenshots/`` for the README, and the journeys show a model worth looking at: the
dataset is the demo's default size with three generators a spectrogram model tells apart to
different degrees (:data:`README_BUILD`), and the finished run trains for more epochs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}  # CSS pixels
DATASET_NAME = "demo"
CLEAN_ONLY_NAME = "clean-only"
CLEAN = "snr_inf"  # noise name of the clean level
BUILD_TIMEOUT_S = 300.0
HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
MICROPHONE_SECONDS = 4.0  # length of the fake microphone's (looped) recording
ARTIFACTS = REPO / "test-artifacts" / "screenshots"
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
UPDATE_SCREENSHOTS_ENV = "FAKEVOICE_UPDATE_SCREENSHOTS"
README_SHOTS = os.environ.get(UPDATE_SCREENSHOTS_ENV) == "1"
SMALL_BUILD = ["--size", "small", "--noise", "clean,10"]
# espeak and piper are caught at once, WORLD about half the time: the README's run shows both.
README_BUILD = ["--size", "default", "--generators", "espeak,piper,world", "--noise", "clean,10"]


@dataclass(frozen=True)
class StreamlitServer:
    """A running ``streamlit run app.py`` subprocess.

    Attributes:
        url: Base URL, e.g. ``http://127.0.0.1:38421``.
        log: File that receives the server's stdout and stderr.
        dataset_dir: The ``FAKEVOICE_DATASET_DIR`` the server reads.
        worker_log: File that receives the ``fakevoice worker`` process's output.
    """

    url: str
    log: Path
    dataset_dir: Path
    worker_log: Path

    def log_tail(self, max_chars: int = 6000) -> str:
        """The last ``max_chars`` characters of the server's output."""
        return _tail(self.log, max_chars, "(no server log)")

    def worker_log_tail(self, max_chars: int = 6000) -> str:
        """The last ``max_chars`` characters of the worker's output."""
        return _tail(self.worker_log, max_chars, "(no worker log)")


def _tail(path: Path, max_chars: int, missing: str) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return missing
    return text[-max_chars:]


def _require_browser() -> None:
    """Skip the calling test unless Chromium and the playwright package are installed."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium package "
            "(`make test` does it with apt) to run the browser tests"
        )
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _fakevoice_command() -> list[str]:
    """The ``fakevoice`` console script of this interpreter's environment, or ``python -m``."""
    script = Path(sys.executable).with_name("fakevoice")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "fakevoice.cli"]


def _environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["FAKEVOICE_DATASET_DIR"] = str(root / "datasets")
    env["FAKEVOICE_DATA_DIR"] = str(root / "data")
    env["FAKEVOICE_WORKER_POLL_SECONDS"] = "0.5"
    env["OMP_NUM_THREADS"] = "1"  # tiny models on a shared 2-core machine train faster so
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def browser_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder holding ``datasets/`` and ``data/`` for the server under test."""
    root = tmp_path_factory.mktemp("browser")
    (root / "datasets").mkdir()
    (root / "data").mkdir()
    return root


@pytest.fixture(scope="session")
def browser_dataset(browser_root: Path) -> Path:
    """A small demo dataset built once with the real CLI; returns its folder.

    Uses the small size's generators, two noise levels (clean and 10 dB SNR) and two workers;
    for the README's screenshots, :data:`README_BUILD`.
    """
    _require_browser()
    out = browser_root / "datasets" / DATASET_NAME
    command = [
        *_fakevoice_command(),
        "dataset",
        "build-demo",
        *(README_BUILD if README_SHOTS else SMALL_BUILD),
        "--out",
        str(out),
        "--workers",
        "2",
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        env=_environment(browser_root),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S * (4 if README_SHOTS else 1),
        check=False,
    )
    if result.returncode != 0 or not (out / "manifest.csv").is_file():
        pytest.fail(
            f"building the browser-test dataset failed (exit {result.returncode}):\n"
            f"{' '.join(command)}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return out


@pytest.fixture(scope="session")
def clean_only_dataset(browser_dataset: Path) -> Path:
    """A second dataset: the demo's clean items only, so choosing a dataset changes the counts.

    Its name sorts before ``demo``, so it is what the Datasets page shows first.
    """
    from fakevoice.datasets.manifest import read_manifest, write_manifest

    out = browser_dataset.parent / CLEAN_ONLY_NAME
    manifest = read_manifest(browser_dataset)
    clean = manifest[manifest["noise"] == CLEAN]
    out.mkdir()
    shutil.copytree(browser_dataset / "clips", out / "clips")
    shutil.copytree(browser_dataset / CLEAN, out / CLEAN)
    write_manifest(out, clean.reset_index(drop=True))
    info_path = browser_dataset / "dataset.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        info.pop("counts", None)  # stale for the subset: the catalog then counts the manifest
        (out / "dataset.json").write_text(json.dumps(info), encoding="utf-8")
    return out


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll ``/_stcore/health`` until it answers ``ok``; fail with the server log otherwise."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200 and response.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    output = log.read_text(errors="replace")[-6000:] if log.exists() else ""
    pytest.fail(
        f"the Streamlit server at {url} did not become healthy within {HEALTH_TIMEOUT_S:.0f} s "
        f"(exit code {process.poll()}):\n{output}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` (the worker's training children die with it); kill if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def start_streamlit(
    env: dict[str, str], log: Path, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``streamlit run app.py`` on ``port`` (a free one by default) with ``env``, its output in
    ``log`` (appended); returns the process and its URL (not yet healthy: :func:`_wait_healthy`)."""
    port = port or _free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    with log.open("ab") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=sink)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def streamlit_server(
    browser_root: Path, browser_dataset: Path, clean_only_dataset: Path
) -> Iterator[StreamlitServer]:
    """``streamlit run app.py`` on a free port, serving both datasets, and a ``fakevoice worker``
    with the same environment; both are stopped at the end."""
    log = browser_root / "streamlit.log"
    worker_log = browser_root / "worker.log"
    env = _environment(browser_root)
    process, url = start_streamlit(env, log)
    try:
        with worker_log.open("wb") as sink:
            worker = subprocess.Popen(
                [*_fakevoice_command(), "worker"], cwd=REPO, env=env, stdout=sink, stderr=sink
            )
        try:
            _wait_healthy(process, url, log)
            if worker.poll() is not None:
                pytest.fail(
                    f"the fakevoice worker exited at once (exit {worker.returncode}):\n"
                    + _tail(worker_log, 6000, "(no worker log)")
                )
            yield StreamlitServer(
                url=url,
                log=log,
                dataset_dir=browser_root / "datasets",
                worker_log=worker_log,
            )
        finally:
            _stop(worker)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def microphone_wav(browser_root: Path, browser_dataset: Path) -> Path:
    """What the fake microphone hears: human clips of the demo dataset, joined to a few seconds.

    A 16-bit PCM WAV (what Chromium's ``--use-file-for-fake-audio-capture`` reads), 16 kHz mono.
    """
    import numpy as np

    from fakevoice.audio import load_audio, write_wav
    from fakevoice.datasets.manifest import read_manifest

    manifest = read_manifest(browser_dataset)
    clips = sorted(set(manifest.loc[manifest["class"] == "bonafide", "clip_path"]))
    pieces: list[np.ndarray] = []
    total = 0
    for clip in clips:
        samples = load_audio(browser_dataset / clip).samples
        pieces += [samples, np.zeros(1600, dtype=np.float32)]  # 0.1 s pause between clips
        total += samples.size + 1600
        if total >= MICROPHONE_SECONDS * 16000:
            break
    path = browser_root / "microphone.wav"
    write_wav(path, np.concatenate(pieces), 16000)
    return path


@pytest.fixture(scope="session")
def browser_context(
    tmp_path_factory: pytest.TempPathFactory, microphone_wav: Path
) -> Iterator[BrowserContext]:
    """Headless Debian Chromium with a fresh profile, a 1400x1000 viewport, downloads allowed and
    a fake microphone (``microphone_wav``, looped) that pages may use without asking."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                *CHROMIUM_ARGS,
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone_wav}",
            ],
            viewport=VIEWPORT,  # type: ignore[arg-type]
            accept_downloads=True,
            permissions=["microphone"],
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def app_page(
    request: pytest.FixtureRequest,
    browser_context: BrowserContext,
    streamlit_server: StreamlitServer,
) -> Iterator[Page]:
    """A fresh browser tab; on failure saves a screenshot and prints the server's output."""
    page = browser_context.new_page()
    messages: list[str] = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"failure-{request.node.name}.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
        except Exception as exc:  # the page may be gone; the log below matters more
            shot = Path(f"(no screenshot: {exc})")
        print(f"\nfailure screenshot: {shot}")
        print("--- browser console ---\n" + "\n".join(messages[-50:]))
        print("--- streamlit server output ---\n" + streamlit_server.log_tail())
        print("--- worker output ---\n" + streamlit_server.worker_log_tail())
    page.close()


def _main_scroll_height(page: Page) -> int:
    """Height in CSS pixels of the tallest scrolling container (Streamlit scrolls inside)."""
    height: int = page.evaluate(
        """() => Math.max(document.documentElement.scrollHeight,
            ...Array.from(document.querySelectorAll('[data-testid="stMain"], section.main,'
                + ' [data-testid="stAppViewContainer"], [data-testid="stMainBlockContainer"]'))
               .map(e => e.scrollHeight))"""
    )
    return height


def save_screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of ``page`` as ``test-artifacts/screenshots/<name>.png``.

    With ``full_page`` the whole page: Streamlit scrolls inside its main container, so the
    viewport is stretched to the content's height for the shot and restored afterwards. Without
    it, what the viewport shows now (smaller files, for long pages). With
    ``FAKEVOICE_UPDATE_SCREENSHOTS=1`` the file is also copied to ``docs/screenshots/<name>.png``.

    Returns:
        The path of the saved screenshot.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if not full_page:
        page.screenshot(path=str(path))
        _publish(path)
        return path
    viewport = page.viewport_size or VIEWPORT
    height = max(viewport["height"], _main_scroll_height(page))
    page.set_viewport_size({"width": viewport["width"], "height": height})
    try:
        page.wait_for_timeout(300)  # let the layout settle at the new size
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size({"width": viewport["width"], "height": viewport["height"]})
    _publish(path)
    return path


def _publish(path: Path) -> None:
    """Copy a screenshot to ``docs/screenshots/`` when ``FAKEVOICE_UPDATE_SCREENSHOTS=1``."""
    if os.environ.get(UPDATE_SCREENSHOTS_ENV) == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    """The :func:`save_screenshot` helper, as a fixture."""
    return save_screenshot
