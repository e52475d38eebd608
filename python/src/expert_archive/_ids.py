"""numpy dtypes and shapes of ids as the C interface takes them."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import SchemaError

# ea_dtype codes of include/expert_archive.h, for the native-order integer dtypes.
CODES: dict[np.dtype, int] = {
    np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.uint16): 3, np.dtype(np.int16): 4,
    np.dtype(np.uint32): 5, np.dtype(np.int32): 6, np.dtype(np.uint64): 7, np.dtype(np.int64): 8,
}


def narrowest(experts: int) -> np.dtype:
    """The narrowest unsigned dtype that holds ids in [0, experts)."""
    return np.dtype(np.uint8) if experts <= 256 else np.dtype(np.uint16)


def as_array(rows: Any) -> np.ndarray:
    """`rows` as an ndarray without a copy where possible: ndarrays, torch CPU tensors and
    anything with __array__ or the buffer protocol."""
    if type(rows) is np.ndarray:
        return rows
    return np.asarray(rows)


def id_array(rows: Any, layers: int, topk: int, what: str) -> np.ndarray:
    """`rows` as a C-contiguous, aligned, native-order integer array of whole rows
    ([n, layers, topk] or [n, layers * topk]); refused with SchemaError or TypeError otherwise."""
    array = as_array(rows)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{what}: ids must be integers, got dtype {array.dtype}")
    if array.shape[1:] != (layers, topk) and array.shape[1:] != (layers * topk,):
        raise SchemaError(f"{what}: rows of shape {tuple(array.shape)} do not fit the archive's "
                          f"{layers} layers x top-{topk}: expected [n, {layers}, {topk}] or [n, {layers * topk}]")
    if array.dtype not in CODES:  # non-native byte order
        array = array.astype(array.dtype.newbyteorder("="))
    if not (array.flags.c_contiguous and array.flags.aligned):
        array = np.ascontiguousarray(array)
    return array


def layer_range(layers: Any, count: int) -> tuple[int, int]:
    """A `layers=` argument (None, a slice with step 1, a range with step 1) as (start, stop)."""
    if layers is None:
        return 0, count
    if isinstance(layers, (slice, range)):
        if layers.step not in (None, 1):
            raise ValueError(f"layers must be a contiguous range (step 1), got {layers}")
        start, stop, _ = slice(layers.start, layers.stop).indices(count)
        return start, max(start, stop)
    raise TypeError(f"layers must be a slice or range of layer indices, got {type(layers).__name__}")
