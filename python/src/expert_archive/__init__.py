"""expert_archive: routed-expert traces of MoE models, stored compactly and crash-safely.

    import expert_archive as ea
    with ea.Writer.create("session.moe", layers=48, topk=8, experts=128) as w:
        w.append(prefill_rows, start=0)          # [n, 48, 8] ints: numpy, torch CPU, buffers
        w.append(decode_row)                     # at len(w)
    r = ea.Reader("session.moe")
    rows = r[0:len(r)]                           # [n, 48, 8] uint8
"""
from .archive import AppendResult, Reader, Schema, Writer, default_threads
from .batch import read_batch
from .errors import (ArchiveError, ArchiveIOError, ClosedError, DamagedError, ExistsError, GapError,
                     InvalidArgumentError, LockedError, OutOfRangeError, SchemaError)

__version__ = "0.1.0"

__all__ = [
    "AppendResult", "ArchiveError", "ArchiveIOError", "ClosedError", "DamagedError", "ExistsError", "GapError",
    "InvalidArgumentError", "LockedError", "OutOfRangeError", "Reader", "Schema", "SchemaError", "Writer", "default_threads",
    "read_batch",
]
