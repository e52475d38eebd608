"""Writer and Reader: round trips bit for bit for every input and output dtype and shape."""
from __future__ import annotations

import numpy as np
import pytest

import expert_archive as ea
from conftest import rows

INT_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_every_input_dtype(archive_path, dtype):
    experts = 100  # fits int8 too
    expected = rows(300, experts=experts)
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=experts) as w:
        w.append(expected[:100].astype(dtype))
        w.append(expected[100:].astype(dtype).reshape(200, 24))  # [n, layers*topk] too
        assert len(w) == 300
    r = ea.Reader(archive_path)
    assert r[0:300].dtype == np.uint8
    np.testing.assert_array_equal(r[0:300], expected)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_every_output_dtype(archive_path, dtype):
    expected = rows(500, experts=120)
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=120, codec="compact") as w:
        w.append(expected)
    r = ea.Reader(archive_path)
    got = r.read(dtype=dtype)
    assert got.dtype == np.dtype(dtype) and got.shape == (500, 6, 4)
    np.testing.assert_array_equal(got, expected)
    out = np.full((100, 2, 4), 99, dtype=dtype)
    assert r.read(200, 300, layers=slice(3, 5), out=out) is out
    np.testing.assert_array_equal(out, expected[200:300, 3:5])


def test_narrowest_dtype_and_wide_ids(archive_path):
    expected = rows(50, experts=65536)
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=65536) as w:
        w.append(expected.astype(np.int32))
    r = ea.Reader(archive_path)
    assert r[:].dtype == np.uint16 and r.schema.bits == 16
    np.testing.assert_array_equal(r[:], expected)
    with pytest.raises(ea.InvalidArgumentError, match="cannot hold expert ids up to 65535"):
        r.read(dtype=np.int16)


def test_indexing_and_layer_slices(archive_path):
    expected = rows(1000)
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=200, block_rows=128) as w:
        w.append(expected)
    r = ea.Reader(archive_path)
    np.testing.assert_array_equal(r[10:20], expected[10:20])
    np.testing.assert_array_equal(r[-5:], expected[-5:])
    np.testing.assert_array_equal(r[900:2000], expected[900:])
    np.testing.assert_array_equal(r[5], expected[5])
    np.testing.assert_array_equal(r[-1], expected[-1])
    np.testing.assert_array_equal(r[np.int64(7)], expected[7])
    np.testing.assert_array_equal(r[3:50:7], expected[3:50:7])
    np.testing.assert_array_equal(r[50:3:-4], expected[50:3:-4])
    assert r[20:10].shape == (0, 6, 4)
    for a in range(7):
        for b in range(a, 7):
            np.testing.assert_array_equal(r.read(100, 400, layers=slice(a, b)), expected[100:400, a:b])
    np.testing.assert_array_equal(r.read(layers=range(1, 3), dtype=np.int64), expected[:, 1:3])
    np.testing.assert_array_equal(r.read(layers=slice(-2, None)), expected[:, -2:])
    with pytest.raises(IndexError):
        r[1000]
    with pytest.raises(ValueError, match="contiguous"):
        r.read(layers=slice(0, 6, 2))


def test_out_is_written_in_place_without_copies(archive_path):
    expected = rows(256)
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=200) as w:
        w.append(expected)
    r = ea.Reader(archive_path)
    backing = np.zeros(256 * 24 + 8, dtype=np.int32)
    out = backing[8:].reshape(256, 24)  # a view: rows land in `backing`
    assert r.read(out=out) is out
    np.testing.assert_array_equal(backing[8:].reshape(256, 6, 4), expected)
    assert backing[:8].sum() == 0
    with pytest.raises(ValueError, match="holds"):
        r.read(0, 10, out=np.zeros((11, 6, 4), np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        r.read(0, 10, out=np.zeros((6, 4, 10), np.int32).transpose(2, 0, 1))
    with pytest.raises(ValueError, match="differs"):
        r.read(0, 10, dtype=np.int64, out=np.zeros((10, 6, 4), np.int32))


def test_inputs_of_any_layout_and_buffer_objects(archive_path):
    expected = rows(64)
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=200) as w:
        w.append(np.asfortranarray(expected[:16]))  # not C-contiguous
        w.append(expected[16:32].astype(">i4"))  # big-endian
        w.append(expected[32:48].tolist())  # nested lists
        w.append(memoryview(np.ascontiguousarray(expected[48:64], dtype=np.uint16)))  # the buffer protocol

        class WithArray:  # anything with __array__
            def __array__(self, dtype=None, copy=None):
                return expected[:8]

        assert w.append(WithArray(), start=0, compare=True) == ea.AppendResult(0, 8, 0)
        with pytest.raises(TypeError, match="integers"):
            w.append(expected[:1].astype(np.float32))
    np.testing.assert_array_equal(ea.Reader(archive_path)[:], expected)


def test_torch_tensors(archive_path):
    torch = pytest.importorskip("torch", reason="torch is not installed: the torch tensor test is skipped")
    expected = rows(128)
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=200) as w:
        w.append(torch.from_numpy(expected[:64]).to(torch.int16))
        w.append(torch.from_numpy(expected[64:]).to(torch.int64))
    r = ea.Reader(archive_path)
    out = torch.zeros((128, 6, 4), dtype=torch.int32)
    assert r.read(out=out) is out
    np.testing.assert_array_equal(out.numpy(), expected)


def test_metadata_schema_resume_and_refresh(archive_path):
    expected = rows(100)
    meta = {"model": "Qwen3-30B-A3B", "quote\"and\\": "line\nbreak é"}
    w = ea.Writer.create(archive_path, layers=6, topk=4, experts=200, dense_layers=(0, 5), metadata=meta,
                         codec="compact", block_rows=32)
    dense = expected.copy()
    dense[:, [0, 5]] = 0
    w.append(expected[:40])
    r = ea.Reader(archive_path)
    assert r.metadata == meta and w.metadata == meta
    assert r.schema == ea.Schema(layers=6, topk=4, experts=200, dense_layers=(0, 5), bits=8, codec="compact",
                                 block_rows=32)
    assert len(r) == 32  # one whole block went to the file, 8 rows are buffered
    np.testing.assert_array_equal(w.read(), dense[:40])  # the writer reads its buffered rows
    w.flush()
    assert r.refresh() == 40 and len(r) == 40
    w.close()
    w = ea.Writer.open(archive_path)
    assert len(w) == 40
    w.append(expected[30:100], start=30)
    w.truncate(90)
    assert len(w) == 90
    w.close()
    with pytest.raises(ea.ClosedError):
        w.append(expected[:1])
    assert r.refresh() == 90
    np.testing.assert_array_equal(r[:], dense[:90])
    assert r.verify() == []


def test_small_appends_of_every_shape_and_layout(archive_path):
    # Small batches are copied into staging rows before the call: every layout must land intact.
    expected = rows(40)
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=200) as w:
        for i in range(0, 40, 4):
            w.append(expected[i:i + 1].astype(np.uint16))
            w.append(expected[i + 1:i + 2].reshape(1, 24).astype(np.uint16))
            w.append(np.asfortranarray(expected[i + 2:i + 4].astype(np.uint16)))
        assert len(w) == 40
        np.testing.assert_array_equal(w.read(), expected)
        with pytest.raises(ea.SchemaError):
            w.append(expected[:1].reshape(24).astype(np.uint16))
        assert w.append(expected[5:6].astype(np.uint16), start=5, compare=True) == ea.AppendResult(0, 1, 0)
    np.testing.assert_array_equal(ea.Reader(archive_path)[:], expected)


def test_a_reader_per_thread(archive_path):
    import threading

    expected = rows(4000)
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=200, block_rows=256) as w:
        w.append(expected)
    failures: list[str] = []

    def read(first: int) -> None:
        r = ea.Reader(archive_path)
        for start in range(first, 4000, 331):
            got = r.read(start, min(4000, start + 500), layers=slice(1, 5), dtype=np.int32)
            if not np.array_equal(got, expected[start:start + 500, 1:5]):
                failures.append(f"rows from {start}")

    threads = [threading.Thread(target=read, args=(first,)) for first in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize("codec", ["fast", "compact"])
def test_reads_split_between_threads_equal_reads_on_one(archive_path, codec):
    expected = rows(3000, experts=300)
    with ea.Writer.create(archive_path, layers=6, topk=4, experts=300, codec=codec, block_rows=50) as w:
        w.append(expected)
    one, many = ea.Reader(archive_path, threads=1), ea.Reader(archive_path, threads=3)
    assert (one.threads, many.threads) == (1, 3)
    assert ea.Reader(archive_path).threads == ea.default_threads()
    np.testing.assert_array_equal(many.read(dtype=np.int32), expected)
    for start, stop, layers in [(0, 3000, None), (17, 2999, slice(2, 5)), (49, 51, None), (1000, 2200, slice(5, 6))]:
        np.testing.assert_array_equal(many.read(start, stop, layers=layers), one.read(start, stop, layers=layers))
    shipped = ea.Reader.from_buffer(one.archive_bytes(), threads=2)
    np.testing.assert_array_equal(shipped.read(), expected)
    with pytest.raises(ea.InvalidArgumentError, match="at least 1"):
        many.threads = 0
    assert many.threads == 3


def test_default_threads_follow_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = ea.default_threads()
    assert cpus >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ea.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(cpus + 5))
    assert ea.default_threads() == cpus
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert ea.default_threads() == cpus


@pytest.mark.parametrize("codec", ["fast", "compact"])
def test_writers_on_threads_write_the_same_bytes_and_read_the_same_rows(tmp_path, codec):
    expected = rows(3000, experts=300)
    paths = [tmp_path / f"{threads}.moe" for threads in (1, 3)]
    for path, threads in zip(paths, (1, 3)):
        with ea.Writer.create(path, layers=6, topk=4, experts=300, codec=codec, block_rows=50, threads=threads) as w:
            assert w.threads == threads
            w.append(expected[:1000])
            w.append(expected[1000:])
            np.testing.assert_array_equal(w.read(dtype=np.int32), expected)  # decoded on as many
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with ea.Writer.open(paths[1], threads=2) as w:
        assert w.threads == 2
        with pytest.raises(ea.InvalidArgumentError, match="at least 1"):
            w.threads = 0
        assert w.threads == 2
    np.testing.assert_array_equal(ea.Reader(paths[1]).read(), expected)
