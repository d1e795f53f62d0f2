"""A run's checkpoints: written whole, read back with the history, the best kept apart.

A real fastai Learner over a two-feature linear model saves and loads the weights.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from torch import nn

from fakevoice.training_callbacks import LossScaleResume
from fakevoice.training_checkpoints import (
    CHECKPOINT_DIR,
    has_checkpoint,
    load_checkpoint,
    load_checkpoint_state,
    save_best_checkpoint,
    save_checkpoint,
)
from fakevoice.training_history import EpochRecord


def _learner(run_dir: Path) -> Learner:
    items = [(torch.randn(2), torch.tensor(n % 2)) for n in range(8)]
    dls = DataLoaders.from_dsets(items, items, bs=4, device=torch.device("cpu"))
    learn = Learner(dls, nn.Linear(2, 2), loss_func=nn.CrossEntropyLoss(), path=run_dir)
    learn.create_opt()
    return learn


def test_a_checkpoint_keeps_its_epoch_and_history_and_leaves_nothing_aside(tmp_path: Path) -> None:
    learn = _learner(tmp_path)
    assert load_checkpoint_state(tmp_path) is None and not has_checkpoint(tmp_path, "last")
    history = [
        EpochRecord(0, 0.7, 0.6, 0.5, 0.4, math.nan, 1.5),  # an epoch that measured no EER
        EpochRecord(1, 0.5, 0.4, 0.75, 0.7, 0.25, 1.25),
    ]
    save_checkpoint(learn, tmp_path, 1, history)
    state = load_checkpoint_state(tmp_path)
    assert state is not None
    epoch, read, rate, scaler, current = state
    assert epoch == 1 and rate is None and scaler is None
    assert read[1] == history[1] and math.isnan(read[0].eer)
    assert current == learn.opt.hypers[-1]["lr"]  # where the optimiser stood
    assert read[0].to_dict() | {"eer": 0} == history[0].to_dict() | {"eer": 0}
    assert has_checkpoint(tmp_path, "last") and not has_checkpoint(tmp_path, "best")
    assert sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()) == [
        "last.pth",
        "state.json",
    ]
    # A state whose weights never landed is no checkpoint to resume from.
    (tmp_path / CHECKPOINT_DIR / "last.pth").unlink()
    assert load_checkpoint_state(tmp_path) is None


def test_the_last_and_the_best_checkpoint_bring_back_their_own_weights(tmp_path: Path) -> None:
    learn = _learner(tmp_path)

    def weights() -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in learn.model.state_dict().items()}

    def shift() -> None:
        with torch.no_grad():
            learn.model.weight.add_(1.0)

    save_checkpoint(learn, tmp_path, 0, [])  # as the run's callback does: the epoch, then the best
    last = weights()
    shift()
    save_best_checkpoint(learn, tmp_path)
    best = weights()
    shift()
    cpu = torch.device("cpu")
    assert has_checkpoint(tmp_path, "best")
    load_checkpoint(learn, tmp_path, "best", cpu, with_opt=False)
    assert all(torch.equal(learn.model.state_dict()[k], v) for k, v in best.items())
    load_checkpoint(learn, tmp_path, "last", cpu, with_opt=True)
    assert all(torch.equal(learn.model.state_dict()[k], v) for k, v in last.items())
    assert not all(torch.equal(last[k], best[k]) for k in last)


class ScalerMaker(Callback):
    """Makes a fresh GradScaler at every fit, as fastai's MixedPrecision (order 10) does on a GPU;
    torch's CPU scaler stands in for the CUDA one here (no GPU on this machine)."""

    order = 10

    def before_fit(self) -> None:
        self.learn.scaler = torch.amp.GradScaler("cpu")

    def after_fit(self) -> None:
        self.seen = self.learn.scaler.get_scale()


def test_a_checkpoint_keeps_the_learning_rate_and_the_loss_scale(tmp_path: Path) -> None:
    learn = _learner(tmp_path)
    learn.scaler = torch.amp.GradScaler("cpu", init_scale=256.0)  # a scale found by training
    save_checkpoint(learn, tmp_path, 2, [], learning_rate=3e-3)
    state = load_checkpoint_state(tmp_path)
    assert state is not None and state.epoch == 2 and state.learning_rate == 3e-3
    assert state.scaler is not None and state.scaler["scale"] == 256.0

    # The resumed fit's new scaler starts at 65536; the checkpoint's scale is put back after it
    # is made, for that fit only.
    resumed = _learner(tmp_path)
    maker = ScalerMaker()
    resumed.add_cb(maker)
    resumed.fit(1, 1e-3, cbs=[LossScaleResume(state.scaler)])
    assert maker.seen == 256.0
    assert not any(isinstance(cb, LossScaleResume) for cb in resumed.cbs)
    resumed.fit(1, 1e-3)
    assert maker.seen == 65536.0

    # Without mixed precision there is no scaler to keep.
    plain = _learner(tmp_path / "plain")
    save_checkpoint(plain, tmp_path / "plain", 0, [])
    kept = load_checkpoint_state(tmp_path / "plain")
    assert kept is not None and kept.scaler is None and kept.learning_rate is None
