"""libexpert_archive.so through ctypes: its prototypes and structs (include/expert_archive.h)."""
from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, Structure, c_char, c_char_p, c_int, c_int32, c_int64, c_size_t, c_void_p
from pathlib import Path

ABI_VERSION = 1
MESSAGE_BYTES = 2048


class Error(Structure):
    _fields_ = [("code", c_int32), ("sys_errno", c_int32), ("message", c_char * MESSAGE_BYTES)]


class SchemaStruct(Structure):
    _fields_ = [("layers", c_int32), ("topk", c_int32), ("experts", c_int32), ("bits", c_int32),
                ("dense_count", c_int32), ("codec", c_int32), ("block_rows", c_int64)]


class AppendResultStruct(Structure):
    _fields_ = [("appended", c_int64), ("skipped", c_int64), ("differing", c_int64)]


def _load() -> ctypes.CDLL:
    # EXPERT_ARCHIVE_LIBRARY: a library built elsewhere (development); else the packaged one.
    path = os.environ.get("EXPERT_ARCHIVE_LIBRARY") or str(Path(__file__).with_name("libexpert_archive.so"))
    lib = ctypes.CDLL(path)
    status, handle, err = c_int32, c_void_p, POINTER(Error)
    text_out = [ctypes.c_char_p, c_size_t, POINTER(c_size_t), err]
    prototypes = {
        "ea_abi_version": (c_int32, []),
        "ea_writer_create": (status, [c_char_p, c_int32, c_int32, c_int32, POINTER(c_int32), c_size_t, c_int32,
                                      c_int64, POINTER(c_char_p), POINTER(c_char_p), c_size_t, c_int,
                                      POINTER(handle), err]),
        "ea_writer_open": (status, [c_char_p, POINTER(handle), err]),
        "ea_writer_append": (status, [handle, c_void_p, c_int32, c_size_t, c_int64, c_int,
                                      POINTER(AppendResultStruct), err]),
        "ea_writer_set_threads": (status, [handle, c_int32, err]),
        "ea_writer_count": (c_int64, [handle]),
        "ea_writer_flush": (status, [handle, err]),
        "ea_writer_sync": (status, [handle, err]),
        "ea_writer_truncate": (status, [handle, c_int64, err]),
        "ea_writer_close": (status, [handle, err]),
        "ea_writer_free": (None, [handle]),
        "ea_writer_schema": (status, [handle, POINTER(SchemaStruct), err]),
        "ea_writer_dense_layers": (status, [handle, POINTER(c_int32), c_size_t, err]),
        "ea_writer_metadata": (status, [handle] + text_out),
        "ea_writer_read": (status, [handle, c_int64, c_int64, c_int32, c_int32, c_int32, c_void_p, c_size_t, err]),
        "ea_reader_open": (status, [c_char_p, POINTER(handle), err]),
        "ea_reader_open_memory": (status, [c_void_p, c_size_t, c_char_p, POINTER(handle), err]),
        "ea_reader_copy_archive": (status, [handle, c_void_p, c_size_t, POINTER(c_size_t), err]),
        "ea_reader_free": (None, [handle]),
        "ea_reader_count": (c_int64, [handle]),
        "ea_reader_schema": (status, [handle, POINTER(SchemaStruct), err]),
        "ea_reader_dense_layers": (status, [handle, POINTER(c_int32), c_size_t, err]),
        "ea_reader_metadata": (status, [handle] + text_out),
        "ea_reader_read": (status, [handle, c_int64, c_int64, c_int32, c_int32, c_int32, c_void_p, c_size_t, err]),
        "ea_reader_set_threads": (status, [handle, c_int32, err]),
        "ea_reader_refresh": (status, [handle, POINTER(c_int64), err]),
        "ea_reader_verify": (status, [handle, POINTER(c_size_t), err]),
        "ea_reader_problem": (status, [handle, c_size_t] + text_out),
    }
    for name, (restype, argtypes) in prototypes.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    version = lib.ea_abi_version()
    if version != ABI_VERSION:
        raise ImportError(f"{path}: C interface version {version}, this package speaks {ABI_VERSION}")
    return lib


lib = _load()
