"""read_batch: padded and packed batches of many sessions, each from its own token and layer range."""
from __future__ import annotations

import numpy as np
import pytest

import expert_archive as ea
from conftest import rows

LAYERS, TOPK, EXPERTS = 6, 4, 200


def sessions(tmp_path, lengths, codec="fast"):
    """One archive per length, session b's rows made with seed b; its readers and rows."""
    readers, expected = [], []
    for index, length in enumerate(lengths):
        data = rows(length, LAYERS, TOPK, EXPERTS, seed=index)
        with ea.Writer.create(tmp_path / f"s{index}.moe", layers=LAYERS, topk=TOPK, experts=EXPERTS, codec=codec,
                              block_rows=64) as w:
            w.append(data)
        readers.append(ea.Reader(tmp_path / f"s{index}.moe"))
        expected.append(data)
    return readers, expected


@pytest.mark.parametrize("codec", ["fast", "compact"])
def test_padded_whole_sessions(tmp_path, codec):
    readers, expected = sessions(tmp_path, [300, 0, 1, 129, 64], codec)
    batch = ea.read_batch(readers)
    assert batch.dtype == np.int32 and batch.shape == (5, 300, LAYERS, TOPK)
    for index, data in enumerate(expected):
        np.testing.assert_array_equal(batch[index, :len(data)], data)
        assert (batch[index, len(data):] == -1).all()


def test_token_and_layer_ranges_per_session(tmp_path):
    readers, expected = sessions(tmp_path, [500, 400, 300])
    starts, stops = [10, 0, 299], [200, 400, 300]
    batch = ea.read_batch(readers, starts=starts, stops=stops, layers=slice(2, 5), dtype=np.int16, pad=-7)
    assert batch.shape == (3, 400, 3, TOPK) and batch.dtype == np.int16
    for index, data in enumerate(expected):
        size = stops[index] - starts[index]
        np.testing.assert_array_equal(batch[index, :size], data[starts[index]:stops[index], 2:5])
        assert (batch[index, size:] == -7).all()
    # One int for every session: a context-parallel rank's share.
    share = ea.read_batch(readers, starts=100, stops=300, max_len=256)
    assert share.shape == (3, 256, LAYERS, TOPK)
    for index, data in enumerate(expected):
        np.testing.assert_array_equal(share[index, :200], data[100:300])
        assert (share[index, 200:] == -1).all()


def test_packed_with_cu_seqlens(tmp_path):
    readers, expected = sessions(tmp_path, [70, 0, 200, 5])
    array, cu_seqlens = ea.read_batch(readers, starts=[3, 0, 50, 0], packed=True, dtype=np.int64, layers=range(0, 1))
    assert cu_seqlens.dtype == np.int32 and cu_seqlens.tolist() == [0, 67, 67, 217, 222]
    assert array.shape == (222, 1, TOPK) and array.dtype == np.int64
    for index, (data, start) in enumerate(zip(expected, [3, 0, 50, 0])):
        np.testing.assert_array_equal(array[cu_seqlens[index]:cu_seqlens[index + 1]], data[start:, 0:1])


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_large_batches_on_threads_match_one_thread(tmp_path, threads):
    # 8 sessions of 6,000 rows x 24 ids: above the size that starts a pool.
    readers, expected = sessions(tmp_path, [6000] * 7 + [5000])
    out = np.zeros((8, 6000, LAYERS, TOPK), dtype=np.uint16)
    assert ea.read_batch(readers, dtype=np.uint16, pad=0, out=out, threads=threads) is out
    for index, data in enumerate(expected):
        np.testing.assert_array_equal(out[index, :len(data)], data)
    assert (out[7, 5000:] == 0).all()
    packed, cu = ea.read_batch(readers + readers[::-1], packed=True, threads=threads)
    for index, data in enumerate(expected + expected[::-1]):
        np.testing.assert_array_equal(packed[cu[index]:cu[index + 1]], data)


def test_writers_and_readers_mixed(tmp_path):
    readers, expected = sessions(tmp_path, [40])
    with ea.Writer.create(tmp_path / "live.moe", layers=LAYERS, topk=TOPK, experts=EXPERTS) as w:
        w.append(rows(30, LAYERS, TOPK, EXPERTS, seed=9))  # buffered, not flushed
        batch = ea.read_batch([readers[0], w])
    np.testing.assert_array_equal(batch[0], expected[0])
    np.testing.assert_array_equal(batch[1, :30], rows(30, LAYERS, TOPK, EXPERTS, seed=9))


def test_bad_arguments(tmp_path):
    readers, _ = sessions(tmp_path, [50, 60])
    with pytest.raises(ValueError, match="at least one reader"):
        ea.read_batch([])
    with pytest.raises(IndexError, match=r"readers\[1\]: rows 0..<61 are outside its 0..<60"):
        ea.read_batch(readers, stops=[50, 61])
    with pytest.raises(IndexError, match=r"readers\[0\]: rows 20..<10"):
        ea.read_batch(readers, starts=20, stops=10)
    with pytest.raises(ValueError, match="starts has 3 entries for 2 readers"):
        ea.read_batch(readers, starts=[0, 0, 0])
    with pytest.raises(ValueError, match="uint8 cannot hold expert ids up to 199|pad -1 does not fit uint8"):
        ea.read_batch(readers, dtype=np.uint8)
    with pytest.raises(ValueError, match="int8 cannot hold expert ids up to 199"):
        ea.read_batch(readers, dtype=np.int8)
    with pytest.raises(ValueError, match="pad -1 does not fit uint16"):
        ea.read_batch(readers, dtype=np.uint16)
    with pytest.raises(TypeError, match="not float32"):
        ea.read_batch(readers, dtype=np.float32)
    with pytest.raises(ValueError, match=r"out has shape \(2, 50, 6, 4\), the padded batch needs \(2, 60, 6, 4\)"):
        ea.read_batch(readers, out=np.zeros((2, 50, LAYERS, TOPK), np.int32))
    with pytest.raises(ValueError, match="max_len 10 is shorter than the longest range, 60 rows"):
        ea.read_batch(readers, max_len=10)
    with pytest.raises(ValueError, match="writable"):
        ea.read_batch(readers, packed=True, out=np.zeros((220, LAYERS, TOPK), np.int32)[::2])
    with ea.Writer.create(tmp_path / "other.moe", layers=3, topk=4, experts=EXPERTS) as w:
        w.append(np.zeros((1, 3, 4), np.int32))
    with pytest.raises(ValueError, match=r"readers\[1\] has rows of 3 layers x top-4, readers\[0\] of 6 x top-4"):
        ea.read_batch([readers[0], ea.Reader(tmp_path / "other.moe")])


def test_a_failing_session_names_its_index(tmp_path):
    readers, _ = sessions(tmp_path, [300, 300])
    path = tmp_path / "s1.moe"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # inside a block's frame
    path.write_bytes(bytes(data))
    damaged = ea.Reader(path)
    with pytest.raises(ea.DamagedError, match=r"^readers\[1\]: .*s1\.moe"):
        ea.read_batch([readers[0], damaged])
