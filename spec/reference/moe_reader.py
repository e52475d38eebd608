#!/usr/bin/env python3
"""Clean-room reference reader for routed-expert trace archives (spec/FORMAT.md).

Written from spec/FORMAT.md alone (no look at Sources/): pure Python 3 + numpy.
Every function names the section it implements. Speed is not a goal.

    moe_reader.py ARCHIVE -o OUT.npy [--dtype int32]
    moe_reader.py --block VECTOR.lz4 --schema VECTOR.json [--payload VECTOR.payload]
    moe_reader.py --vectors spec/vectors

Exit status 1 with one line "moe_reader: error: ... at byte N: ..." on a damaged or invalid input.
"""

import argparse
import json
import struct
import sys
import unicodedata

import numpy as np


class FormatError(Exception):
    """A damaged or invalid input. `offset` is a byte offset in the file (or frame/payload)."""

    def __init__(self, offset, reason):
        super().__init__(f"at byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason


def u16(b, o):
    return struct.unpack_from("<H", b, o)[0]


def u32(b, o):
    return struct.unpack_from("<I", b, o)[0]


def u64(b, o):
    return struct.unpack_from("<Q", b, o)[0]


def ceil_div(a, b):
    return -(-a // b)


# ---------------------------------------------------------------------------------------------
# 1.2 Conventions: XXH32 (seed 0), as used by the LZ4 frame format.

_P1, _P2, _P3, _P4, _P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
_M32 = 0xFFFFFFFF


def _rotl(x, r):
    return ((x << r) | (x >> (32 - r))) & _M32


def xxh32(data, seed=0):
    """1.2: xxHash32 with seed 0."""
    n = len(data)
    i = 0
    if n >= 16:
        v = [(seed + _P1 + _P2) & _M32, (seed + _P2) & _M32, seed & _M32, (seed - _P1) & _M32]
        while i + 16 <= n:
            for k in range(4):
                lane = u32(data, i + 4 * k)
                v[k] = (_rotl((v[k] + lane * _P2) & _M32, 13) * _P1) & _M32
            i += 16
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M32
    else:
        h = (seed + _P5) & _M32
    h = (h + n) & _M32
    while i + 4 <= n:
        h = (_rotl((h + u32(data, i) * _P3) & _M32, 17) * _P4) & _M32
        i += 4
    while i < n:
        h = (_rotl((h + data[i] * _P5) & _M32, 11) * _P1) & _M32
        i += 1
    h ^= h >> 15
    h = (h * _P2) & _M32
    h ^= h >> 13
    h = (h * _P3) & _M32
    h ^= h >> 16
    return h


# ---------------------------------------------------------------------------------------------
# 2.2 CRC-32C (Castagnoli), reflected polynomial 0x82F63B78.

def _crc32c_table():
    table = []
    for b in range(256):
        crc = b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    """2.2: CRC-32C, initial value and final XOR 0xFFFFFFFF (table form of the bitwise loop)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# 1.3 The schema.

class Schema:
    """1.3: layers x topk ids in [0, E); dense layers are not stored."""

    def __init__(self, layers, topk, experts, dense=()):
        dense = list(dense)
        if not 1 <= layers <= 4096:
            raise ValueError(f"layers {layers} out of 1...4096")
        if not 1 <= topk <= 64:
            raise ValueError(f"topk {topk} out of 1...64")
        if not 2 <= experts <= 65536:
            raise ValueError(f"experts {experts} out of 2...65536")
        if any(d >= layers for d in dense):
            raise ValueError("a dense layer index >= layers")
        if any(b <= a for a, b in zip(dense, dense[1:])):
            raise ValueError("dense layers not strictly ascending")
        if len(dense) >= layers:
            raise ValueError("every layer dense")
        self.layers, self.topk, self.experts, self.dense = layers, topk, experts, dense
        self.w = max(1, (experts - 1).bit_length())          # ceil(log2 E), at least 1
        self.moe = [l for l in range(layers) if l not in set(dense)]
        self.C = len(self.moe) * topk
        self.max_rows = (1 << 26) // self.C

    def payload_bound(self, rows=None):
        """1.4 and 1.10: the largest content size a reader accepts (rows = n if known)."""
        n = self.max_rows if rows is None else rows
        C, w = self.C, self.w
        layout1 = 12 + 3 * C + C * (w + 1) * ceil_div(n, 8)
        layout2 = 17 + C + ceil_div(C * w, 8) + C * ceil_div(n * w, 8)
        return max(layout1, layout2)

    def expand(self, columns):
        """1.5.6 (last paragraph): columns [n, C] -> rows [n, layers, topk], dense layers 0."""
        n = columns.shape[0]
        rows = np.zeros((n, self.layers, self.topk), dtype=np.int64)
        rows[:, self.moe, :] = columns.reshape(n, len(self.moe), self.topk)
        return rows


# ---------------------------------------------------------------------------------------------
# 1.4 The frame: LZ4 frame format, with our own LZ4 block decoder.

def lz4_length(src, i, n, nibble, what):
    """A sequence's literal or match length from its token nibble: 15 is continued by bytes
    added until one below 255 (lz4_Block_format.md). Returns the length and the next index."""
    length = nibble
    if length == 15:
        while True:
            if i >= n:
                raise ValueError(f"LZ4 {what} length runs past the block")
            b = src[i]
            i += 1
            length += b
            if b != 255:
                break
    return length, i


def lz4_block_decode(src, out, block_start, max_out, linked):
    """lz4_Block_format.md: decode one LZ4 block, appending to bytearray `out`.

    Matches may reach back before `block_start` only for linked blocks (B.Indep = 0).
    Enforces the end-of-block rules of lz4_Block_format.md, as liblz4's LZ4_decompress_safe
    does (found by experiment, see the report): the last match must start at least 12 bytes
    before the end of the block's output and end at least 5 bytes before it.
    Raises ValueError on a malformed block or output above `max_out` bytes.
    """
    i, n = 0, len(src)
    last_match = None                                         # (start, end) of the last match
    limit = block_start + max_out
    lowest = 0 if linked else block_start
    while True:
        if i >= n:
            raise ValueError("LZ4 block ends inside a sequence")
        token = src[i]
        i += 1
        length, i = lz4_length(src, i, n, token >> 4, "literal")
        if i + length > n:
            raise ValueError("LZ4 literals run past the block")
        if len(out) + length > limit:
            raise ValueError("LZ4 block decompresses to more than the block maximum size")
        out += src[i:i + length]
        i += length
        if i == n:                                            # the last sequence has no match
            produced = len(out) - block_start
            if last_match and (last_match[0] > produced - 12 or last_match[1] > produced - 5):
                raise ValueError("LZ4 end-of-block rule broken: the last 5 bytes must be literals "
                                 "and the last match must start 12 bytes before the end")
            return
        if i + 2 > n:
            raise ValueError("LZ4 match offset runs past the block")
        offset = src[i] | (src[i + 1] << 8)
        i += 2
        if offset == 0 or len(out) - offset < lowest:
            raise ValueError(f"LZ4 match offset {offset} out of range")
        mlen, i = lz4_length(src, i, n, token & 15, "match")
        mlen += 4
        if len(out) + mlen > limit:
            raise ValueError("LZ4 block decompresses to more than the block maximum size")
        last_match = (len(out) - block_start, len(out) - block_start + mlen)
        start = len(out) - offset
        if offset >= mlen:
            out += out[start:start + mlen]
        else:
            for k in range(mlen):                             # overlapping copy
                out.append(out[start + k])


_BLOCK_MAX = {4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}


def read_frame(frame, payload_bound, check_content=True):
    """1.4: check one LZ4 frame that must be exactly `frame`; return its payload (bytes).

    Offsets in errors are relative to the frame start.
    """
    if len(frame) < 15:
        raise FormatError(0, "shorter than an LZ4 frame header")
    if u32(frame, 0) != 0x184D2204:
        raise FormatError(0, f"not an LZ4 frame (magic 0x{u32(frame, 0):08X})")
    flg, bd = frame[4], frame[5]
    if flg >> 6 != 1:
        raise FormatError(4, "LZ4 frame version is not 01")
    if flg & 0x02:
        raise FormatError(4, "LZ4 FLG reserved bit set")
    if flg & 0x01:
        raise FormatError(4, "LZ4 frame has a dictionary ID")
    if not flg & 0x08:
        raise FormatError(4, "LZ4 frame has no content size")
    if not flg & 0x04:
        raise FormatError(4, "LZ4 frame has no content checksum")
    if not flg & 0x10:
        raise FormatError(4, "LZ4 frame has no block checksums")
    linked = not flg & 0x20
    if bd & 0x8F:
        raise FormatError(5, "LZ4 BD reserved bit set")
    if (bd >> 4) not in _BLOCK_MAX:
        raise FormatError(5, f"invalid LZ4 block maximum size id {bd >> 4}")
    block_max = _BLOCK_MAX[bd >> 4]
    content_size = u64(frame, 6)
    if frame[14] != (xxh32(frame[4:14]) >> 8) & 0xFF:
        raise FormatError(14, "wrong LZ4 header checksum")
    if content_size == 0:
        raise FormatError(6, "content size 0")
    if content_size > payload_bound:
        raise FormatError(6, f"content size {content_size} above the payload bound {payload_bound}")
    out = bytearray()
    pos = 15
    while True:
        if pos + 4 > len(frame):
            raise FormatError(pos, "frame ends before its end mark (short frame)")
        size_field = u32(frame, pos)
        if size_field == 0:
            pos += 4
            break
        stored = bool(size_field & 0x80000000)
        size = size_field & 0x7FFFFFFF
        if size == 0 or size > block_max:
            raise FormatError(pos, f"LZ4 data block size {size} invalid (maximum {block_max})")
        data_at = pos + 4
        if data_at + size + 4 > len(frame):
            raise FormatError(pos, "LZ4 data block runs past the frame (short frame)")
        data = frame[data_at:data_at + size]
        if u32(frame, data_at + size) != xxh32(data):
            raise FormatError(data_at + size, "wrong LZ4 block checksum")
        block_start = len(out)
        if stored:
            out += data
        else:
            try:
                lz4_block_decode(data, out, block_start, block_max, linked)
            except ValueError as error:
                raise FormatError(data_at, f"malformed LZ4 block: {error}")
        if len(out) > content_size:
            raise FormatError(data_at, "content decompresses to more bytes than the content size")
        pos = data_at + size + 4
    if len(out) != content_size:
        raise FormatError(pos - 4, f"content is {len(out)} bytes, the content size says {content_size}")
    if pos + 4 > len(frame):
        raise FormatError(pos, "frame ends before its content checksum (short frame)")
    if check_content and u32(frame, pos) != xxh32(out):
        raise FormatError(pos, "wrong LZ4 content checksum")
    if pos + 4 != len(frame):
        raise FormatError(pos + 4, "bytes after the LZ4 content checksum")
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# 1.5 The payload, block layout 1 (column bit-planes).

class PayloadError(FormatError):
    """A payload check failed; `offset` is a payload offset."""


def read_planes(payload, pos, count, width, bound, what):
    """1.5.3: `width` planes of `count` values at `pos`; checks padding and values < bound."""
    S = ceil_div(count, 8)
    end = pos + width * S
    if end > len(payload):
        raise PayloadError(pos, f"{what} runs past the payload")
    if count == 0:
        return np.zeros(0, dtype=np.int64), end
    raw = np.frombuffer(payload, dtype=np.uint8, count=width * S, offset=pos).reshape(width, S)
    bits = np.unpackbits(raw, axis=1, bitorder="little")          # [width, 8S]
    if bits[:, count:].any():
        raise PayloadError(pos, f"{what}: a padding bit is set")   # check 5
    weights = (np.int64(1) << np.arange(width, dtype=np.int64))[:, None]
    values = (bits[:, :count].astype(np.int64) * weights).sum(axis=0)
    if bound is not None and values.size and values.max() >= bound:  # check 7
        raise PayloadError(pos, f"{what}: a stored value >= E")
    return values, end


def check_header(payload, schema, layout, expected_rows):
    """1.5.1 (also 1.10.1): the 12-byte header; returns n."""
    if len(payload) < 12:
        raise PayloadError(0, "payload shorter than its 12-byte header")
    if payload[0] != layout:
        raise PayloadError(0, f"layout {payload[0]}")
    if payload[1] != schema.w:
        raise PayloadError(1, f"bit width {payload[1]}, the schema has {schema.w}")
    if u16(payload, 2) != 0:
        raise PayloadError(2, "reserved header bytes are not 0")
    n = u32(payload, 4)
    if n > schema.max_rows:
        raise PayloadError(4, f"{n} rows, above maxRows {schema.max_rows}")
    if u32(payload, 8) != schema.C:
        raise PayloadError(8, f"{u32(payload, 8)} stored columns, the schema has {schema.C}")
    if expected_rows is not None and n != expected_rows:
        raise PayloadError(4, f"{n} rows, the index says {expected_rows}")
    if n == 0 and len(payload) != 12:
        raise PayloadError(12, "bytes after the header of an empty block")   # 1.5.1, check 2
    return n


def decode_layout1(payload, schema, expected_rows=None, check_values=True):
    """1.5 / 1.5.7: decode a layout 1 payload into columns [n, C] (int64)."""
    n = check_header(payload, schema, 1, expected_rows)
    C, E, w, topk = schema.C, schema.experts, schema.w, schema.topk
    if n == 0:
        return np.zeros((0, C), dtype=np.int64)
    if 12 + C > len(payload):
        raise PayloadError(12, "coding bytes run past the payload")
    codings = payload[12:12 + C]
    for c, coding in enumerate(codings):                     # 1.5.2, check 3
        if coding > 4:
            raise PayloadError(12 + c, f"coding {coding} of column {c}")
        if coding in (2, 4) and c % topk == 0:
            raise PayloadError(12 + c, f"slot-delta coding on slot 0 (column {c})")
    pos = 12 + C
    consts = {}
    for c in range(C):                                       # 1.5.4, check 4
        if codings[c] == 1:
            if pos + 2 > len(payload):
                raise PayloadError(pos, "constant table runs past the payload")
            consts[c] = u16(payload, pos)
            if consts[c] >= E:
                raise PayloadError(pos, f"constant {consts[c]} >= E")
            pos += 2
    bound = E if check_values else None
    cols = np.zeros((n, C), dtype=np.int64)
    for c in range(C):                                       # 1.5.5
        coding = codings[c]
        if coding == 1:
            cols[:, c] = consts[c]
        elif coding in (0, 2):
            v, pos = read_planes(payload, pos, n, w, bound, f"column {c}")
            cols[:, c] = v if coding == 0 else (v + cols[:, c - 1]) % E
        else:
            flags_at = pos
            f, pos = read_planes(payload, pos, n, 1, None, f"flag bitmap of column {c}")
            f = f.astype(bool)
            if f[0]:
                raise PayloadError(flags_at, f"bit 0 of the flag bitmap of column {c}")  # check 6
            m = n - int(f.sum())
            v, pos = read_planes(payload, pos, m, w, bound, f"column {c}")
            unflagged = np.flatnonzero(~f)                   # rows holding stored values
            j = np.cumsum(~f) - 1                            # index among unflagged rows
            if coding == 3:
                cols[:, c] = v[j]
            else:                                            # delta against prev at row r <= t
                r = unflagged[j]
                cols[:, c] = (v[j] + cols[r, c - 1]) % E
    if pos != len(payload):                                  # check 8
        raise PayloadError(pos, f"{len(payload) - pos} bytes after the last body")
    return cols


# ---------------------------------------------------------------------------------------------
# 1.10 Block layout 2: compact (rANS).

class BitReader:
    """1.10.3: a bit stream read least significant bit first, `limit` bytes long."""

    def __init__(self, data, start, length):
        self.data, self.start, self.length = data, start, length
        self.bit = 0

    def bits(self, k):
        if self.bit + k > 8 * self.length:
            raise PayloadError(self.start + self.bit // 8, "a table-stream field runs past H")
        value = 0
        for i in range(k):
            b = self.bit + i
            value |= ((self.data[self.start + b // 8] >> (b % 8)) & 1) << i
        self.bit += k
        return value

    def gamma(self):
        k = 0
        while self.bits(1) == 0:
            k += 1
            if k > 30:
                raise PayloadError(self.start + self.bit // 8, "gamma code with k > 30")
        return (1 << k) | self.bits(k)

    def exp_golomb(self, g):
        high = self.gamma() - 1
        if high >= 1 << 20:
            raise PayloadError(self.start + self.bit // 8, "exp-Golomb value too large")
        return (high << g) | self.bits(g)


class Table:
    """1.10.3 item 2: one frequency table; `lookup[slot]` is the index of the owning symbol."""

    def __init__(self, scale, symbols, freqs):
        self.scale, self.symbols, self.freqs = scale, symbols, freqs
        self.cum = [sum(freqs[:i]) for i in range(len(freqs))]
        self.lookup = []
        for i, f in enumerate(freqs):
            self.lookup += [i] * f


def read_table(reader, E):
    """1.10.3 item 2."""
    at = reader.start + reader.bit // 8
    scale = reader.bits(4)
    if not 1 <= scale <= 12:
        raise PayloadError(at, f"table scale {scale}")
    M = 1 << scale
    k = reader.gamma()
    if not 1 <= k <= min(E + 1, M):
        raise PayloadError(at, f"table with {k} symbols")
    symbols = []
    for i in range(k):
        gap = reader.gamma()
        s = gap - 1 if i == 0 else symbols[-1] + gap
        if s > E:
            raise PayloadError(at, f"table symbol {s} > E")
        symbols.append(s)
    g = reader.bits(4)
    if g > 11:
        raise PayloadError(at, f"exp-Golomb parameter {g}")
    freqs = [reader.exp_golomb(g) + 1 for _ in range(k)]
    if sum(freqs) != M:
        raise PayloadError(at, f"frequencies sum to {sum(freqs)}, not {M}")
    return Table(scale, symbols, freqs)


CODED_KINDS = (1, 2, 4, 5)


def read_table_stream(payload, start, H, kinds, schema):
    """1.10.3: tables, table references per coded column, constants; exact length H."""
    E, w = schema.experts, schema.w
    reader = BitReader(payload, start, H)
    T = reader.bits(8)
    tables = [read_table(reader, E) for _ in range(T)]
    coded = [c for c, k in enumerate(kinds) if k in CODED_KINDS]
    if coded and T == 0:
        raise PayloadError(start, "no frequency table while a column is coded")
    if not coded and T > 0:
        raise PayloadError(start, "frequency tables while no column is coded")
    b = (T - 1).bit_length() if T > 0 else 0                 # ceil(log2 T)
    refs, used = {}, set()
    for c in coded:
        count = 2 if kinds[c] in (4, 5) else 1
        refs[c] = []
        for _ in range(count):
            at = reader.start + reader.bit // 8
            r = reader.bits(b)
            if r >= T:
                raise PayloadError(at, f"table reference {r} >= {T}")
            refs[c].append(tables[r])
            used.add(r)
    if len(used) != T:
        raise PayloadError(start, "a frequency table no reference names")
    consts = {}
    for c, k in enumerate(kinds):
        if k == 0:
            at = reader.start + reader.bit // 8
            consts[c] = reader.bits(w)
            if consts[c] >= E:
                raise PayloadError(at, f"constant {consts[c]} >= E")
    pad = (-reader.bit) % 8
    if pad and reader.bits(pad) != 0:
        raise PayloadError(start + reader.bit // 8 - 1, "a table-stream padding bit is set")
    if reader.bit // 8 != H:
        raise PayloadError(start + reader.bit // 8, "bytes left after the table stream")
    return refs, consts


def read_raw_column(payload, pos, n, w, E, c):
    """1.10.4: n ids of w bits, LSB first, zero padding, ids < E."""
    size = ceil_div(n * w, 8)
    if pos + size > len(payload):
        raise PayloadError(pos, f"raw column {c} runs past the payload")
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8, count=size, offset=pos), bitorder="little")
    if bits[n * w:].any():
        raise PayloadError(pos, f"raw column {c}: a padding bit is set")
    ids = (bits[:n * w].reshape(n, w).astype(np.int64) << np.arange(w, dtype=np.int64)).sum(axis=1)
    if ids.size and ids.max() >= E:
        raise PayloadError(pos, f"raw column {c}: an id >= E")
    return ids, pos + size


RANS_L = 1 << 31


def decode_layout2(payload, schema, expected_rows=None, check_values=True):
    """1.10: decode a layout 2 payload into columns [n, C] (int64)."""
    n = check_header(payload, schema, 2, expected_rows)
    C, E, w, topk = schema.C, schema.experts, schema.w, schema.topk
    if n == 0:
        return np.zeros((0, C), dtype=np.int64)
    if 16 + C > len(payload):
        raise PayloadError(12, "column kinds and H run past the payload")
    kinds = payload[12:12 + C]
    for c, kind in enumerate(kinds):                         # 1.10.2
        if kind > 5:
            raise PayloadError(12 + c, f"kind {kind} of column {c}")
        if kind in (2, 4, 5) and c % topk == 0:
            raise PayloadError(12 + c, f"slot-delta kind on slot 0 (column {c})")
        if kind in CODED_KINDS and E > 2048:
            raise PayloadError(12 + c, f"coded column {c} with E = {E} > 2048")
    H = u32(payload, 12 + C)
    start = 16 + C
    if start + H > len(payload):
        raise PayloadError(12 + C, f"table stream of {H} bytes runs past the payload")
    refs, consts = read_table_stream(payload, start, H, kinds, schema)
    pos = start + H
    cols = np.zeros((n, C), dtype=np.int64)
    for c, kind in enumerate(kinds):                         # 1.10.4: raw section, column order
        if kind == 3:
            cols[:, c], pos = read_raw_column(payload, pos, n, w, E, c)
        elif kind == 0:
            cols[:, c] = consts[c]
    coded = [c for c in range(C) if kinds[c] in CODED_KINDS]
    if not coded:
        if pos != len(payload):
            raise PayloadError(pos, "bytes after the raw columns")
        return cols
    decode_rans(payload, pos, n, coded, kinds, refs, cols, E)
    return cols


def decode_rans(payload, pos, n, coded, kinds, refs, cols, E):
    """1.10.5: four interleaved 64-bit rANS states, u32 renormalisation words."""
    if pos + 32 > len(payload):
        raise PayloadError(pos, "rANS states run past the payload")
    states = [u64(payload, pos + 8 * j) for j in range(4)]
    for j, x in enumerate(states):
        if not RANS_L <= x < 1 << 63:
            raise PayloadError(pos + 8 * j, f"rANS state {j} out of [2^31, 2^63)")
    pos += 32
    end = len(payload)
    for c in coded:
        kind = kinds[c]
        split = kind in (4, 5)
        prev = cols[:, c - 1] if kind != 1 else None
        column = cols[:, c]
        for t in range(n):
            if split:                                        # 1.10.2: first table when prev repeats
                table = refs[c][0] if t >= 1 and prev[t] == prev[t - 1] else refs[c][1]
            else:
                table = refs[c][0]
            j = t & 3
            x = states[j]
            M = 1 << table.scale
            slot = x & (M - 1)
            i = table.lookup[slot]
            x = table.freqs[i] * (x >> table.scale) + slot - table.cum[i]
            if x < RANS_L:
                if pos + 4 > end:
                    raise PayloadError(pos, "rANS stream runs out")
                x = (x << 32) | u32(payload, pos)
                pos += 4
            states[j] = x
            s = table.symbols[i]
            if s == E:                                       # escape: the row above
                if t == 0:
                    raise PayloadError(pos, f"escape at row 0 of column {c}")
                column[t] = column[t - 1]
            elif kind in (1, 4):
                column[t] = s
            else:
                column[t] = (s + prev[t]) % E
    if any(x != RANS_L for x in states):
        raise PayloadError(pos, "final rANS states are not all L")
    if pos != end:
        raise PayloadError(pos, "bytes left after the rANS stream")


# ---------------------------------------------------------------------------------------------
# 1.1 / 1.10: a block is one frame; dispatch on the layout byte.

def decode_block(frame, schema, expected_rows=None, check_values=True, check_content=True):
    """1.1, 1.4, 1.5, 1.10: a frame -> (payload, columns [n, C])."""
    payload = read_frame(frame, schema.payload_bound(expected_rows), check_content)
    if payload[0] == 1:
        return payload, decode_layout1(payload, schema, expected_rows, check_values)
    if payload[0] == 2:
        return payload, decode_layout2(payload, schema, expected_rows, check_values)
    raise PayloadError(0, f"unknown block layout {payload[0]}")


# ---------------------------------------------------------------------------------------------
# Part 2: the archive file.

HEADER_MAGIC = 0x184D2A5E
RECORD_MAGIC = 0x184D2A5F
ANCHOR_MAGIC = 0x184D2A5D
RECORD_SIZE = 44
ANCHOR_SIZE = 44


def read_header(data):
    """2.3: the header frame -> (schema, codec, block rows, metadata, header end, version)."""
    if len(data) < 8 or u32(data, 0) != HEADER_MAGIC:
        raise FormatError(0, "not an archive (header magic)")
    S = u32(data, 4)
    if S > 1048576:
        raise FormatError(4, f"header size {S} above 1 MiB")
    if 8 + S > len(data):
        raise FormatError(4, f"header of {S} bytes runs past the end of the file")
    if S < 40:
        raise FormatError(4, f"header size {S} below 40")
    content = data[8:8 + S]
    if crc32c(content[:S - 4]) != u32(content, S - 4):
        raise FormatError(4 + S, "wrong header CRC")
    if content[:8] != b"MOEROUTE":
        raise FormatError(8, "archive magic is not MOEROUTE")
    version, codec = u16(content, 8), u16(content, 10)
    if version not in (1, 2):
        raise FormatError(16, f"format version {version}")
    if codec not in (1, 2):
        raise FormatError(18, f"codec {codec}")
    end = S - 4
    pos = 12

    def take_u32():
        nonlocal pos
        if pos + 4 > end:
            raise FormatError(8 + pos, "a header field runs past the header CRC")
        value = u32(content, pos)
        pos += 4
        return value

    layers, topk, experts, block_rows, D = (take_u32() for _ in range(5))
    if D >= max(layers, 1) or 4 * D > end - pos:
        raise FormatError(8 + 28, f"dense count {D}")
    dense = [take_u32() for _ in range(D)]
    try:
        schema = Schema(layers, topk, experts, dense)
    except ValueError as error:
        raise FormatError(8 + 12, f"invalid schema: {error}")
    if not 1 <= block_rows <= schema.max_rows:
        raise FormatError(8 + 24, f"block rows {block_rows}")
    M = take_u32()
    if M > 4096:
        raise FormatError(8 + pos - 4, f"{M} metadata entries")
    metadata, seen = {}, set()
    for _ in range(M):
        strings = []
        for _ in range(2):
            at = pos
            length = take_u32()
            if length > end - pos:
                raise FormatError(8 + at, "a metadata string runs past the header CRC")
            raw = bytes(content[pos:pos + length])
            pos += length
            try:
                strings.append(raw.decode("utf-8", errors="strict"))
            except UnicodeDecodeError:
                raise FormatError(8 + at, "metadata string is not valid UTF-8")
        key = unicodedata.normalize("NFC", strings[0])
        if key in seen:
            raise FormatError(8 + at, f"duplicate metadata key {strings[0]!r}")
        seen.add(key)
        metadata[strings[0]] = strings[1]
    if pos != end:
        raise FormatError(8 + pos, "bytes between the last metadata entry and the header CRC")
    return schema, codec, block_rows, metadata, 8 + S, version


class Anchor:
    """2.3a: one commit anchor."""

    def __init__(self, sequence, log_end, rows, last_record_crc):
        self.sequence, self.log_end, self.rows, self.last_record_crc = sequence, log_end, rows, last_record_crc


def intact_anchor(data, a, log_start):
    """2.3a: the anchor frame at a, or None if it is not intact."""
    if a + ANCHOR_SIZE > len(data) or u32(data, a) != ANCHOR_MAGIC or u32(data, a + 4) != 36:
        return None
    if crc32c(data[a + 8:a + 40]) != u32(data, a + 40) or u32(data, a + 36) != 0:
        return None
    log_end, rows = u64(data, a + 16), u64(data, a + 24)
    if log_end < log_start or log_end >= 1 << 62 or rows >= 1 << 62:
        return None
    return Anchor(u64(data, a + 8), log_end, rows, u32(data, a + 32))


def current_anchor(data, header_end):
    """2.3a: the intact anchor with the larger sequence (the first on a tie), or None."""
    if header_end + 2 * ANCHOR_SIZE > len(data):
        raise FormatError(len(data), "the file ends inside its commit anchors")
    log_start = header_end + 2 * ANCHOR_SIZE
    first = intact_anchor(data, header_end, log_start)
    second = intact_anchor(data, header_end + ANCHOR_SIZE, log_start)
    if first is None or (second is not None and second.sequence > first.sequence):
        return second
    return first


class Record:
    """2.4: one 44-byte record frame."""

    def __init__(self, offset, kind, frame_length, position, rows, synced):
        self.offset, self.kind, self.frame_length = offset, kind, frame_length
        self.position, self.rows, self.synced = position, rows, synced


def intact_record(data, r, limit):
    """2.4 'Intact': the record at r inside data[0:limit], or None."""
    if r + RECORD_SIZE > limit:
        return None
    if u32(data, r) != RECORD_MAGIC or u32(data, r + 4) != 36:
        return None
    if crc32c(data[r + 8:r + 40]) != u32(data, r + 40):
        return None
    kind = data[r + 8]
    frame_length, position, rows = u32(data, r + 12), u64(data, r + 16), u32(data, r + 24)
    synced = u64(data, r + 32)
    if kind not in (1, 2, 3):
        return None
    if data[r + 9:r + 12] != b"\0\0\0" or u32(data, r + 28) != 0:
        return None
    if position >= 1 << 62 or synced >= 1 << 62 or synced > r:
        return None
    if kind == 1 and (rows == 0 or frame_length == 0):
        return None
    if kind != 1 and (rows != 0 or frame_length != 0):
        return None
    return Record(r, kind, frame_length, position, rows, synced)


class Block:
    """2.4 / 2.6: a block a rows record added; `rows` shrinks when a truncation straddles it."""

    def __init__(self, record):
        self.position, self.rows, self.stored_rows = record.position, record.rows, record.rows
        self.record_offset = record.offset
        self.frame_offset, self.frame_length = record.offset + RECORD_SIZE, record.frame_length


def replay(data, H, limit, block_rows, anchor=None):
    """2.5 'replay(limit)': apply the records chaining from the log start H up to limit.

    Where the log reaches the anchor's log end, it must hold the anchor's rows and end with the
    anchor's record; no record may span that end (2.5 step 1, version 2).
    Returns (N, live blocks, every block in file order, end, synced, stop)."""
    N, live, every, synced, offset, stop = 0, [], [], H, H, None
    if anchor is not None:
        synced = max(synced, anchor.log_end)
        if anchor.log_end == H and (anchor.rows != 0 or anchor.last_record_crc != 0):
            raise FormatError(H, "the commit anchor does not match the empty log")
    while offset < limit:
        rec = intact_record(data, offset, limit)
        if rec is None or not chains(rec, N, block_rows, limit):
            stop = offset
            break
        if rec.kind == 1:                                    # 2.4 'Chaining': apply
            block = Block(rec)
            live.append(block)
            every.append(block)
            N += rec.rows
        elif rec.kind == 2:
            p = rec.position
            live = [b for b in live if b.position < p]
            if live:
                last = live[-1]
                last.rows = min(last.rows, p - last.position)
            N = p
        synced = max(synced, rec.synced)
        following = offset + RECORD_SIZE + rec.frame_length
        if anchor is not None and following == anchor.log_end and \
                (N != anchor.rows or u32(data, offset + 40) != anchor.last_record_crc):
            raise FormatError(offset, "the log at the commit anchor's end is not the one it vouched for")
        if anchor is not None and offset < anchor.log_end < following:
            raise FormatError(offset, "a record spans the commit anchor's log end")
        offset = following
    return N, live, every, offset, synced, stop


def chains(rec, N, block_rows, limit):
    """2.4 'Chaining'."""
    if rec.kind == 1:
        return (rec.position == N and rec.rows <= block_rows
                and rec.offset + RECORD_SIZE + rec.frame_length <= limit)
    if rec.kind == 2:
        return rec.position <= N
    return rec.position == N


class Archive:
    """Part 2: an opened archive (2.3 header, 2.5 replay)."""

    def __init__(self, data):
        self.data = data
        self.schema, self.codec, self.block_rows, self.metadata, header_end, self.version = read_header(data)
        self.anchor = current_anchor(data, header_end) if self.version >= 2 else None
        self.H = header_end + (2 * ANCHOR_SIZE if self.version >= 2 else 0)           # the log start
        self.N, self.blocks, self.end, self.tail = self._open()

    def _open(self):
        """2.5 steps 1-3."""
        data, H, L, anchor = self.data, self.H, len(self.data), self.anchor
        N, live, every, end, synced, stop = replay(data, H, L, self.block_rows, anchor)  # step 1
        if stop is None and anchor is not None and end < anchor.log_end:
            raise FormatError(end, "the file ends before the commit anchor's log end")
        if stop is not None and anchor is not None and stop < anchor.log_end:            # step 2
            raise FormatError(stop, "the record here is not intact or does not chain; "
                                    "the commit anchor shows the log reached past it")
        if stop is not None and not any(data[stop:]):
            stop = None                                      # zero bytes after the log: slack
        if stop is not None:
            for c in range(stop + 1, L - RECORD_SIZE + 1):
                if u32(data, c) != RECORD_MAGIC:
                    continue                                 # fast path: not a record
                rec = intact_record(data, c, L)
                if rec is not None and rec.synced > stop:
                    raise FormatError(stop, "the record here is not intact or does not chain; "
                                                 f"the record at byte {c} shows this data had been synced")
        for b in every:                                                               # step 3
            if b.record_offset < synced:
                continue
            frame = data[b.frame_offset:b.frame_offset + b.frame_length]
            try:
                decode_block(frame, self.schema, b.stored_rows, check_values=False)
            except FormatError:
                N, live, _, end, _, _ = replay(data, H, b.record_offset, self.block_rows, anchor)
                stop = b.record_offset
                break
        tail = None if stop is None else (stop, L)
        return N, live, end, tail

    def rows(self, check_content=False):
        """2.6: every row 0 ..< N, [N, layers, topk] int64.

        Skips the frame content checksum as a row read SHOULD (1.4); check_content=True checks it."""
        out = np.zeros((self.N, self.schema.layers, self.schema.topk), dtype=np.int64)
        for b in self.blocks:
            frame = self.data[b.frame_offset:b.frame_offset + b.frame_length]
            try:
                _, cols = decode_block(frame, self.schema, b.stored_rows, check_content=check_content)
            except FormatError as error:
                raise FormatError(b.frame_offset + error.offset if not isinstance(error, PayloadError)
                                  else b.frame_offset,
                                  f"block of rows {b.position}..<{b.position + b.rows}: {error.reason}")
            out[b.position:b.position + b.rows] = self.schema.expand(cols[:b.rows])
        return out


# ---------------------------------------------------------------------------------------------
# Command line.

def narrowest_dtype(experts):
    return "uint8" if experts <= 256 else "uint16"


def schema_from_json(obj):
    s = obj["schema"]
    return Schema(s["layers"], s["topk"], s["experts"], s.get("dense_layers", []))


def check_vector_block(block_path, json_path, payload_path):
    """1.9 / 1.10.8: decode one vector frame, compare payload and rows with the vector."""
    with open(json_path) as f:
        vector = json.load(f)
    schema = schema_from_json(vector)
    with open(block_path, "rb") as f:
        frame = f.read()
    payload, cols = decode_block(frame, schema)
    problems = []
    if payload_path is not None:
        with open(payload_path, "rb") as f:
            if f.read() != payload:
                problems.append("payload differs from " + payload_path)
    expected = vector.get("decoded", vector.get("rows"))
    rows = schema.expand(cols)
    want = np.array(expected, dtype=np.int64).reshape(len(expected), schema.layers, schema.topk)
    if rows.shape != want.shape or not np.array_equal(rows, want):
        problems.append("decoded rows differ from the vector's")
    return rows, problems


def check_block_outcomes(directory):
    """Appendix B: every frame of blocks/outcomes.json meets its expected outcome.

    This reader rejects every block the spec lets a reader reject (it checks match offsets and
    the end-of-block conditions itself), so of the outcomes "either" allows it always has one."""
    import os
    problems = []
    with open(os.path.join(directory, "blocks", "outcomes.json")) as f:
        outcomes = json.load(f)
    for o in outcomes:
        path = os.path.join(directory, "blocks", o["file"])
        with open(os.path.join(directory, o["vector"] + ".json")) as f:
            vector = json.load(f)
        schema = schema_from_json(vector)
        want = np.array(vector.get("decoded", vector["rows"]), dtype=np.int64)
        with open(path, "rb") as f:
            frame = f.read()
        results = {}
        for mode, check_content in (("rows", False), ("whole", True)):       # 1.4: reads skip it
            try:
                _, cols = decode_block(frame, schema, check_content=check_content)
                rows = schema.expand(cols)
                results[mode] = "rows" if np.array_equal(rows, want.reshape(rows.shape)) else "other rows"
            except FormatError:
                results[mode] = "reject"
        allowed_rows = {"reject"} if o["reader_must"] == "reject" else {"reject", "rows"}
        allowed_whole = {o["whole_block"]} if "whole_block" in o else allowed_rows
        if results["rows"] not in allowed_rows or results["whole"] not in allowed_whole:
            problems.append(f"{path}: row read {results['rows']}, whole-block check {results['whole']}; "
                            f"expected {o['reader_must']} ({o['rule']})")
    return len(outcomes), problems


def check_archive_outcome(data, o):
    """Appendix B: one archive against its expected outcome (opens or not, where, rows, tail,
    the blocks whose reads fail, what a whole check reports). Returns problems."""
    try:
        archive = Archive(data)
    except FormatError as error:
        if o["opens"]:
            return [f"refused at byte {error.offset} ({error.reason}); expected to open"]
        if error.offset != o["damaged_at"]:
            return [f"refused at byte {error.offset}, expected {o['damaged_at']} ({error.reason})"]
        return []
    if not o["opens"]:
        return [f"opens with {archive.N} rows; expected damage at byte {o['damaged_at']}"]
    problems = []
    want = np.array(o["rows"], dtype=np.int64).reshape(len(o["rows"]), archive.schema.layers, archive.schema.topk)
    tail = archive.tail[0] if archive.tail else None
    if archive.N != len(want) or tail != o.get("tail"):
        problems.append(f"{archive.N} rows and tail {tail}; expected {len(want)} rows and tail {o.get('tail')}")
        return problems
    unreadable = {tuple(r) for r in o.get("unreadable", [])}
    reported = set()
    for b in archive.blocks:
        frame = data[b.frame_offset:b.frame_offset + b.frame_length]
        span = (b.position, b.position + b.stored_rows)
        try:
            _, cols = decode_block(frame, archive.schema, b.stored_rows, check_content=False)
            got = archive.schema.expand(cols[:b.rows])
            if span in unreadable:
                problems.append(f"rows {span[0]}..<{span[1]} read; expected their read to fail")
            elif not np.array_equal(got, want[b.position:b.position + b.rows]):
                problems.append(f"rows {span[0]}..<{span[1]} differ")
        except FormatError:
            if span not in unreadable:
                problems.append(f"reading rows {span[0]}..<{span[1]} fails")
        try:
            decode_block(frame, archive.schema, b.stored_rows)
        except FormatError:
            reported.add(f"block {span[0]}..<{span[1]}")
    if archive.version >= 2:
        header_end = archive.H - 2 * ANCHOR_SIZE
        for k in (0, 1):
            if intact_anchor(data, header_end + k * ANCHOR_SIZE, archive.H) is None:
                reported.add(f"anchor {k}")
    if reported != set(o.get("verify", [])):
        problems.append(f"a whole check reports {sorted(reported)}; expected {sorted(o.get('verify', []))}")
    return problems


def check_vector_directory(directory):
    """1.9, 1.10.8, 2.11, Appendix B: every block vector of `directory` (and compact/), every
    archive vector, the malformed blocks and the damaged archives with their outcomes."""
    import glob
    import os
    problems, count = [], 0
    for block in sorted(glob.glob(os.path.join(directory, "*.lz4")) + glob.glob(os.path.join(directory, "compact", "*.lz4"))):
        stem = block[:-4]
        try:
            _, found = check_vector_block(block, stem + ".json", stem + ".payload")
        except FormatError as error:
            found = [f"refused at byte {error.offset}: {error.reason}"]
        problems += [f"{block}: {p}" for p in found]
        count += 1
    archives = 0
    for json_path in sorted(glob.glob(os.path.join(directory, "archive", "*.json"))):
        archive_path = json_path[:-5] + ".archive"
        with open(json_path) as f:
            vector = json.load(f)
        with open(archive_path, "rb") as f:
            data = f.read()
        expected = {"opens": True, "rows": vector["rows"], "tail": vector.get("tail"), "verify": []}
        problems += [f"{archive_path}: {p}" for p in check_archive_outcome(data, expected)]
        archives += 1
    blocks, found = check_block_outcomes(directory)
    problems += found
    with open(os.path.join(directory, "archive", "damaged", "outcomes.json")) as f:
        outcomes = json.load(f)
    for o in outcomes:
        path = os.path.join(directory, "archive", "damaged", o["file"])
        with open(path, "rb") as f:
            problems += [f"{path}: {p} ({o['change']})" for p in check_archive_outcome(f.read(), o)]
    return {"blocks": count, "archives": archives, "malformed": blocks, "damaged": len(outcomes)}, problems


def read_archive(path, output, dtype, check_content):
    """Part 2: open `path`, read every row, write them to `output` (.npy) if given."""
    with open(path, "rb") as f:
        data = f.read()
    archive = Archive(data)
    rows = archive.rows(check_content=check_content)
    if output:
        np.save(output, rows.astype(dtype or narrowest_dtype(archive.schema.experts)))
    tail = f", ignored tail at byte {archive.tail[0]}" if archive.tail else ""
    print(f"{path}: {archive.N} rows in {len(archive.blocks)} blocks{tail}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Clean-room reader of MoE routing archives (spec/FORMAT.md).",
        epilog="Several archives may be given, each followed by its own -o: A -o A.npy B -o B.npy.")
    parser.add_argument("archive", nargs="*", help="archive file(s)")
    parser.add_argument("-o", "--output", action="append", default=[], help="write the rows as .npy")
    parser.add_argument("--dtype", help="output dtype (default: uint8 for E <= 256, else uint16)")
    parser.add_argument("--block", help="decode one block frame (a spec vector .lz4)")
    parser.add_argument("--schema", help="the vector .json holding the block's schema and rows")
    parser.add_argument("--payload", help="the vector .payload to compare with (default: beside --block)")
    parser.add_argument("--vectors", help="check every vector of this spec/vectors directory")
    parser.add_argument("--check-content-checksum", action="store_true",
                        help="archive mode: also check each block's content checksum when reading rows "
                             "(1.4: row reads SHOULD skip it, as the reference's do; a whole-block check makes it)")
    parser.add_argument("--skip-content-checksum", action="store_true",
                        help="archive mode: the default (kept for earlier command lines)")
    parser.add_argument("--expect-json", help="archive mode: compare with the 'rows' of this JSON")
    args = parser.parse_intermixed_args(argv)
    name = None
    try:
        if args.vectors:
            name = args.vectors
            count, problems = check_vector_directory(args.vectors)
            if problems:
                print(f"moe_reader: error: {problems[0]} ({len(problems)} problems)", file=sys.stderr)
                return 1
            print(f"{args.vectors}: {count['blocks']} block vectors, {count['archives']} archive vectors, "
                  f"{count['malformed']} block outcome vectors and {count['damaged']} damaged archives match")
        elif args.block:
            name = args.block
            if not args.schema:
                parser.error("--block needs --schema")
            payload_path = args.payload
            if payload_path is None and args.block.endswith(".lz4"):
                payload_path = args.block[:-4] + ".payload"
            rows, problems = check_vector_block(args.block, args.schema, payload_path)
            if problems:
                print(f"moe_reader: error: {args.block}: " + "; ".join(problems), file=sys.stderr)
                return 1
            print(f"{args.block}: {rows.shape[0]} rows, payload and rows match the vector")
        elif args.archive:
            if args.output and len(args.output) != len(args.archive):
                parser.error("give one -o per archive, or none")
            outputs = args.output or [None] * len(args.archive)
            for path, output in zip(args.archive, outputs):
                name = path
                rows = read_archive(path, output, args.dtype, args.check_content_checksum)
                if args.expect_json:
                    with open(args.expect_json) as f:
                        want = np.array(json.load(f)["rows"], dtype=np.int64)
                    if rows.shape != want.shape or not np.array_equal(rows, want):
                        print(f"moe_reader: error: {path}: rows differ from {args.expect_json}", file=sys.stderr)
                        return 1
        else:
            parser.error("give an ARCHIVE, --block or --vectors")
    except FormatError as error:
        print(f"moe_reader: error: {name}: damaged at byte {error.offset}: {error.reason}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"moe_reader: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
