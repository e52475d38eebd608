"""LMDeploy's HistoryRouterExperts, copied from lmdeploy/pytorch/messages.py (InternLM/lmdeploy,
Apache-2.0): the class the drop-in replaces, as the tests' reference. `append_routed_experts`
with `start_pos` is the rule of LMDeploy #4599 (DOMAIN.md), written over the same class."""
from __future__ import annotations

import numpy as np


def _round_up(x: int, n: int) -> int:
    return (x + n - 1) // n * n


class _HistoryDataBase:
    """Base class for history data storage."""
    ALLOC_SIZE = 512
    COPY_ON_RESIZE = False

    def __init__(self, data: np.ndarray = None, dtype: np.dtype = np.int64):
        self.dtype = dtype
        self._data = None
        self._num_real = 0

        if data is None:
            self._data = self._create_empty_array(dtype)
        else:
            self._data = data.astype(dtype) if hasattr(data, 'astype') else data
            self._num_real = len(data)

    def _create_empty_array(self, dtype):
        return np.empty((self.ALLOC_SIZE, ), dtype=dtype)

    def _get_pad_width(self, reserve_size: int):
        return (0, reserve_size)

    def reserve(self, size: int):
        """Reserve cache."""
        if self._data is None:
            return
        num_tokens = len(self._data)
        if num_tokens >= size:
            return
        reserve_size = _round_up(size - num_tokens, self.ALLOC_SIZE)
        pad_width = self._get_pad_width(reserve_size)
        self._data = np.pad(self._data, pad_width)

    def get_real(self):
        """Get real data."""
        if self._data is None:
            return None
        return self._data[:self._num_real]

    def resize(self, size: int):
        """Set size."""
        assert size <= self._num_real
        self._num_real = size
        if self.COPY_ON_RESIZE and self._data is not None:
            self._data = self._data[:size].copy()

    def append(self, new_data: np.ndarray):
        """Append data."""
        if self._data is None:
            self._data = new_data.astype(self.dtype)
            self._num_real = len(new_data)
            return
        num_tokens = len(new_data)
        self.reserve(num_tokens + self._num_real)
        slice_start = self._num_real
        slice_end = slice_start + num_tokens
        self._num_real += num_tokens
        self._data[slice_start:slice_end] = new_data

    def __getitem__(self, *args, **kwargs):
        return self.get_real().__getitem__(*args, **kwargs)

    def __len__(self):
        return self._num_real

    def clone(self):
        data = None if self._data is None else self.get_real().copy()
        ret = type(self)(data, dtype=self.dtype)
        return ret

    def copy(self):
        return self.clone()


class HistoryRouterExperts(_HistoryDataBase):
    """History router experts."""
    ALLOC_SIZE = 64
    COPY_ON_RESIZE = True

    def __init__(self, expert_ids: np.ndarray = None, dtype: np.dtype = np.uint16):
        super().__init__(expert_ids, dtype)

    def _create_empty_array(self, dtype):
        return None

    def _get_pad_width(self, reserve_size: int):
        return ((0, reserve_size), (0, 0), (0, 0))


def append_with_start_pos(history: HistoryRouterExperts, rows: np.ndarray, start_pos: int) -> None:
    """LMDeploy #4599: the batch's first row is at `start_pos`; stored rows are kept, the
    uncovered tail appended; a gap is refused."""
    stored = len(history)
    if start_pos > stored:
        raise ValueError(f"routed experts start at {start_pos} but {stored} are stored")
    history.append(rows[stored - start_pos:])
