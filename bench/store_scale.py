"""How the pages, the API lists and the CLI lists grow with a busy user's records.

A year of a busy team: one user with ~2,000 jobs (training runs, dataset builds, tests of
models), ~300 models, ~100,000 verdicts and ~50 datasets, on a server of ~100 users who have
their own (smaller) share. The store is filled twice, in fresh temporary data folders: a small
one with ``--small`` of the records (the reference: 1/20 by default) and the full one. For each,
the script times (best of ``--repeat``) and counts the SQL statements of:

* each page rendered with Streamlit's AppTest for the busy user (Home, Train, Evaluate, Profile,
  Datasets), and Profile for an administrator (everyone's jobs);
* the API lists in process (``GET /v1/models``, ``/v1/analyses`` first and a far page,
  ``/v1/runs``, ``/health``), with a bearer token of the busy user's;
* the CLI lists in process (``fakevoice runs``, ``runs --jobs``, ``history``, ``models``).

A path whose time or statement count grows with the records where it shows a fixed number of
them is reading more than it shows. The table gives both sizes side by side and their ratio.

Rows go in through the store's tables in bulk (``insert`` of many rows at once): the repository
functions take seconds per thousand rows, which is fine for a page and too slow for a fixture of
100,000 verdicts. Run folders (``metrics.json``, ``history.csv``) and dataset folders (a tiny
manifest, two clips and images each) are written as the worker leaves them.

Run:  .venv/bin/python bench/store_scale.py [--runs 2000] [--models 300] [--analyses 100000]
      [--datasets 50] [--users 100] [--small 0.05] [--repeat 2] [--only api,cli]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
USER_KEY = "fakevoice_user_id"  # components.auth.USER_KEY
PAGES = ("home", "train", "evaluate", "profile", "datasets")
SPEC = {"arch": "specnet", "task": "binary", "epochs": 5, "batch_size": 32, "learning_rate": 1e-3}


@dataclass(frozen=True)
class Sizes:
    """What the busy user owns, and how many users the server has."""

    runs: int
    models: int
    analyses: int
    datasets: int
    users: int

    def scaled(self, fraction: float) -> Sizes:
        def part(n: int, least: int) -> int:
            return max(least, round(n * fraction))

        return Sizes(
            runs=part(self.runs, 4),
            models=part(self.models, 2),
            analyses=part(self.analyses, 10),
            datasets=part(self.datasets, 1),
            users=part(self.users, 2),
        )

    def words(self) -> str:
        return (
            f"{self.runs} jobs, {self.models} models, {self.analyses} verdicts, "
            f"{self.datasets} datasets, {self.users} users"
        )


@dataclass
class Measure:
    seconds: float
    statements: int


@dataclass
class Workbench:
    """A filled store: who is who, and the token of the busy user."""

    busy: Any
    admin: Any
    token: str
    results: dict[str, Measure] = field(default_factory=dict)


# --- filling the store ---------------------------------------------------------------------------


def _write_dataset(folder: Path, name: str) -> None:
    """A tiny complete dataset folder: two clips (human, a vocoder's) and their images."""
    import soundfile as sf
    from PIL import Image

    rows = []
    rng = np.random.default_rng(0)
    for cls in ("bonafide", "hifigan"):
        clip = f"clips/spk1/{cls}/u1.wav"
        (folder / clip).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / clip, 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
        image = f"snr_inf/spk1/{cls}/u1__{cls}__snr_inf.png"
        (folder / image).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)).save(folder / image)
        rows.append(
            f"u1__{cls}__snr_inf,u1,spk1,{cls},{'' if cls == 'bonafide' else cls},snr_inf,"
            f"{clip},{image},1.0,en,bench"
        )
    header = (
        "item,utterance,speaker,class,generator,noise,clip_path,image_path,duration,language,source"
    )
    (folder / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")
    info = {
        "name": name,
        "created": "2025-01-01T00:00:00+00:00",
        "seed": 0,
        "feature_spec": {"kind": "mel", "sample_rate": 16000, "n_mels": 128},
        "counts": {
            "items": 2,
            "class": {"bonafide": 1, "hifigan": 1},
            "speaker": {"spk1": 2},
            "noise": {"snr_inf": 2},
        },
    }
    (folder / "dataset.json").write_text(json.dumps(info))


def fill(sizes: Sizes) -> Workbench:
    """Users, jobs, models, verdicts and datasets in the configured (fresh) data folder."""
    from sqlalchemy import insert, select

    from fakevoice import store
    from fakevoice.jobs.runner import run_dir_for
    from fakevoice.services import tokens
    from fakevoice.settings import get_settings
    from fakevoice.store.tables import (
        AnalysisRow,
        BatchMetricRow,
        DatasetRow,
        EpochMetricRow,
        ModelRow,
        RunRow,
    )

    store.init_db()
    settings = get_settings()
    # Without passwords: the pages are opened signed in, the API with a token.
    with store.session_scope() as session:
        busy = store.create_user(session, "busy").actor
        admin = store.create_user(session, "root", is_admin=True).actor
        others = [store.create_user(session, f"user{i:03d}").actor for i in range(sizes.users - 2)]
    _, token = tokens.create_token(busy, "bench")
    rng = np.random.default_rng(0)
    start = datetime(2025, 1, 1, tzinfo=UTC)

    # Datasets: the busy user's folders on disk, each with its store record.
    dataset_dir = settings.dataset_dir
    names = [f"set{i:03d}" for i in range(sizes.datasets)]
    _write_dataset(dataset_dir / names[0], names[0])
    for name in names[1:]:
        shutil.copytree(dataset_dir / names[0], dataset_dir / name)
        info = json.loads((dataset_dir / name / "dataset.json").read_text())
        (dataset_dir / name / "dataset.json").write_text(json.dumps({**info, "name": name}))

    def jobs_of(owner: Any, count: int) -> list[dict[str, Any]]:
        """Run rows: 70 % training runs, then dataset builds and tests, oldest first."""
        rows = []
        for i in range(count):
            kind = "train" if i % 10 < 7 else ("dataset" if i % 10 < 9 else "evaluate")
            status = "succeeded" if i % 13 else "failed"
            created = start + timedelta(minutes=10 * i + owner.user_id)
            spec: dict[str, Any] = {**SPEC, "dataset": names[i % len(names)]}
            if kind == "dataset":
                spec = {"name": f"built {i}", "kind": "mel"}
            elif kind == "evaluate":
                spec = {"models": [], "dataset": names[i % len(names)], "split": "valid"}
            rows.append(
                {
                    "owner_id": owner.user_id,
                    "name": f"{kind} {i}",
                    "spec": spec,
                    "status": status,
                    "progress": 1.0,
                    "current_epoch": 4,
                    "total_epochs": 5,
                    "created_at": created,
                    "queued_at": created,
                    "started_at": created,
                    "finished_at": created + timedelta(minutes=5),
                    "backend": "local",
                    "kind": kind,
                    "artefact_dir": None,
                }
            )
        return rows

    with store.session_scope() as session:
        session.execute(
            insert(DatasetRow),
            [
                {
                    "name": name,
                    "path": (dataset_dir / name).resolve().as_posix(),
                    "owner_id": busy.user_id,
                    "created_at": start,
                    "items": 2,
                    "spec": {},
                }
                for name in names
            ],
        )
        owners = [(busy, sizes.runs, sizes.models)] + [
            (o, max(2, sizes.runs // 100), max(1, sizes.models // 30)) for o in [admin, *others]
        ]
        for owner, run_count, _ in owners:
            session.execute(insert(RunRow), jobs_of(owner, run_count))
        session.flush()
        runs = session.execute(
            select(RunRow.id, RunRow.owner_id, RunRow.kind, RunRow.created_at).order_by(RunRow.id)
        ).all()
        train_runs: dict[int, list[tuple[int, datetime]]] = {}
        for run_id, owner_id, kind, created in runs:
            if kind == "train":
                train_runs.setdefault(owner_id, []).append((run_id, created))
        epochs, batches, models = [], [], []
        for owner, _, model_count in owners:
            mine = train_runs.get(owner.user_id, [])
            for i, (run_id, created) in enumerate(mine):
                for epoch in range(5):
                    epochs.append(
                        {
                            "run_id": run_id,
                            "epoch": epoch,
                            "train_loss": 0.7 - 0.1 * epoch,
                            "valid_loss": 0.6 - 0.1 * epoch,
                            "accuracy": 0.8 + 0.02 * epoch,
                            "macro_f1": 0.8,
                            "eer": 0.2 - 0.02 * epoch,
                            "seconds": 30.0,
                        }
                    )
                if owner is busy:
                    batches += [
                        {
                            "run_id": run_id,
                            "epoch": step // 10,
                            "batch": step % 10,
                            "step": step,
                            "train_loss": 0.5,
                            "lr": 1e-3,
                            "recorded_at": created,
                        }
                        for step in range(50)
                    ]
                # The newest runs stored the models (a run's folder holds its model's files).
                if i >= len(mine) - model_count:
                    folder = run_dir_for(run_id)
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / "metrics.json").write_text(json.dumps({"eer": 0.12}))
                    (folder / "history.csv").write_text("epoch,eer\n0,0.2\n")
                    models.append(
                        {
                            "owner_id": owner.user_id,
                            "run_id": run_id,
                            "name": f"model {i}",
                            "is_public": owner is not busy and i % 3 == 0,
                            "arch": "specnet",
                            "class_names": ["bonafide", "spoof"],
                            "feature_spec": {"kind": "mel", "sample_rate": 16000, "n_mels": 128},
                            "sample_rate": 16000,
                            "clip_samples": 64000,
                            "path": folder.as_posix(),
                            "files": {"model.safetensors": "0" * 64, "manifest.json": "1" * 64},
                            "metrics": {"eer": 0.12, "accuracy": 0.9},
                            "created_at": created + timedelta(minutes=5),
                        }
                    )
        session.execute(insert(EpochMetricRow), epochs)
        for chunk in range(0, len(batches), 20_000):
            session.execute(insert(BatchMetricRow), batches[chunk : chunk + 20_000])
        session.execute(insert(ModelRow), models)
        session.flush()
        model_ids: dict[int, list[int]] = {}
        for model_id, owner_id in session.execute(select(ModelRow.id, ModelRow.owner_id)):
            model_ids.setdefault(owner_id, []).append(model_id)
        for owner, count in [(busy, sizes.analyses)] + [
            (o, max(10, sizes.analyses // 500)) for o in others
        ]:
            ids = model_ids[owner.user_id]
            for first in range(0, count, 20_000):
                p_human = rng.random(min(20_000, count - first))
                session.execute(
                    insert(AnalysisRow),
                    [
                        {
                            "owner_id": owner.user_id,
                            "model_id": ids[(first + k) % len(ids)],
                            "file_name": f"call-{first + k:06d}.wav",
                            "duration": 4.0,
                            "sample_rate": 16000,
                            "verdict": "human" if p > 0.5 else "machine-generated",
                            "probabilities": {"bonafide": float(p), "spoof": float(1 - p)},
                            "threshold": 0.5,
                            "created_at": start + timedelta(seconds=60 * (first + k)),
                            "source": "api",
                            "file_sha256": f"{first + k:064x}",
                            "cautions": [],
                            # A tenth of them with what the clip really was.
                            "outcome": None if (first + k) % 10 else "human",
                        }
                        for k, p in enumerate(p_human)
                    ],
                )
    return Workbench(busy=busy, admin=admin, token=token)


# --- counting and timing -------------------------------------------------------------------------


@contextlib.contextmanager
def counted() -> Iterator[list[int]]:
    """The number of SQL statements sent while the block runs (``[n]`` once it ends)."""
    from sqlalchemy import event

    from fakevoice import store

    engine = store.get_engine()
    seen = [0]

    def count(*_: Any) -> None:
        seen[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def measure(action: Callable[[], object], repeat: int) -> Measure:
    """The best time of ``repeat`` calls (after one warm-up call) and the statements of one."""
    with counted() as statements:
        action()
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - began)
    return Measure(best, statements[0])


_COMPONENTS: list[Any] = []  # AppTest's scan of installed components, made once (as a server)


def page(name: str, user_id: int) -> Callable[[], object]:
    from streamlit.testing.v1 import AppTest

    def render() -> object:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
        # Each AppTest scans every installed package for components (half a second), which a
        # server does once at its start: not the page's cost.
        if _COMPONENTS:
            at._bidi_component_manager = _COMPONENTS[0]
        at.session_state[USER_KEY] = user_id
        if name != "home":
            at.switch_page(f"pages/{name}.py")
        at.run()
        if at.exception:
            raise RuntimeError(f"page {name}: {at.exception[0].value}")
        if not _COMPONENTS:
            _COMPONENTS.append(at._bidi_component_manager)
        return at

    return render


def api_paths(token: str) -> dict[str, Callable[[], object]]:
    from fastapi.testclient import TestClient

    from fakevoice.api import create_app

    client = TestClient(create_app())
    headers = {"Authorization": f"Bearer {token}"}

    def get(path: str) -> Callable[[], object]:
        def call() -> object:
            response = client.get(path, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
            return response

        return call

    return {
        "api GET /v1/models": get("/v1/models"),
        "api GET /v1/analyses": get("/v1/analyses?limit=50"),
        "api GET /v1/analyses far page": get("/v1/analyses?limit=50&offset=4000"),
        "api GET /v1/runs": get("/v1/runs?limit=50"),
        "api GET /health": get("/health"),
    }


def cli_paths() -> dict[str, Callable[[], object]]:
    from fakevoice.cli import main as cli

    def run(*argv: str) -> Callable[[], object]:
        def call() -> object:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                code = cli(list(argv))
            if code != 0:
                raise RuntimeError(f"fakevoice {' '.join(argv)}: exit {code}")
            return out

        return call

    return {
        "cli runs": run("runs"),
        "cli runs --jobs": run("runs", "--jobs"),
        "cli history": run("history"),
        "cli models": run("models"),
    }


@contextlib.contextmanager
def data_folder() -> Iterator[Path]:
    """A fresh temporary data and dataset folder as the configured ones."""
    from fakevoice import store
    from fakevoice.settings import get_settings

    root = Path(tempfile.mkdtemp(prefix="fv-scale-"))
    saved = {k: os.environ.get(k) for k in ("FAKEVOICE_DATA_DIR", "FAKEVOICE_DATASET_DIR")}
    os.environ["FAKEVOICE_DATA_DIR"] = str(root / "data")
    os.environ["FAKEVOICE_DATASET_DIR"] = str(root / "datasets")
    get_settings.cache_clear()
    try:
        yield root
    finally:
        store.dispose_engines()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        shutil.rmtree(root, ignore_errors=True)


def measure_all(sizes: Sizes, repeat: int, only: set[str]) -> dict[str, Measure]:
    with data_folder():
        began = time.perf_counter()
        bench = fill(sizes)
        print(f"  filled ({sizes.words()}) in {time.perf_counter() - began:.1f} s", flush=True)
        os.environ["FAKEVOICE_CLI_USER"] = "busy"
        from fakevoice.settings import get_settings

        get_settings.cache_clear()
        paths: dict[str, Callable[[], object]] = {}
        if "pages" in only:
            paths.update({f"page {name}": page(name, bench.busy.user_id) for name in PAGES})
            paths["page profile (admin)"] = page("profile", bench.admin.user_id)
        if "api" in only:
            paths.update(api_paths(bench.token))
        if "cli" in only:
            paths.update(cli_paths())
        found = {}
        for name, action in paths.items():
            found[name] = measure(action, repeat)
            print(f"  {name:<30} {1000 * found[name].seconds:9.1f} ms", flush=True)
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="the busy user's jobs")
    parser.add_argument("--models", type=int, default=300, help="the busy user's models")
    parser.add_argument("--analyses", type=int, default=100_000, help="the busy user's verdicts")
    parser.add_argument("--datasets", type=int, default=50, help="the busy user's datasets")
    parser.add_argument("--users", type=int, default=100, help="users on the server")
    parser.add_argument("--small", type=float, default=0.05, help="the reference's share")
    parser.add_argument("--repeat", type=int, default=2, help="timed calls per path (best)")
    parser.add_argument(
        "--only", default="pages,api,cli", help="which paths: pages, api, cli (comma-separated)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)  # AppTest's pages are found from the app's folder
    import logging

    logging.disable(logging.WARNING)  # the pages' warnings about stand-in files are expected
    big = Sizes(args.runs, args.models, args.analyses, args.datasets, args.users)
    small = big.scaled(args.small)
    only = set(args.only.split(","))
    print(f"small: {small.words()}", flush=True)
    small_found = measure_all(small, args.repeat, only)
    print(f"big: {big.words()}", flush=True)
    big_found = measure_all(big, args.repeat, only)
    print()
    print(
        f"{'path':<30} {'small ms':>9} {'big ms':>9} {'ratio':>6} {'small SQL':>9} {'big SQL':>8}"
    )
    for name, little in small_found.items():
        large = big_found[name]
        ratio = large.seconds / little.seconds if little.seconds else float("nan")
        print(
            f"{name:<30} {1000 * little.seconds:9.1f} {1000 * large.seconds:9.1f} {ratio:6.1f} "
            f"{little.statements:>9} {large.statements:>8}"
        )


if __name__ == "__main__":
    main()
