"""The worker's side of a test of models on a dataset (a job of kind ``evaluate``).

Queued by :func:`fakevoice.services.evaluation_jobs.submit_evaluation`. Each model of the spec in
turn scores the items with :func:`fakevoice.services.evaluation.evaluate_on_dataset`, as the job's
owner (so a model or dataset they can no longer see fails the test with the store's message);
progress over all models is written at most once a second with the model in progress as the job's
current step, and the stop flag is checked with it. Each model's result is saved as soon as it is
done, so a stopped test keeps them. A test whose worker dies is queued again by the next worker and
starts over (it has no checkpoint; scoring is deterministic).
"""

from __future__ import annotations

import logging
import shutil

from fakevoice import store
from fakevoice.jobs.progress import JobProgress, end_on_error, finish_job
from fakevoice.store.records import RunRecord

logger = logging.getLogger(__name__)


def execute_evaluation(run: RunRecord, worker_id: str) -> str:
    """Score the test of job ``run`` (claimed as running by ``worker_id``) to a final status.

    Returns:
        The final status written to the store.
    """
    from fakevoice.services.evaluation import evaluate_on_dataset
    from fakevoice.services.evaluation_jobs import EvaluationSpec, results_dir, save_result

    folder = results_dir(run.id)
    try:
        spec = EvaluationSpec.from_dict(run.spec)
        shutil.rmtree(folder, ignore_errors=True)  # a test started over leaves no stale result
        with store.session_scope() as session:
            owner = store.get_user(session, run.owner_id).actor
            store.set_run_info(
                session, run.id, artefact_dir=str(folder), total_epochs=len(spec.models)
            )
        progress = JobProgress(run.id, worker_id)
        count = len(spec.models)
        for index, model_id in enumerate(spec.models):

            def on_progress(done: int, total: int, index: int = index) -> None:
                progress.report((index + done / max(total, 1)) / count, step=index)

            progress.report(index / count, step=index, force=True)
            evaluation = evaluate_on_dataset(
                owner, model_id, spec.dataset, spec.split, limit=spec.limit, on_progress=on_progress
            )
            save_result(folder, index, evaluation)
    except Exception as exc:  # the job must end, whatever happened
        return end_on_error(run.id, worker_id, exc, "test", folder)
    return finish_job(run.id, worker_id, "succeeded")
