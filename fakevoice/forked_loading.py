"""fastai's DataLoader with its worker processes forked from the training process, always.

fastai starts a loader's workers with the ``multiprocessing`` module's default start method,
which a process started by a fork server or by spawn inherits (a worker's training run is such a
process): each epoch's workers would then be fresh interpreters (seconds of imports each) that
get the items by pickle (each its own empty cache), children of the fork server rather than of
the run. Forked, they start at once, share the items' caches
(:mod:`fakevoice.datasets.item_cache`) and die with the run's process. They never touch CUDA
(the items are read, decoded and augmented on the CPU), so forking a process that uses a GPU is
safe, as it is for PyTorch's own loader on Linux.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext
from typing import Any, cast

from fastai.data.load import DataLoader, _FakeLoader


class _ForkingFakeLoader(_FakeLoader):  # type: ignore[misc]
    @property
    def multiprocessing_context(self) -> BaseContext | None:
        return multiprocessing.get_context("fork") if self.num_workers > 0 else None


class ForkingDataLoader(DataLoader):  # type: ignore[misc]
    """A fastai ``DataLoader`` whose workers (``num_workers`` above 0) are forked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        given = cast(Any, self).fake_l
        self.fake_l = _ForkingFakeLoader(
            self,
            given.pin_memory,
            given.num_workers,
            given.timeout,
            given.persistent_workers,
            given.pin_memory_device,
        )
