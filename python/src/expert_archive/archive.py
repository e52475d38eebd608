"""Writer and Reader: the archive from Python, through libexpert_archive.so."""
from __future__ import annotations

import ctypes
import json
import os
import pickle
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Union

import numpy as np

from . import _ids
from ._native import AppendResultStruct, Error, SchemaStruct, lib

_fast_append: Optional[Callable[[tuple[int, ...], object], Optional[int]]]
try:  # compiled by the package's build where it can be; else the same call goes through ctypes
    from ._fastappend import append as _fast_append
except ImportError:
    _fast_append = None
from .errors import ArchiveError, ClosedError, InvalidArgumentError, from_status

PathLike = Union[str, "os.PathLike[str]"]
_CODECS = {"fast": 1, "compact": 2}
_CODEC_NAMES = {code: name for name, code in _CODECS.items()}


@dataclass(frozen=True)
class Schema:
    """The shape of a row and the id range."""

    layers: int
    topk: int
    experts: int
    dense_layers: tuple[int, ...]
    bits: int
    codec: str
    block_rows: int


class AppendResult(NamedTuple):
    """What one append did."""

    appended: int
    """Rows of the batch stored: its uncovered tail."""
    skipped: int
    """Rows of the batch already stored, dropped (the stored ones are kept)."""
    differing: Optional[int]
    """Of the skipped rows, how many differ from the stored ones (None unless compare=True)."""


def _raise(error: Error) -> None:
    raise from_status(error.code, error.sys_errno, error.message.decode("utf-8", "replace"))


def _opened(handle: ctypes.c_void_p) -> int:
    """The handle a successful open call filled in (never NULL then)."""
    if handle.value is None:
        raise ArchiveError("the library returned success without a handle")
    return handle.value


def _path_bytes(path: PathLike) -> bytes:
    return os.fsencode(os.fspath(path))


def _text(function: Any, handle: int, error: Error) -> str:
    length = ctypes.c_size_t(0)
    if function(handle, None, 0, ctypes.byref(length), ctypes.byref(error)):
        _raise(error)
    buffer = ctypes.create_string_buffer(length.value + 1)
    if function(handle, buffer, len(buffer), ctypes.byref(length), ctypes.byref(error)):
        _raise(error)
    return buffer.value.decode("utf-8")


def _schema(schema_function: Any, dense_function: Any, handle: int, error: Error) -> Schema:
    raw = SchemaStruct()
    if schema_function(handle, ctypes.byref(raw), ctypes.byref(error)):
        _raise(error)
    dense = (ctypes.c_int32 * max(1, raw.dense_count))()
    if dense_function(handle, dense, raw.dense_count, ctypes.byref(error)):
        _raise(error)
    return Schema(layers=raw.layers, topk=raw.topk, experts=raw.experts,
                  dense_layers=tuple(dense[i] for i in range(raw.dense_count)), bits=raw.bits,
                  codec=_CODEC_NAMES.get(raw.codec, str(raw.codec)), block_rows=raw.block_rows)


class _RowSource:
    """Reads of rows and layers into numpy arrays, shared by Reader and Writer."""

    schema: Schema
    _handle: int
    _error: Error
    _read_function: Any
    _threads_function: Any
    _threads: int

    @property
    def threads(self) -> int:
        """Threads a read of many blocks is split between, each decoding a contiguous run of at
        least four blocks into its own part of the output; a Writer's also encode an append of
        many whole blocks, each with an encoder of its own (the bytes written are the same for
        any count). 1: the calling thread alone."""
        return self._threads

    @threads.setter
    def threads(self, threads: int) -> None:
        if self._threads_function(self._handle, int(threads), ctypes.byref(self._error)):
            _raise(self._error)
        self._threads = int(threads)

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, start: int = 0, stop: Optional[int] = None, *, layers: Union[slice, range, None] = None,
             dtype: Any = None, out: Any = None) -> Any:
        """Rows `start..<stop` (all from `start` by default) as an array [rows, layers, topk].

        layers: a slice of layer indices: only those are decoded (a pipeline stage's own).
        dtype: any integer dtype that holds the ids (default: the narrowest, uint8 or uint16).
        out: a preallocated C-contiguous array (numpy, a torch CPU tensor, anything with the
        buffer protocol) of that many ids, written in place and returned; its dtype is used.
        """
        if stop is None:
            stop = len(self)
        layer_start, layer_stop = _ids.layer_range(layers, self.schema.layers)
        shape = (max(0, stop - start), layer_stop - layer_start, self.schema.topk)
        if out is None:
            target = result = np.empty(shape, dtype=_ids.narrowest(self.schema.experts) if dtype is None else dtype)
        else:
            result = out
            target = _ids.as_array(out)
            if dtype is not None and np.dtype(dtype) != target.dtype:
                raise ValueError(f"dtype {np.dtype(dtype)} differs from the output's {target.dtype}")
            if not (target.flags.c_contiguous and target.flags.writeable and target.flags.aligned):
                raise ValueError("out must be a writable, aligned, C-contiguous array")
            if target.size != shape[0] * shape[1] * shape[2]:
                raise ValueError(f"out holds {target.size} ids, rows {start}..<{stop} of layers "
                                 f"{layer_start}..<{layer_stop} are {shape[0] * shape[1] * shape[2]}")
        code = _ids.CODES.get(target.dtype)
        if code is None:
            raise TypeError(f"ids are read into native-order integer arrays, not {target.dtype}")
        if self._read_function(self._handle, start, stop, layer_start, layer_stop, code, target.ctypes.data,
                               target.size, ctypes.byref(self._error)):
            _raise(self._error)
        return result

    def __getitem__(self, key: Union[int, slice]) -> np.ndarray:
        """`r[a:b]`: rows as [b-a, layers, topk] of the narrowest dtype; `r[i]`: one row [layers, topk]."""
        count = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(count)
            if step == 1:
                rows: np.ndarray = self.read(start, max(start, stop))
                return rows
            low, high = (start, stop) if step > 0 else (stop + 1, start + 1)
            block: np.ndarray = self.read(low, max(low, high))
            stepped: np.ndarray = block[start - low::step]
            return stepped
        index = int(key)  # numpy integers too
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError(f"row {key} of {count}")
        row: np.ndarray = self.read(index, index + 1)[0]
        return row


def default_threads() -> int:
    """A Reader's decoding threads unless told: OMP_NUM_THREADS when it is set (as numpy's and
    torch's thread pools take it; Ray sets it to a task's CPUs), else the CPUs this process may
    run on."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        return max(1, min(cpus, int(os.environ["OMP_NUM_THREADS"])))
    except (KeyError, ValueError):
        return cpus


class Reader(_RowSource):
    """Read-only access to an archive; any number, in any process, while one writer appends.
    A reader sees the rows flushed when it opened or last refreshed (a consistent prefix).
    A read of many blocks is decoded on `threads` threads (default: default_threads(); see the
    `threads` property), with the GIL released. A Reader is for one thread at a
    time: open a Reader per thread to read in parallel."""

    # The memory a reader from_buffer reads in place (absent for a file).
    _buffer: Any

    def __init__(self, path: PathLike, *, threads: Optional[int] = None) -> None:
        self.path = os.fspath(path)
        self._error = Error()
        handle = ctypes.c_void_p()
        if lib.ea_reader_open(_path_bytes(path), ctypes.byref(handle), ctypes.byref(self._error)):
            _raise(self._error)
        self._handle = _opened(handle)
        self._free = weakref.finalize(self, lib.ea_reader_free, self._handle)
        self._read_function = lib.ea_reader_read
        self._threads_function = lib.ea_reader_set_threads
        self.schema = _schema(lib.ea_reader_schema, lib.ea_reader_dense_layers, self._handle, self._error)
        self.metadata: dict[str, str] = json.loads(_text(lib.ea_reader_metadata, self._handle, self._error))
        self.threads = default_threads() if threads is None else threads

    def __len__(self) -> int:
        return int(lib.ea_reader_count(self._handle))

    def refresh(self) -> int:
        """Sees what a writer flushed (or truncated) since; returns the rows now visible."""
        count = ctypes.c_int64()
        if lib.ea_reader_refresh(self._handle, ctypes.byref(count), ctypes.byref(self._error)):
            _raise(self._error)
        return count.value

    def verify(self) -> list[str]:
        """Checks every block whole; the problems found, one line each (empty when intact)."""
        problems = ctypes.c_size_t()
        if lib.ea_reader_verify(self._handle, ctypes.byref(problems), ctypes.byref(self._error)):
            _raise(self._error)
        lines = []
        for index in range(problems.value):
            lines.append(_text(lambda h, *rest: lib.ea_reader_problem(h, index, *rest), self._handle, self._error))
        return lines

    @classmethod
    def from_buffer(cls, buffer: Any, name: str = "<buffer>", *, threads: Optional[int] = None) -> "Reader":
        """A reader of the archive held in `buffer`: bytes, a memoryview, a numpy uint8 array, a
        Ray object-store buffer, anything C-contiguous with the buffer protocol. The bytes are
        read in place, never copied: the reader keeps a reference to `buffer` for its lifetime,
        and the buffer must not change while it lives. `name` stands for the file in messages.
        The rows are those of the whole archive in the buffer (refresh() finds nothing new)."""
        view = memoryview(buffer)
        if not view.c_contiguous:
            raise ValueError(f"{name}: the buffer must be C-contiguous")
        data = np.frombuffer(view.cast("B") if view.format != "B" or view.ndim != 1 else view, dtype=np.uint8)
        self = cls.__new__(cls)
        self.path = name
        self._error = Error()
        handle = ctypes.c_void_p()
        if lib.ea_reader_open_memory(data.ctypes.data, data.nbytes, name.encode(), ctypes.byref(handle),
                                     ctypes.byref(self._error)):
            _raise(self._error)
        self._handle = _opened(handle)
        self._buffer = buffer
        # The finalizer holds the buffer too: the memory outlives the handle reading it.
        self._free = weakref.finalize(self, _free_memory_reader, self._handle, data)
        self._read_function = lib.ea_reader_read
        self._threads_function = lib.ea_reader_set_threads
        self.schema = _schema(lib.ea_reader_schema, lib.ea_reader_dense_layers, self._handle, self._error)
        self.metadata = json.loads(_text(lib.ea_reader_metadata, self._handle, self._error))
        self.threads = default_threads() if threads is None else threads
        return self

    @property
    def in_memory(self) -> bool:
        """Whether the archive is read from a buffer (from_buffer, or unpickled) rather than a file."""
        return hasattr(self, "_buffer")

    def archive_bytes(self) -> Any:
        """The archive's bytes as of the open or last refresh (its header through its last valid
        record): for a reader over a buffer, a memoryview of it (no copy); for a file, a copy
        (a numpy uint8 array) that Reader.from_buffer reads back as the same rows."""
        length = ctypes.c_size_t(0)
        if lib.ea_reader_copy_archive(self._handle, None, 0, ctypes.byref(length), ctypes.byref(self._error)):
            _raise(self._error)
        if self.in_memory:
            return memoryview(self._buffer).cast("B")[:length.value]
        data = np.empty(length.value, dtype=np.uint8)
        if lib.ea_reader_copy_archive(self._handle, data.ctypes.data, data.nbytes, ctypes.byref(length),
                                      ctypes.byref(self._error)):
            _raise(self._error)
        return data[:length.value]

    def __reduce_ex__(self, protocol: Any) -> Any:
        # The archive's bytes travel, not the file name: the reader unpickled on another machine
        # reads them in place. Protocol 5 hands them out of band (Ray puts them in its object
        # store as they are, and the reader of ray.get reads them there).
        data = self.archive_bytes()
        if isinstance(protocol, int) and protocol >= 5:
            return (_reader_from_pickle, (pickle.PickleBuffer(data), self.path))
        return (_reader_from_pickle, (bytes(data), self.path))

    def close(self) -> None:
        """Releases the reader (also done when it is garbage collected)."""
        self._free()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        origin = "Reader.from_buffer" if self.in_memory else "Reader"
        return f"{origin}({self.path!r}, rows={len(self)}, schema={self.schema})"


def _free_memory_reader(handle: int, buffer: Any) -> None:
    lib.ea_reader_free(handle)


def _reader_from_pickle(buffer: Any, name: str) -> Reader:
    return Reader.from_buffer(buffer, name)


_STAGE_ROWS = 16


# ea_writer_append without argument types, for the staged path's arguments made in advance (each
# of the C type the header declares): its own function object, so that lib's keeps its argtypes.
_append_prepared = lib["ea_writer_append"]
_append_prepared.restype = ctypes.c_int32
_SIZES = tuple(ctypes.c_size_t(n) for n in range(_STAGE_ROWS + 1))
_AT_END = ctypes.c_int64(-1)
_APPEND_ADDRESS: int = ctypes.cast(lib.ea_writer_append, ctypes.c_void_p).value or 0
_TRUE, _FALSE = ctypes.c_int(1), ctypes.c_int(0)


class _Stage:
    """Rows of one dtype that small appends are copied into before the call: its address is
    taken once."""

    def __init__(self, dtype: np.dtype, schema: Schema) -> None:
        self.rows = np.zeros((_STAGE_ROWS, schema.layers, schema.topk), dtype=dtype)
        self.flat = self.rows.reshape(_STAGE_ROWS, schema.layers * schema.topk)
        self.address = ctypes.c_void_p(self.rows.ctypes.data)
        self.code = ctypes.c_int32(_ids.CODES[dtype])


class _Repeat:
    """The last staged append at the end, made again by a call whose rows have its shape and
    dtype (a decode step's): the arguments of _fastappend's call, and for ctypes' where the rows
    are copied and the call's arguments, made once."""

    __slots__ = ("shape", "dtype", "prepared", "target", "arguments")

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, prepared: tuple[int, ...], target: np.ndarray,
                 arguments: tuple[Any, ...]) -> None:
        self.shape = shape
        self.dtype = dtype
        self.prepared = prepared
        self.target = target
        self.arguments = arguments


class Writer(_RowSource):
    """The one writer of an archive (a lock refuses a second one, in any process).

    Rows are indexed by absolute position. append() refuses a batch that would leave a gap,
    keeps rows already stored (first writer wins) and appends only the uncovered tail;
    truncate() is the only way rows are discarded. flush() makes rows visible to readers,
    sync() durable, close() does both. A writer is a context manager, for one thread at a time.
    An append of many whole blocks (a prefill, an import) is encoded, and a read of many blocks
    decoded, on `threads` threads (1 unless told: a decode step's append never needs more)."""

    def __init__(self, handle: int, path: PathLike, threads: int = 1) -> None:
        # Use Writer.create or Writer.open.
        self.path = os.fspath(path)
        self._handle = handle
        self._free = weakref.finalize(self, lib.ea_writer_free, handle)
        self._error = Error()
        self._result = AppendResultStruct()
        self._result_reference = ctypes.byref(self._result)
        self._error_reference = ctypes.byref(self._error)
        self._handle_argument = ctypes.c_void_p(handle)
        self._append_function = lib.ea_writer_append
        self._read_function = lib.ea_writer_read
        self._threads_function = lib.ea_writer_set_threads
        self.schema = _schema(lib.ea_writer_schema, lib.ea_writer_dense_layers, handle, self._error)
        self.metadata: dict[str, str] = json.loads(_text(lib.ea_writer_metadata, handle, self._error))
        self._shapes = ((self.schema.layers, self.schema.topk), (self.schema.layers * self.schema.topk,))
        self._stages: dict[np.dtype, _Stage] = {}
        self._repeat: Optional[_Repeat] = None
        # Rows held, buffered ones included: kept here (only this writer changes it) so that
        # len() costs no call.
        self._count = int(lib.ea_writer_count(handle))
        self.threads = threads

    @classmethod
    def create(cls, path: PathLike, layers: int = 48, topk: int = 8, experts: int = 128,
               dense_layers: Iterable[int] = (), codec: str = "fast",
               metadata: Optional[Mapping[str, str]] = None, overwrite: bool = False,
               block_rows: Optional[int] = None, threads: int = 1) -> "Writer":
        """Creates an archive for rows of `layers` x `topk` ids in [0, experts).
        dense_layers: layers without routing (stored as nothing, read as 0). codec: "fast" or
        "compact" (smaller, slower). threads: see the `threads` property. Fails with ExistsError
        if `path` exists, unless overwrite."""
        if codec not in _CODECS:
            raise ValueError(f"codec must be one of {sorted(_CODECS)}, got {codec!r}")
        dense = [int(layer) for layer in dense_layers]
        dense_array = (ctypes.c_int32 * max(1, len(dense)))(*dense)
        items = list((metadata or {}).items())
        keys = (ctypes.c_char_p * max(1, len(items)))(*[str(k).encode() for k, _ in items])
        values = (ctypes.c_char_p * max(1, len(items)))(*[str(v).encode() for _, v in items])
        error, handle = Error(), ctypes.c_void_p()
        if lib.ea_writer_create(_path_bytes(path), layers, topk, experts, dense_array, len(dense), _CODECS[codec],
                                block_rows or 0, keys, values, len(items), int(overwrite), ctypes.byref(handle),
                                ctypes.byref(error)):
            _raise(error)
        return cls(_opened(handle), path, threads)

    @classmethod
    def open(cls, path: PathLike, threads: int = 1) -> "Writer":
        """Opens an archive to append, resuming at its row count (a torn tail is cut off)."""
        error, handle = Error(), ctypes.c_void_p()
        if lib.ea_writer_open(_path_bytes(path), ctypes.byref(handle), ctypes.byref(error)):
            _raise(error)
        return cls(_opened(handle), path, threads)

    def __len__(self) -> int:
        return self._count

    def append(self, rows: Any, start: Optional[int] = None, compare: bool = False) -> AppendResult:
        """Appends `rows` ([n, layers, topk] or [n, layers*topk] integers) whose first row is at
        position `start` (default: len(self)).
        start > len: GapError, nothing stored. The first len - start rows are already stored:
        they are kept and the batch's dropped (compare=True counts the differing ones); the
        rest is appended. Any error leaves the archive as it was."""
        self._append(rows, start, compare)
        result = self._result
        return AppendResult(result.appended, result.skipped, result.differing if compare else None)

    def _append(self, rows: Any, start: Optional[int], compare: bool) -> None:
        """append() without building its result (left in self._result): a decode step's path."""
        repeat = self._repeat
        if (repeat is not None and start is None and not compare and type(rows) is np.ndarray
                and rows.shape == repeat.shape and rows.dtype is repeat.dtype):
            # A batch like the last one: each check or conversion skipped here costs more than
            # the append itself (the library checks the ids).
            status = None if _fast_append is None else _fast_append(repeat.prepared, rows)
            if status is None:  # no compiled call, or rows not contiguous
                repeat.target[...] = rows
                status = _append_prepared(*repeat.arguments)
            if status:
                _raise(self._error)
            self._count += self._result.appended
            return
        array = rows if type(rows) is np.ndarray else _ids.as_array(rows)
        if start is not None and start < 0:
            raise InvalidArgumentError(f"{self.path}: batch start {start} is negative")
        stage = self._stages.get(array.dtype)
        shape = array.shape
        if stage is not None and shape[1:] in self._shapes and shape[0] <= _STAGE_ROWS:
            # A decode step's batch: copied into this writer's staging rows, whose address is
            # known, and passed with arguments made once (array.ctypes and ctypes' argument
            # conversions cost more than the append itself).
            count = shape[0]
            target = (stage.rows if len(shape) == 3 else stage.flat)[:count]
            target[...] = array
            arguments = (self._handle_argument, stage.address, stage.code, _SIZES[count],
                         _AT_END if start is None else ctypes.c_int64(start), _TRUE if compare else _FALSE,
                         self._result_reference, self._error_reference)
            if start is None and not compare:
                prepared = (_APPEND_ADDRESS, self._handle, stage.code.value, stage.flat.strides[0],
                            ctypes.addressof(self._result), ctypes.addressof(self._error))
                self._repeat = _Repeat(shape, array.dtype, prepared, target, arguments)
            status = _append_prepared(*arguments)
        else:
            array = _ids.id_array(array, self.schema.layers, self.schema.topk, self.path)
            if array.dtype not in self._stages:
                self._stages[array.dtype] = _Stage(array.dtype, self.schema)
            status = self._append_function(self._handle, array.ctypes.data, _ids.CODES[array.dtype], array.shape[0],
                                           -1 if start is None else start, compare, self._result, self._error)
        if status:
            _raise(self._error)
        self._count += self._result.appended

    def flush(self) -> None:
        """Writes buffered rows: readers see them."""
        if lib.ea_writer_flush(self._handle, self._error):
            _raise(self._error)

    def sync(self) -> None:
        """Flushes and makes every row durable."""
        if lib.ea_writer_sync(self._handle, self._error):
            _raise(self._error)

    def truncate(self, rows: int) -> None:
        """Keeps rows 0..<rows and discards the rest, durably (a rollback)."""
        if lib.ea_writer_truncate(self._handle, rows, self._error):
            _raise(self._error)
        self._count = int(lib.ea_writer_count(self._handle))

    def close(self) -> None:
        """Flushes, syncs and releases the lock; later calls raise ClosedError."""
        if lib.ea_writer_close(self._handle, self._error):
            _raise(self._error)

    def to_reader(self) -> Reader:
        """Flushes and returns a Reader of the rows stored so far: the way a session leaves the
        process that wrote it (pickle it, ray.put it: its archive's bytes travel). The writer
        stays open; close() it first when the session is finished, so that the rows are durable."""
        try:
            self.flush()
        except ClosedError:
            pass  # close() flushed every row
        return Reader(self.path)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(f"{self.path}: a Writer holds the archive's lock and is not pickled; "
                        "ship writer.to_reader() (the archive's bytes) instead")

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Writer({self.path!r}, rows={len(self)}, schema={self.schema})"


__all__ = ["AppendResult", "ArchiveError", "Reader", "Schema", "Writer", "default_threads"]
