"""Use-cases shared by the pages, the API and the CLI (this package never imports streamlit).

* :mod:`~fakevoice.services.datasets`: built datasets, their counts, their shortcut audits;
* :mod:`~fakevoice.services.dataset_profile`: one dataset in detail, before training on it;
* :mod:`~fakevoice.services.dataset_comparisons`: an utterance side by side, human and generators;
* :mod:`~fakevoice.services.dataset_changes`: record, delete and re-render datasets;
* :mod:`~fakevoice.services.dataset_renders`: re-renders as background jobs (the Datasets page);
* :mod:`~fakevoice.services.dataset_builds`: datasets built from a user's uploaded recordings;
* :mod:`~fakevoice.services.runs`: submit, follow, stop and resume training runs;
* :mod:`~fakevoice.services.verdicts`: stored models, verdicts on clips, AASIST import;
* :mod:`~fakevoice.services.evaluation` and :mod:`~fakevoice.services.evaluation_jobs`: tests of
  models on a dataset, in process (the CLI) or as background jobs (the Evaluate page);
* :mod:`~fakevoice.services.explanations`: why a model decided as it did on a clip;
* :mod:`~fakevoice.services.model_files`: a model's files for those who may use it;
* :mod:`~fakevoice.services.history`: a user's verdict history, searched and exported;
* :mod:`~fakevoice.services.users`: who is acting.

Everything is re-exported here, so callers write ``services.submit_run(...)``. A name's module is
imported when the name is first used (PEP 562), not with the package: listing runs from the CLI
then does not wait for torch, fastai and the dataset builders to load (seconds) when it needs none.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fakevoice.datasets.noise import noise_label, noise_sort_key
    from fakevoice.services.calibration import (
        calibrate_on_test,
        calibrated_copy,
        calibrated_copy_name,
    )
    from fakevoice.services.dataset_builds import (
        clear_dataset_build,
        copy_synthesis_generators,
        list_dataset_builds,
        stop_dataset_build,
        submit_dataset_build,
    )
    from fakevoice.services.dataset_changes import (
        delete_dataset,
        record_owner,
        render_dataset,
    )
    from fakevoice.services.dataset_comparisons import (
        Comparison,
        Panel,
        compare_utterance,
        sample_items,
        utterances,
    )
    from fakevoice.services.dataset_profile import DatasetDetails, SplitCounts, dataset_details
    from fakevoice.services.dataset_renders import (
        clear_render,
        list_renders,
        stop_render,
        submit_render,
    )
    from fakevoice.services.datasets import (
        ATTRIBUTION_NAME,
        BUILD_HINT,
        DatasetOverview,
        audited_shortcut_warning,
        dataset_names,
        dataset_overview,
        dataset_path,
        dataset_shortcuts,
        kept_shortcuts,
        list_datasets,
        ordered_classes,
        render_warning,
        shortcut_warning,
    )
    from fakevoice.services.evaluation import DatasetEvaluation, evaluate_on_dataset
    from fakevoice.services.evaluation_jobs import (
        clear_evaluation,
        evaluation_results,
        get_evaluation,
        list_evaluations,
        stop_evaluation,
        submit_evaluation,
    )
    from fakevoice.services.explanations import ExplainedClip, explain_clip, keep_explanation
    from fakevoice.services.history import (
        analyses_csv,
        analyses_csv_chunks,
        count_analyses,
        earlier_verdicts,
        field_performance,
        get_verdict,
        label_verdict,
        list_analyses,
        model_names,
        rethreshold_verdict,
        verdict_model_name,
    )
    from fakevoice.services.runs import (
        RunProgress,
        check_spec,
        count_runs,
        default_run_name,
        delete_run,
        find_run,
        get_run,
        job_workers,
        list_runs,
        memory_advice,
        resume_run,
        run_model_id,
        run_progress,
        selection_counts,
        stop_run,
        submit_run,
        wait_for_run,
        worker_note,
        worker_state,
    )
    from fakevoice.services.users import cli_actor, ensure_database
    from fakevoice.services.verdicts import (
        ScoredClip,
        count_models,
        detector_for,
        find_model,
        get_model,
        import_aasist,
        list_models,
        model_not_found,
        score_clip,
    )

# Where each name above is defined (the same lists as the imports, for the first use).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "fakevoice.datasets.noise": (
        "noise_label",
        "noise_sort_key",
    ),
    "fakevoice.services.calibration": (
        "calibrate_on_test",
        "calibrated_copy",
        "calibrated_copy_name",
    ),
    "fakevoice.services.dataset_builds": (
        "clear_dataset_build",
        "copy_synthesis_generators",
        "list_dataset_builds",
        "stop_dataset_build",
        "submit_dataset_build",
    ),
    "fakevoice.services.dataset_changes": (
        "delete_dataset",
        "record_owner",
        "render_dataset",
    ),
    "fakevoice.services.dataset_comparisons": (
        "Comparison",
        "Panel",
        "compare_utterance",
        "sample_items",
        "utterances",
    ),
    "fakevoice.services.dataset_profile": (
        "DatasetDetails",
        "SplitCounts",
        "dataset_details",
    ),
    "fakevoice.services.dataset_renders": (
        "clear_render",
        "list_renders",
        "stop_render",
        "submit_render",
    ),
    "fakevoice.services.datasets": (
        "ATTRIBUTION_NAME",
        "BUILD_HINT",
        "DatasetOverview",
        "dataset_names",
        "dataset_overview",
        "dataset_path",
        "dataset_shortcuts",
        "audited_shortcut_warning",
        "kept_shortcuts",
        "list_datasets",
        "ordered_classes",
        "render_warning",
        "shortcut_warning",
    ),
    "fakevoice.services.evaluation": (
        "DatasetEvaluation",
        "evaluate_on_dataset",
    ),
    "fakevoice.services.evaluation_jobs": (
        "clear_evaluation",
        "evaluation_results",
        "get_evaluation",
        "list_evaluations",
        "stop_evaluation",
        "submit_evaluation",
    ),
    "fakevoice.services.explanations": (
        "ExplainedClip",
        "explain_clip",
        "keep_explanation",
    ),
    "fakevoice.services.history": (
        "analyses_csv",
        "analyses_csv_chunks",
        "count_analyses",
        "earlier_verdicts",
        "field_performance",
        "get_verdict",
        "label_verdict",
        "list_analyses",
        "model_names",
        "rethreshold_verdict",
        "verdict_model_name",
    ),
    "fakevoice.services.runs": (
        "RunProgress",
        "check_spec",
        "default_run_name",
        "delete_run",
        "find_run",
        "get_run",
        "count_runs",
        "list_runs",
        "memory_advice",
        "resume_run",
        "run_model_id",
        "run_progress",
        "selection_counts",
        "stop_run",
        "submit_run",
        "wait_for_run",
        "job_workers",
        "worker_note",
        "worker_state",
    ),
    "fakevoice.services.users": (
        "cli_actor",
        "ensure_database",
    ),
    "fakevoice.services.verdicts": (
        "ScoredClip",
        "count_models",
        "detector_for",
        "find_model",
        "get_model",
        "import_aasist",
        "list_models",
        "model_not_found",
        "score_clip",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use and keep the name here."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ATTRIBUTION_NAME",
    "BUILD_HINT",
    "Comparison",
    "DatasetDetails",
    "DatasetEvaluation",
    "DatasetOverview",
    "ExplainedClip",
    "Panel",
    "RunProgress",
    "ScoredClip",
    "SplitCounts",
    "analyses_csv",
    "analyses_csv_chunks",
    "calibrate_on_test",
    "calibrated_copy",
    "calibrated_copy_name",
    "check_spec",
    "clear_dataset_build",
    "clear_evaluation",
    "clear_render",
    "cli_actor",
    "compare_utterance",
    "copy_synthesis_generators",
    "count_analyses",
    "count_models",
    "count_runs",
    "dataset_details",
    "dataset_names",
    "dataset_overview",
    "dataset_path",
    "dataset_shortcuts",
    "default_run_name",
    "delete_dataset",
    "delete_run",
    "detector_for",
    "earlier_verdicts",
    "ensure_database",
    "evaluate_on_dataset",
    "evaluation_results",
    "explain_clip",
    "field_performance",
    "find_model",
    "find_run",
    "get_evaluation",
    "get_model",
    "get_run",
    "get_verdict",
    "import_aasist",
    "keep_explanation",
    "audited_shortcut_warning",
    "kept_shortcuts",
    "label_verdict",
    "list_analyses",
    "list_dataset_builds",
    "list_datasets",
    "list_evaluations",
    "list_models",
    "list_renders",
    "model_names",
    "model_not_found",
    "list_runs",
    "memory_advice",
    "noise_label",
    "noise_sort_key",
    "ordered_classes",
    "record_owner",
    "render_dataset",
    "render_warning",
    "resume_run",
    "rethreshold_verdict",
    "run_model_id",
    "run_progress",
    "sample_items",
    "score_clip",
    "selection_counts",
    "shortcut_warning",
    "stop_dataset_build",
    "stop_evaluation",
    "stop_render",
    "stop_run",
    "submit_dataset_build",
    "submit_evaluation",
    "submit_render",
    "submit_run",
    "utterances",
    "verdict_model_name",
    "wait_for_run",
    "job_workers",
    "worker_note",
    "worker_state",
]
