"""PEP 517 backend of the expert_archive package.

The package is Python (ctypes) plus libexpert_archive.so, built by SwiftPM from this repository
(python/ is a folder of it). The library links the Swift runtime statically, so the wheel needs
no Swift toolchain where it is installed. Where this Python's headers and a C compiler are, the
decode step's append (`_fastappend.c`, no library of its own) is compiled too, and the wheel is
for this Python (cpXY-cpXY-<platform>); else it is py3-none-<platform> and appends go through
ctypes alone.

Environment:
  EXPERT_ARCHIVE_LIBRARY  use this already built libexpert_archive.so instead of building one.
"""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import shutil
import sysconfig
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

NAME = "expert_archive"
VERSION = "0.1.0"
HERE = Path(__file__).resolve().parent.parent  # python/
ROOT = HERE.parent  # the repository: Package.swift
DIST_INFO = f"{NAME}-{VERSION}.dist-info"


def _metadata() -> str:
    readme = (HERE / "README.md").read_text(encoding="utf-8")
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\n"
        f"Version: {VERSION}\n"
        "Summary: Routed-expert traces of MoE models: append per decode step, read any slice, "
        "compactly and crash-safely\n"
        "License: Apache-2.0\n"
        "Requires-Python: >=3.9\n"
        "Requires-Dist: numpy>=1.22\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + readme
    )


def _compiler() -> Optional[str]:
    """The C compiler for _fastappend.c, when there is one and this Python's headers."""
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return None
    return shutil.which(os.environ.get("CC", "cc"))


def _tag() -> str:
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    if _compiler() is None:
        return f"py3-none-{platform}"
    python = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return f"{python}-{python}-{platform}"


def _fast_append() -> tuple[str, bytes]:
    """_fastappend.c compiled for this Python: its name in the package and its bytes."""
    compiler = _compiler()
    assert compiler is not None
    name = "_fastappend" + sysconfig.get_config_var("EXT_SUFFIX")
    with tempfile.TemporaryDirectory() as work:
        output = Path(work) / name
        command = [compiler, "-O2", "-shared", "-fPIC", "-Wall", "-Werror",
                   f"-I{sysconfig.get_paths()['include']}", str(HERE / "src" / NAME / "_fastappend.c"), "-o", str(output)]
        print(f"{NAME}: {' '.join(command)}", file=sys.stderr)
        subprocess.run(command, check=True, stdout=sys.stderr)
        return f"{NAME}/{name}", output.read_bytes()


def _wheel_file() -> str:
    return f"Wheel-Version: 1.0\nGenerator: {NAME}-build\nRoot-Is-Purelib: false\nTag: {_tag()}\n"


def _library() -> Path:
    given = os.environ.get("EXPERT_ARCHIVE_LIBRARY")
    if given:
        return Path(given)
    if not (ROOT / "Package.swift").exists():
        raise RuntimeError(f"{NAME}: {ROOT} is not the expert-archive repository (no Package.swift): "
                           "the package is built from a checkout of it")
    command = ["swift", "build", "-c", "release", "--product", "expert_archive"]
    print(f"{NAME}: {' '.join(command)} (in {ROOT})", file=sys.stderr)
    subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)
    bin_path = subprocess.run(command[:4] + ["--show-bin-path"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    return Path(bin_path) / "libexpert_archive.so"


def _files() -> list[tuple[str, bytes]]:
    """(path in the wheel, bytes) of every file but RECORD."""
    files = []
    package = HERE / "src" / NAME
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".pyi", ".typed"):
            files.append((f"{NAME}/{path.relative_to(package).as_posix()}", path.read_bytes()))
    files.append((f"{NAME}/libexpert_archive.so", _library().read_bytes()))
    if _compiler() is not None:
        files.append(_fast_append())
    header = ROOT / "Sources" / "CExpertArchive" / "include" / "expert_archive.h"
    files.append((f"{NAME}/include/expert_archive.h", header.read_bytes()))
    files.append((f"{DIST_INFO}/METADATA", _metadata().encode()))
    files.append((f"{DIST_INFO}/WHEEL", _wheel_file().encode()))
    files.append((f"{DIST_INFO}/top_level.txt", f"{NAME}\n".encode()))
    return files


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    target = Path(metadata_directory) / DIST_INFO
    target.mkdir(parents=True, exist_ok=True)
    (target / "METADATA").write_text(_metadata(), encoding="utf-8")
    (target / "WHEEL").write_text(_wheel_file(), encoding="utf-8")
    return DIST_INFO


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-{_tag()}.whl"
    files = _files()
    record = "\n".join([_record_line(n, d) for n, d in files] + [f"{DIST_INFO}/RECORD,,", ""])
    path = Path(wheel_directory) / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for file_name, data in files + [(f"{DIST_INFO}/RECORD", record.encode())]:
            info = zipfile.ZipInfo(file_name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if file_name.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return name
