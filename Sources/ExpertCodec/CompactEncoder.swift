import Foundation

/// One symbol of a table, ready for rANS encoding (division by the frequency as a multiply:
/// ryg_rans' reciprocal form, exact for states below 2^31).
struct RANSEncodeSymbol {
    var limit: UInt32 = 0    // states at or above it shed a byte first
    var reciprocal: UInt32 = 0
    var bias: UInt32 = 0
    var complement: UInt16 = 0
    var shift: UInt16 = 0

    init() {}

    init(start: Int, freq: Int, scale: Int) {
        limit = UInt32(((Int(CompactFormat.stateLow) >> scale) << 8) * freq)
        complement = UInt16((1 << scale) - freq)
        if freq < 2 {
            reciprocal = ~0
            shift = 0
            bias = UInt32(start + (1 << scale) - 1)
        } else {
            var s = 0
            while freq > 1 << s { s += 1 }
            reciprocal = UInt32(((1 << UInt64(s + 31)) + UInt64(freq) - 1) / UInt64(freq))
            shift = UInt16(s - 1)
            bias = UInt32(start)
        }
    }
}

/// 1 when `a == b`, else 0, computed without a branch.
@inline(__always)
func equalBit(_ a: UInt16, _ b: UInt16) -> UInt16 { UInt16(truncatingIfNeeded: (Int(a ^ b) &- 1) >> 63 & 1) }

/// 1 when `a < b`, else 0, computed without a branch.
@inline(__always)
func lessBit(_ a: UInt16, _ b: UInt16) -> UInt16 { UInt16(truncatingIfNeeded: (Int(a) &- Int(b)) >> 63 & 1) }

/// The symbols of one table reference: a coded column (context 0), or the rows of a split
/// column whose previous slot repeats (context 1) or does not (context 2).
private struct Unit {
    var column: Int, context: Int
    /// Its `symbol << 32 | count` entries: `entries[start..<end]`.
    var start: Int, end: Int
    var symbols: Int
    var ownCost: Double
}

/// Writes compact (layout 2) payloads. Owned by a ``BlockEncoder``; reuses its scratch.
final class CompactEncoder {
    let schema: Schema
    private let sourceIndex: [Int]
    private let columns = Scratch(), symbols = Scratch(), delta = Scratch(), histogram = Scratch()
    private let groupHistograms = Scratch(), sparse = Scratch(), encodeTables = Scratch(), ransOut = Scratch(), payload = Scratch()
    /// `xlog2x[c] = c * log2(c)`, grown on demand.
    private var xlog2x: [Double] = [0]

    init(schema: Schema) {
        self.schema = schema
        sourceIndex = schema.storedIndices
    }

    private func growLogTable(to count: Int) {
        guard count >= xlog2x.count else { return }
        let first = xlog2x.count
        let last = max(count, first * 2)
        xlog2x.reserveCapacity(last + 1)
        for c in first...last { xlog2x.append(Double(c) * log2(Double(c))) }
    }

    /// The present symbols of `counts` (four lanes per symbol, `counts[4 s ..< 4 s + 4]`, filled
    /// from `symbols[0..<count]`) as `symbol << 32 | count`
    /// entries, clearing `counts` as it goes; returns the sum of `c log2 c` and how many there are.
    /// Visits the alphabet or the symbols, whichever is shorter.
    private func harvest(_ counts: UnsafeMutablePointer<UInt32>, _ symbols: UnsafePointer<UInt16>, count: Int, alphabet: Int,
                         into entries: UnsafeMutablePointer<UInt64>) -> (Double, Int) {
        var sum = 0.0, present = 0
        xlog2x.withUnsafeBufferPointer { table in
            if count >= alphabet / 2 {
                for s in 0..<alphabet {
                    let lanes = counts + 4 &* s
                    let c = lanes[0] &+ lanes[1] &+ lanes[2] &+ lanes[3]
                    guard c != 0 else { continue }
                    sum += table[Int(c)]
                    entries[present] = UInt64(s) << 32 | UInt64(c)
                    present += 1
                    lanes.update(repeating: 0, count: 4)
                }
            } else {
                for t in 0..<count {
                    let s = Int(symbols[t]), lanes = counts + 4 &* s
                    let c = lanes[0] &+ lanes[1] &+ lanes[2] &+ lanes[3]
                    if c != 0 {
                        sum += table[Int(c)]
                        entries[present] = UInt64(s) << 32 | UInt64(c)
                        present += 1
                        lanes.update(repeating: 0, count: 4)
                    }
                }
            }
        }
        return (sum, present)
    }

    /// Estimated bits of a table with `present` symbols for `total` coded symbols.
    private func tableBits(present: Int, total: Int) -> Double {
        let scale = Double(min(CompactFormat.maxScaleBits, max(1, Int.bitWidth - (total - 1).leadingZeroBitCount)))
        return 16 + Double(present) * (3 + max(1, scale - log2(Double(present))))
    }

    /// The payload of `count` rows of `rows` (token-major).
    func encode<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, count: Int) throws -> (UnsafeRawPointer, Int) {
        let columnCount = sourceIndex.count, width = schema.bitWidth, experts = schema.experts
        let cols = columns.reserve(max(1, columnCount * count), of: UInt16.self)
        try gather(rows, count: count, into: cols)

        var header = [UInt8](repeating: 0, count: BlockFormat.headerBytes)
        header[0] = CompactFormat.layout
        header[1] = UInt8(width)
        header.withUnsafeMutableBytes { raw in
            raw.baseAddress!.storeLE(UInt32(count), at: 4)
            raw.baseAddress!.storeLE(UInt32(columnCount), at: 8)
        }
        guard count > 0 else {
            let out = payload.reserve(header.count)
            out.copyMemory(from: header, byteCount: header.count)
            return (UnsafeRawPointer(out), header.count)
        }

        // Kinds: constant, then coded (ids or slot deltas) or raw.
        var kinds = [CompactKind](repeating: .raw, count: columnCount)
        let coded = experts <= CompactFormat.maxCodedExperts && count >= 2
        let alphabet = experts + 1, escape = UInt16(truncatingIfNeeded: experts)
        let modulus = UInt16(truncatingIfNeeded: experts)
        let syms = symbols.reserve(max(1, columnCount * count), of: UInt16.self)
        let distinct = min(count, alphabet)
        let deltas = delta.reserve(count, of: UInt16.self)
        // Four lanes per symbol (row t counts in lane t % 4): increments of one symbol in a row
        // do not wait for each other.
        let counts = histogram.reserve(8 * alphabet, of: UInt32.self), deltaCounts = counts + 4 * alphabet
        let topk = schema.topk
        let groupCount = 6 * topk
        // Per coded column, its chosen symbols' (symbol << 32 | count), and two candidates.
        let entries = sparse.reserve(2 * columnCount * distinct + 2 * distinct, of: UInt64.self)
        let candidateA = entries + 2 * columnCount * distinct, candidateD = candidateA + distinct
        var units: [Unit] = []
        /// Rows `t >= 1` of each column equal to the row above (counted for coded schemas).
        var repeatsOf = [Int](repeating: 0, count: columnCount)
        if coded {
            growLogTable(to: count)
            counts.update(repeating: 0, count: 8 * alphabet)
        }
        var used = 0
        for c in 0..<columnCount {
            let column = UnsafePointer(cols + c * count)
            guard coded else {
                let first = column[0]
                var constant = true
                for t in 1..<count where column[t] != first { constant = false; break }
                if constant { kinds[c] = .constant }
                continue
            }
            // Ids with the repeat escape into the column's symbols; slot deltas beside them.
            let out = syms + c * count
            out[0] = column[0]
            counts[4 * Int(column[0])] = 1
            for t in 1..<count {
                // Arithmetic, not a select: the compiler made `==` a branch, which mispredicts.
                let id = column[t], repeated = equalBit(id, column[t &- 1])
                let s = id &+ repeated &* (escape &- id)
                out[t] = s
                counts[Int(s) &<< 2 | t & 3] &+= 1
            }
            // The escapes are the repeats (counted here, not in the loop: a branch there
            // mispredicts on every change).
            let escapes = counts + 4 * Int(escape)
            let repeats = Int(escapes[0] &+ escapes[1] &+ escapes[2] &+ escapes[3])
            repeatsOf[c] = repeats
            if repeats == count - 1 {
                kinds[c] = .constant
                _ = harvest(counts, out, count: count, alphabet: alphabet, into: candidateA)
                continue
            }
            let (aSum, aPresent) = harvest(counts, out, count: count, alphabet: alphabet, into: candidateA)
            var best = xlog2x[count] - aSum + tableBits(present: aPresent, total: count)
            var chosen = (candidateA, aPresent)
            kinds[c] = .ids
            if c % topk != 0 {
                let previous = UnsafePointer(cols + (c - 1) * count)
                do {
                    let id = column[0], base = previous[0], wrapped = id &- base
                    let d = id < base ? wrapped &+ modulus : wrapped
                    deltas[0] = d
                    deltaCounts[4 * Int(d)] = 1
                }
                for t in 1..<count {
                    let id = column[t], base = previous[t]
                    let d = (id &- base) &+ lessBit(id, base) &* modulus
                    let symbol = d &+ equalBit(out[t], escape) &* (escape &- d)
                    deltas[t] = symbol
                    deltaCounts[Int(symbol) &<< 2 | t & 3] &+= 1
                }
                let (dSum, dPresent) = harvest(deltaCounts, deltas, count: count, alphabet: alphabet, into: candidateD)
                let cost = xlog2x[count] - dSum + tableBits(present: dPresent, total: count)
                if cost < best {
                    best = cost
                    chosen = (candidateD, dPresent)
                    kinds[c] = .slotDelta
                    out.update(from: deltas, count: count)
                }
            }
            (entries + used).update(from: chosen.0, count: chosen.1)
            // Slots after the first: two tables, by whether the previous slot repeats (a layer
            // that repeats as a whole repeats in every slot), when that is cheaper.
            // (Only worth a look when the previous slot repeats often enough.)
            if c % topk != 0 && 8 * repeatsOf[c - 1] >= count {
                let previous = UnsafePointer(cols + (c - 1) * count)
                counts[4 * Int(out[0])] = 1 // row 0: the second context
                var repeatedRows = 0
                for t in 1..<count {
                    // 1 where the previous slot repeats, else 0, without a branch.
                    let context = (Int(previous[t] ^ previous[t &- 1]) &- 1) >> 63 & 1
                    counts[context &* (4 &* alphabet) &+ (Int(out[t]) &<< 2 | t & 3)] &+= 1
                    repeatedRows &+= context
                }
                let (oSum, oPresent) = harvest(counts, out, count: count, alphabet: alphabet, into: candidateA)
                let (rSum, rPresent) = harvest(deltaCounts, out, count: count, alphabet: alphabet, into: candidateD)
                let others = count - repeatedRows
                let cost = xlog2x[repeatedRows] - rSum + xlog2x[others] - oSum
                    + tableBits(present: rPresent, total: repeatedRows) + tableBits(present: oPresent, total: others)
                // A clear gain only: the estimate ignores that unsplit columns share tables better.
                if repeatedRows > 0 && cost < 0.95 * best {
                    kinds[c] = kinds[c] == .ids ? .splitIDs : .splitSlotDelta
                    (entries + used).update(from: candidateD, count: rPresent)
                    units.append(Unit(column: c, context: 1, start: used, end: used + rPresent, symbols: repeatedRows,
                                      ownCost: xlog2x[repeatedRows] - rSum + tableBits(present: rPresent, total: repeatedRows)))
                    used += rPresent
                    (entries + used).update(from: candidateA, count: oPresent)
                    units.append(Unit(column: c, context: 2, start: used, end: used + oPresent, symbols: others,
                                      ownCost: xlog2x[others] - oSum + tableBits(present: oPresent, total: others)))
                    used += oPresent
                    continue
                }
            }
            units.append(Unit(column: c, context: 0, start: used, end: used + chosen.1, symbols: count, ownCost: best))
            used += chosen.1
        }

        // Tables: each unit (a column, or one context of a split column) its own, or its
        // (kind, context, slot) group's when that is cheaper.
        var tables: [FrequencyTable] = []
        var tableOf = [Int](repeating: -1, count: units.count)
        var groupTable = [Int](repeating: -1, count: groupCount)
        var groupTotal = [Int](repeating: 0, count: groupCount)
        var ownTables = 0
        if coded {
            let groups = groupHistograms.reserve(groupCount * alphabet, of: UInt32.self)
            groups.update(repeating: 0, count: groupCount * alphabet)
            func group(_ unit: Unit) -> Int {
                ((kinds[unit.column].isDelta ? 3 : 0) + unit.context) * topk + unit.column % topk
            }
            for unit in units {
                let g = group(unit), histogram = groups + g * alphabet
                for i in unit.start..<unit.end {
                    let e = entries[i]
                    histogram[Int(e >> 32)] &+= UInt32(truncatingIfNeeded: e)
                }
                groupTotal[g] += unit.symbols
            }
            let ownBudget = CompactFormat.maxTables - groupTotal.lazy.filter { $0 > 0 }.count
            for (u, unit) in units.enumerated() {
                let g = group(unit), histogram = groups + g * alphabet
                let logTotal = fastLog2(Float(groupTotal[g]))
                var shared: Float = 0
                for i in unit.start..<unit.end {
                    let e = entries[i]
                    shared += Float(UInt32(truncatingIfNeeded: e)) * (logTotal - fastLog2(Float(histogram[Int(e >> 32)])))
                }
                if Double(shared) < unit.ownCost || ownTables >= ownBudget {
                    if groupTable[g] < 0 {
                        groupTable[g] = tables.count
                        tables.append(FrequencyTable(counts: histogram, alphabet: alphabet))
                    }
                    tableOf[u] = groupTable[g]
                } else {
                    tableOf[u] = tables.count
                    tables.append(FrequencyTable(entries: entries + unit.start, count: unit.end - unit.start))
                    ownTables += 1
                }
            }
        }

        // The table stream: table count, tables, each coded column's table, constants.
        var bits = BitWriter()
        bits.write(tables.count, bits: 8)
        for table in tables { table.write(to: &bits) }
        let refBits = tables.count <= 1 ? 0 : Int.bitWidth - (tables.count - 1).leadingZeroBitCount
        for table in tableOf { bits.write(table, bits: refBits) }
        for c in 0..<columnCount where kinds[c] == .constant { bits.write(Int(cols[c * count]), bits: width) }
        bits.finish()

        // rANS, backwards: last coded column first, its last row first; row t uses state t % 4.
        var ransBytes = 0
        var ransStart: UnsafeMutablePointer<UInt8>? = nil
        if !units.isEmpty {
            let capacity = 2 * count * columnCount + 16
            let buffer = ransOut.reserve(capacity, of: UInt8.self)
            let encodeSymbols = encodeTables.reserve(tables.count * alphabet, of: RANSEncodeSymbol.self)
            for (i, table) in tables.enumerated() {
                var start = 0
                for (s, f) in zip(table.symbols, table.freqs) {
                    encodeSymbols[i * alphabet + s] = RANSEncodeSymbol(start: start, freq: f, scale: table.scale)
                    start += f
                }
            }
            var end = buffer + capacity
            var x0 = CompactFormat.stateLow, x1 = x0, x2 = x0, x3 = x0
            var u = units.count
            while u > 0 {
                u -= 1
                let c = units[u].column
                let column = UnsafePointer(syms + c * count)
                let other = UnsafePointer(encodeSymbols + tableOf[u] * alphabet)
                var repeated = other
                var previous = UnsafePointer(column)
                if units[u].context == 2 {
                    u -= 1
                    repeated = UnsafePointer(encodeSymbols + tableOf[u] * alphabet)
                    previous = UnsafePointer(cols + (c - 1) * count)
                }
                // The table of row t: `repeated` where the previous slot repeats (split columns;
                // otherwise both are the column's table).
                @inline(__always) func table(_ t: Int) -> UnsafePointer<RANSEncodeSymbol> {
                    t > 0 && previous[t] == previous[t &- 1] ? repeated : other
                }
                var t = count
                // Tail rows beyond the last whole group of four.
                while t & 3 != 0 {
                    t -= 1
                    switch t & 3 {
                    case 2: put(&x2, table(t)[Int(column[t])], &end)
                    case 1: put(&x1, table(t)[Int(column[t])], &end)
                    default: put(&x0, table(t)[Int(column[t])], &end)
                    }
                }
                while t > 0 {
                    t -= 4
                    put(&x3, table(t + 3)[Int(column[t + 3])], &end)
                    put(&x2, table(t + 2)[Int(column[t + 2])], &end)
                    put(&x1, table(t + 1)[Int(column[t + 1])], &end)
                    put(&x0, table(t)[Int(column[t])], &end)
                }
            }
            end -= 16
            let raw = UnsafeMutableRawPointer(end)
            raw.storeLE(x0, at: 0)
            raw.storeLE(x1, at: 4)
            raw.storeLE(x2, at: 8)
            raw.storeLE(x3, at: 12)
            ransStart = end
            ransBytes = buffer + capacity - end
        }

        let rawBytes = CompactFormat.rawColumnBytes(rows: count, width: width)
        let rawColumns = kinds.lazy.filter { $0 == .raw }.count
        let size = BlockFormat.headerBytes + columnCount + 4 + bits.bytes.count + rawColumns * rawBytes + ransBytes
        let constants = kinds.lazy.filter { $0 == .constant }.count
        let allRawSize = BlockFormat.headerBytes + columnCount + 4 + (8 + constants * width + 7) / 8
            + (columnCount - constants) * rawBytes
        if size > allRawSize && !units.isEmpty {
            for c in 0..<columnCount where kinds[c] != .constant { kinds[c] = .raw }
            var rawBits = BitWriter()
            rawBits.write(0, bits: 8)
            for c in 0..<columnCount where kinds[c] == .constant { rawBits.write(Int(cols[c * count]), bits: width) }
            rawBits.finish()
            return write(header, kinds, rawBits.bytes, cols, count: count, rans: nil, ransBytes: 0)
        }
        return write(header, kinds, bits.bytes, cols, count: count, rans: ransStart, ransBytes: ransBytes)
    }

    /// log2 within about 0.01, for cost estimates.
    @inline(__always)
    private func fastLog2(_ x: Float) -> Float {
        let bits = x.bitPattern
        let exponent = Float(Int(bits >> 23) - 127)
        let m = Float(bitPattern: (bits & 0x7F_FFFF) | 0x3F80_0000)
        return exponent + (-0.344_848_43 * m + 2.024_665_78) * m - 0.674_877_59
    }

    @inline(__always)
    private func put(_ x: inout UInt32, _ symbol: RANSEncodeSymbol, _ end: inout UnsafeMutablePointer<UInt8>) {
        // At most two bytes are shed (limit >= 2^19, states < 2^31): two selects, no loop. The
        // byte is stored whether or not it is shed; an unshed one is overwritten later.
        var state = x
        let first = state >= symbol.limit
        end[-1] = UInt8(truncatingIfNeeded: state)
        end -= first ? 1 : 0
        state = first ? state >> 8 : state
        let second = state >= symbol.limit
        end[-1] = UInt8(truncatingIfNeeded: state)
        end -= second ? 1 : 0
        state = second ? state >> 8 : state
        let q = UInt32(truncatingIfNeeded: (UInt64(state) &* UInt64(symbol.reciprocal)) >> 32) &>> UInt32(symbol.shift)
        x = state &+ symbol.bias &+ q &* UInt32(symbol.complement)
    }

    private func write(_ header: [UInt8], _ kinds: [CompactKind], _ tableStream: [UInt8], _ cols: UnsafeMutablePointer<UInt16>,
                       count: Int, rans: UnsafeMutablePointer<UInt8>?, ransBytes: Int) -> (UnsafeRawPointer, Int) {
        let columnCount = kinds.count, width = schema.bitWidth
        let rawBytes = CompactFormat.rawColumnBytes(rows: count, width: width)
        let rawColumns = kinds.lazy.filter { $0 == .raw }.count
        let size = header.count + columnCount + 4 + tableStream.count + rawColumns * rawBytes + ransBytes
        let out = payload.reserve(size)
        out.copyMemory(from: header, byteCount: header.count)
        var cursor = header.count
        for c in 0..<columnCount { out.storeLE(kinds[c].rawValue, at: cursor + c) }
        cursor += columnCount
        out.storeLE(UInt32(tableStream.count), at: cursor)
        cursor += 4
        (out + cursor).copyMemory(from: tableStream, byteCount: tableStream.count)
        cursor += tableStream.count
        for c in 0..<columnCount where kinds[c] == .raw {
            let bytes = (out + cursor).assumingMemoryBound(to: UInt8.self)
            bytes.update(repeating: 0, count: rawBytes)
            let column = cols + c * count
            var bit = 0
            for t in 0..<count {
                var value = Int(column[t]), left = width
                while left > 0 {
                    let byte = bit >> 3, shift = bit & 7, take = min(left, 8 - shift)
                    bytes[byte] |= UInt8(truncatingIfNeeded: (value & ((1 << take) - 1)) << shift)
                    value >>= take
                    left -= take
                    bit += take
                }
            }
            cursor += rawBytes
        }
        if let rans { (out + cursor).copyMemory(from: rans, byteCount: ransBytes) }
        cursor += ransBytes
        return (UnsafeRawPointer(out), cursor)
    }

    /// Token-major rows of `T` into column-major UInt16 columns, checking every stored id.
    private func gather<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, count: Int, into cols: UnsafeMutablePointer<UInt16>) throws {
        let perRow = schema.idsPerRow
        var largest: T.Magnitude = 0
        sourceIndex.withUnsafeBufferPointer { source in
            guard let input = rows.baseAddress else { return }
            for t in 0..<count {
                let row = input + t &* perRow
                var at = cols + t
                for c in 0..<source.count {
                    let id = T.Magnitude(truncatingIfNeeded: row[source[c]])
                    largest = max(largest, id)
                    at.pointee = UInt16(truncatingIfNeeded: id)
                    at += count
                }
            }
        }
        let negative = T.isSigned && largest > T.Magnitude(T.max)
        if negative || UInt64(largest) >= UInt64(schema.experts) {
            try BlockEncoder.reportFirstBadID(rows, count: count, schema: schema, sourceIndex: sourceIndex)
        }
    }
}
