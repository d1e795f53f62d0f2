"""Experiment tracking: every training run logged to MLflow, so experiments stay comparable.

The job function (:mod:`fakevoice.jobs.runner`) opens a :class:`RunTracker` for each run it
executes: the run's spec becomes MLflow params, each finished epoch its metrics (step = epoch,
0-based), and the finished run its artefacts (history, confusion matrix, metrics, the safe bundle).
A resumed run continues the same MLflow run, so its history stays in one place.

Where to: ``FAKEVOICE_MLFLOW_TRACKING_URI`` (or MLflow's own ``MLFLOW_TRACKING_URI``) names a
tracking server or store; by default a SQLite store under ``<data dir>/mlruns`` (MLflow's file
store is deprecated) with artefacts beside it. Look at it with
``mlflow ui --backend-store-uri sqlite:///<data dir>/mlruns/mlflow.db``.

Tracking is a side line: a failure (server down, disk full, MLflow missing) is logged as a warning,
told to the user once through ``on_notice``, and tracking stops for that run — the training never
fails because of it.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakevoice.settings import get_settings

if TYPE_CHECKING:  # the training engine: not imported where runs are only forgotten (app, API)
    from fakevoice.training_history import EpochRecord

logger = logging.getLogger(__name__)

EPOCH_METRICS = ("train_loss", "valid_loss", "accuracy", "macro_f1", "eer", "seconds")
# Final metrics of metrics.json logged on the finished MLflow run (as "final_<name>"; with the
# EER's bootstrap interval as final_eer_low and final_eer_high when the run has one).
FINAL_METRICS = ("accuracy", "macro_f1", "eer", "auc", "min_tdcf")
# Run files logged as artefacts: (file name, artefact folder). model.pkl is left out on purpose:
# the safe bundle is the portable form, and the pickle can be downloaded from the workbench.
ARTEFACTS = (
    ("history.csv", ""),
    ("metrics.json", ""),
    ("confusion.json", ""),
    ("confusion.png", ""),
    ("roc.json", ""),
    ("loss_curve.png", ""),
    ("valid_scores.csv", ""),
    ("model.safetensors", "bundle"),
    ("manifest.json", "bundle"),
)
MLFLOW_STATUS = {"succeeded": "FINISHED", "cancelled": "KILLED", "failed": "FAILED"}
_PARAM_MAX_CHARS = 6000


def tracking_uri() -> str:
    """The MLflow tracking URI in use (the setting, else the local store under the data dir)."""
    settings = get_settings()
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return f"sqlite:///{(local_store_dir() / 'mlflow.db').as_posix()}"


def local_store_dir() -> Path:
    """The folder of the default local MLflow store: ``<data dir>/mlruns``."""
    return get_settings().data_dir / "mlruns"


def flatten_params(spec: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested spec as flat MLflow params: ``{"augment": {"mixup": 0.2}}`` -> ``augment.mixup``.

    Sequences become comma-separated text; None becomes ``"none"``.
    """
    params: dict[str, str] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            params.update(flatten_params(value, prefix=f"{name}."))
        elif isinstance(value, list | tuple):
            params[name] = ",".join(str(v) for v in value)
        else:
            params[name] = "none" if value is None else str(value)
    return {name: text[:_PARAM_MAX_CHARS] for name, text in params.items()}


def _limit_http_retries() -> None:
    """Keep an unreachable tracking server from stalling training for minutes (MLflow's default
    is 7 retries with exponential backoff and a 120 s timeout); an operator's own values win."""
    from mlflow import environment_variables as mlflow_env

    for variable, value in (
        (mlflow_env.MLFLOW_HTTP_REQUEST_MAX_RETRIES, 2),
        (mlflow_env.MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, 1),
        (mlflow_env.MLFLOW_HTTP_REQUEST_TIMEOUT, 10),
    ):
        if not variable.defined:
            variable.set(value)


@contextmanager
def _local_store_lock() -> Iterator[None]:
    """Serialise the first use of the local SQLite store (MLflow migrates it on first use, and two
    worker processes doing so at once would collide)."""
    if get_settings().mlflow_tracking_uri:
        yield
        return
    folder = local_store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_client() -> Any:
    """An ``MlflowClient`` on :func:`tracking_uri` and the id of the workbench's experiment."""
    _limit_http_retries()
    from mlflow.tracking import MlflowClient

    settings = get_settings()
    with _local_store_lock():
        client = MlflowClient(tracking_uri=tracking_uri())
        experiment = client.get_experiment_by_name(settings.mlflow_experiment)
        if experiment is not None:
            return client, experiment.experiment_id
        artifact_location = None
        if not settings.mlflow_tracking_uri:
            artifact_location = (local_store_dir() / "artifacts").resolve().as_uri()
        experiment_id = client.create_experiment(
            settings.mlflow_experiment, artifact_location=artifact_location
        )
        return client, experiment_id


_FORGETTING: set[Future[None]] = set()
_FORGETTING_LOCK = threading.Lock()
_forgetter: ThreadPoolExecutor | None = None


def forget_runs_later(mlflow_run_ids: list[str]) -> None:
    """:func:`forget_run` for each id, in one thread that takes deletions in turn, so that the
    page or request that deleted the runs does not wait on a tracking server that is slow or down
    (MLflow retries for minutes). A process waits for it before it exits; the command line says
    so (:func:`forgetting`, :func:`wait_until_forgotten`)."""
    global _forgetter
    if not mlflow_run_ids or not get_settings().mlflow_tracking:
        return
    with _FORGETTING_LOCK:
        if _forgetter is None:
            _forgetter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fakevoice-forget")
        future = _forgetter.submit(_forget_all, list(mlflow_run_ids))
        _FORGETTING.add(future)


def _forget_all(mlflow_run_ids: list[str]) -> None:
    for mlflow_run_id in mlflow_run_ids:
        forget_run(mlflow_run_id)


def forgetting() -> int:
    """How many :func:`forget_runs_later` calls are still at work or waiting their turn."""
    with _FORGETTING_LOCK:
        _FORGETTING.difference_update({f for f in _FORGETTING if f.done()})
        return len(_FORGETTING)


def finish_forgetting(say: Callable[[str], None]) -> None:
    """For a command that deleted runs: wait for their MLflow runs to be forgotten before it
    exits, saying so when there is anything to wait for."""
    if forgetting():
        say("removing the MLflow copy from the tracking server...")
        wait_until_forgotten()


def wait_until_forgotten(timeout: float | None = None) -> bool:
    """Wait for the :func:`forget_runs_later` calls; False when some still work at ``timeout``."""
    with _FORGETTING_LOCK:
        pending = list(_FORGETTING)
    wait_for_futures(pending, timeout=timeout)
    return forgetting() == 0


def forget_run(mlflow_run_id: str) -> None:
    """Delete a workbench run's MLflow run (its user deleted the run), with its artefacts when
    they lie in the local store; never raises (a tracking server that is down keeps its copy,
    logged). A tracking server's own artefacts go at its ``mlflow gc``."""
    import shutil
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    if not get_settings().mlflow_tracking:
        return
    try:
        client, _ = open_client()
        artifact_uri = client.get_run(mlflow_run_id).info.artifact_uri
        client.delete_run(mlflow_run_id)
    except Exception as exc:
        logger.warning("MLflow run %s not deleted: %s", mlflow_run_id, exc)
        return
    where = urlparse(artifact_uri or "")
    if where.scheme == "file":
        folder = Path(url2pathname(where.path)).resolve()  # <store>/artifacts/<run id>/artifacts
        run_folder = folder.parent if folder.name == "artifacts" else folder
        # Only the run's own folder in the local store: never another run's, nor the store's.
        if run_folder.name == mlflow_run_id and run_folder.is_relative_to(
            local_store_dir().resolve()
        ):
            shutil.rmtree(run_folder, ignore_errors=True)


class RunTracker:
    """Logs one workbench run to one MLflow run; never raises.

    Args:
        on_notice: told once, in words for the user, when tracking fails.
    """

    def __init__(self, on_notice: Callable[[str], None] | None = None) -> None:
        self._on_notice = on_notice
        self._client: Any = None
        self.mlflow_run_id: str | None = None

    @property
    def active(self) -> bool:
        return self._client is not None and self.mlflow_run_id is not None

    def start(
        self,
        *,
        run_id: int,
        run_name: str,
        owner_id: int,
        spec: Mapping[str, Any],
        resume_mlflow_run_id: str | None = None,
    ) -> str | None:
        """Open the MLflow run (or reopen ``resume_mlflow_run_id``) and log the spec as params.

        Returns:
            The MLflow run id, or None when tracking is off or failed.
        """
        if not get_settings().mlflow_tracking:
            return None
        try:
            client, experiment_id = open_client()
            if resume_mlflow_run_id is not None and self._reopen(client, resume_mlflow_run_id):
                self._client, self.mlflow_run_id = client, resume_mlflow_run_id
                return self.mlflow_run_id
            tags = {
                "fakevoice.run_id": str(run_id),
                "fakevoice.owner_id": str(owner_id),
                "fakevoice.dataset": str(spec.get("dataset", "")),
                "fakevoice.arch": str(spec.get("arch", "")),
            }
            created = client.create_run(experiment_id, run_name=run_name, tags=tags)
            self._client, self.mlflow_run_id = client, created.info.run_id
            from mlflow.entities import Param

            params = [Param(k, v) for k, v in sorted(flatten_params(spec).items())]
            for first in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                client.log_batch(self.mlflow_run_id, params=params[first : first + 100])
        except Exception as exc:
            self._failed("start", exc)
        return self.mlflow_run_id

    def _reopen(self, client: Any, mlflow_run_id: str) -> bool:
        try:
            client.update_run(mlflow_run_id, status="RUNNING")
        except Exception as exc:  # deleted, or logged to another server before
            logger.info("MLflow run %s cannot go on (%s); starting a new one", mlflow_run_id, exc)
            return False
        return True

    def log_epoch(self, record: EpochRecord) -> None:
        """The epoch's figures as metrics at step ``record.epoch``."""
        if not self.active:
            return
        try:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            values = record.to_dict()
            metrics = [
                Metric(name, float(values[name]), now, record.epoch)
                for name in EPOCH_METRICS
                if values.get(name) is not None
            ]
            self._client.log_batch(self.mlflow_run_id, metrics=metrics)
        except Exception as exc:
            self._failed("epoch metrics", exc)

    def finish(self, status: str, run_dir: Path | None, report: Mapping[str, Any]) -> None:
        """Log the final metrics and the artefacts present in ``run_dir``, then close the run."""
        if not self.active:
            return
        try:
            interval = report.get("eer_interval")
            bounds = (
                {"eer_low": interval.get("low"), "eer_high": interval.get("high")}
                if isinstance(interval, dict)
                else {}
            )
            for name, value in [*((n, report.get(n)) for n in FINAL_METRICS), *bounds.items()]:
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._client.log_metric(self.mlflow_run_id, f"final_{name}", float(value))
            if run_dir is not None:
                for file_name, folder in ARTEFACTS:
                    path = run_dir / file_name
                    if path.is_file():
                        self._client.log_artifact(
                            self.mlflow_run_id, str(path), artifact_path=folder or None
                        )
            self._client.set_terminated(self.mlflow_run_id, MLFLOW_STATUS.get(status, "FAILED"))
        except Exception as exc:
            self._failed("artefacts", exc)

    def _failed(self, stage: str, exc: Exception) -> None:
        logger.warning("MLflow tracking failed (%s): %s: %s", stage, type(exc).__name__, exc)
        self._client = None
        if self._on_notice is not None:
            text = (
                f"MLflow tracking failed ({type(exc).__name__}), so this run is not fully in "
                "MLflow; the training and its results in the workbench are not affected."
            )
            try:
                self._on_notice(text)
            except Exception:  # the notice is a courtesy; the store may be the thing that is down
                logger.warning("could not record the tracking notice", exc_info=True)
