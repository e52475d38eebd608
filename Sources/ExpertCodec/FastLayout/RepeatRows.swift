/// The rows of a flagged column (repeat, repeatSlotDelta; spec 1.5.5) from its stored values,
/// a group of 8 rows at a time.
enum RepeatRows {
    /// Rows `range` of a flagged column from its stored values: row `t` takes `values[j]`, `j`
    /// counting the unflagged rows through `t` from `first`, the stored value of the range's first row.
    /// Groups of 8- and 16-bit rows read the 8 values after the row before them at once: up to
    /// 8 values past the last one used must be readable. `pulls` is ``RepeatPulls/shared``,
    /// passed in: read in here, the lazy global's check cost about 28 instructions a column.
    static func expand<S: PlaneScalar>(flags: UnsafePointer<UInt8>, values: UnsafePointer<S>, first: Int,
                                       _ range: Range<Int>, into out: UnsafeMutablePointer<S>, pulls: RepeatPulls) {
        var j = first, t = range.lowerBound &+ 1
        if S.self == UInt8.self || S.self == UInt16.self {
            if range.lowerBound & 7 == 0 && range.lowerBound &+ 8 <= range.upperBound {
                // A range that starts a group (a whole block's does) starts with a whole group:
                // its first row takes `values[first]` flagged or not, as if it were unflagged.
                // (Row by row, that group cost about 100 instructions.)
                j = expandGroup(flags: flags[range.lowerBound >> 3] & ~1, values: values, after: first &- 1,
                                before: 0, into: out + range.lowerBound, pulls: pulls)
                t = range.lowerBound &+ 8
            } else {
                out[range.lowerBound] = values[j]
            }
            while t < range.upperBound && t & 7 != 0 {
                j &+= 1 &- RepeatFlags.flag(t, flags)
                out[t] = values[j]
                t &+= 1
            }
            while t &+ 8 <= range.upperBound {
                j = expandGroup(flags: flags[t >> 3], values: values, after: j, before: values[j], into: out + t, pulls: pulls)
                t &+= 8
            }
        } else {
            out[range.lowerBound] = values[j]
        }
        while t < range.upperBound {
            j &+= 1 &- RepeatFlags.flag(t, flags)
            out[t] = values[j]
            t &+= 1
        }
    }

    /// Flagged rows of `rows` take the value of the row before them, in order: a run of flagged
    /// rows takes the value of the row before the run.
    static func copyFlagged<S: PlaneScalar>(_ flags: UnsafePointer<UInt8>, rows: Range<Int>,
                                            in out: UnsafeMutablePointer<S>) {
        @inline(__always) func copy(_ t: Int) {
            out[t] = RepeatFlags.flag(t, flags) == 1 ? out[t &- 1] : out[t]
        }
        var t = rows.lowerBound
        if S.self == UInt8.self || S.self == UInt16.self {
            /// The group of 8 rows at `g` a word at a time, `above` the row before it; returns
            /// the group's last row.
            @inline(__always) func copyGroup(_ flags: UInt8, at g: Int, above: S) -> S {
                if S.self == UInt8.self {
                    return S(truncatingIfNeeded: copyFlaggedBytes(flags, above: UInt8(truncatingIfNeeded: above),
                                                                  in: UnsafeMutableRawPointer(out + g)))
                } else {
                    return S(truncatingIfNeeded: copyFlaggedShorts(flags, above: UInt16(truncatingIfNeeded: above),
                                                                  in: UnsafeMutableRawPointer(out + g)))
                }
            }
            let group = t &- 1
            if group & 7 == 0 && t &+ 7 <= rows.upperBound {
                // Rows that start right after a group's first row (a whole block's do): that
                // group whole, its first row left as it is (as if unflagged).
                _ = copyGroup(flags[group >> 3] & ~1, at: group, above: 0)
                t &+= 7
            }
            while t < rows.upperBound && t & 7 != 0 {
                copy(t)
                t &+= 1
            }
            if t &+ 8 <= rows.upperBound {
                // Each group's last row passed on in a register: read back from the word just
                // stored, it chained every group through store forwarding (copyFlagged took
                // about twice its share of instructions in wall time).
                var above = out[t &- 1]
                repeat {
                    above = copyGroup(flags[t >> 3], at: t, above: above)
                    t &+= 8
                } while t &+ 8 <= rows.upperBound
            }
        }
        while t < rows.upperBound {
            copy(t)
            t &+= 1
        }
    }

    /// `copyFlagged` on one group of 8 rows of 16-bit ids at `group`, `above` the row before it:
    /// each half of the group is a word of 4 lanes, done like ``copyFlaggedBytes(_:above:in:)``
    /// in two rounds (a flagged lane takes the lane 1, then 2 up; a half all flagged takes the
    /// row above it), the high half after the low one, below its last lane. Returns the last row.
    @inline(__always)
    static func copyFlaggedShorts(_ flags: UInt8, above before: UInt16, in group: UnsafeMutableRawPointer) -> UInt16 {
        let lowLanes: UInt64 = 0x0001_0001_0001_0001
        switch flags {
        case 0:
            return group.loadUnaligned(fromByteOffset: 14, as: UInt16.self)
        case 0xFF:
            let word = UInt64(before) &* lowLanes
            group.storeBytes(of: word, as: UInt64.self)
            group.storeBytes(of: word, toByteOffset: 8, as: UInt64.self)
            return before
        default:
            // One half: `flags` 4 bits, `above` the row before the half in every lane.
            @inline(__always) func half(_ flags: UInt8, above: UInt64, at offset: Int) -> UInt64 {
                // Lane i of `bits` is 2^i or 0; adding 0x7FFF sets its high bit exactly when it is 2^i.
                let bits = (UInt64(flags) &* lowLanes) & 0x0008_0004_0002_0001
                var flagged = (((bits &+ 0x7FFF_7FFF_7FFF_7FFF) & 0x8000_8000_8000_8000) &>> 15) &* 0xFFFF
                var word = group.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                guard flagged != 0 else { return word }
                // Two rounds reach 3 rows up: a half all flagged would need a third, so it
                // takes `above` whole instead.
                if flags == 0xF { word = above } else {
                    word = (word & ~flagged) | (((word &<< 16) | (above &>> 48)) & flagged)
                    flagged &= flagged &<< 16
                    word = (word & ~flagged) | (((word &<< 32) | (above &>> 32)) & flagged)
                }
                group.storeBytes(of: word, toByteOffset: offset, as: UInt64.self)
                return word
            }
            let low = half(flags & 0xF, above: UInt64(before) &* lowLanes, at: 0)
            return UInt16(truncatingIfNeeded: half(flags &>> 4, above: (low &>> 48) &* lowLanes, at: 8) &>> 48)
        }
    }

    /// `copyFlagged` on one group of 8 byte-wide rows at `group`, `above` the row before it, a
    /// word at a time: in three rounds every flagged row takes the value 1, 2, then 4 rows up,
    /// and stays flagged for the next round if that row was flagged too. Rows above the group
    /// read as `above`. Returns the last row.
    @inline(__always)
    static func copyFlaggedBytes(_ flags: UInt8, above before: UInt8, in group: UnsafeMutableRawPointer) -> UInt8 {
        // No branch on groups with no flag (the rounds leave them as they are) or all flagged
        // (the rounds reach 7 rows up, not 8: masked to `above`): a switch on them was
        // mispredicted for about one group in 6 on Qwen3-like columns.
        let lowBits: UInt64 = 0x0101_0101_0101_0101
        let above = UInt64(before) &* lowBits, allFlagged = RepeatFlags.allFlaggedMask(flags)
        var flagged = RepeatFlags.spread(flags) &* 0xFF
        var word = group.loadUnaligned(as: UInt64.self)
        word = (word & ~flagged) | (((word &<< 8) | (above &>> 56)) & flagged)
        flagged &= flagged &<< 8
        word = (word & ~flagged) | (((word &<< 16) | (above &>> 48)) & flagged)
        flagged &= flagged &<< 16
        word = (word & ~flagged) | (((word &<< 32) | (above &>> 32)) & flagged)
        word = (word & ~allFlagged) | (above & allFlagged)
        group.storeBytes(of: word, as: UInt64.self)
        return UInt8(truncatingIfNeeded: word &>> 56)
    }

    /// One group of 8 rows of a repeat column: row `i` takes stored value
    /// `j + (unflagged rows among 0...i)`, where `j` is the stored value of the row before the
    /// group, `before` (`values[j]`: passed in, so that a group whose first row is unflagged may
    /// have `j = -1`). Returns the stored value of the group's last row.
    @inline(__always)
    static func expandGroup<S: PlaneScalar>(flags: UInt8, values: UnsafePointer<S>, after j: Int, before: S,
                                            into out: UnsafeMutablePointer<S>, pulls: RepeatPulls) -> Int {
        let lowBits: UInt64 = 0x0101_0101_0101_0101
        // Byte-wide and 16-bit rows take no branch on `flags` (a switch on no flag and all
        // flagged was mispredicted for about one group in 6 on Qwen3-like columns, 48% of the
        // decoder's mispredictions): the rounds leave a group with no flag as it is loaded,
        // and a group all flagged, which they cannot pull 8 rows up, is `before` by a mask.
        let allFlagged = RepeatFlags.allFlaggedMask(flags)
        if S.self == UInt8.self {
            // A word of the 8 values after `j`, pulled into place in the rounds of ``RepeatPulls``;
            // above the word is `values[j]`.
            let above = UInt64(before) &* lowBits, rounds = pulls.words + 4 &* Int(flags)
            var word = UnsafeRawPointer(values + (j &+ 1)).loadUnaligned(as: UInt64.self)
            @inline(__always) func pull(_ round: Int, rows: UInt64) {
                let shift = 8 &* rows
                word ^= (word ^ ((word &<< shift) | (above &>> (64 &- shift)))) & rounds[round]
            }
            pull(0, rows: 4)
            pull(1, rows: 2)
            pull(2, rows: 1)
            word = (word & ~allFlagged) | (above & allFlagged)
            UnsafeMutableRawPointer(out).storeBytes(of: word, as: UInt64.self)
            return j &+ Int(truncatingIfNeeded: rounds[3])
        }
        if S.self == UInt16.self {
            // The same rounds on an SSE2 register of the 8 values after `j`, with the masks
            // of ``RepeatPulls/lanes``.
            typealias Lanes = SIMD8<UInt16>
            let masks = pulls.lanes + 3 &* Int(flags), above = UInt16(truncatingIfNeeded: before)
            var word = UnsafeRawPointer(values + (j &+ 1)).loadUnaligned(as: Lanes.self)
            @inline(__always) func pull(_ round: Int, _ pulled: Lanes) {
                let mask = masks[round]
                word = (word & ~mask) | (pulled & mask)
            }
            @inline(__always) func halves(_ x: Lanes) -> SIMD4<UInt32> { unsafeBitCast(x, to: SIMD4<UInt32>.self) }
            let aboveLanes = Lanes(repeating: above), abovePairs = halves(aboveLanes)
            // 4 rows up: the low half moves up, `above` fills it.
            pull(0, unsafeBitCast(SIMD2(unsafeBitCast(aboveLanes, to: SIMD2<UInt64>.self)[0],
                                        unsafeBitCast(word, to: SIMD2<UInt64>.self)[0]), to: Lanes.self))
            // 2 rows up: 32-bit lanes (row pairs) 0, 1, 2 move up one, `above` fills lane 0.
            let w = halves(word)
            pull(1, unsafeBitCast(SIMD4(abovePairs[0], w[0], w[1], w[2]), to: Lanes.self))
            // 1 row up.
            pull(2, Lanes(above, word[0], word[1], word[2], word[3], word[4], word[5], word[6]))
            let all = unsafeBitCast(SIMD2(repeating: allFlagged), to: Lanes.self)
            word = (word & ~all) | (aboveLanes & all)
            UnsafeMutableRawPointer(out).storeBytes(of: word, as: Lanes.self)
            return j &+ Int(truncatingIfNeeded: pulls.words[4 &* Int(flags) &+ 3])
        }
        switch flags {
        case 0: // no repeat: the next 8 stored values
            out.update(from: values + (j &+ 1), count: 8)
            return j &+ 8
        case 0xFF: // all repeat the row before
            out.update(repeating: before, count: 8)
            return j
        default:
            // Times lowBits, byte i of the unflagged rows counts those among rows 0...i.
            let prefix = RepeatFlags.spread(~flags) &* lowBits
            var shift: UInt64 = 0
            for i in 0..<8 {
                out[i] = values[j &+ Int((prefix &>> shift) & 0xFF)]
                shift &+= 8
            }
            return j &+ Int(prefix &>> 56)
        }
    }
}

/// How ``RepeatRows/expandGroup(flags:values:after:before:into:pulls:)`` places a group of 8
/// byte-wide rows, for each flag byte (0xFF's rounds fall short, and are masked): row `i` takes stored value `j + 1 + i - d(i)`,
/// `d(i)` the flagged rows among `0...i`. A word of the 8 values after `j` gets there in three
/// rounds where byte `i` takes the byte 4, 2, then 1 rows up, where that bit of `d(i)` is set:
/// `d` steps by at most 1 per row, so the bits a round has yet to pull are the same at the row
/// it pulls from. Built once and never changed, so shared by every thread; a load per round
/// instead of computing `d` and the rounds (about 20 instructions a group).
final class RepeatPulls: @unchecked Sendable {
    static let shared = RepeatPulls()

    /// 4 words at `4 * flags`: the rows (0xFF bytes) each of the 3 rounds pulls, then the rows unflagged.
    let words: UnsafeMutablePointer<UInt64>
    /// The 3 masks of `words` for 16-bit rows at `3 * flags` (0xFFFF lanes): a load per round
    /// where widening the byte masks took 5 instructions.
    let lanes: UnsafeMutablePointer<SIMD8<UInt16>>

    private init() {
        words = .allocate(capacity: 4 * 256)
        lanes = .allocate(capacity: 3 * 256)
        for flags in 0..<256 {
            var flagged = 0
            (words + 4 * flags).initialize(repeating: 0, count: 4)
            for i in 0..<8 {
                flagged += flags >> i & 1
                for (round, bit) in [2, 1, 0].enumerated() where flagged >> bit & 1 == 1 {
                    words[4 * flags + round] |= 0xFF << UInt64(8 * i)
                }
            }
            words[4 * flags + 3] = UInt64(8 - flagged)
        }
        for k in 0..<(3 * 256) {
            let word = words[4 * (k / 3) + k % 3]
            lanes.advanced(by: k).initialize(to: SIMD8((0..<8).map { UInt16(truncatingIfNeeded: (word >> UInt64(8 * $0)) & 1) &* 0xFFFF }))
        }
    }
}
