/// Reads compact (layout 2) payloads: checks the whole structure and decodes every column at
/// once (rANS is sequential), keeping the ids as UInt16 columns for ``BlockDecoder`` to copy
/// rows from. Every check of `spec/FORMAT.md` 1.10.6 is made; nothing a payload says can make it
/// trap, loop or allocate more than the payload bound allows.
final class CompactDecoder {
    let schema: Schema
    private let columns = Scratch(), decodeTables = Scratch(), symbolScratch = Scratch(), selectScratch = Scratch()
    /// `wrap[v]` for `v` in `0..<3E`: `v` below E, `v - E` below 2E, else `0xFFFF` (an escape):
    /// a slot delta's id from `symbol + previous`, the escape's symbol being 2E in decode tables.
    private let wrap: UnsafeMutablePointer<UInt16>
    private(set) var rows = 0
    /// The two tables of the column being decoded: the second for the rows of a split column
    /// whose previous slot repeats.
    private let pair = UnsafeMutablePointer<DecodeTable>.allocate(capacity: 2)

    init(schema: Schema) {
        self.schema = schema
        let e = schema.experts
        let size = e > CompactFormat.maxCodedExperts ? 1 : 3 * e
        wrap = .allocate(capacity: size)
        for v in 0..<size { wrap[v] = UInt16(truncatingIfNeeded: v < e ? v : v < 2 * e ? v - e : 0xFFFF) }
    }

    deinit {
        wrap.deallocate()
        pair.deallocate()
    }

    /// The columns the last successful `decode` decoded: all, or the first ones it was asked for.
    private(set) var decoded = 0

    /// Forgets the last block.
    func clear() {
        rows = 0
        decoded = 0
    }

    /// Column `c`'s ids, `rows` of them, after a successful `decode` of it.
    func column(_ c: Int) -> UnsafePointer<UInt16> {
        UnsafePointer(columns.base.assumingMemoryBound(to: UInt16.self) + c * rows)
    }

    private func fail(_ why: String, _ offset: Int) -> CodecError { .corruptBlock(why, offset: offset, inPayload: true) }

    /// Checks and decodes `payload`; returns its row count.
    ///
    /// With `columns`, only columns `0..<columns` are decoded (a layer-range read: the rANS
    /// stream is one sequence through the columns, so the columns before are decoded too). The
    /// header, kinds and table stream are checked whole, the raw columns read are checked, and
    /// so are the coded ones (no escape at row 0, a stream that does not run out); what follows
    /// the last column decoded is not (nor whether the states end at 2^31).
    func decode(_ payload: UnsafeRawBufferPointer, columns limit: Int? = nil) throws -> Int {
        rows = 0
        decoded = 0
        let size = payload.count, columnCount = schema.storedIDsPerRow, width = schema.bitWidth
        let limit = min(limit ?? columnCount, columnCount)
        let experts = schema.experts, topk = schema.topk
        let count = try PayloadHeader.rows(of: payload, layoutByte: CompactFormat.layoutByte, schema: schema)
        let raw = payload.baseAddress!
        let bytes = raw.assumingMemoryBound(to: UInt8.self)
        guard count > 0 else { return 0 }

        // Kinds.
        var cursor = PayloadHeader.bytes
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
        // Every table's symbols and frequencies, flat: table i's at `tableItems[i] ..< tableItems[i + 1]`.
        var tableScale = [Int](repeating: 0, count: tableCount), tableItems = [Int](repeating: 0, count: tableCount + 1)
        let itemCapacity = tableCount * alphabet
        let room = itemCapacity + FrequencyTable.slack
        let tableSymbols = symbolScratch.reserve(2 * room, of: UInt16.self), tableFreqs = tableSymbols + room
        for i in 0..<tableCount {
            let (scale, present) = try FrequencyTable.read(from: &bits, alphabet: alphabet, symbols: tableSymbols + tableItems[i],
                                                          freqs: tableFreqs + tableItems[i])
            tableScale[i] = scale
            tableItems[i + 1] = tableItems[i] + present
        }
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
            if c < limit { try readRaw(bytes + cursor, count: count, into: cols + c * count, column: c, offset: cursor) }
            cursor += rawBytes
        }

        // rANS.
        if codedCount > 0 {
            let low = CompactFormat.stateLow
            guard size - cursor >= CompactFormat.stateBytes else { throw fail("payload ends inside the rANS states", size) }
            var x0 = raw.loadLE(UInt64.self, at: cursor), x1 = raw.loadLE(UInt64.self, at: cursor + 8)
            var x2 = raw.loadLE(UInt64.self, at: cursor + 16), x3 = raw.loadLE(UInt64.self, at: cursor + 24)
            for (j, x) in [x0, x1, x2, x3].enumerated() where x < low || x >= low << 32 {
                throw fail("rANS state \(j) is \(x), outside [2^31, 2^63)", cursor + 8 * j)
            }
            let ransStart = cursor
            cursor += CompactFormat.stateBytes
            // Decode tables: per table, one entry per slot (symbol, frequency and the slot's
            // offset in its symbol's range: one load gives the whole step), each with its own
            // slack. A table is filled when a column first uses it, so that it is still in the
            // L1 cache for that column (blocks of wide schemas hold hundreds of tables).
            var tableStart = [Int](repeating: 0, count: tableCount + 1)
            for i in 0..<tableCount { tableStart[i + 1] = tableStart[i] + 1 << tableScale[i] + Self.tableSlack }
            let entries = decodeTables.reserve(tableStart[tableCount], of: UInt64.self)
            var built = [Bool](repeating: false, count: tableCount)
            func decodeTable(_ i: Int) -> DecodeTable {
                if !built[i] {
                    Self.buildTable(entries + tableStart[i], symbols: tableSymbols + tableItems[i], freqs: tableFreqs + tableItems[i],
                                    count: tableItems[i + 1] - tableItems[i], experts: experts)
                    built[i] = true
                }
                return DecodeTable(UnsafePointer(entries + tableStart[i]), scale: tableScale[i])
            }
            var states = (x0, x1, x2, x3)
            var at = cursor
            let escape = UInt16(experts)
            let wrapTable = UnsafePointer(wrap)
            let select = selectScratch.reserve(count, of: UInt8.self)
            for c in 0..<limit where tableOf[c] >= 0 {
                pair[0] = decodeTable(tableOf[c])
                pair[1] = decodeTable(kinds[c].isSplit ? repeatTableOf[c] : tableOf[c])
                let out = cols + c * count
                let previous = UnsafePointer(cols + (c % topk == 0 ? c : c - 1) * count)
                switch (kinds[c].isDelta, kinds[c].isSplit) {
                case (false, false):
                    (states, at) = Self.decodeColumn(IDSymbols.self, into: out, previous, wrapTable, count: count, experts: experts,
                                                     UnsafePointer(pair), select, states, bytes, size, at)
                case (true, false):
                    (states, at) = Self.decodeColumn(DeltaSymbols.self, into: out, previous, wrapTable, count: count, experts: experts,
                                                     UnsafePointer(pair), select, states, bytes, size, at)
                case (false, true):
                    (states, at) = Self.decodeColumn(SplitIDSymbols.self, into: out, previous, wrapTable, count: count, experts: experts,
                                                     UnsafePointer(pair), select, states, bytes, size, at)
                case (true, true):
                    (states, at) = Self.decodeColumn(SplitDeltaSymbols.self, into: out, previous, wrapTable, count: count, experts: experts,
                                                     UnsafePointer(pair), select, states, bytes, size, at)
                }
                // Row 0 has no row above: its symbol must not be the escape (which resolved to
                // the value `escape` itself, out of range).
                guard out[0] != escape else { throw fail("row 0 of column \(c) repeats the row above it", ransStart) }
            }
            (x0, x1, x2, x3) = states
            guard at <= size else { throw fail("rANS stream ends early", size) }
            if limit < columnCount {
                rows = count
                decoded = limit
                return count
            }
            guard at == size else { throw fail("\(size - at) bytes follow the rANS stream", at) }
            guard x0 == low, x1 == low, x2 == low, x3 == low else {
                throw fail("rANS states do not end at 2^31 (\(x0), \(x1), \(x2), \(x3))", ransStart)
            }
        } else {
            guard cursor == size else { throw fail("\(size - cursor) bytes follow the last column", cursor) }
        }
        rows = count
        decoded = limit
        return count
    }

    /// A decode table: an entry for each of its `1 << scale` slots, see ``entry(symbol:freq:)``.
    struct DecodeTable {
        let entries: UnsafePointer<UInt64>
        let mask: UInt64, scale: UInt64
        init(_ entries: UnsafePointer<UInt64>, scale: Int) {
            self.entries = entries
            self.scale = UInt64(scale)
            mask = (1 << UInt64(scale)) - 1
        }
    }

    /// The entry of the first slot of a symbol: `slot - start` (0 here, 1 more per slot) in
    /// bits 0-15, the symbol (the escape as 2E) in bits 16-31, the frequency above. The next
    /// state is `freq * (x >> scale) + (entry & 0xFFFF)`.
    @inline(__always)
    static func entry(symbol: Int, freq: Int) -> UInt64 { UInt64(truncatingIfNeeded: freq) << 32 | UInt64(truncatingIfNeeded: symbol) << 16 }

    /// Entries past a table's last that ``buildTable`` may overwrite.
    static let tableSlack = 3

    /// Fills a table's `1 << scale` entries from its (checked) symbols and frequencies, and up to
    /// ``tableSlack`` entries after them: four entries are stored per symbol whatever its
    /// frequency (most are 1 to 4), one branch-free round.
    private static func buildTable(_ entries: UnsafeMutablePointer<UInt64>, symbols: UnsafePointer<UInt16>,
                                   freqs: UnsafePointer<UInt16>, count: Int, experts: Int) {
        var slot = UnsafeMutableRawPointer(entries)
        let escape = UInt16(truncatingIfNeeded: experts)
        let first = SIMD2<UInt64>(0, 1), two = SIMD2<UInt64>(repeating: 2), four = SIMD2<UInt64>(repeating: 4)
        for k in 0..<count {
            let f = Int(freqs[k])
            let s = symbols[k] == escape ? 2 &* experts : Int(symbols[k])
            var e = SIMD2(repeating: entry(symbol: s, freq: f)) &+ first
            slot.storeBytes(of: e, as: SIMD2<UInt64>.self)
            slot.storeBytes(of: e &+ two, toByteOffset: 16, as: SIMD2<UInt64>.self)
            var j = 4
            while j < f {
                e &+= four
                slot.storeBytes(of: e, toByteOffset: 8 &* j, as: SIMD2<UInt64>.self)
                slot.storeBytes(of: e &+ two, toByteOffset: 8 &* j &+ 16, as: SIMD2<UInt64>.self)
                j &+= 4
            }
            slot += 8 &* f
        }
    }

    /// Decodes the `count` rows of one column into `out`, resolving escapes (the row above) and
    /// slot deltas (with `delta`, against `previous`) as it goes. Row `t` uses state `t % 4` and
    /// the table `tables[0]`, or in a split column `tables[1]` where the previous slot repeats. An
    /// escape at row 0 resolves to `E`, for the caller to reject.
    private static func decodeColumn<Shape: SymbolShape>(
        _ shape: Shape.Type, into out: UnsafeMutablePointer<UInt16>, _ previous: UnsafePointer<UInt16>,
        _ wrap: UnsafePointer<UInt16>, count: Int,
        experts: Int, _ tables: UnsafePointer<DecodeTable>, _ select: UnsafeMutablePointer<UInt8>,
        _ states: (UInt64, UInt64, UInt64, UInt64),
        _ bytes: UnsafePointer<UInt8>, _ size: Int, _ at: Int
    ) -> ((UInt64, UInt64, UInt64, UInt64), Int) {
        var (s0, s1, s2, s3) = states
        var p = at
        let e = Int(experts)
        var above = e
        let other = tables[0]
        // A split column's rows pick their table by a byte offset into `tables`, found for every
        // row first (a select of two tables' fields in the loop spills or branches).
        if Shape.split && count > 0 {
            let stride = UInt8(MemoryLayout<DecodeTable>.stride)
            select[0] = 0
            for t in 1..<count { select[t] = previous[t] == previous[t &- 1] ? stride : 0 }
        }
        /// Row `t >= 1`'s table.
        @inline(__always) func table(_ t: Int) -> DecodeTable {
            guard Shape.split else { return other }
            return UnsafeRawPointer(tables).load(fromByteOffset: Int(select[t]), as: DecodeTable.self)
        }
        /// Row `t`'s id from its symbol: the row above for the escape (symbol 2E), else the id or
        /// slot delta (through `wrap`, which gives 0xFFFF for the escape).
        @inline(__always) func resolve(_ symbol: Int, _ t: Int) {
            let v = Shape.delta ? Int(wrap[symbol &+ Int(previous[t])]) : symbol
            // A compare and a conditional move (the escape keeps `above`).
            above = v == (Shape.delta ? 0xFFFF : 2 &* e) ? above : v
            out[t] = UInt16(truncatingIfNeeded: above)
        }
        // Row 0: the second table.
        if count > 0 { resolve(step(&s0, other, bytes, size, &p), 0) }
        var t = 1
        while t < min(4, count) {
            let symbol: Int
            switch t {
            case 1: symbol = step(&s1, table(t), bytes, size, &p)
            case 2: symbol = step(&s2, table(t), bytes, size, &p)
            default: symbol = step(&s3, table(t), bytes, size, &p)
            }
            resolve(symbol, t)
            t &+= 1
        }
        // Rounds of four rows without bounds checks or branches, as many at a time as the rows
        // and the bytes left (sixteen at most per round) allow: one bound per run of rounds
        // (fewer live values than a row and a byte bound per round).
        var word = bytes + p
        while true {
            let rounds = min((count &- t) &>> 2, (size &- (word - bytes)) &>> 4)
            if rounds <= 0 { break }
            let end = t &+ 4 &* rounds
            repeat {
                let a = fastStep(&s0, table(t), &word)
                let b = fastStep(&s1, table(t &+ 1), &word)
                let c = fastStep(&s2, table(t &+ 2), &word)
                let d = fastStep(&s3, table(t &+ 3), &word)
                resolve(a, t)
                resolve(b, t &+ 1)
                resolve(c, t &+ 2)
                resolve(d, t &+ 3)
                t &+= 4
            } while t < end
        }
        p = word - bytes
        while t < count {
            let symbol: Int
            switch t & 3 {
            case 0: symbol = step(&s0, table(t), bytes, size, &p)
            case 1: symbol = step(&s1, table(t), bytes, size, &p)
            case 2: symbol = step(&s2, table(t), bytes, size, &p)
            default: symbol = step(&s3, table(t), bytes, size, &p)
            }
            resolve(symbol, t)
            t &+= 1
        }
        return ((s0, s1, s2, s3), p)
    }

    /// `step` where four bytes at `at` are known to be readable: the word is loaded whatever
    /// the state and selected, no branch.
    @inline(__always)
    private static func fastStep(_ x: inout UInt64, _ table: DecodeTable, _ at: inout UnsafePointer<UInt8>) -> Int {
        let entry = table.entries[Int(truncatingIfNeeded: x & table.mask)]
        let state = (entry &>> 32) &* (x &>> table.scale) &+ (entry & 0xFFFF)
        let word = UInt64(UInt32(littleEndian: UnsafeRawPointer(at).loadUnaligned(as: UInt32.self)))
        // Arithmetic selects (the compiler made `?:` a branch here, which mispredicts): states
        // are below 2^63, so `state - L` has its top bit set exactly when a word is needed.
        let refill = (state &- CompactFormat.stateLow) &>> 63
        let mask = 0 &- refill
        x = state &+ (((state &<< 32 | word) &- state) & mask)
        at += Int(truncatingIfNeeded: refill &<< 2)
        return Int(truncatingIfNeeded: (entry &>> 16) & 0xFFFF)
    }

    /// One rANS symbol: the slot's entry gives symbol, frequency and start; at most one 32-bit
    /// word is read back (states stay in [2^31, 2^63) whatever the words are). Past the end reads
    /// 0 and moves `at` on, which the caller rejects.
    @inline(__always)
    private static func step(_ x: inout UInt64, _ table: DecodeTable, _ bytes: UnsafePointer<UInt8>, _ size: Int,
                             _ at: inout Int) -> Int {
        let entry = table.entries[Int(truncatingIfNeeded: x & table.mask)]
        var state = (entry &>> 32) &* (x &>> table.scale) &+ (entry & 0xFFFF)
        if state < CompactFormat.stateLow {
            let word = at &+ 4 <= size ? UInt64(UInt32(littleEndian: UnsafeRawPointer(bytes + at).loadUnaligned(as: UInt32.self))) : 0
            state = state &<< 32 | word
            at &+= 4
        }
        x = state
        return Int(truncatingIfNeeded: (entry &>> 16) & 0xFFFF)
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

/// The symbols of a coded column kind, for specialised kernels.
protocol SymbolShape {
    /// Slot deltas (else ids).
    static var delta: Bool { get }
    /// Two tables, by whether the previous slot repeats.
    static var split: Bool { get }
}
enum IDSymbols: SymbolShape { static var delta: Bool { false }; static var split: Bool { false } }
enum DeltaSymbols: SymbolShape { static var delta: Bool { true }; static var split: Bool { false } }
enum SplitIDSymbols: SymbolShape { static var delta: Bool { false }; static var split: Bool { true } }
enum SplitDeltaSymbols: SymbolShape { static var delta: Bool { true }; static var split: Bool { true } }
