"""Reader.from_buffer: an archive in any buffer, read in place; archive_bytes and pickling."""
from __future__ import annotations

import gc
import pickle
import threading

import numpy as np
import pytest

import expert_archive as ea
from conftest import rows


@pytest.fixture
def closed_archive(archive_path):
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=200, block_rows=64,
                          metadata={"model": "test"}) as w:
        w.append(rows(1000))
    return archive_path


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "numpy", "numpy-2d"])
def test_every_buffer_kind(closed_archive, kind):
    data = closed_archive.read_bytes()
    buffer = {"bytes": lambda: data, "bytearray": lambda: bytearray(data), "memoryview": lambda: memoryview(data),
              "numpy": lambda: np.frombuffer(data, np.uint8).copy(),
              "numpy-2d": lambda: np.frombuffer(data + b"\0" * (-len(data) % 8), np.uint64).reshape(-1, 1)}[kind]()
    r = ea.Reader.from_buffer(buffer, name="shipped.moe")
    assert r.in_memory and r.path == "shipped.moe" and len(r) == 1000
    assert r.metadata == {"model": "test"} and r.schema == ea.Reader(closed_archive).schema
    np.testing.assert_array_equal(r[:], rows(1000))
    np.testing.assert_array_equal(r.read(100, 300, layers=slice(2, 4), dtype=np.int32), rows(1000)[100:300, 2:4])
    assert r.refresh() == 1000 and r.verify() == []
    assert "Reader.from_buffer('shipped.moe', rows=1000" in repr(r)


def test_reads_in_place_and_keeps_the_buffer(closed_archive):
    array = np.frombuffer(closed_archive.read_bytes(), np.uint8).copy()
    r = ea.Reader.from_buffer(array)
    shipped = r.archive_bytes()
    # No copy: the bytes a reader over memory ships are the buffer's own.
    assert np.frombuffer(shipped, np.uint8).ctypes.data == array.ctypes.data
    del array, shipped
    gc.collect()
    np.testing.assert_array_equal(r[:], rows(1000))
    r.close()


def test_file_reader_ships_a_copy_of_its_archive(closed_archive):
    r = ea.Reader(closed_archive)
    assert not r.in_memory
    shipped = r.archive_bytes()
    assert isinstance(shipped, np.ndarray) and shipped.tobytes() == closed_archive.read_bytes()
    np.testing.assert_array_equal(ea.Reader.from_buffer(shipped)[:], rows(1000))


def test_bad_buffers_are_refused_by_name(closed_archive):
    data = closed_archive.read_bytes()
    for junk in [b"", b"\0" * 100, data[:30], b"not an archive at all" * 10]:
        with pytest.raises(ea.DamagedError, match="^junk: "):
            ea.Reader.from_buffer(junk, name="junk")
    with pytest.raises(ValueError, match="C-contiguous"):
        ea.Reader.from_buffer(np.frombuffer(data, np.uint8)[::2], name="strided")
    with pytest.raises(TypeError):
        ea.Reader.from_buffer("a string is not a buffer")
    # A flipped bit inside a block: the reader opens, the read of that block fails, others work.
    r = ea.Reader(closed_archive)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x20
    damaged = ea.Reader.from_buffer(bytes(flipped), name="flipped")
    assert len(damaged.verify()) == 1
    with pytest.raises(ea.DamagedError, match="^flipped: "):
        damaged[:]
    assert len(r.verify()) == 0


def test_pickle_round_trip_of_a_memory_reader(closed_archive):
    r = ea.Reader.from_buffer(closed_archive.read_bytes(), name="x")
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(r, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and buffers[0].raw().nbytes == len(closed_archive.read_bytes())
    back = pickle.loads(data, buffers=buffers)
    np.testing.assert_array_equal(back[:], rows(1000))
    assert back.path == "x"


def test_threads_share_nothing_but_the_buffer(closed_archive):
    data = closed_archive.read_bytes()
    readers = [ea.Reader.from_buffer(data) for _ in range(4)]
    results: dict[int, np.ndarray] = {}

    def read(index: int) -> None:
        results[index] = readers[index].read(index * 100, index * 100 + 500, dtype=np.int32)

    threads = [threading.Thread(target=read, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(4):
        np.testing.assert_array_equal(results[index], rows(1000)[index * 100:index * 100 + 500])
    batch = ea.read_batch(readers, starts=[0, 10, 20, 30], threads=4)
    np.testing.assert_array_equal(batch[3, :970], rows(1000)[30:])
