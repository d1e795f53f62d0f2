"""Shared fixtures: generated audio, the shared/ folder when present, isolated settings."""

from __future__ import annotations

import importlib.util
import io
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from fakevoice.settings import get_settings
from fakevoice.store.records import Actor

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# Test files that must share one pytest-xdist worker, by group. Both Ray files start and stop a
# local Ray instance, and two at once on one machine fight over ports and processes.
SERIAL_GROUPS = {
    "tests/test_ray_backend.py": "ray",
    "tests/test_ray_cluster.py": "ray",
}


# The longest test files, longest first (seconds of work each, measured on 2 cores: test_jobs
# about 290, test_dataset_builds 190, the browser journey 95, the CLI workflow 75, ...). Files go
# to the xdist workers in collection order; handed out first, the long ones no longer leave one
# worker running the last of them alone while the other idles (about 100 s of a 15-minute run).
LONG_FILES = (
    "tests/test_jobs.py",
    "tests/test_dataset_builds.py",
    "tests/browser/test_workbench_journey.py",
    "tests/test_cli_workflow.py",
    "tests/test_tracking.py",
    "tests/test_builder.py",
    "tests/test_restart.py",
    "tests/test_models.py",
    "tests/test_page_profile.py",
    "tests/test_api_training.py",
    "tests/browser/test_datasets_journey.py",
    "tests/test_api.py",
    "tests/test_dataset_renders.py",
)


BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench_module(script: str) -> ModuleType:
    """A script of bench/ loaded as a module (its imports and definitions; ``main`` not run), for
    a test that checks it still loads or uses its test signals."""
    name = f"bench_{Path(script).stem}"
    spec = importlib.util.spec_from_file_location(name, BENCH / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files of LONG_FILES first, in its order; the others after, as collected (a stable
    sort: the order of tests within a file never changes). Tests marked ``cuda`` are skipped on
    a machine without a GPU."""
    rank = {path: i for i, path in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
    on_gpu = [item for item in items if item.get_closest_marker("cuda") is not None]
    # Asked only when such a test is collected: the question initialises CUDA's driver in this
    # process, and a process forked from it afterwards can no longer use CUDA.
    if on_gpu:
        import torch

        if not torch.cuda.is_available():
            for item in on_gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Spread test files over the xdist workers, keeping each SERIAL_GROUPS group on one worker.

    A whole file goes to one worker so its module fixtures (trained models, servers) are built
    once. xdist's own ``--dist loadgroup`` does not group under pytest 9: it renames the item
    ``_nodeid``, which pytest 9 no longer reads.
    """
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # xdist's own order (most tests first) is not ours

    class FileScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SERIAL_GROUPS.get(path, path)

    return FileScheduling(config, log)


@pytest.fixture(scope="module")
def ray_temp_dir() -> Iterator[str]:
    """A fresh Ray temp dir under /tmp, removed afterwards.

    Short on purpose: Ray's socket paths must fit 107 bytes, which pytest's basetemp (longer
    under xdist's ``popen-gwN``) does not leave room for.
    """
    path = tempfile.mkdtemp(prefix="fvray-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    """Undo AppTest's swap of ``sys.modules["__main__"]`` for the page script.

    Left in place, every later ``spawn`` child would re-run ``app.py`` as its main module.
    """
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server for this test session (see tests/postgres.py); skips when none."""
    from postgres import PostgresUnavailable, start_postgres

    try:
        url, stop = start_postgres()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def global_random_seed() -> int:
    return 0


@pytest.fixture
def rng(global_random_seed: int) -> np.random.Generator:
    return np.random.default_rng(global_random_seed)


@pytest.fixture
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point data and dataset folders at a temporary directory for one test."""
    monkeypatch.setenv("FAKEVOICE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FAKEVOICE_DATASET_DIR", str(tmp_path / "datasets"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny multiclass specnet run folder: ``model.pkl``, the safe bundle and the
    other artefacts of a real one-epoch run (trained on first use, then shared)."""
    from test_uploads import trained_run_dir

    return trained_run_dir(tmp_path_factory)


@pytest.fixture
def alice(isolated_settings: Path) -> Actor:
    """A user called alice in the test's own store."""
    from test_uploads import make_user

    return make_user("alice")


def tone(
    frequency: float, seconds: float = 1.0, sample_rate: int = 16000, amplitude: float = 0.3
) -> np.ndarray:
    """A sine of ``frequency`` Hz, ``seconds`` long, peak ``amplitude`` (float32, mono)."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def speechlike(seconds: float = 2.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced, formant-ish test signal (float32, mono) with syllable-rate amplitude modulation."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    y = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    y = y * envelope + 0.01 * rng.standard_normal(t.size)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def zip_of(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive (bytes) holding ``entries`` (path in the archive -> content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()
