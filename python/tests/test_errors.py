"""Every failure is an exception of its class with the library's message, and leaves the file
byte for byte as it was (sha256 before and after)."""
from __future__ import annotations

import errno

import numpy as np
import pytest

import expert_archive as ea
from conftest import rows, sha256


@pytest.fixture
def synced(archive_path):
    """An archive of 100 synced rows and its open writer."""
    w = ea.Writer.create(archive_path, layers=6, topk=4, experts=200, block_rows=64)
    w.append(rows(100))
    w.sync()
    yield w
    w.close()


def unchanged(path, call, exception, match):
    before = sha256(path)
    with pytest.raises(exception, match=match) as caught:
        call()
    assert sha256(path) == before
    return caught.value


def test_gap(archive_path, synced):
    error = unchanged(archive_path, lambda: synced.append(rows(2, first=105), start=105), ea.GapError,
                      "starts at position 105 but the archive holds 100 rows")
    assert isinstance(error, ValueError) and isinstance(error, ea.ArchiveError)
    assert str(error).startswith(str(archive_path))
    assert len(synced) == 100


def test_ids_out_of_range_and_negative(archive_path, synced):
    bad = rows(3, first=100)
    bad[1, 2, 3] = 200
    error = unchanged(archive_path, lambda: synced.append(bad), ea.SchemaError, "200")
    assert isinstance(error, ValueError)
    bad[1, 2, 3] = -1
    unchanged(archive_path, lambda: synced.append(bad.astype(np.int16)), ea.SchemaError, "-1")
    unchanged(archive_path, lambda: synced.append(rows(2, layers=5)), ea.SchemaError, r"expected \[n, 6, 4\]")
    synced.flush()
    assert len(synced) == 100 and len(ea.Reader(archive_path)) == 100


def test_exists_and_bad_schema(archive_path, synced):
    error = unchanged(archive_path, lambda: ea.Writer.create(archive_path, layers=6, topk=4, experts=200),
                      ea.ExistsError, "already exists")
    assert isinstance(error, FileExistsError)
    with pytest.raises(ea.SchemaError, match="topk"):
        ea.Writer.create(archive_path.with_name("other.moe"), layers=6, topk=0, experts=200)
    assert not archive_path.with_name("other.moe").exists()
    with pytest.raises(ValueError, match="codec"):
        ea.Writer.create(archive_path.with_name("other.moe"), codec="zip")


def test_locked(archive_path, synced):
    error = unchanged(archive_path, lambda: ea.Writer.open(archive_path), ea.LockedError, "another writer")
    assert isinstance(error, OSError)
    unchanged(archive_path, lambda: ea.Writer.create(archive_path, layers=6, topk=4, experts=200, overwrite=True),
              ea.LockedError, "another writer")


def test_out_of_range_and_truncate_past_the_end(archive_path, synced):
    r = ea.Reader(archive_path)
    error = unchanged(archive_path, lambda: r.read(90, 101), ea.OutOfRangeError, "90..<101 requested")
    assert isinstance(error, IndexError)
    unchanged(archive_path, lambda: synced.truncate(101), ea.InvalidArgumentError, "cannot truncate to 101")
    unchanged(archive_path, lambda: r.read(0, 1, dtype=np.int8), ea.InvalidArgumentError, "cannot hold")


def test_damaged(archive_path, synced):
    synced.close()
    data = bytearray(archive_path.read_bytes())
    garbage = archive_path.with_name("garbage.moe")
    garbage.write_bytes(bytes(range(256)) * 16)
    unchanged(garbage, lambda: ea.Reader(garbage), ea.DamagedError, "damaged at byte")
    unchanged(garbage, lambda: ea.Writer.open(garbage), ea.DamagedError, "damaged at byte")
    data[len(data) // 2] ^= 0x04
    archive_path.write_bytes(bytes(data))
    try:
        r = ea.Reader(archive_path)
    except ea.DamagedError:
        return  # the flip hit a record header: refused at open, also a detection
    problems = r.verify()
    assert problems and all("damaged" in p for p in problems)
    before = sha256(archive_path)
    with pytest.raises(ea.DamagedError):
        r.read()
    assert sha256(archive_path) == before


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(ea.ArchiveIOError) as caught:
        ea.Reader(tmp_path / "missing.moe")
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOENT
    assert "missing.moe" in str(caught.value) and not str(caught.value).startswith("[Errno")


def test_closed(archive_path, synced):
    synced.close()
    before = sha256(archive_path)
    for call in (lambda: synced.append(rows(1, first=100)), synced.flush, synced.sync, lambda: synced.truncate(5)):
        with pytest.raises(ea.ClosedError, match="closed"):
            call()
    synced.close()  # a second close is a no-op
    assert sha256(archive_path) == before


def test_negative_start(archive_path, synced):
    for start in (-1, -5):
        unchanged(archive_path, lambda: synced.append(rows(1, first=100), start=start), ea.InvalidArgumentError,
                  f"batch start {start} is negative")
    assert synced.append(rows(1, first=99).astype(np.uint16), start=np.int64(99)) == ea.AppendResult(0, 1, None)
    assert len(synced) == 100


@pytest.fixture(params=["compiled", "ctypes"])
def append_path(request, monkeypatch):
    """Decode steps through _fastappend (when the package carries it) and through ctypes alone."""
    from expert_archive import archive
    if request.param == "ctypes":
        monkeypatch.setattr(archive, "_fast_append", None)
    elif archive._fast_append is None:
        pytest.skip("_fastappend is not compiled here (a package from its sources): the ctypes path only")
    return request.param


def test_repeated_decode_steps_are_checked_like_any_append(archive_path, synced, append_path):
    """One-row appends like the one before take a shorter path (a decode step's): the library
    still checks every id, and rows of another layout still go through the full checks."""
    expected = rows(4, first=100)
    synced.append(expected[0:1])
    synced.append(expected[1:2])  # like the one before
    bad = expected[2:3].copy()
    bad[0, 5, 3] = 200
    unchanged(archive_path, lambda: synced.append(bad), ea.SchemaError, "200")
    assert len(synced) == 102
    synced.append(np.asfortranarray(expected[2:3]))  # same shape and dtype, other strides
    unchanged(archive_path, lambda: synced.append(expected[3:4].reshape(1, 4, 6)), ea.SchemaError, r"expected \[n, 6, 4\]")
    assert synced.append(expected[3:4]) == (1, 0, None)
    synced.truncate(101)
    synced.append(expected[1:2])
    assert synced.append(expected[1:2], start=101, compare=True) == (0, 1, 0)
    synced.flush()
    np.testing.assert_array_equal(ea.Reader(archive_path)[100:102], expected[0:2])
