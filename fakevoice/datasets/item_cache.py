"""Items' arrays kept in memory once, for a training process and the data-loader workers it forks.

fastai starts a loader's worker processes anew every epoch (forked from the training process,
which hands each the epoch's order of items), so a cache in a worker's own memory would be lost
at the end of each epoch, and every worker would fill a copy of its own. :class:`SharedItemCache`
keeps its arrays in an anonymous shared mapping made with the dataset, before any worker starts:
what one worker puts there, every later worker (and the training process) reads, and the memory
counts once, up to the cache's capacity, whatever the number of workers.
"""

from __future__ import annotations

import mmap
import multiprocessing
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_DIMS = 3  # an item's array is (n,) for a waveform, (H, W, 3) for an image
LOCK_SECONDS = 5.0  # a process waiting longer (its holder was killed) goes on without the cache
_START, _NDIM = 0, 1  # columns of the index: where an item starts (-1: not cached), its rank...
_SHAPE = slice(2, 2 + MAX_DIMS)  # ...and its shape


class SharedItemCache:
    """Up to ``capacity_bytes`` of items' arrays of one dtype, filled in the order they come.

    The data block and the index (where each item lies, and its shape) are anonymous shared
    mappings: pages are only touched as they fill, and processes forked after the cache was made
    share them. Space is taken and items published under a lock; the bytes are copied outside it.
    An item once put is never changed (views are read-only), so readers need no lock past the
    index. A copy made by pickling (a spawned process, fastai's export) starts empty and private.
    """

    def __init__(self, n_items: int, capacity_bytes: int, dtype: npt.DTypeLike) -> None:
        self.n_items = n_items
        self.capacity_bytes = max(0, capacity_bytes)
        self.dtype = np.dtype(dtype)
        units = self.capacity_bytes // self.dtype.itemsize if n_items > 0 else 0
        self._data: np.ndarray | None = None
        if units > 0:
            self._data = np.frombuffer(mmap.mmap(-1, units * self.dtype.itemsize), self.dtype)
        table = np.frombuffer(mmap.mmap(-1, 8 * (1 + max(1, n_items) * (2 + MAX_DIMS))), np.int64)
        self._filled = table[:1]  # units of the block in use
        self._index = table[1:].reshape(max(1, n_items), 2 + MAX_DIMS)
        self._index[:, _START] = -1
        self._lock = multiprocessing.get_context("fork").Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "capacity_bytes": self.capacity_bytes, "dtype": self.dtype}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["n_items"], state["capacity_bytes"], state["dtype"])  # type: ignore[misc]

    def __len__(self) -> int:
        """Items cached."""
        return int((self._index[: self.n_items, _START] >= 0).sum())

    @property
    def nbytes(self) -> int:
        """Bytes of the block in use."""
        return int(self._filled[0]) * self.dtype.itemsize

    def get(self, index: int) -> np.ndarray | None:
        """Item ``index``'s array (a read-only view of the block), or None when not cached."""
        if self._data is None or not self._lock.acquire(timeout=LOCK_SECONDS):
            return None
        try:
            row = self._index[index].copy()
        finally:
            self._lock.release()
        if row[_START] < 0:
            return None
        shape = tuple(int(d) for d in row[_SHAPE][: row[_NDIM]])
        size = int(np.prod(shape))
        view = self._data[row[_START] : row[_START] + size].reshape(shape)
        view.flags.writeable = False
        return view

    def put(self, index: int, array: np.ndarray) -> np.ndarray:
        """Keep ``array`` as item ``index`` while there is room; returns the cached read-only view,
        or ``array`` itself when it was not kept (no room, another dtype, or more than 3 axes)."""
        if self._data is None or array.dtype != self.dtype or array.ndim > MAX_DIMS:
            return array
        start = self._reserve(index, array.size)
        if start is None:
            return array
        self._data[start : start + array.size] = array.ravel()
        if not self._lock.acquire(timeout=LOCK_SECONDS):
            return array
        try:
            self._index[index, _SHAPE] = 0
            self._index[index, 2 : 2 + array.ndim] = array.shape
            self._index[index, _NDIM] = array.ndim
            self._index[index, _START] = start  # published last, under the lock
        finally:
            self._lock.release()
        view = self._data[start : start + array.size].reshape(array.shape)
        view.flags.writeable = False
        return view

    def _reserve(self, index: int, size: int) -> int | None:
        """Where item ``index`` may be written: the start of ``size`` free units, taken now; None
        when it is cached already or there is no room."""
        assert self._data is not None
        if not self._lock.acquire(timeout=LOCK_SECONDS):
            return None
        try:
            start = int(self._filled[0])
            if self._index[index, _START] >= 0 or start + size > self._data.size:
                return None
            self._filled[0] = start + size
            return start
        finally:
            self._lock.release()
