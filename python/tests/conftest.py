"""Shared helpers of the expert_archive tests."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

# The repository holding this package (python/tests -> python -> root), when the tests run from
# a checkout: the reference reader and the wheel build need it.
REPO = Path(__file__).resolve().parents[2]


def rows(n: int, layers: int = 6, topk: int = 4, experts: int = 200, seed: int = 0, first: int = 0) -> np.ndarray:
    """Rows of positions first..<first+n: a function of the position alone (any prefix of any
    sequence of appends is comparable), with the runs and repeats of real routing."""
    positions = np.arange(first, first + n, dtype=np.int64)[:, None, None]
    layer = np.arange(layers, dtype=np.int64)[None, :, None]
    slot = np.arange(topk, dtype=np.int64)[None, None, :]
    value = (positions // 3 * 7919 + layer * 104729 + slot * 31 + seed * 15485863) % experts
    return value.astype(np.int64)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def archive_path(tmp_path: Path) -> Path:
    return tmp_path / "trace.moe"
