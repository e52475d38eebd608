"""read_batch: the rows of many sessions, each from its own token range, decoded into one array."""
from __future__ import annotations

import ctypes
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import _ids
from ._native import Error
from .archive import default_threads
from .errors import from_status

# Below this many ids a batch is decoded on the calling thread: a pool's start-up would cost more
# than the decode (a Qwen3-30B-A3B row is 384 ids; 1M ids is about 2,700 rows).
_PARALLEL_IDS = 1 << 20

Bounds = Union[None, int, Sequence[int], np.ndarray]


def _bounds(value: Bounds, count: int, default: Sequence[int], what: str) -> list[int]:
    """`starts=` / `stops=` as one int per session (None: the default; an int: the same for all)."""
    if value is None:
        return list(default)
    if isinstance(value, (int, np.integer)):
        return [int(value)] * count
    values = [int(v) for v in value]
    if len(values) != count:
        raise ValueError(f"{what} has {len(values)} entries for {count} readers")
    return values


def _output(out: Any, shape: tuple[int, ...], dtype: np.dtype, what: str) -> tuple[Any, np.ndarray]:
    """A new array of `shape`, or `out` checked to be one (any buffer: numpy, a torch CPU tensor)."""
    if out is None:
        array = np.empty(shape, dtype=dtype)
        return array, array
    target = _ids.as_array(out)
    if target.dtype != dtype:
        raise ValueError(f"out has dtype {target.dtype}, the batch is read as {dtype}")
    if not (target.flags.c_contiguous and target.flags.writeable and target.flags.aligned):
        raise ValueError("out must be a writable, aligned, C-contiguous array")
    if tuple(target.shape) != shape:
        raise ValueError(f"out has shape {tuple(target.shape)}, {what} needs {shape}")
    return out, target


def read_batch(readers: Sequence[Any], *, starts: Bounds = None, stops: Bounds = None,
               layers: Union[slice, range, None] = None, dtype: Any = np.int32, pad: int = -1,
               packed: bool = False, out: Any = None, max_len: Optional[int] = None,
               threads: Optional[int] = None) -> Any:
    """Rows `starts[b]..<stops[b]` of layers `layers` of every `readers[b]`, decoded into one array.

    readers: Readers (or Writers) sharing layers and top-k, e.g. a GRPO group's sessions.
    starts, stops: one position per session, or one int for all (default: 0 and each length):
        a context- or sequence-parallel rank's token range.
    layers: a slice of layers (a pipeline stage's); only those columns are decoded.
    dtype: the output's integer dtype (int32 by default, what Megatron's router replay takes).

    Padded (default): an array [B, max_len, layers, topk], session b's rows at [b, :len_b] and
    `pad` in the rest (max_len: the longest range, or a larger fixed length).
    packed=True: (array [sum of lengths, layers, topk], cu_seqlens int32 [B + 1]), session b at
    array[cu_seqlens[b]:cu_seqlens[b + 1]], the layout of packed sequences (THD).

    out: a preallocated C-contiguous array of exactly that shape and dtype (numpy, a torch CPU
    tensor, anything with the buffer protocol), written in place and returned. Each session is
    decoded straight into its slice of the output, on `threads` threads (default:
    default_threads(), up to B) when the batch holds more than about a million ids. Readers are
    independent handles and run in parallel; a reader listed twice runs its reads one at a time.
    Errors: the first failing session's exception, its message prefixed with `readers[b]`.
    """
    readers = list(readers)
    count = len(readers)
    if count == 0:
        raise ValueError("read_batch needs at least one reader")
    schema = readers[0].schema
    for index, reader in enumerate(readers[1:], 1):
        if (reader.schema.layers, reader.schema.topk) != (schema.layers, schema.topk):
            raise ValueError(f"readers[{index}] has rows of {reader.schema.layers} layers x top-{reader.schema.topk}, "
                             f"readers[0] of {schema.layers} x top-{schema.topk}")
    lengths = [len(reader) for reader in readers]
    first = _bounds(starts, count, [0] * count, "starts")
    last = _bounds(stops, count, lengths, "stops")
    for index, (start, stop, length) in enumerate(zip(first, last, lengths)):
        if not 0 <= start <= stop <= length:
            raise IndexError(f"readers[{index}]: rows {start}..<{stop} are outside its 0..<{length}")
    layer_start, layer_stop = _ids.layer_range(layers, schema.layers)
    dtype = np.dtype(dtype)
    code = _ids.CODES.get(dtype)
    if code is None:
        raise TypeError(f"ids are read into native-order integer arrays, not {dtype}")
    largest_id = max(reader.schema.experts for reader in readers) - 1
    if largest_id > np.iinfo(dtype).max:
        raise ValueError(f"{dtype} cannot hold expert ids up to {largest_id}")
    sizes = [stop - start for start, stop in zip(first, last)]
    row_shape = (layer_stop - layer_start, schema.topk)
    row_ids = row_shape[0] * row_shape[1]

    if packed:
        cu_seqlens = np.zeros(count + 1, dtype=np.int32)
        np.cumsum(sizes, out=cu_seqlens[1:])
        result, array = _output(out, (int(cu_seqlens[-1]),) + row_shape, dtype, "the packed batch")
        offsets = [int(row) * row_ids for row in cu_seqlens[:-1]]
    else:
        longest = max(sizes)
        length = longest if max_len is None else int(max_len)
        if length < longest:
            raise ValueError(f"max_len {length} is shorter than the longest range, {longest} rows")
        if not np.iinfo(dtype).min <= pad <= np.iinfo(dtype).max:
            raise ValueError(f"pad {pad} does not fit {dtype}")
        result, array = _output(out, (count, length) + row_shape, dtype, "the padded batch")
        offsets = [index * length * row_ids for index in range(count)]
        for index, size in enumerate(sizes):
            if size < length:
                array[index, size:] = pad

    flat = array.reshape(-1)
    base, itemsize = flat.ctypes.data, dtype.itemsize

    def decode(index: int) -> Optional[Exception]:
        # An Error of its own: a reader's shared one would be written by two threads at once.
        error = Error()
        reader, ids = readers[index], sizes[index] * row_ids
        if ids and reader._read_function(reader._handle, first[index], last[index], layer_start, layer_stop, code,
                                         base + offsets[index] * itemsize, ids, ctypes.byref(error)):
            message = error.message.decode("utf-8", "replace")
            return from_status(error.code, error.sys_errno, f"readers[{index}]: {message}")
        return None

    workers = threads if threads is not None else min(default_threads(), count)
    if workers > 1 and count > 1 and sum(sizes) * row_ids > _PARALLEL_IDS:
        with ThreadPoolExecutor(max_workers=min(workers, count)) as pool:
            failures = list(pool.map(decode, range(count)))
    else:
        failures = []
        for index in range(count):
            failures.append(decode(index))
            if failures[-1] is not None:
                break
    for failure in failures:
        if failure is not None:
            raise failure
    return (result, cu_seqlens) if packed else result


__all__ = ["read_batch"]
