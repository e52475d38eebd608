#!/usr/bin/env python3
"""Writes the outcome vectors of FORMAT.md Appendix B from the vectors already in spec/vectors:

- blocks/: LZ4 frames that break a rule of 1.4 or exercise a reader's choice (1.4, 1.5.6), with
  blocks/outcomes.json;
- archive/damaged/: damaged, cut and edited copies of archive/small.archive (format version 1) and
  archive/small-v2.archive (version 2), the outcomes of 2.9 and 2.4, with archive/damaged/outcomes.json.

Every outcome is written down here from the spec's text, not read back from a reader; the
reference reader (spec/reference/moe_reader.py --vectors) and the Swift tests
(SpecOutcomeVectorTests) check them. Deterministic: running it again rewrites the same bytes.

    python3 spec/vectors/make_outcome_vectors.py          # then review `git diff --stat spec/vectors`
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
from moe_reader import crc32c, u32, xxh32  # noqa: E402


def le32(v):
    return v.to_bytes(4, "little")


# ---------------------------------------------------------------------------------------------
# Blocks (1.4, 1.5.6)

def ext(n):
    """lz4_Block_format.md: the length bytes after a token nibble of 15."""
    out = []
    if n >= 15:
        n -= 15
        while n >= 255:
            out.append(255)
            n -= 255
        out.append(n)
    return out


def seq(literals, offset=None, match=None):
    """One LZ4 sequence: literals, then (unless last) a match of `match` >= 4 bytes at `offset`."""
    lit = len(literals)
    m = 0 if offset is None else match - 4
    token = (min(lit, 15) << 4) | (min(m, 15) if offset is not None else 0)
    out = bytes([token] + ext(lit)) + bytes(literals)
    if offset is not None:
        out += offset.to_bytes(2, "little") + bytes(ext(m))
    return out


def frame(payload, blocks, flg=0x7C, content_size=None, content_checksum=None):
    """An LZ4 frame of `blocks` [(data, stored)] with every checksum right, unless given."""
    size = len(payload) if content_size is None else content_size
    descriptor = bytes([flg, 0x40]) + size.to_bytes(8, "little")
    out = le32(0x184D2204) + descriptor + bytes([(xxh32(descriptor) >> 8) & 0xFF])
    for data, stored in blocks:
        out += le32(len(data) | (0x80000000 if stored else 0)) + data + le32(xxh32(data))
    out += le32(0)
    out += le32(xxh32(payload) if content_checksum is None else content_checksum)
    return out


def repeat_at(payload, lo, hi):
    """A position m in [lo, hi) whose 4 bytes occur before m, and the offset of that match."""
    for m in range(lo, min(hi, len(payload) - 3)):
        j = payload.rfind(payload[m:m + 4], 0, m + 3)
        if 0 <= j < m and j + 4 <= m + 3:
            return m, m - j
    raise SystemExit(f"no repeat in [{lo}, {hi})")


def block_vectors():
    """(name, frame bytes, outcome) for blocks/."""
    kimi = open(os.path.join(HERE, "kimi_e384.payload"), "rb").read()
    mixed = open(os.path.join(HERE, "mixed_e6.payload"), "rb").read()
    P = len(kimi)
    zeros = kimi.index(b"\0" * 8, 1)                      # 8 zero bytes at 55
    out = []

    def add(name, data, vector, rule, must, reference, **extra):
        out.append((name, data, dict(file=name + ".lz4", vector=vector, rule=rule,
                                     reader_must=must, reference=reference, **extra)))

    # MUST reject (1.4 "LZ4 data blocks").
    add("lz4_literals_past_data", frame(kimi, [(seq(kimi)[:-10], False)]), "kimi_e384",
        "1.4: the literals of the last sequence run past the data block", "reject", "reject")
    m, off = repeat_at(kimi, 20, P - 12)
    add("lz4_ends_after_match", frame(kimi, [(seq(kimi[:m], off, 4), False), (kimi[m + 4:], True)]), "kimi_e384",
        "1.4: a data block that ends after a match (its last sequence is not literals only)", "reject", "reject")
    add("lz4_offset_before_window", frame(kimi, [(seq(kimi[:40], 41, 4) + seq(kimi[44:]), False)]), "kimi_e384",
        "1.4: a match offset of 41 after 40 bytes: it copies from before the output window", "reject", "reject")
    add("lz4_output_above_content_size", frame(kimi, [(seq(kimi + b"\0"), False)], content_size=P), "kimi_e384",
        "1.4: the data block decodes to more bytes than the content size (its capacity)", "reject", "reject")
    add("lz4_output_below_content_size", frame(kimi, [(seq(kimi[:-1]), False)], content_size=P), "kimi_e384",
        "1.4: the data blocks decode to fewer bytes than the content size", "reject", "reject")

    # A writer MUST NOT write these; a reader MAY reject them (1.4).
    add("lz4_offset_zero", frame(kimi, [(seq(kimi[:zeros], 0, 8) + seq(kimi[zeros + 8:]), False)]), "kimi_e384",
        "1.4: a match offset of 0 where the payload holds 8 zero bytes (liblz4 1.9.4 decodes it as zeros)",
        "either", "rows")
    # The last match ends 2 bytes before the end of the output: the last 5 bytes are not literals.
    wide = open(os.path.join(HERE, "wide_e65536.payload"), "rb").read()
    m, off = last_match_near_end(wide, 2)
    W = len(wide)
    add("lz4_last_literals_short", frame(wide, [(seq(wide[:m], off, W - 2 - m) + seq(wide[W - 2:]), False)]),
        "wide_e65536", "1.4: the last match ends 2 bytes before the end of the output (end-of-block condition)",
        "either", "reject")
    # The last match starts 9 bytes before the end of the only data block's output.
    one = open(os.path.join(HERE, "one_row_e65536.payload"), "rb").read()
    m, off = repeat_at(one, len(one) - 11, len(one) - 8)
    add("lz4_last_match_late", frame(one, [(seq(one[:m], off, 4) + seq(one[m + 4:]), False)]), "one_row_e65536",
        f"1.4: the last match starts {len(one) - m} bytes before the end of the data block's output "
        "(end-of-block condition; liblz4 checks it against the capacity, which is the output here)",
        "either", "reject")
    # The same break in a first data block whose capacity is the whole payload: liblz4 accepts it.
    m, off = repeat_at(kimi, 60, 100)
    end = m + 9
    add("lz4_last_match_late_capacity",
        frame(kimi, [(seq(kimi[:m], off, 4) + seq(kimi[m + 4:end]), False), (kimi[end:], True)]), "kimi_e384",
        "1.4: the last match of the first data block starts 9 bytes before the end of its output; its "
        "capacity (the content size) is larger, so liblz4 decodes it", "either", "rows")

    # Reader choices (1.4, 1.5.6): the reference's as SHOULD.
    m, off = repeat_at(kimi, 64, P - 12)
    add("linked_blocks", frame(kimi, [(kimi[:m], True), (seq(b"", off, 4) + seq(kimi[m + 4:]), False)], flg=0x5C),
        "kimi_e384", "1.4: B.Indep = 0, the second data block copies its first 4 bytes from the first data block",
        "either", "rows")
    add("content_checksum_only", frame(kimi, [(kimi, True)], content_checksum=xxh32(kimi) ^ 1), "kimi_e384",
        "1.4: every byte right but the content checksum: row reads SHOULD skip it, a whole-block check fails",
        "either", "rows", whole_block="reject")
    bad = bytearray(mixed)
    bad[25] |= 0x08                                       # column 0, plane 1, row 11: id 5 becomes 7 >= E = 6
    add("id_above_experts_row_11", frame(bytes(bad), [(bytes(bad), True)]), "mixed_e6",
        "1.5.6 check 7: row 11 of column 0 stores 7 with E = 6: a reader of rows 0-10 SHOULD return them "
        "(check 7 on the values it decodes), row 11 and a whole-block check fail",
        "reject", "reject", readable_rows=11, whole_block="reject")
    return out


def last_match_near_end(payload, gap):
    """A match of at least 4 bytes that ends `gap` bytes before the end of `payload`: (start, offset)."""
    P = len(payload)
    for m in range(P - gap - 4, 0, -1):
        for off in range(1, m + 1):
            if all(payload[m + k] == payload[m + k - off] for k in range(P - gap - m)):
                return m, off
    raise SystemExit("no match near the end")


# ---------------------------------------------------------------------------------------------
# Archives (2.4, 2.5, 2.9)

def set_block_rows(data, block_rows):
    """The same file with the header's block rows changed and its CRC recomputed (2.3)."""
    data = bytearray(data)
    S = u32(data, 4)
    data[32:36] = le32(block_rows)
    data[4 + S:8 + S] = le32(crc32c(bytes(data[8:4 + S])))
    return bytes(data)


def initial_anchors(data, header_end, log_start):
    """Both anchors as a writer creates them (2.3a): sequence 0, log end H, 0 rows."""
    body = (0).to_bytes(8, "little") + log_start.to_bytes(8, "little") + (0).to_bytes(8, "little") + le32(0) + le32(0)
    anchor = le32(0x184D2A5D) + le32(36) + body + le32(crc32c(body))
    data = bytearray(data)
    data[header_end:header_end + 88] = anchor + anchor
    return bytes(data)


def flip(data, offset, bit=0):
    data = bytearray(data)
    data[offset] ^= 1 << bit
    return bytes(data)


def archive_vectors():
    """(name, bytes, outcome) for archive/damaged/. Offsets are those of FORMAT.md 2.9."""
    v1 = open(os.path.join(HERE, "archive", "small.archive"), "rb").read()
    v2 = open(os.path.join(HERE, "archive", "small-v2.archive"), "rb").read()
    rows = json.load(open(os.path.join(HERE, "archive", "small.json")))["rows"]
    dropped_row_5 = [[5, 6], [1, 4]]                       # row 5 as first appended (2.9, record D)
    out = []

    def opens(name, base, data, change, n, tail=None, unreadable=(), verify=(), row5=None):
        want = rows[:n] if row5 is None else rows[:5] + [row5]
        out.append((name, data, dict(file=name + ".archive", base=base, change=change, opens=True, rows=want,
                                     tail=tail, unreadable=[list(r) for r in unreadable], verify=list(verify))))

    def damaged(name, base, data, change, at):
        out.append((name, data, dict(file=name + ".archive", base=base, change=change, opens=False, damaged_at=at)))

    s1, s2 = "small.archive", "small-v2.archive"
    # Version 1 (2.9): records A 65, B 171, C 278, D 322, E 366, F 410, G 509; frames at A+44 ...
    opens("v1_cut_in_G", s1, v1[:530], "cut inside the last commit record G (509)", 6, tail=509)
    opens("v1_cut_in_F_frame", s1, v1[:480], "cut inside F's block frame", 5, tail=410)
    opens("v1_cut_at_366", s1, v1[:366], "cut at a record boundary (after D)", 5)
    opens("v1_cut_at_171", s1, v1[:171], "cut at a record boundary (after A's block)", 4)
    damaged("v1_bit_record_B", s1, flip(v1, 171 + 16), "one bit of record B's position; G claims 509", 171)
    opens("v1_bit_record_G", s1, flip(v1, 509 + 16), "one bit of the last commit record G", 6, tail=509)
    opens("v1_bit_frame_A", s1, flip(v1, 109 + 30), "one bit inside A's LZ4 block data", 6,
          unreadable=[(0, 4)], verify=["block 0..<4"])
    opens("v1_content_checksum_A", s1, flip(v1, 109 + 61, 7), "one bit of A's content checksum only", 6,
          verify=["block 0..<4"])
    damaged("v1_prefix_322_bit_record_B", s1, flip(v1[:322], 171 + 16),
            "first 322 bytes (a crash after sync), one bit of record B; C claims 278", 171)
    opens("v1_prefix_278_bit_record_B", s1, flip(v1[:278], 171 + 16),
          "first 278 bytes (a crash before C), one bit of record B: a torn tail", 4, tail=171)
    opens("v1_prefix_509_bit_frame_F", s1, flip(v1[:509], 454 + 30),
          "first 509 bytes (no G), one bit of F's block frame, which lies past every claim (step 3)", 5, tail=410)
    opens("v1_prefix_278_bit_frame_A", s1, flip(v1[:278], 109 + 30),
          "first 278 bytes, one bit of A's block frame, past every claim (step 3)", 0, tail=65)
    zeroed = v1[:322] + bytes(len(v1) - 322)
    opens("v1_zeroed_from_D", s1, zeroed,
          "every byte from D (322) on set to zero: version 1 reads A and B, row 5 the dropped one; the zeros "
          "are slack", 6, row5=dropped_row_5)
    damaged("v1_block_rows_3", s1, set_block_rows(v1, 3),
            "header block rows 3: record A (4 rows) does not chain (2.4), and C claims 278", 65)
    opens("v1_prefix_278_block_rows_3", s1, set_block_rows(v1[:278], 3),
          "first 278 bytes, header block rows 3: record A does not chain and nothing claims past it", 0, tail=65)

    # Version 2: anchors at 65 and 109, records A 153, B 259, C 366, D 410, E 454, F 498, G 597.
    damaged("v2_zeroed_from_D", s2, v2[:410] + bytes(len(v2) - 410),
            "every byte from D (410) on set to zero: short of the anchor's log end 597", 410)
    damaged("v2_cut_in_F", s2, v2[:500], "cut inside record F (498), before the anchor's log end", 498)
    damaged("v2_cut_at_454", s2, v2[:454], "cut at a record boundary before the anchor's log end", 454)
    opens("v2_cut_in_G", s2, v2[:620], "cut inside the last commit record G (597)", 6, tail=597)
    damaged("v2_bit_record_B", s2, flip(v2, 259 + 16), "one bit of record B", 259)
    opens("v2_bit_anchor_1", s2, flip(v2, 109 + 20), "one bit of anchor 1 (current): anchor 0 (log end 454) is used",
          6, verify=["anchor 1"])
    opens("v2_bit_both_anchors", s2, flip(flip(v2, 65 + 20), 109 + 20),
          "one bit of each anchor: read as version 1", 6, verify=["anchor 0", "anchor 1"])
    opens("v2_content_checksum_A", s2, flip(v2, 197 + 61, 7), "one bit of A's content checksum only", 6,
          verify=["block 0..<4"])
    opens("v2_bit_frame_A", s2, flip(v2, 197 + 30), "one bit inside A's LZ4 block data", 6,
          unreadable=[(0, 4)], verify=["block 0..<4"])
    damaged("v2_block_rows_3", s2, set_block_rows(v2, 3),
            "header block rows 3: record A (4 rows) does not chain (2.4), short of the anchor's log end", 153)
    crash = initial_anchors(v2[:366], 65, 153)
    opens("v2_crash_before_C", s2, crash,
          "first 366 bytes with the anchors as create wrote them (a crash between B's fsync and C): "
          "A and B are past every claim, checked whole, and read", 6, row5=dropped_row_5)
    opens("v2_crash_before_C_block_rows_3", s2, set_block_rows(crash, 3),
          "as v2_crash_before_C with header block rows 3: record A does not chain, a torn tail", 0, tail=153)
    return out


def main():
    blocks = os.path.join(HERE, "blocks")
    damaged = os.path.join(HERE, "archive", "damaged")
    os.makedirs(blocks, exist_ok=True)
    os.makedirs(damaged, exist_ok=True)
    for directory, vectors, ext in ((blocks, block_vectors(), ".lz4"), (damaged, archive_vectors(), ".archive")):
        outcomes = []
        for name, data, outcome in vectors:
            with open(os.path.join(directory, name + ext), "wb") as f:
                f.write(data)
            outcomes.append(outcome)
        with open(os.path.join(directory, "outcomes.json"), "w") as f:
            json.dump(outcomes, f, indent=1)
            f.write("\n")
        print(f"{directory}: {len(outcomes)} vectors")


if __name__ == "__main__":
    main()
