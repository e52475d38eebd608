"""The exceptions of expert_archive: one class per status of the C interface."""
from __future__ import annotations


class ArchiveError(Exception):
    """Base of every error the archive reports. Its message is the library's: the file and the
    position at fault. A failed call leaves the archive as it was."""


class GapError(ArchiveError, ValueError):
    """A batch starting past the stored rows: it would leave a gap. Nothing was stored."""


class SchemaError(ArchiveError, ValueError):
    """Rows or a schema that do not fit: a bad shape, an id outside [0, experts)."""


class ExistsError(ArchiveError, FileExistsError):
    """A create over an existing file without overwrite=True."""


class LockedError(ArchiveError, OSError):
    """Another writer (in this or another process) holds the archive."""


class DamagedError(ArchiveError):
    """The file is damaged or not an archive."""


class ArchiveIOError(ArchiveError, OSError):
    """A system call failed; `errno` says which error."""


class ClosedError(ArchiveError, ValueError):
    """The writer was closed."""


class OutOfRangeError(ArchiveError, IndexError):
    """A read or truncation outside the stored rows."""


class InvalidArgumentError(ArchiveError, ValueError):
    """A bad argument: a dtype too narrow for the ids, a bad layer range, a bad option."""


# The status codes of include/expert_archive.h.
_BY_CODE: dict[int, type[ArchiveError]] = {
    1: GapError,
    2: SchemaError,
    3: ExistsError,
    4: LockedError,
    5: DamagedError,
    6: ArchiveIOError,
    7: ClosedError,
    8: OutOfRangeError,
    9: InvalidArgumentError,
}


def from_status(code: int, sys_errno: int, message: str) -> ArchiveError:
    error = _BY_CODE.get(code, ArchiveError)(message)
    if isinstance(error, OSError):
        # Set after construction: OSError(errno, message) would prefix the message with "[Errno N]".
        error.errno = sys_errno or None  # type: ignore[assignment]  # None: no errno, as OSError's default
    return error
