"""A drop-in for LMDeploy's ``lmdeploy.pytorch.messages.HistoryRouterExperts`` (0.18) that keeps a
sequence's routed experts in an archive instead of a numpy array grown by ``np.pad``.

Swap it into an engine (before the engine is built)::

    from expert_archive.integrations.lmdeploy import install
    install(experts=128)

Assigning ``messages.HistoryRouterExperts`` alone is not enough: ``SchedulerSequence`` is a
dataclass whose field default (``field(default_factory=HistoryRouterExperts)``) holds the original
class since the module was imported. ``install()`` also makes every new sequence's store this one.

Same interface and results: ``append``, ``resize``, ``reserve``, ``get_real``, ``__len__``,
``__getitem__``, ``clone``, ``copy``; ``get_real()`` returns the rows LMDeploy's returns, in the
same dtype. Additions: ``experts=`` (the id range, for compact storage), ``path=`` (an archive
that survives the process; a temporary one when None), ``threads=`` (those a prefill is
encoded and ``get_real()`` decoded on; ``default_threads()`` when None) and
``append(rows, start_pos=...)``, the rule of LMDeploy #4599: rows already stored are kept, only the uncovered tail is appended, and
a batch that would leave a gap is refused (``GapError``).

Differences: ``get_real()`` returns a read-only view (LMDeploy's is writable: stored rows are
never rewritten here); ids outside ``[0, experts)`` are refused (``SchemaError``) instead of being
wrapped by ``astype``.
"""
from __future__ import annotations

import os
import tempfile
import weakref
from typing import Any, Callable, Optional, Union

import numpy as np

from ..archive import Writer, default_threads
from ..errors import SchemaError


def _default_experts(dtype: np.dtype) -> int:
    """The id range a dtype can hold, at most the archive's 65536: what LMDeploy's array accepts."""
    return int(min(65536, int(np.iinfo(dtype).max) + 1))


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class HistoryRouterExperts:
    """The routed experts of one sequence: rows [tokens, layers, topk], indexed by position."""

    def __init__(self, expert_ids: Optional[Any] = None, dtype: Any = np.uint16, *,
                 experts: Optional[int] = None, path: Optional[Union[str, "os.PathLike[str]"]] = None,
                 threads: Optional[int] = None) -> None:
        self.dtype = np.dtype(dtype)
        self.experts = experts if experts is not None else _default_experts(self.dtype)
        self._path = None if path is None else os.fspath(path)
        # The archive's threads: a prefill encoded, get_real() decoded on them.
        self.threads = default_threads() if threads is None else threads
        self._writer: Optional[Writer] = None
        # Rows 0..<_cached decoded by get_real(), in a buffer grown by doubling (none until the
        # first get_real: an engine that never calls it keeps only the archive).
        self._cache: Optional[np.ndarray] = None
        self._cached = 0
        if self._path is not None and os.path.exists(self._path):
            self._writer = Writer.open(self._path, threads=self.threads)  # resume what an earlier process stored
        if expert_ids is not None:
            self.append(expert_ids)

    @property
    def path(self) -> Optional[str]:
        """The archive's path (None until the first rows arrive, for a temporary archive)."""
        return self._path

    def _start(self, rows: np.ndarray) -> Writer:
        """Creates the archive for the first batch: its shape gives layers and topk."""
        if rows.ndim != 3:
            raise SchemaError(f"routed experts must be [tokens, layers, topk], got shape {tuple(rows.shape)}")
        if self._path is None:
            handle, path = tempfile.mkstemp(prefix="routed-experts-", suffix=".moe")
            os.close(handle)
            writer = Writer.create(path, layers=rows.shape[1], topk=rows.shape[2], experts=self.experts,
                                   overwrite=True, threads=self.threads)
            # The temporary archive goes with this object: closed, then removed.
            weakref.finalize(self, _remove, path)
        else:
            writer = Writer.create(self._path, layers=rows.shape[1], topk=rows.shape[2], experts=self.experts,
                                   threads=self.threads)
        self._writer = writer
        return writer

    def append(self, new_data: Any, start_pos: Optional[int] = None) -> None:
        """Appends `new_data` ([n, layers, topk]; numpy or a CPU tensor) at the end, or, with
        `start_pos`, as the batch whose first row is at that position (LMDeploy #4599): rows
        already stored are kept, the rest appended; start_pos > len(self) raises GapError.
        Returns None, as LMDeploy's."""
        writer = self._writer
        if writer is None:
            writer = self._start(new_data if type(new_data) is np.ndarray else np.asarray(new_data))
        writer._append(new_data, start_pos, False)

    def resize(self, size: int) -> None:
        """Keeps the first `size` rows (at most len(self)) and discards the rest."""
        if size > len(self):
            raise AssertionError(f"resize to {size} rows, only {len(self)} are stored")
        if self._writer is not None:
            self._writer.truncate(size)
        if self._cache is not None and size < self._cached:
            # A new buffer, as LMDeploy's copy on resize: views returned before keep their rows.
            self._cache = self._cache[:size].copy()
            self._cached = size

    def reserve(self, size: int) -> None:
        """Nothing to do: the archive grows a block at a time without copying what it holds."""

    def get_real(self) -> Optional[np.ndarray]:
        """The rows [len(self), layers, topk] in this object's dtype (None before any append), as
        a read-only view. Rows are decoded once: each call decodes only those appended since
        the last (LMDeploy's prefix cache calls it whenever a block of tokens completes)."""
        writer = self._writer
        if writer is None:
            return None
        count = len(writer)
        cache = self._cache
        if cache is None or len(cache) < count:
            # Grown by doubling: each row is copied a bounded number of times.
            grown = np.empty((max(count, 2 * (0 if cache is None else len(cache)), 64),
                              writer.schema.layers, writer.schema.topk), dtype=self.dtype)
            if cache is not None:
                grown[: self._cached] = cache[: self._cached]
            self._cache = cache = grown
        if self._cached < count:
            writer.read(self._cached, count, out=cache[self._cached:count])
            self._cached = count
        real = cache[:count]
        real.flags.writeable = False
        return real

    def __len__(self) -> int:
        writer = self._writer
        return 0 if writer is None else len(writer)

    def __getitem__(self, key: Any) -> Any:
        """As ``get_real()[key]``; a slice of positions decodes only those rows."""
        writer = self._writer
        if writer is not None and isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(len(writer))
            return writer.read(start, max(start, stop), dtype=self.dtype)
        return self.get_real().__getitem__(key)  # type: ignore[index]  # None: AttributeError, as LMDeploy

    def clone(self) -> "HistoryRouterExperts":
        """An independent copy (its own temporary archive)."""
        return type(self)(self.get_real(), dtype=self.dtype, experts=self.experts, threads=self.threads)

    def copy(self) -> "HistoryRouterExperts":
        return self.clone()

    def close(self) -> None:
        """Flushes, syncs and releases the archive (also done when the object is collected)."""
        if self._writer is not None:
            self._writer.close()

    def __repr__(self) -> str:
        return f"HistoryRouterExperts(rows={len(self)}, dtype={self.dtype}, experts={self.experts}, path={self._path!r})"


def install(experts: Optional[int] = None, messages: Any = None) -> None:
    """Makes LMDeploy's PyTorch engine keep every sequence's routed experts in an archive:
    ``lmdeploy.pytorch.messages.HistoryRouterExperts`` becomes this class, and each new
    ``SchedulerSequence`` gets one (its dataclass default still builds LMDeploy's, which is
    converted at the end of ``__post_init__``). `experts`: the models' expert count (compact
    storage; by default what the dtype holds). `messages`: the module to patch (default:
    ``lmdeploy.pytorch.messages``). Calling it again changes nothing."""
    if messages is None:
        from lmdeploy.pytorch import messages  # type: ignore[import-not-found, no-redef]
    if getattr(messages, "_expert_archive_installed", False):
        return
    sequence = messages.SchedulerSequence
    post_init: Callable[[Any], None] = sequence.__post_init__

    def __post_init__(self: Any) -> None:
        post_init(self)
        current = self.all_routed_experts
        if current is not None and not isinstance(current, HistoryRouterExperts):
            self.all_routed_experts = HistoryRouterExperts(current.get_real(), dtype=current.dtype, experts=experts)

    sequence.__post_init__ = __post_init__
    messages.HistoryRouterExperts = HistoryRouterExperts
    messages._expert_archive_installed = True
