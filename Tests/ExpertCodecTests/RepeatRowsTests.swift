import Testing
import TraceSynth
@testable import ExpertCodec

/// The word kernels of ``RepeatRows`` against the spec's row-by-row decoding (1.5.7), on every
/// flag byte and from every start of a range.
@Suite struct RepeatRowsTests {
    /// Random flags (row 0 clear) in runs or scattered, and the stored values they keep.
    static func column<S: PlaneScalar>(_ random: inout SplitMix64, rows: Int, as: S.Type) -> (flags: [UInt8], values: [S]) {
        var flags = [UInt8](repeating: 0, count: (rows + 7) / 8 + ColumnPlaces.slackBytes)
        let dense = random.next() % 2 == 0
        for t in 1..<rows where random.next() % (dense ? 5 : 2) != 0 { flags[t >> 3] |= 1 << UInt8(t & 7) }
        let kept = rows - (0..<rows).reduce(0) { $0 + RepeatFlags.flag($1, flags) }
        return (flags, (0..<kept + BitPlanes.loadSlackIDs).map { _ in S(truncatingIfNeeded: random.next()) })
    }

    @Test func expandMatchesRowByRow() {
        var random = SplitMix64(seed: 31)
        func check<S: PlaneScalar>(_: S.Type) {
            for _ in 0..<40 {
                let rows = Int.random(in: 1...300, using: &random)
                let (flags, values) = Self.column(&random, rows: rows, as: S.self)
                var expected = [S](), j = -1
                for t in 0..<rows {
                    if RepeatFlags.flag(t, flags) == 0 { j += 1 }
                    expected.append(values[j])
                }
                for _ in 0..<20 {
                    // Half the ranges start a group, as a whole block does (its first group is expanded whole).
                    var a = Int.random(in: 0..<rows, using: &random)
                    if random.next() % 2 == 0 { a &= ~7 }
                    let b = Int.random(in: a + 1...rows, using: &random)
                    let first = RepeatFlags.nonRepeats(through: a, flags) - 1
                    var out = [S](repeating: 0, count: rows)
                    flags.withUnsafeBufferPointer { f in
                        values.withUnsafeBufferPointer { v in
                            out.withUnsafeMutableBufferPointer { RepeatRows.expand(flags: f.baseAddress!, values: v.baseAddress!, first: first, a..<b, into: $0.baseAddress!, pulls: RepeatPulls.shared) }
                        }
                    }
                    #expect(out[a..<b] == expected[a..<b], "\(S.self) rows \(a)..<\(b) of \(rows)")
                }
            }
        }
        check(UInt8.self)
        check(UInt16.self)
    }

    /// Every flag byte goes through the rounds of ``RepeatPulls`` (0xFF then masked to the row before).
    @Test func everyFlagByteExpands() {
        var random = SplitMix64(seed: 32)
        let values = (0..<17).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        for flags in 0...255 {
            var expected = [UInt8](), j = 3
            for i in 0..<8 {
                if (flags >> i) & 1 == 0 { j += 1 }
                expected.append(values[j])
            }
            var out = [UInt8](repeating: 0, count: 8)
            let last = values.withUnsafeBufferPointer { v in
                out.withUnsafeMutableBufferPointer {
                    RepeatRows.expandGroup(flags: UInt8(flags), values: v.baseAddress!, after: 3, before: v[3], into: $0.baseAddress!,
                                           pulls: RepeatPulls.shared)
                }
            }
            #expect(out == expected, "flags \(flags)")
            #expect(last == j, "flags \(flags)")
        }
    }

    @Test func copyFlaggedMatchesRowByRow() {
        var random = SplitMix64(seed: 33)
        func check<S: PlaneScalar>(_: S.Type) {
            for _ in 0..<40 {
                let rows = Int.random(in: 2...300, using: &random)
                let (flags, _) = Self.column(&random, rows: rows, as: S.self)
                let ids = (0..<rows).map { _ in S(truncatingIfNeeded: random.next()) }
                for _ in 0..<20 {
                    // Half the ranges start right after a group's first row, as a whole block's do.
                    var a = Int.random(in: 1..<rows, using: &random)
                    if random.next() % 2 == 0 { a = (a - 1) & ~7 + 1 }
                    let b = Int.random(in: a...rows, using: &random)
                    let (out, expected) = copyFlagged(ids, flags, rows: a..<b)
                    #expect(out == expected, "\(S.self) rows \(a)..<\(b) of \(rows)")
                }
            }
        }
        check(UInt8.self)
        check(UInt16.self)
    }
    /// The word kernels of ``RepeatRows/copyFlagged(_:rows:in:)`` (bytes, and 16-bit ids in 4
    /// lanes a word) on every flag byte, as a middle group of 3 and as a first group, from every
    /// start of a range.
    @Test func copyFlaggedEveryFlagByte() {
        var random = SplitMix64(seed: 34)
        func check<S: PlaneScalar>(_: S.Type) {
            for byte in 0...255 {
                let rows = 24
                var flags = [UInt8](repeating: 0, count: 3 + ColumnPlaces.slackBytes)
                flags[0] = UInt8(truncatingIfNeeded: random.next()) & ~1
                flags[1] = UInt8(byte)
                flags[2] = UInt8(truncatingIfNeeded: random.next())
                let ids = (0..<rows).map { _ in S(truncatingIfNeeded: random.next()) }
                for a in 1..<rows {
                    for b in [a + (rows - a) / 2, rows] where b >= a {
                        let (out, expected) = copyFlagged(ids, flags, rows: a..<b)
                        #expect(out == expected, "\(S.self) flags \(byte) rows \(a)..<\(b)")
                    }
                }
                // As the first group of a range from row 1, as a whole block's.
                flags[0] = UInt8(byte) & ~1
                let (out, expected) = copyFlagged(ids, flags, rows: 1..<rows)
                #expect(out == expected, "\(S.self) first group flags \(byte)")
            }
        }
        check(UInt8.self)
        check(UInt16.self)
    }

    /// `ids` after ``RepeatRows/copyFlagged(_:rows:in:)`` on `rows`, and after the definition:
    /// each flagged row of `rows` takes the row before it, in order.
    func copyFlagged<S: PlaneScalar>(_ ids: [S], _ flags: [UInt8], rows: Range<Int>) -> (out: [S], expected: [S]) {
        var expected = ids
        for t in rows where RepeatFlags.flag(t, flags) == 1 { expected[t] = expected[t - 1] }
        var out = ids
        flags.withUnsafeBufferPointer { f in
            out.withUnsafeMutableBufferPointer { RepeatRows.copyFlagged(f.baseAddress!, rows: rows, in: $0.baseAddress!) }
        }
        return (out, expected)
    }
}
