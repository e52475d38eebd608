/// Reads compact (layout 2) payloads: checks the whole structure and decodes every column at
/// once (rANS is sequential), keeping the ids as UInt16 columns for ``BlockDecoder`` to copy
/// rows from. Every check of `spec/FORMAT.md` 1.10.6 is made; nothing a payload says can make it
/// trap, loop or allocate more than the payload bound allows.
final class CompactDecoder {
    let schema: Schema
    private let columns = Scratch(), decodeTables = Scratch()
    private(set) var rows = 0

    init(schema: Schema) { self.schema = schema }

    /// Column `c`'s ids, `rows` of them, after a successful `decode`.
    func column(_ c: Int) -> UnsafePointer<UInt16> {
        UnsafePointer(columns.base.assumingMemoryBound(to: UInt16.self) + c * rows)
    }

    private func fail(_ why: String, _ offset: Int) -> CodecError { .corruptBlock(why, offset: offset, inPayload: true) }

    /// Checks and decodes `payload`; returns its row count.
    func decode(_ payload: UnsafeRawBufferPointer) throws -> Int {
        rows = 0
        let size = payload.count, columnCount = schema.storedIDsPerRow, width = schema.bitWidth
        let experts = schema.experts, topk = schema.topk
        guard size >= BlockFormat.headerBytes else { throw fail("payload of \(size) bytes is shorter than its header", 0) }
        let raw = payload.baseAddress!
        let bytes = raw.assumingMemoryBound(to: UInt8.self)
        let layoutID = raw.loadLE(UInt8.self, at: 0), storedWidth = raw.loadLE(UInt8.self, at: 1)
        guard layoutID == CompactFormat.layout else { throw fail("unknown block layout \(layoutID)", 0) }
        guard storedWidth == width else { throw fail("bit width \(storedWidth), the schema has \(width)", 1) }
        guard raw.loadLE(UInt16.self, at: 2) == 0 else { throw fail("reserved field is not zero", 2) }
        let count = Int(raw.loadLE(UInt32.self, at: 4))
        guard count <= BlockFormat.maxRows(schema) else { throw fail("\(count) rows exceed the block limit", 4) }
        let storedColumns = Int(raw.loadLE(UInt32.self, at: 8))
        guard storedColumns == columnCount else { throw fail("\(storedColumns) columns, the schema has \(columnCount)", 8) }
        guard count > 0 else {
            guard size == BlockFormat.headerBytes else { throw fail("an empty block has bytes after its header", 12) }
            return 0
        }

        // Kinds.
        var cursor = BlockFormat.headerBytes
        guard size - cursor >= columnCount + 4 else { throw fail("payload ends inside the column kinds", size) }
        var kinds: [CompactKind] = []
        kinds.reserveCapacity(columnCount)
        var codedCount = 0
        for c in 0..<columnCount {
            guard let kind = CompactKind(rawValue: bytes[cursor + c]) else {
                throw fail("unknown kind \(bytes[cursor + c]) of column \(c)", cursor + c)
            }
            if kind.needsPreviousSlot && c % topk == 0 {
                throw fail("column \(c) is slot 0 and cannot be a slot delta or split", cursor + c)
            }
            if kind.isCoded {
                guard experts <= CompactFormat.maxCodedExperts else {
                    throw fail("column \(c) is coded but \(experts) experts exceed \(CompactFormat.maxCodedExperts)", cursor + c)
                }
                codedCount += kind.isSplit ? 2 : 1
            }
            kinds.append(kind)
        }
        cursor += columnCount

        // Table stream.
        let streamBytes = Int(raw.loadLE(UInt32.self, at: cursor))
        cursor += 4
        guard streamBytes <= size - cursor else { throw fail("table stream of \(streamBytes) bytes runs past the payload", cursor - 4) }
        var bits = BitReader(bytes + cursor, count: streamBytes, offset: cursor)
        let tableCount = try bits.read(8)
        guard (tableCount == 0) == (codedCount == 0) else {
            throw bits.fail("\(tableCount) tables for \(codedCount) table references")
        }
        let alphabet = experts + 1
        var tables: [FrequencyTable] = []
        for _ in 0..<tableCount { tables.append(try FrequencyTable.read(from: &bits, alphabet: alphabet)) }
        let refBits = tableCount <= 1 ? 0 : Int.bitWidth - (tableCount - 1).leadingZeroBitCount
        // Per coded column: its table, and for a split column the table of the rows whose
        // previous slot repeats (read first).
        var tableOf = [Int](repeating: -1, count: columnCount), repeatTableOf = tableOf
        var used = [Bool](repeating: false, count: tableCount)
        for c in 0..<columnCount where kinds[c].isCoded {
            for reference in 0..<(kinds[c].isSplit ? 2 : 1) {
                let t = try bits.read(refBits)
                guard t < tableCount else { throw bits.fail("column \(c) names table \(t) of \(tableCount)") }
                if reference == 0 { repeatTableOf[c] = t }
                tableOf[c] = t
                used[t] = true
            }
        }
        guard !used.contains(false) else { throw bits.fail("a table no column uses") }
        let cols = columns.reserve(columnCount * count, of: UInt16.self)
        for c in 0..<columnCount where kinds[c] == .constant {
            let value = try bits.read(width)
            guard value < experts else { throw bits.fail("constant \(value) of column \(c) is not below \(experts)") }
            (cols + c * count).update(repeating: UInt16(value), count: count)
        }
        guard bits.bitsLeft < 8, try bits.read(bits.bitsLeft) == 0 else {
            throw bits.fail("\(bits.bitsLeft) bits follow the last field, or padding bits are set")
        }
        cursor += streamBytes

        // Raw columns.
        let rawBytes = CompactFormat.rawColumnBytes(rows: count, width: width)
        for c in 0..<columnCount where kinds[c] == .raw {
            guard size - cursor >= rawBytes else { throw fail("payload ends inside raw column \(c)", size) }
            try readRaw(bytes + cursor, count: count, into: cols + c * count, column: c, offset: cursor)
            cursor += rawBytes
        }

        // rANS.
        if codedCount > 0 {
            guard size - cursor >= 16 else { throw fail("payload ends inside the rANS states", size) }
            var x0 = raw.loadLE(UInt32.self, at: cursor), x1 = raw.loadLE(UInt32.self, at: cursor + 4)
            var x2 = raw.loadLE(UInt32.self, at: cursor + 8), x3 = raw.loadLE(UInt32.self, at: cursor + 12)
            for (j, x) in [x0, x1, x2, x3].enumerated() where x < CompactFormat.stateLow || x >= CompactFormat.stateLow << 8 {
                throw fail("rANS state \(j) is \(x), outside [2^23, 2^31)", cursor + 4 * j)
            }
            let ransStart = cursor
            cursor += 16
            // Decode tables: per slot, symbol | freq << 16 | (slot - start) << 32.
            var tableStart: [Int] = []
            var slots = 0
            for table in tables {
                tableStart.append(slots)
                slots += 1 << table.scale
            }
            let entries = decodeTables.reserve(slots, of: UInt64.self)
            for (i, table) in tables.enumerated() {
                var slot = tableStart[i]
                for (s, f) in zip(table.symbols, table.freqs) {
                    let base = UInt64(s) | UInt64(f) << 16
                    for k in 0..<f { entries[slot + k] = base | UInt64(k) << 32 }
                    slot += f
                }
            }
            var at = cursor
            for c in 0..<columnCount where tableOf[c] >= 0 {
                let table = UnsafePointer(entries + tableStart[tableOf[c]])
                let scale = UInt32(tables[tableOf[c]].scale), mask = (UInt32(1) << scale) - 1
                let out = cols + c * count
                let escape = UInt16(experts)
                if kinds[c].isSplit {
                    let previous = UnsafePointer(cols + (c - 1) * count)
                    let other = (table, scale, mask)
                    let repeatScale = UInt32(tables[repeatTableOf[c]].scale)
                    let repeated = (UnsafePointer(entries + tableStart[repeatTableOf[c]]), repeatScale, (UInt32(1) << repeatScale) - 1)
                    Self.decodeColumn(into: out, count: count, &x0, &x1, &x2, &x3, bytes, size, &at) { t in
                        t > 0 && previous[t] == previous[t &- 1] ? repeated : other
                    }
                } else {
                    Self.decodeColumn(into: out, count: count, &x0, &x1, &x2, &x3, bytes, size, &at) { _ in
                        (table, scale, mask)
                    }
                }
                // Symbols to ids: the escape repeats the row above, slot deltas add the previous slot.
                // Bitwise selects (the compiler made `?:` branches here, which mispredict).
                if out[0] != escape {
                    if !kinds[c].isDelta {
                        var above = out[0]
                        for t in 1..<count {
                            let s = out[t], keep = 0 &- equalBit(s, escape)
                            above = above & keep | s & ~keep
                            out[t] = above
                        }
                    } else {
                        // Symbols and ids are below E <= 2048: their sum does not wrap.
                        let previous = UnsafePointer(cols + (c - 1) * count), modulus = UInt16(experts)
                        @inline(__always) func add(_ s: UInt16, _ p: UInt16) -> UInt16 {
                            let sum = s &+ p
                            return sum &- modulus & (lessBit(sum, modulus) &- 1)
                        }
                        var above = add(out[0], previous[0])
                        out[0] = above
                        for t in 1..<count {
                            let s = out[t], keep = 0 &- equalBit(s, escape)
                            above = above & keep | add(s, previous[t]) & ~keep
                            out[t] = above
                        }
                    }
                }
                // Row 0 has no row above: its symbol must not be the escape (decodeColumn
                // resolved it against the value `escape` itself, out of range).
                guard out[0] != escape else { throw fail("row 0 of column \(c) repeats the row above it", ransStart) }
            }
            guard at <= size else { throw fail("rANS stream ends early", size) }
            guard at == size else { throw fail("\(size - at) bytes follow the rANS stream", at) }
            let low = CompactFormat.stateLow
            guard x0 == low, x1 == low, x2 == low, x3 == low else {
                throw fail("rANS states do not end at 2^23 (\(x0), \(x1), \(x2), \(x3))", ransStart)
            }
        } else {
            guard cursor == size else { throw fail("\(size - cursor) bytes follow the last column", cursor) }
        }
        rows = count
        return count
    }

    /// Decodes the `count` symbols of one column into `out`, row `t` with state `t % 4` and the
    /// table `table(t)` gives (table, scale, mask).
    @inline(__always)
    private static func decodeColumn(
        into out: UnsafeMutablePointer<UInt16>, count: Int,
        _ x0: inout UInt32, _ x1: inout UInt32, _ x2: inout UInt32, _ x3: inout UInt32,
        _ bytes: UnsafePointer<UInt8>, _ size: Int, _ at: inout Int,
        _ table: (Int) -> (UnsafePointer<UInt64>, UInt32, UInt32)
    ) {
        var s0 = x0, s1 = x1, s2 = x2, s3 = x3, p = at
        var t = 0
        // While eight bytes remain (the most four symbols read), without bounds checks or branches.
        while t &+ 4 <= count && p &+ 8 <= size {
            let (ta, sa, ma) = table(t), (tb, sb, mb) = table(t &+ 1)
            let (tc, sc, mc) = table(t &+ 2), (td, sd, md) = table(t &+ 3)
            out[t] = fastStep(&s0, ta, sa, ma, bytes, &p)
            out[t &+ 1] = fastStep(&s1, tb, sb, mb, bytes, &p)
            out[t &+ 2] = fastStep(&s2, tc, sc, mc, bytes, &p)
            out[t &+ 3] = fastStep(&s3, td, sd, md, bytes, &p)
            t &+= 4
        }
        while t < count {
            let (tt, st, mt) = table(t)
            switch t & 3 {
            case 0: out[t] = step(&s0, tt, st, mt, bytes, size, &p)
            case 1: out[t] = step(&s1, tt, st, mt, bytes, size, &p)
            case 2: out[t] = step(&s2, tt, st, mt, bytes, size, &p)
            default: out[t] = step(&s3, tt, st, mt, bytes, size, &p)
            }
            t &+= 1
        }
        x0 = s0; x1 = s1; x2 = s2; x3 = s3; at = p
    }

    /// `step` where two bytes at `at` are known to be readable. Whether zero, one or two bytes
    /// are read follows from the updated state alone (below 2^15: two, below 2^23: one), so the
    /// two bytes are loaded whatever the state and the right value selected: no branch, and the
    /// load is off the state's dependency chain.
    @inline(__always)
    private static func fastStep(_ x: inout UInt32, _ table: UnsafePointer<UInt64>, _ scale: UInt32, _ mask: UInt32,
                                 _ bytes: UnsafePointer<UInt8>, _ at: inout Int) -> UInt16 {
        let entry = table[Int(x & mask)]
        let state = UInt32(truncatingIfNeeded: entry >> 16) & 0xFFFF &* (x &>> scale) &+ UInt32(truncatingIfNeeded: entry >> 32)
        let low = CompactFormat.stateLow
        let b0 = UInt32(bytes[at]), b1 = UInt32(bytes[at &+ 1])
        let one = state << 8 | b0, two = state << 16 | b0 << 8 | b1
        let needsTwo = state < low >> 8, needsOne = state < low
        x = needsTwo ? two : (needsOne ? one : state)
        at &+= needsTwo ? 2 : (needsOne ? 1 : 0)
        return UInt16(truncatingIfNeeded: entry)
    }

    /// One rANS symbol: the slot's entry gives symbol, frequency and offset; at most two bytes
    /// are read back (states stay in [2^23, 2^31) whatever the bytes are). Past the end reads 0
    /// and moves `at` on, which the caller rejects.
    @inline(__always)
    private static func step(_ x: inout UInt32, _ table: UnsafePointer<UInt64>, _ scale: UInt32, _ mask: UInt32,
                             _ bytes: UnsafePointer<UInt8>, _ size: Int, _ at: inout Int) -> UInt16 {
        let entry = table[Int(x & mask)]
        var state = UInt32(truncatingIfNeeded: entry >> 16) & 0xFFFF &* (x &>> scale) &+ UInt32(truncatingIfNeeded: entry >> 32)
        if state < CompactFormat.stateLow {
            state = state << 8 | UInt32(at < size ? bytes[at] : 0)
            at &+= 1
            if state < CompactFormat.stateLow {
                state = state << 8 | UInt32(at < size ? bytes[at] : 0)
                at &+= 1
            }
        }
        x = state
        return UInt16(truncatingIfNeeded: entry)
    }

    private func readRaw(_ bytes: UnsafePointer<UInt8>, count: Int, into out: UnsafeMutablePointer<UInt16>,
                         column c: Int, offset: Int) throws {
        let width = schema.bitWidth, experts = schema.experts
        var bit = 0
        var largest = 0
        for t in 0..<count {
            var value = 0, got = 0
            while got < width {
                let byte = bit >> 3, shift = bit & 7, take = min(width - got, 8 - shift)
                value |= ((Int(bytes[byte]) >> shift) & ((1 << take) - 1)) << got
                got += take
                bit += take
            }
            largest = max(largest, value)
            out[t] = UInt16(truncatingIfNeeded: value)
        }
        guard largest < experts else { throw fail("raw column \(c) holds \(largest), not below \(experts)", offset) }
        if bit & 7 != 0, bytes[bit >> 3] >> UInt8(bit & 7) != 0 {
            throw fail("padding bits of raw column \(c) are set", offset + bit >> 3)
        }
    }
}
