/// The lookup tables of the word kernels (``ByteColumnWork``, ``ShortColumnWork``), built once
/// and never changed, so shared by every thread: the set bits of each byte, and how to pack the
/// lanes a mask keeps (8 lanes of 8 bits, or 4 of 16).
final class KernelTables: @unchecked Sendable {
    static let shared = KernelTables()

    /// Set bits of each byte value: a load, where counting costs a dozen instructions without
    /// the POPCNT instruction (not in the x86-64 baseline Swift compiles for).
    private let bitCounts: UnsafeMutablePointer<UInt8>
    /// For each flag byte: its set bits, plus 2^32 when it is neither 0x00 nor 0xFF (a bitmap
    /// byte LZ4 cannot remove): one sum counts both.
    private let flagStatistics: UnsafeMutablePointer<UInt64>
    /// For each keep mask `k` of 8 byte lanes, 4 masks at `4k`: the lanes `k` keeps, then the
    /// lanes each of the 3 rounds of ``compact(_:keep:)`` moves (where they stand before it).
    /// Each mask fills both halves of an SSE2 register, so that one load serves two words.
    private let byteCompaction: UnsafeMutablePointer<SIMD2<UInt64>>
    /// The same for keep masks of 4 lanes of 16 bits: 3 masks at `3k`, 2 rounds.
    private let laneCompaction: UnsafeMutablePointer<SIMD2<UInt64>>

    private init() {
        bitCounts = .allocate(capacity: 256)
        flagStatistics = .allocate(capacity: 256)
        byteCompaction = .allocate(capacity: 4 * 256)
        laneCompaction = .allocate(capacity: 3 * 16)
        for k in 0..<256 {
            bitCounts[k] = UInt8(k.nonzeroBitCount)
            flagStatistics[k] = UInt64(k.nonzeroBitCount) | (k != 0 && k != 0xFF ? 1 << 32 : 0)
            let rounds = Self.compactionRounds(keep: k, lanes: 8)
            for i in 0..<4 { byteCompaction[4 * k + i] = SIMD2(repeating: rounds[i]) }
        }
        for k in 0..<16 {
            let rounds = Self.compactionRounds(keep: k, lanes: 4)
            for i in 0..<3 { laneCompaction[3 * k + i] = SIMD2(repeating: rounds[i]) }
        }
    }

    /// For a word of `lanes` lanes (8 of 8 bits or 4 of 16) and a keep mask (bit `i`: lane
    /// `i`): the kept lanes, and the lanes that round `r` moves down by `2^r` lanes: each kept lane
    /// moves by the number of dropped lanes below it, bit `r` of that number in round `r`.
    /// Lower bits first, no two lanes ever meet (Hacker's Delight, 7-4).
    static func compactionRounds(keep: Int, lanes: Int) -> [UInt64] {
        let laneBits = 64 / lanes, laneMask: UInt64 = laneBits == 64 ? ~0 : (1 << UInt64(laneBits)) - 1
        let roundCount = lanes.trailingZeroBitCount
        var rounds = [UInt64](repeating: 0, count: roundCount + 1)
        var position = Array(0..<lanes), dropped = 0, moves = [Int](repeating: 0, count: lanes)
        for i in 0..<lanes {
            if keep >> i & 1 == 1 {
                rounds[0] |= laneMask << UInt64(laneBits * i)
                moves[i] = dropped
            } else {
                dropped += 1
            }
        }
        for round in 0..<roundCount {
            for i in 0..<lanes where keep >> i & 1 == 1 && moves[i] >> round & 1 == 1 {
                rounds[round + 1] |= laneMask << UInt64(laneBits * position[i])
                position[i] -= 1 << round
            }
        }
        return rounds
    }

    /// Set bits of `byte` (`0...255`; only its low 8 bits are looked at).
    @inline(__always)
    func setBits(_ byte: UInt64) -> Int { Int(bitCounts[Int(byte & 0xFF)]) }

    /// Statistics of the flag byte `byte` (`0...255`; only its low 8 bits are looked at): its
    /// set bits, plus 2^32 when it is neither 0x00 nor 0xFF. Summed over a bitmap of fewer than
    /// 2^32 rows, the low half counts the flags and the high half the nontrivial bytes.
    @inline(__always)
    func flagStatistics(_ byte: UInt64) -> UInt64 { flagStatistics[Int(byte & 0xFF)] }

    /// In each half of `x`, the bytes whose bit is set in `keep` (`0...255`; only its low 8
    /// bits are looked at), packed in order into the low bytes; the bytes above them are 0.
    /// Two words packed by one mask (the ids and slot deltas of a group) for the price of one.
    @inline(__always)
    func compact(_ x: SIMD2<UInt64>, keep: UInt64) -> SIMD2<UInt64> {
        let masks = byteCompaction + Int(keep & 0xFF) &<< 2
        var y = x & masks[0]
        var t = y & masks[1]
        y = (y ^ t) | (t &>> 8)
        t = y & masks[2]
        y = (y ^ t) | (t &>> 16)
        t = y & masks[3]
        return (y ^ t) | (t &>> 32)
    }

    /// In each half of `x`, the 16-bit lanes whose bit is set in `keep` (`0...15`; only its
    /// low 4 bits are looked at), packed in order into the low lanes; the lanes above them are 0.
    @inline(__always)
    func compactLanes(_ x: SIMD2<UInt64>, keep: UInt64) -> SIMD2<UInt64> {
        let masks = laneCompaction + Int(keep & 0xF) &* 3
        var y = x & masks[0]
        var t = y & masks[1]
        y = (y ^ t) | (t &>> 16)
        t = y & masks[2]
        return (y ^ t) | (t &>> 32)
    }
}
