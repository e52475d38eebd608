"""LMDeploy #4599's scenarios (DOMAIN.md): one layer, top-2, rows(n)[i] = [2i, 2i+1]."""
from __future__ import annotations

import numpy as np
import pytest

import expert_archive as ea


def batch(n: int) -> np.ndarray:
    return np.arange(2 * n, dtype=np.int64).reshape(n, 1, 2)


SCENARIOS = {
    "evict, re-prefill": ([(3, 0), (3, 3), (7, 0)],
                          np.concatenate([batch(3), batch(3), batch(7)[6:]])),
    "re-prefill then clipped decode": ([(3, 0), (4, 0), ((3, 2), 4)],
                                       np.array([[0, 1], [2, 3], [4, 5], [6, 7], [0, 1], [2, 3]]).reshape(6, 1, 2)),
    "AR evict, longer re-prefill": ([(3, 0), (1, 3), (5, 0)],
                                    np.array([[0, 1], [2, 3], [4, 5], [0, 1], [8, 9]]).reshape(5, 1, 2)),
    "chunked prefill": ([(3, 0), (3, 3), (1, 5)], np.concatenate([batch(3), batch(3)])),
}


def rows_of(spec):
    """(n, start) -> rows(n); ((n, keep), start) -> rows(n)[:keep]."""
    n, start = spec
    if isinstance(n, tuple):
        return batch(n[0])[: n[1]], start
    return batch(n), start


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_through_writer(archive_path, name):
    operations, expected = SCENARIOS[name]
    with ea.Writer.create(archive_path, layers=1, topk=2, experts=16) as w:
        for spec in operations:
            data, start = rows_of(spec)
            result = w.append(data, start=start, compare=True)
            assert result.appended + result.skipped == len(data)
        assert len(w) == len(expected)
    np.testing.assert_array_equal(ea.Reader(archive_path)[:], expected)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_through_the_lmdeploy_drop_in(name):
    from expert_archive.integrations.lmdeploy import HistoryRouterExperts

    operations, expected = SCENARIOS[name]
    history = HistoryRouterExperts(experts=16)
    for spec in operations:
        data, start = rows_of(spec)
        history.append(data, start_pos=start)
    got = history.get_real()
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, expected)


def test_gap_scenario(archive_path):
    with ea.Writer.create(archive_path, layers=1, topk=2, experts=16) as w:
        w.append(batch(3), start=0)
        with pytest.raises(ea.GapError, match="starts at position 5 but the archive holds 3 rows"):
            w.append(batch(2), start=5)
        assert len(w) == 3
    np.testing.assert_array_equal(ea.Reader(archive_path)[:], batch(3))
