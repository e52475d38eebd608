"""Rows read through expert_archive equal spec/reference/moe_reader.py's (written from the spec
alone), for both codecs, dense layers, appends with overlaps and a truncation."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import expert_archive as ea
from conftest import REPO, rows

READER = REPO / "spec" / "reference" / "moe_reader.py"


@pytest.fixture(scope="module")
def moe_reader():
    if not READER.exists():
        pytest.skip(f"{READER} is absent (the tests run outside a checkout of the repository)")
    spec = importlib.util.spec_from_file_location("moe_reader", READER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("codec", ["fast", "compact"])
@pytest.mark.parametrize("experts,dense", [(8, ()), (200, (0,)), (65536, (1, 3))])
def test_rows_equal_the_reference_readers(archive_path, moe_reader, codec, experts, dense):
    expected = rows(300, layers=4, topk=2, experts=experts)
    with ea.Writer.create(archive_path, layers=4, topk=2, experts=experts, dense_layers=dense, codec=codec,
                          block_rows=64) as w:
        w.append(expected[:150])
        w.append(expected[100:280], start=100, compare=True)
        w.truncate(250)
        w.append(expected[250:])
    ours = ea.Reader(archive_path).read(dtype=np.int64)
    theirs = moe_reader.Archive(archive_path.read_bytes()).rows()
    assert np.asarray(theirs).shape == ours.shape
    np.testing.assert_array_equal(np.asarray(theirs, dtype=np.int64), ours)
    expected[:, list(dense)] = 0
    np.testing.assert_array_equal(ours, expected)
