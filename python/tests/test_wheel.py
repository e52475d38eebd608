"""`pip wheel ./python` makes a wheel that installs into a fresh venv and works there with no
Swift toolchain on PATH or LD_LIBRARY_PATH."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

PINNED_NUMPY = os.environ.get("EXPERT_ARCHIVE_TEST_NUMPY", "numpy==2.4.6")

USE = textwrap.dedent("""
    import os, sys, tempfile
    import numpy as np
    import expert_archive as ea
    from expert_archive.integrations.lmdeploy import HistoryRouterExperts
    assert ea.__file__.startswith(sys.prefix), ea.__file__
    path = os.path.join(tempfile.mkdtemp(), "t.moe")
    rows = np.arange(40 * 48 * 8).reshape(40, 48, 8) % 128
    with ea.Writer.create(path, layers=48, topk=8, experts=128, metadata={"k": "v"}) as w:
        w.append(rows[:30])
        w.append(rows, start=0)
    r = ea.Reader(path)
    assert len(r) == 40 and r.metadata == {"k": "v"} and r.verify() == []
    assert (r.read(layers=slice(4, 8), dtype=np.int32) == rows[:, 4:8]).all()
    h = HistoryRouterExperts(experts=128)
    h.append(rows[:5]); h.append(rows[:9], start_pos=0)
    for row in rows[9:]:
        h.append(row[None])  # decode steps: through _fastappend when the wheel carries it
    assert (h.get_real() == rows).all() and h.get_real().dtype == np.uint16
    from expert_archive import archive
    assert (archive._fast_append is not None) == FAST, archive._fast_append
    maps = open("/proc/self/maps").read()
    assert "libswiftCore" not in maps and "libdispatch" not in maps, "a toolchain library was loaded"
    print("wheel works:", ea.__file__)
""")


def toolchain_dirs() -> list[str]:
    swift = shutil.which("swift")
    if swift is None:
        return []
    root = Path(swift).resolve().parent.parent  # .../usr
    return [str(root), str(root.parent)]


def without_toolchain(value: str, toolchain: list[str]) -> str:
    return os.pathsep.join(p for p in value.split(os.pathsep)
                           if p and not any(Path(p).resolve().is_relative_to(t) for t in toolchain))


def test_wheel_in_a_fresh_venv_without_the_toolchain(tmp_path):
    if not (REPO / "Package.swift").exists():
        pytest.skip("the wheel is built from a checkout of the repository, absent here")
    if shutil.which("swift") is None:
        pytest.skip("swift is not on PATH: the wheel cannot be built here")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO / "python")],
                   check=True)
    [wheel] = list(wheels.glob("expert_archive-*.whl"))
    assert not wheel.name.endswith("-any.whl"), "the wheel carries a shared library: a platform wheel"
    names = zipfile.ZipFile(wheel).namelist()
    assert "expert_archive/libexpert_archive.so" in names
    # With this Python's headers and a C compiler the decode step's append is compiled in, and
    # the wheel is for this Python alone.
    fast = any(name.startswith("expert_archive/_fastappend.") and name.endswith(".so") for name in names)
    python = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert fast == (f"-{python}-{python}-" in wheel.name), wheel.name
    if (Path(sysconfig.get_paths()["include"]) / "Python.h").exists() and shutil.which("cc"):
        assert fast, f"{wheel.name} lacks the compiled append"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel), PINNED_NUMPY], check=True)

    toolchain = toolchain_dirs()
    env = {key: value for key, value in os.environ.items()
           if key not in ("LD_LIBRARY_PATH", "PYTHONPATH", "EXPERT_ARCHIVE_LIBRARY")}
    env["PATH"] = without_toolchain(os.environ.get("PATH", ""), toolchain)
    assert shutil.which("swift", path=env["PATH"]) is None
    done = subprocess.run([str(python), "-c", f"FAST = {fast}\n" + USE], env=env, cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert "wheel works" in done.stdout
