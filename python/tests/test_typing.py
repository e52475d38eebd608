"""The package's annotations hold: mypy --strict finds nothing in it (numpy's own stubs included)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_the_package_passes_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed: the typing check is skipped")
    package = REPO / "python" / "src" / "expert_archive"
    if not package.is_dir():
        pytest.skip("the package's sources are not beside the tests")
    checked = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), str(package)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
