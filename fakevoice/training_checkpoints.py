"""A training run's checkpoints: the files that let a stopped or interrupted run resume.

Under ``<run dir>/checkpoints``: ``last.pth`` (the last completed epoch's weights and optimiser
state), ``state.json`` (that epoch, the history so far, the learning rate the run's schedule
peaks at, and a mixed-precision run's loss scale), and with save-best ``best.pth`` (the weights of
the epoch with the lowest EER). Nothing here imports fastai or torch: the worker and
the services read a run's checkpoint state without the training engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from fakevoice.training_history import EpochRecord

if TYPE_CHECKING:
    import torch
    from fastai.learner import Learner

CHECKPOINT_DIR = "checkpoints"

Checkpoint = Literal["last", "best"]


class CheckpointState(NamedTuple):
    """What a run needs, besides its weights, to go on after its last completed epoch.

    Attributes:
        epoch: the last completed epoch (from 0).
        history: its epochs so far.
        learning_rate: the peak of the run's schedule; None in checkpoints made before it was
            kept. A run that asked fastai's finder keeps the finder's answer: a finder run again
            on the half-trained model would answer differently, and the rest of the schedule
            would not be the one the run started.
        scaler: a mixed-precision run's ``GradScaler`` state (its loss scale), or None.
        current_learning_rate: the rate the optimiser stood at after the epoch: where a run
            whose rate falls on a plateau (ReduceLROnPlateau) goes on from; None when not kept.
    """

    epoch: int
    history: list[EpochRecord]
    learning_rate: float | None = None
    scaler: dict[str, Any] | None = None
    current_learning_rate: float | None = None


def save_checkpoint(
    learn: Learner,
    run_dir: Path,
    epoch: int,
    history: list[EpochRecord],
    *,
    learning_rate: float | None = None,
) -> None:
    """Save weights + optimiser after ``epoch``, the history so far, the schedule's peak learning
    rate and a mixed-precision run's loss scale (for resume)."""
    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    # Written aside, then renamed: a worker killed mid-save must not leave a torn checkpoint.
    learn.save(folder / "last.partial", with_opt=True)
    (folder / "last.partial.pth").replace(folder / "last.pth")
    state: dict[str, Any] = {"epoch": epoch, "history": [r.to_dict() for r in history]}
    if learning_rate is not None:
        state["learning_rate"] = float(learning_rate)
    if learn.opt is not None and learn.opt.hypers:
        state["current_learning_rate"] = float(learn.opt.hypers[-1]["lr"])
    # fastai's MixedPrecision keeps its GradScaler on the learner during a fit: a few numbers.
    scaler = getattr(learn, "scaler", None)
    if scaler is not None and scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(folder / "state.json")


def save_best_checkpoint(learn: Learner, run_dir: Path) -> None:
    """Save the weights (no optimiser) as the run's best epoch so far."""
    learn.save(run_dir / CHECKPOINT_DIR / "best", with_opt=False)


def has_checkpoint(run_dir: Path, which: Checkpoint) -> bool:
    """Whether the run has saved the ``which`` checkpoint's weights."""
    return (run_dir / CHECKPOINT_DIR / f"{which}.pth").is_file()


def load_checkpoint(
    learn: Learner, run_dir: Path, which: Checkpoint, device: torch.device, *, with_opt: bool
) -> None:
    """Load the ``which`` checkpoint's weights into ``learn`` (and the optimiser's state, to
    resume), onto ``device``."""
    learn.load(run_dir / CHECKPOINT_DIR / which, with_opt=with_opt, device=device)


def load_checkpoint_state(run_dir: Path) -> CheckpointState | None:
    """The last completed epoch, history, learning rate and loss scale of an interrupted run, if
    it has a checkpoint."""
    path = run_dir / CHECKPOINT_DIR / "state.json"
    if not path.is_file() or not has_checkpoint(run_dir, "last"):
        return None
    state = json.loads(path.read_text())
    history = [EpochRecord(**row) for row in state["history"]]
    rate, current = state.get("learning_rate"), state.get("current_learning_rate")
    scaler = state.get("scaler")
    return CheckpointState(
        int(state["epoch"]),
        history,
        float(rate) if isinstance(rate, (int, float)) else None,
        scaler if isinstance(scaler, dict) else None,
        float(current) if isinstance(current, (int, float)) else None,
    )
