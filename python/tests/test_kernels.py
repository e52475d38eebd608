"""The decoder's AVX-512 kernels and the Swift kernels other CPUs run read the same rows.

`EXPERT_ARCHIVE_VECTOR_KERNELS=0` turns the vector kernels off for a process (the library reads
it once, when it first decodes), so child processes read the same archives both ways through the
C library. On a CPU without the kernels both ways run the Swift ones, and the test still checks
the rows against what was written."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import expert_archive as ea
from conftest import rows

READ = """
import hashlib, json, sys
import numpy as np
import expert_archive as ea
r = ea.Reader(sys.argv[1], threads=2)
digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
print(json.dumps({
    "all": digest(r.read(dtype=np.int32)),
    "layers": digest(r.read(layers=slice(2, 5), dtype=np.int32)),
    "rows": digest(r.read(37, 1001, dtype=np.int16)),
    "verify": r.verify(),
}))
"""


def read_in_child(path: Path, vector_kernels: bool) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("EXPERT_ARCHIVE_VECTOR_KERNELS", None)
    if not vector_kernels:
        env["EXPERT_ARCHIVE_VECTOR_KERNELS"] = "0"
    done = subprocess.run([sys.executable, "-c", READ, str(path)], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("experts", [128, 384])  # byte-wide ids, and 16-bit ones
def test_both_kernels_read_the_same_rows(tmp_path, experts):
    path = tmp_path / "a.moe"
    expected = rows(5000, layers=8, topk=4, experts=experts)
    with ea.Writer.create(path, layers=8, topk=4, experts=experts) as w:
        w.append(expected)
    digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
    want = {"all": digest(expected.astype(np.int32)), "layers": digest(expected[:, 2:5].astype(np.int32)),
            "rows": digest(expected[37:1001].astype(np.int16)), "verify": []}
    assert read_in_child(path, vector_kernels=True) == want
    assert read_in_child(path, vector_kernels=False) == want
