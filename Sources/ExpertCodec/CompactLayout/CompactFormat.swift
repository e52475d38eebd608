/// The compact block payload, layout 2 (`spec/FORMAT.md` 1.10 is the normative text).
///
///     offset      size  field
///     0           1     layout, 2
///     1           1     bit width w
///     2           2     reserved, 0
///     4           4     rows n (u32 LE)
///     8           4     stored columns C (u32 LE)
///     12          C     column kinds (absent when n == 0)
///     12+C        4     H, bytes of the table stream (u32 LE)
///     16+C        H     table stream (bits, LSB first): table count, tables, table of each
///                       coded column, value of each constant column
///     ...               raw columns: ceil(n w / 8) bytes each, in column order
///     ...               rANS: 4 states (u64 LE), then the renormalisation words (u32 LE) to the end
enum CompactFormat {
    static let layoutByte: UInt8 = 2
    /// Coded kinds need an alphabet (E + 1 symbols) that fits the largest table.
    static let maxCodedExperts = 2048
    static let maxScaleBits = 12
    static let maxTables = 255
    /// rANS states live in `[stateLow, stateLow << 32)` = `[2^31, 2^63)`, renormalised 32 bits
    /// at a time; the encoder starts (and the decoder must end) every state at `stateLow`.
    static let stateLow: UInt64 = 1 << 31
    static let lanes = 4
    /// Bytes of the initial states at the head of the rANS stream.
    static let stateBytes = 8 * lanes

    static func rawColumnBytes(rows: Int, width: Int) -> Int { (rows * width + 7) / 8 }

    /// The largest payload the reference encoder writes (it falls back to raw columns when
    /// coding would be larger): what a decoder may allocate for `rows` rows.
    static func maxPayloadBytes(_ schema: Schema, rows: Int) -> Int {
        let columns = schema.storedIDsPerRow, width = schema.bitWidth
        return 17 + columns + (columns * width + 7) / 8 + columns * rawColumnBytes(rows: rows, width: width)
    }
}

/// How one column of a compact block is stored.
enum CompactKind: UInt8 {
    /// Every row holds one id, stored in the table stream.
    case constant = 0
    /// rANS symbols `s` in `[0, E]`: `s < E` is the id, `s = E` repeats the previous row's id.
    case ids = 1
    /// As `ids`, `s < E` being `(id - id of the previous slot) mod E`. Not on slot 0.
    case slotDelta = 2
    /// `n` ids at `w` bits each, LSB first, in the raw section.
    case raw = 3
    /// As `ids`, with two tables: the first for rows whose previous slot repeats its row above
    /// (`prev[t] == prev[t-1]`, `t >= 1`), the second for the others. Not on slot 0.
    case splitIDs = 4
    /// As `slotDelta`, with two tables chosen as in `splitIDs`. Not on slot 0.
    case splitSlotDelta = 5

    var isCoded: Bool { self != .constant && self != .raw }
    var isDelta: Bool { self == .slotDelta || self == .splitSlotDelta }
    var isSplit: Bool { self == .splitIDs || self == .splitSlotDelta }
    /// Needs the previous slot (column `c - 1`).
    var needsPreviousSlot: Bool { isDelta || isSplit }
}

/// Writes a bit stream, least significant bit first.
struct BitWriter {
    var bytes: [UInt8] = []
    private var accumulator: UInt64 = 0
    private var pending = 0

    /// The low `bits` (at most 32) bits of `value`.
    mutating func write(_ value: Int, bits: Int) {
        guard bits > 0 else { return }
        accumulator |= (UInt64(truncatingIfNeeded: value) & ((1 << UInt64(bits)) - 1)) << UInt64(pending)
        pending += bits
        while pending >= 8 {
            bytes.append(UInt8(truncatingIfNeeded: accumulator))
            accumulator >>= 8
            pending -= 8
        }
    }

    /// Elias gamma of `x >= 1`: `k` zero bits, a one bit, the `k` bits of `x` below its top bit.
    mutating func gamma(_ x: Int) {
        let k = Int.bitWidth - 1 - x.leadingZeroBitCount
        write(0, bits: k)
        write(1, bits: 1)
        write(x, bits: k)
    }

    /// Exp-Golomb of `x >= 0` with parameter `g`: gamma of `(x >> g) + 1`, then the low `g` bits.
    mutating func expGolomb(_ x: Int, _ g: Int) {
        gamma((x >> g) + 1)
        write(x, bits: g)
    }

    /// Pads with zero bits to a whole byte.
    mutating func finish() {
        if pending > 0 { bytes.append(UInt8(truncatingIfNeeded: accumulator)) }
        accumulator = 0
        pending = 0
    }

    static func gammaBits(_ x: Int) -> Int { 2 * (Int.bitWidth - 1 - x.leadingZeroBitCount) + 1 }
    static func expGolombBits(_ x: Int, _ g: Int) -> Int { gammaBits((x >> g) + 1) + g }
}

/// Reads a bit stream written by ``BitWriter``, refusing to read past its end.
struct BitReader {
    let base: UnsafePointer<UInt8>
    let count: Int
    /// Byte offset of the stream in the payload, for error messages.
    let offset: Int
    private(set) var position = 0

    init(_ base: UnsafePointer<UInt8>, count: Int, offset: Int) {
        self.base = base
        self.count = count
        self.offset = offset
    }

    func fail(_ why: String) -> CodecError {
        .corruptBlock("table stream: \(why)", offset: offset + position / 8, inPayload: true)
    }

    var bitsLeft: Int { count * 8 - position }

    /// Valid bits of a ``window()``.
    static let windowBits = 57

    /// Moves past `bits` bits of a ``window()`` (at most ``windowBits``).
    @inline(__always)
    mutating func skip(_ bits: Int) { position &+= bits }

    /// Up to 57 bits from the current position (zeros past the end).
    @inline(__always)
    private func peek() -> UInt64 {
        let byte = position >> 3
        var value: UInt64 = 0
        if byte + 8 <= count {
            value = UInt64(littleEndian: UnsafeRawPointer(base + byte).loadUnaligned(as: UInt64.self))
        } else {
            for i in 0..<8 where byte + i < count { value |= UInt64(base[byte + i]) << UInt64(8 * i) }
        }
        return value >> UInt64(position & 7)
    }

    /// The 64 bits at the current byte, shifted to the current bit, when eight bytes remain
    /// there (at least ``windowBits`` valid bits), else nil.
    @inline(__always)
    func window() -> UInt64? {
        let byte = position &>> 3
        guard byte &+ 8 <= count else { return nil }
        return UInt64(littleEndian: UnsafeRawPointer(base + byte).loadUnaligned(as: UInt64.self)) &>> UInt64(position & 7)
    }

    @inline(__always)
    mutating func read(_ bits: Int) throws -> Int {
        // Fast path: at least 57 bits in the window, no end check needed.
        if bits <= 32, let w = window() {
            position &+= bits
            return Int(truncatingIfNeeded: w & ((1 &<< UInt64(bits)) &- 1))
        }
        return try readSlow(bits)
    }

    private mutating func readSlow(_ bits: Int) throws -> Int {
        guard bits > 0 else { return 0 }
        guard bits <= bitsLeft else { throw fail("ends early") }
        let value = Int(truncatingIfNeeded: peek() & ((1 << UInt64(bits)) - 1))
        position += bits
        return value
    }

    @inline(__always)
    mutating func gamma() throws -> Int {
        // Fast path: a code of at most 57 bits inside the window (the same value and checks as
        // the slow path, which could not fail here).
        if let w = window() {
            let zeros = w.trailingZeroBitCount
            if zeros <= 28 {
                position &+= 2 &* zeros &+ 1
                let k = UInt64(truncatingIfNeeded: zeros)
                return Int(truncatingIfNeeded: 1 &<< k | (w &>> (k &+ 1)) & ((1 &<< k) &- 1))
            }
        }
        return try gammaSlow()
    }

    private mutating func gammaSlow() throws -> Int {
        let zeros = peek().trailingZeroBitCount
        guard 2 * zeros + 1 <= bitsLeft else { throw fail("ends early") }
        guard zeros <= 30 else { throw fail("bad Elias gamma code") }
        position += zeros + 1
        return (1 << zeros) | (try read(zeros))
    }

    @inline(__always)
    mutating func expGolomb(_ g: Int) throws -> Int {
        let high = try gamma() - 1
        guard high < 1 << 20 else { throw fail("value too large") }
        return high << g | (try read(g))
    }
}

/// A quantized frequency table: `freq[i]` for the present symbols `symbols[i]` (ascending),
/// summing to `1 << scale`.
struct FrequencyTable {
    var scale: Int
    var symbols: [Int]
    var freqs: [Int]

    /// Quantizes counts (indexed by symbol, at least one nonzero) to a total of a power of two
    /// just above the count total (at most `1 << maxScaleBits`), every present symbol at least 1.
    private init(symbols: [Int], counts: [Int], total: Int) {
        self.symbols = symbols
        let needed = Int.bitWidth - (max(total, symbols.count, 2) - 1).leadingZeroBitCount
        scale = min(CompactFormat.maxScaleBits, needed)
        let target = 1 << scale
        freqs = counts.map { max(1, ($0 * target + total / 2) / total) }
        var sum = freqs.reduce(0, +)
        let largest = freqs.indices.max { freqs[$0] < freqs[$1] }!
        let given = max(target - sum, 1 - freqs[largest]) // the largest keeps at least 1
        freqs[largest] += given
        sum += given
        // Rare (more symbols than the largest can give back): take one from each in turn.
        var i = 0
        while sum > target {
            if freqs[i] > 1 { freqs[i] -= 1; sum -= 1 }
            i = (i + 1) % freqs.count
        }
    }

    /// As `init(counts:alphabet:)`, from `symbol << 32 | count` entries in any order.
    init(entries: UnsafePointer<UInt64>, count: Int) {
        let sorted = UnsafeBufferPointer(start: entries, count: count).sorted()
        var total = 0
        let symbols = sorted.map { Int($0 >> 32) }
        let counts = sorted.map { Int(UInt32(truncatingIfNeeded: $0)) }
        for c in counts { total += c }
        self.init(symbols: symbols, counts: counts, total: total)
    }

    init(counts: UnsafePointer<UInt32>, alphabet: Int) {
        var total = 0
        var symbols: [Int] = [], present: [Int] = []
        for s in 0..<alphabet where counts[s] != 0 {
            symbols.append(s)
            present.append(Int(counts[s]))
            total += Int(counts[s])
        }
        self.init(symbols: symbols, counts: present, total: total)
    }

    init(scale: Int, symbols: [Int], freqs: [Int]) {
        self.scale = scale
        self.symbols = symbols
        self.freqs = freqs
    }

    /// Writes the table: scale (4 bits), symbol count (gamma), symbol gaps (gamma), the
    /// exp-Golomb parameter (4 bits) and every frequency minus one (exp-Golomb).
    func write(to bits: inout BitWriter) {
        bits.write(scale, bits: 4)
        bits.gamma(symbols.count)
        var previous = -1
        for s in symbols {
            bits.gamma(s - previous)
            previous = s
        }
        var bestG = 0, bestBits = Int.max
        for g in 0..<12 {
            var n = 0
            for f in freqs { n += BitWriter.expGolombBits(f - 1, g) }
            if n < bestBits { (bestG, bestBits) = (g, n) }
        }
        bits.write(bestG, bits: 4)
        for f in freqs { bits.expGolomb(f - 1, bestG) }
    }

    /// Entries past a table's symbols and frequencies that ``read(from:alphabet:symbols:freqs:)``
    /// may overwrite.
    static let slack = 7

    /// Reads and checks a table whose symbols must be below `alphabet` into `symbols` and `freqs`
    /// (room for `alphabet` each, and ``slack`` more); returns its scale and symbol
    /// count.
    static func read(from bits: inout BitReader, alphabet: Int, symbols: UnsafeMutablePointer<UInt16>,
                     freqs: UnsafeMutablePointer<UInt16>) throws -> (scale: Int, count: Int) {
        let scale = try bits.read(4)
        guard (1...CompactFormat.maxScaleBits).contains(scale) else { throw bits.fail("table scale \(scale) outside 1...\(CompactFormat.maxScaleBits)") }
        let count = try bits.gamma()
        guard count <= min(alphabet, 1 << scale) else { throw bits.fail("table of \(count) symbols (alphabet \(alphabet), scale \(scale))") }
        // Symbols, then frequencies: several codes from each 64-bit window while whole codes fit
        // in it (table codes are mostly a few bits long); the codes that do not, one at a time
        // with every check. Both paths read the same values and fail on the same codes.
        var previous = -1
        var k = 0
        let table = ByteCodes.shared
        while k < count, var w = bits.window() {
            var used = 0
            repeat {
                // The whole codes of the next byte at once when there are some, the table has
                // that many symbols left and the last is in the alphabet (gaps are at least 1, so
                // it is the largest); else one code.
                let byte = Int(truncatingIfNeeded: w & 0xFF), codes = table.codes(byte)
                if codes.count != 0 && codes.count <= count &- k && used &+ 8 <= BitReader.windowBits
                    && previous &+ codes.sum < alphabet {
                    let base = SIMD8<UInt16>(repeating: UInt16(truncatingIfNeeded: previous))
                    UnsafeMutableRawPointer(symbols + k).storeBytes(of: base &+ table.running(byte), as: SIMD8<UInt16>.self)
                    previous &+= codes.sum
                    k &+= codes.count
                    w &>>= UInt64(truncatingIfNeeded: codes.bits)
                    used &+= codes.bits
                    continue
                }
                let zeros = w.trailingZeroBitCount, length = 2 &* zeros &+ 1
                guard used &+ length <= BitReader.windowBits else { break }
                let k64 = UInt64(truncatingIfNeeded: zeros)
                previous &+= Int(truncatingIfNeeded: 1 &<< k64 | (w &>> (k64 &+ 1)) & ((1 &<< k64) &- 1))
                w &>>= UInt64(truncatingIfNeeded: length)
                used &+= length
                guard previous < alphabet else {
                    bits.skip(used)
                    throw bits.fail("symbol \(previous) outside the alphabet of \(alphabet)")
                }
                symbols[k] = UInt16(truncatingIfNeeded: previous)
                k &+= 1
            } while k < count
            bits.skip(used)
            if used == 0 { break }
        }
        while k < count {
            let gap = try bits.gamma()
            previous += gap
            guard previous < alphabet else { throw bits.fail("symbol \(previous) outside the alphabet of \(alphabet)") }
            symbols[k] = UInt16(truncatingIfNeeded: previous)
            k += 1
        }
        let g = try bits.read(4)
        guard g < 12 else { throw bits.fail("exp-Golomb parameter \(g) above 11") }
        var sum = 0
        let total = 1 << scale
        k = 0
        let g64 = UInt64(truncatingIfNeeded: g)
        while k < count, var w = bits.window() {
            var used = 0
            repeat {
                // The whole codes of the next byte at once, as for the symbols.
                let index = g << 8 | Int(truncatingIfNeeded: w & 0xFF), codes = table.codes(index)
                if codes.count != 0 && codes.count <= count &- k && used &+ 8 <= BitReader.windowBits
                    && sum &+ codes.sum <= total {
                    UnsafeMutableRawPointer(freqs + k).storeBytes(of: table.values(index), as: SIMD8<UInt16>.self)
                    sum &+= codes.sum
                    k &+= codes.count
                    w &>>= UInt64(truncatingIfNeeded: codes.bits)
                    used &+= codes.bits
                    continue
                }
                // expGolomb: gamma of (f - 1) >> g plus one, then g bits; a gamma part of 20 zeros
                // or more (perhaps too large for `expGolomb`) is left to it.
                let zeros = w.trailingZeroBitCount, length = 2 &* zeros &+ 1 &+ g
                guard zeros < 20, used &+ length <= BitReader.windowBits else { break }
                let k64 = UInt64(truncatingIfNeeded: zeros)
                let high = Int(truncatingIfNeeded: 1 &<< k64 | (w &>> (k64 &+ 1)) & ((1 &<< k64) &- 1)) &- 1
                let low = Int(truncatingIfNeeded: (w &>> (2 &* k64 &+ 1)) & ((1 &<< g64) &- 1))
                let f = (high &<< g | low) &+ 1
                w &>>= UInt64(truncatingIfNeeded: length)
                used &+= length
                sum &+= f
                guard sum <= total else {
                    bits.skip(used)
                    throw bits.fail("frequencies exceed the scale \(total)")
                }
                freqs[k] = UInt16(truncatingIfNeeded: f)
                k &+= 1
            } while k < count
            bits.skip(used)
            if used == 0 { break }
        }
        while k < count {
            let f = try bits.expGolomb(g) + 1
            sum += f
            guard sum <= total else { throw bits.fail("frequencies exceed the scale \(total)") }
            freqs[k] = UInt16(truncatingIfNeeded: f)
            k += 1
        }
        guard sum == 1 << scale else { throw bits.fail("frequencies sum to \(sum), not \(1 << scale)") }
        return (scale, count)
    }
}

/// ``BitWriter`` into memory the caller provides (no bounds checks: the caller reserves enough),
/// for the encoder's table stream.
struct PointerBitWriter {
    let base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0
    private var accumulator: UInt64 = 0
    private var pending: UInt64 = 0

    init(_ base: UnsafeMutablePointer<UInt8>) { self.base = base }

    /// The low `bits` (at most 32) bits of `value`.
    @inline(__always)
    mutating func write(_ value: Int, bits: Int) {
        accumulator |= (UInt64(truncatingIfNeeded: value) & ((1 &<< UInt64(bits)) &- 1)) &<< pending
        pending &+= UInt64(bits)
        if pending >= 32 {
            UnsafeMutableRawPointer(base + count).storeBytes(of: UInt32(truncatingIfNeeded: accumulator).littleEndian, as: UInt32.self)
            count &+= 4
            accumulator &>>= 32
            pending &-= 32
        }
    }

    /// Elias gamma of `1 <= x < 2^16`, as one field.
    @inline(__always)
    mutating func gamma(_ x: Int) {
        let k = Int.bitWidth &- 1 &- x.leadingZeroBitCount
        write((x & ((1 &<< k) &- 1)) &<< (k &+ 1) | 1 &<< k, bits: 2 &* k &+ 1)
    }

    /// Exp-Golomb of `0 <= x < 2^16` with parameter `g <= 11`.
    @inline(__always)
    mutating func expGolomb(_ x: Int, _ g: Int) {
        gamma((x &>> g) &+ 1)
        write(x, bits: g)
    }

    /// Pads with zero bits to a whole byte; returns the byte count.
    mutating func finish() -> Int {
        while pending > 0 {
            base[count] = UInt8(truncatingIfNeeded: accumulator)
            count &+= 1
            accumulator &>>= 8
            pending = pending > 8 ? pending &- 8 : 0
        }
        return count
    }
}

/// The table stream's codes a byte at a time: for each exp-Golomb parameter `g` (gamma codes
/// being `g = 0`) and byte, the whole codes at the byte's start, read from bit 0 on (symbol gaps
/// are mostly 1 to 7, frequencies a few times `2^g`: codes of a few bits). Built once and never
/// changed, so shared by every thread.
final class ByteCodes: @unchecked Sendable {
    static let shared = ByteCodes()
    static let parameters = 12

    struct Codes {
        /// Codes, 0 when the byte starts with a code longer than its 8 bits.
        let count: Int
        /// Their bits.
        let bits: Int
        /// Their values added up.
        let sum: Int
    }

    /// Per `g << 8 | byte`: count | bits << 4 | sum << 8.
    private let meta: UnsafeMutablePointer<UInt32>
    /// Per `g << 8 | byte`: the values of its codes (exp-Golomb values plus one).
    private let values: UnsafeMutablePointer<SIMD8<UInt16>>
    /// Per byte, gamma codes: the running sums of their values (unused lanes repeat the last).
    private let running: UnsafeMutablePointer<SIMD8<UInt16>>

    private init() {
        let entries = Self.parameters << 8
        meta = .allocate(capacity: entries)
        values = .allocate(capacity: entries)
        running = .allocate(capacity: 256)
        for g in 0..<Self.parameters {
            for byte in 0..<256 {
                var at = 0, count = 0, sum = 0
                var lanes = SIMD8<UInt16>(), sums = SIMD8<UInt16>()
                while at < 8 {
                    var zeros = 0
                    while at + zeros < 8 && byte >> (at + zeros) & 1 == 0 { zeros += 1 }
                    guard at + 2 * zeros + 1 + g <= 8 else { break }
                    let gamma = 1 << zeros | (byte >> (at + zeros + 1)) & ((1 << zeros) - 1)
                    let low = (byte >> (at + 2 * zeros + 1)) & ((1 << g) - 1)
                    let value = ((gamma - 1) << g | low) + 1
                    sum += value
                    lanes[count] = UInt16(value)
                    sums[count] = UInt16(sum)
                    count += 1
                    at += 2 * zeros + 1 + g
                }
                for lane in count..<8 { sums[lane] = UInt16(sum) }
                meta[g << 8 | byte] = UInt32(count | at << 4 | sum << 8)
                values[g << 8 | byte] = lanes
                if g == 0 { running[byte] = sums }
            }
        }
    }

    deinit {
        meta.deallocate()
        values.deallocate()
        running.deallocate()
    }

    /// The codes of `byte` with parameter `g`, at `g << 8 | byte`.
    @inline(__always)
    func codes(_ index: Int) -> Codes {
        let m = Int(meta[index])
        return Codes(count: m & 15, bits: m >> 4 & 15, sum: m >> 8)
    }

    @inline(__always)
    func values(_ index: Int) -> SIMD8<UInt16> { values[index] }

    /// The running sums of the gamma codes of `byte`.
    @inline(__always)
    func running(_ byte: Int) -> SIMD8<UInt16> { running[byte] }
}
