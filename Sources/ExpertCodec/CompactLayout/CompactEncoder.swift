#if canImport(Glibc)
import Glibc // log2; not Foundation, which a statically linked runtime (the C library) would have to carry whole
#elseif canImport(Darwin)
import Darwin
#endif

/// One symbol of a table, ready for rANS encoding: 64-bit states renormalised 32 bits at a time,
/// the division by the frequency as a multiply by its reciprocal (ryg_rans' rans64 form, exact
/// for states below 2^63).
struct RANSEncodeSymbol {
    /// States at or above it shed 32 bits first: `freq << (63 - scale)`.
    var limit: UInt64 = 0
    var reciprocal: UInt64 = 0
    var bias: UInt32 = 0
    var complement: UInt16 = 0
    var shift: UInt16 = 0

    init() {}

    init(start: Int, freq: Int, scale: Int, reciprocals: UnsafePointer<UInt64>) {
        limit = UInt64(freq) &<< UInt64(63 - scale)
        complement = UInt16((1 << scale) - freq)
        if freq < 2 {
            reciprocal = ~0
            shift = 0
            bias = UInt32(start + (1 << scale) - 1)
        } else {
            reciprocal = reciprocals[freq]
            shift = UInt16(Int.bitWidth - (freq - 1).leadingZeroBitCount - 1)
            bias = UInt32(start)
        }
    }

    /// `ceil(2^(63 + s) / f)` for every frequency `f` in `2...4096`, `s = ceil(log2 f)`.
    static let reciprocals: [UInt64] = (0...(1 << CompactFormat.maxScaleBits)).map { f in
        guard f >= 2 else { return ~0 }
        let s = Int.bitWidth - (f - 1).leadingZeroBitCount
        return UInt64(f).dividingFullWidth((high: UInt64(1) << UInt64(s - 1), low: UInt64(f - 1))).quotient
    }

    /// Encodes `symbol` into `x`, shedding 32 bits below `end` first when needed.
    @inline(__always)
    static func put(_ x: inout UInt64, _ symbol: UnsafePointer<RANSEncodeSymbol>, _ end: inout UnsafeMutablePointer<UInt8>) {
        // The low word is stored whether or not it is shed; an unshed one is overwritten later.
        var state = x
        let shed = state >= symbol.pointee.limit
        UnsafeMutableRawPointer(end - 4).storeBytes(of: UInt32(truncatingIfNeeded: state).littleEndian, as: UInt32.self)
        end -= shed ? 4 : 0
        state = shed ? state &>> 32 : state
        let q = state.multipliedFullWidth(by: symbol.pointee.reciprocal).high &>> UInt64(symbol.pointee.shift)
        x = state &+ UInt64(symbol.pointee.bias) &+ q &* UInt64(symbol.pointee.complement)
    }
}

/// 1 for a nonzero count, else 0, without a branch (where zero and nonzero counts alternate at
/// random, a branch mispredicts half the time).
@inline(__always)
private func nonzero(_ count: UInt32) -> Int { Int(truncatingIfNeeded: (UInt64(count) &+ 0xFFFF_FFFF) &>> 32) }

/// A table reference of the block: a coded column (context 0), or the rows of a split column
/// whose previous slot repeats (context 1) or does not (context 2). Its symbol counts are a
/// dense row of `alphabet` counts.
private struct Unit {
    var column: Int, context: Int
    var symbols: Int
    var ownCost: Double
}

/// A frequency table of the block: its symbols and frequencies at `start` in the table scratch.
private struct TableInfo {
    var scale: Int, start: Int, present: Int
}

/// Writes compact (layout 2) payloads. Owned by a ``BlockEncoder``; reuses its scratch.
final class CompactEncoder {
    let schema: Schema
    private let sourceIndex: [Int]
    private let histogram = Scratch(), unitScratch = Scratch(), groupScratch = Scratch()
    private let costScratch = Scratch(), tableScratch = Scratch(), encodeTables = Scratch(), streamScratch = Scratch()
    private let ransOut = Scratch(), payload = Scratch(), symbolScratch = Scratch(), entryScratch = Scratch()
    /// `xlog2x[c] = c * log2(c)`, grown on demand.
    private var xlog2x: [Double] = [0]
    private var units: [Unit] = []
    private var tables: [TableInfo] = []
    /// Entries of `tables` in `tableScratch`, from the last ``chooseTables(_:)``.
    private var tableEntriesUsed = 0

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

    /// Estimated bits of a table with `present` symbols for `total` coded symbols.
    @inline(__always)
    private static func tableBits(present: Int, total: Int) -> Double {
        let scale = Double(min(CompactFormat.maxScaleBits, max(1, Int.bitWidth - (total - 1).leadingZeroBitCount)))
        return 16 + Double(present) * (3 + max(1, scale - log2(Double(present))))
    }

    private func writeHeader(_ out: UnsafeMutableRawPointer, count: Int) {
        PayloadHeader.write(out, layoutByte: CompactFormat.layoutByte, schema: schema, rows: count)
    }

    /// Counts the symbols of one column (rows `1..<n` against the row above; row 0 as is) into
    /// `h`: ids at `h`, slot deltas (with `delta`) at `h + 2 stride`, each split by whether the
    /// previous slot repeats (with `context`: rows where it does at `+ stride`). An escape counts
    /// at `E + t % 4`, so that runs of escapes do not wait on one counter. Each row's count index
    /// (symbol, escape lane and context offset) goes to `idSymbols`, resp. `deltaSymbols`, for
    /// the rANS pass to index its tables with.
    private static func countSymbols<Shape: SymbolShape>(_ shape: Shape.Type, _ column: UnsafePointer<UInt16>,
                                                         _ previous: UnsafePointer<UInt16>, count n: Int,
                                                         experts e: Int, stride: Int, into h: UnsafeMutablePointer<UInt32>,
                                                         idSymbols: UnsafeMutablePointer<UInt16>,
                                                         deltaSymbols: UnsafeMutablePointer<UInt16>) {
        let delta = Shape.delta, context = Shape.split
        var above = Int(column[0])
        h[above] &+= 1
        idSymbols[0] = UInt16(truncatingIfNeeded: above)
        var previousAbove = delta || context ? Int(previous[0]) : 0
        if delta {
            var d = above &- previousAbove
            d &+= (d &>> 63) & e
            h[2 &* stride &+ d] &+= 1
            deltaSymbols[0] = UInt16(truncatingIfNeeded: d)
        }
        let deltas = h + 2 &* stride
        /// Row `t >= 1`, whose escape counts at `escape` (`E + t % 4`).
        @inline(__always) func row(_ t: Int, _ escape: Int) {
            let id = Int(column[t])
            let repeated = ((id ^ above) &- 1) &>> 63 // all ones when the id repeats
            var at = id ^ ((id ^ escape) & repeated)
            var p = 0
            if delta || context { p = Int(previous[t]) }
            if context { at &+= ((p ^ previousAbove) &- 1) &>> 63 & stride }
            h[at] &+= 1
            idSymbols[t] = UInt16(truncatingIfNeeded: at)
            if delta {
                var d = id &- p
                d &+= (d &>> 63) & e
                var dat = d ^ ((d ^ escape) & repeated)
                if context { dat &+= ((p ^ previousAbove) &- 1) &>> 63 & stride }
                deltas[dat] &+= 1
                deltaSymbols[t] = UInt16(truncatingIfNeeded: dat)
            }
            above = id
            previousAbove = p
        }
        var t = 1
        while t < min(4, n) {
            row(t, e &+ t)
            t &+= 1
        }
        // Eight rows at a time: their count indices in SSE2 registers (8 lanes of 16 bits: ids
        // and indices are below 2^13), stored, then counted one by one after the loop. From
        // t = 4, lane k's escape counts at E + k % 4.
        typealias Lanes = SIMD8<UInt16>
        let escapes = Lanes(repeating: UInt16(truncatingIfNeeded: e)) &+ Lanes(0, 1, 2, 3, 0, 1, 2, 3)
        let experts = Lanes(repeating: UInt16(truncatingIfNeeded: e)), strides = Lanes(repeating: UInt16(truncatingIfNeeded: stride))
        let ids = UnsafeRawPointer(column), previousIDs = UnsafeRawPointer(previous)
        let idOut = UnsafeMutableRawPointer(idSymbols), deltaOut = UnsafeMutableRawPointer(deltaSymbols)
        while t &+ 8 <= n {
            @inline(__always) func lanes(_ base: UnsafeRawPointer, _ row: Int) -> Lanes {
                base.loadUnaligned(fromByteOffset: 2 &* row, as: Lanes.self)
            }
            let id = lanes(ids, t), repeated = id .== lanes(ids, t &- 1)
            var at = id.replacing(with: escapes, where: repeated)
            var p = Lanes(), inContext = Lanes()
            if delta || context { p = lanes(previousIDs, t) }
            if context { inContext = strides.replacing(with: 0, where: p .!= lanes(previousIDs, t &- 1)) }
            at &+= inContext
            idOut.storeBytes(of: at, toByteOffset: 2 &* t, as: Lanes.self)
            if delta {
                let d = (id &- p) &+ experts.replacing(with: 0, where: id .>= p)
                deltaOut.storeBytes(of: d.replacing(with: escapes, where: repeated) &+ inContext, toByteOffset: 2 &* t, as: Lanes.self)
            }
            t &+= 8
        }
        // Counted in a pass of their own: loads of single indices right after the vector store
        // that wrote them stall on store forwarding (counted inside the loop, the stalls cost
        // about a fifth of deepseek's encode).
        for k in 4..<max(t, 4) {
            h[Int(idSymbols[k])] &+= 1
            if delta { deltas[Int(deltaSymbols[k])] &+= 1 }
        }
        if t > 4 {
            above = Int(column[t &- 1])
            if delta || context { previousAbove = Int(previous[t &- 1]) }
        }
        while t < n {
            row(t, e &+ (t & 3))
            t &+= 1
        }
    }

    /// `sum c log2 c` and the number of nonzero counts of the symbols `0..<E` and the escape
    /// (four counters) of `h`, plus those of `h2` when given. Four sums, because the adds'
    /// latency bounds this loop.
    @inline(__always)
    private func tally(_ h: UnsafePointer<UInt32>, plus h2: UnsafePointer<UInt32>?, experts e: Int,
                       _ xl: UnsafePointer<Double>) -> (Double, Int) {
        var sum0 = 0.0, sum1 = 0.0, sum2 = 0.0, sum3 = 0.0, present = 0
        @inline(__always) func count(_ s: Int) -> UInt32 { h2.map { h[s] &+ $0[s] } ?? h[s] }
        var s = 0
        while s &+ 4 <= e {
            let a = count(s), b = count(s &+ 1), c = count(s &+ 2), d = count(s &+ 3)
            sum0 += xl[Int(a)]
            sum1 += xl[Int(b)]
            sum2 += xl[Int(c)]
            sum3 += xl[Int(d)]
            present &+= nonzero(a) &+ nonzero(b) &+ nonzero(c) &+ nonzero(d)
            s &+= 4
        }
        while s < e {
            let a = count(s)
            sum0 += xl[Int(a)]
            present &+= nonzero(a)
            s &+= 1
        }
        let escapes = count(e) &+ count(e &+ 1) &+ count(e &+ 2) &+ count(e &+ 3)
        sum0 += xl[Int(escapes)]
        present &+= nonzero(escapes)
        return ((sum0 + sum1) + (sum2 + sum3), present)
    }

    /// The dense counts of `h` (plus `h2`) into `out[0...E]`.
    @inline(__always)
    private static func store(_ h: UnsafePointer<UInt32>, plus h2: UnsafePointer<UInt32>?, experts e: Int,
                              into out: UnsafeMutablePointer<UInt32>) {
        if let h2 {
            for s in 0..<e { out[s] = h[s] &+ h2[s] }
            out[e] = h[e] &+ h[e &+ 1] &+ h[e &+ 2] &+ h[e &+ 3] &+ h2[e] &+ h2[e &+ 1] &+ h2[e &+ 2] &+ h2[e &+ 3]
        } else {
            out.update(from: h, count: e)
            out[e] = h[e] &+ h[e &+ 1] &+ h[e &+ 2] &+ h[e &+ 3]
        }
    }

    /// The payload of the gathered columns `cols` (column-major, `count` rows each), in four
    /// steps: each column's kind, the frequency tables, the table stream, the rANS stream; then
    /// the payload, or every non-constant column raw when that is smaller.
    func encodeColumns(_ cols: UnsafeMutablePointer<UInt16>, count: Int) -> (UnsafeRawPointer, Int) {
        guard count > 0 else {
            let out = payload.reserve(PayloadHeader.bytes)
            writeHeader(out, count: 0)
            return (UnsafeRawPointer(out), PayloadHeader.bytes)
        }
        let choice = chooseKinds(cols, count: count)
        let tableOf = chooseTables(choice)
        let (stream, streamBytes) = writeTableStream(choice, tableOf: tableOf, cols, count: count)
        let (ransStart, ransBytes) = encodeRANS(choice, tableOf: tableOf, count: count)
        return finish(choice.kinds, stream: stream, streamBytes, cols, count: count, rans: ransStart, ransBytes: ransBytes)
    }

    /// What ``chooseKinds(_:count:)`` decided: each column's kind, and where the count indices
    /// of its rows are (`units` holds the coded columns' symbol counts).
    private struct KindChoice {
        var kinds: [CompactKind]
        /// Per column, the count indices of its rows: ids at `c * count`, slot deltas at
        /// `(columnCount + c) * count`; `symbolsOf[c]` is where the chosen kind's are, and
        /// `contextOf[c]` whether they carry the split context offset (`+ stride`).
        var symbolsOf: [Int]
        var contextOf: [Bool]
        let rowSymbols: UnsafeMutablePointer<UInt16>
        /// Each unit's dense symbol counts, `alphabet` apart.
        let unitCounts: UnsafeMutablePointer<UInt32>
        /// Symbols 0..<E, then the escape's four counters.
        let stride: Int
    }

    /// Step 1: constant, then coded (ids or slot deltas, maybe split) or raw, for each column;
    /// fills `units` with the coded columns (a split column's two contexts each a unit).
    private func chooseKinds(_ cols: UnsafeMutablePointer<UInt16>, count: Int) -> KindChoice {
        let columnCount = sourceIndex.count, experts = schema.experts
        var kinds = [CompactKind](repeating: .raw, count: columnCount)
        let coded = experts <= CompactFormat.maxCodedExperts && count >= 2
        let alphabet = experts + 1, topk = schema.topk
        let stride = experts + 4 // symbols 0..<E, then the escape's four counters
        units.removeAll(keepingCapacity: true)
        tables.removeAll(keepingCapacity: true)
        let h = histogram.reserve(4 * stride, of: UInt32.self)
        let unitCounts = unitScratch.reserve(max(1, 2 * columnCount * alphabet), of: UInt32.self)
        /// Rows `t >= 1` of each column equal to the row above (counted for coded schemas).
        var repeatsOf = [Int](repeating: 0, count: columnCount)
        // Per column, the count indices of its rows: ids at `c * count`, slot deltas at
        // `(columnCount + c) * count`; `symbolsOf[c]` is where the chosen kind's are, and
        // `contextOf[c]` whether they carry the split context offset (`+ stride`).
        let rowSymbols = symbolScratch.reserve(coded ? 2 * columnCount * count : 1, of: UInt16.self)
        var symbolsOf = [Int](repeating: 0, count: columnCount), contextOf = [Bool](repeating: false, count: columnCount)
        if coded {
            growLogTable(to: count)
            h.update(repeating: 0, count: 4 * stride)
        }
        xlog2x.withUnsafeBufferPointer { xlBuffer in
            let xl = xlBuffer.baseAddress!
            for c in 0..<columnCount {
                let column = UnsafePointer(cols + c * count)
                guard coded else {
                    let first = column[0]
                    var constant = true
                    for t in 1..<count where column[t] != first { constant = false; break }
                    if constant { kinds[c] = .constant }
                    continue
                }
                let slot = c % topk
                let previous = UnsafePointer(cols + (slot == 0 ? c : c - 1) * count)
                // Slots after the first: two tables, by whether the previous slot repeats (a
                // layer that repeats as a whole repeats in every slot), when that is cheaper;
                // only worth a look when the previous slot repeats often enough.
                let trySplit = slot != 0 && 8 * repeatsOf[c - 1] >= count
                let idSymbols = rowSymbols + c * count, deltaSymbols = rowSymbols + (columnCount + c) * count
                contextOf[c] = trySplit
                switch (slot != 0, trySplit) {
                case (false, _):
                    Self.countSymbols(IDSymbols.self, column, previous, count: count, experts: experts, stride: stride, into: h,
                                      idSymbols: idSymbols, deltaSymbols: deltaSymbols)
                case (true, false):
                    Self.countSymbols(DeltaSymbols.self, column, previous, count: count, experts: experts, stride: stride, into: h,
                                      idSymbols: idSymbols, deltaSymbols: deltaSymbols)
                case (true, true):
                    Self.countSymbols(SplitDeltaSymbols.self, column, previous, count: count, experts: experts, stride: stride, into: h,
                                      idSymbols: idSymbols, deltaSymbols: deltaSymbols)
                }
                let ids0 = UnsafePointer(h), ids1 = ids0 + stride, deltas0 = ids0 + 2 * stride, deltas1 = ids0 + 3 * stride
                defer { h.update(repeating: 0, count: (slot == 0 ? 1 : trySplit ? 4 : 3) * stride) }
                let escapes = Int(h[experts] &+ h[experts + 1] &+ h[experts + 2] &+ h[experts + 3]
                                  &+ h[stride + experts] &+ h[stride + experts + 1] &+ h[stride + experts + 2] &+ h[stride + experts + 3])
                repeatsOf[c] = escapes
                if escapes == count - 1 {
                    kinds[c] = .constant
                    continue
                }
                let (aSum, aPresent) = tally(ids0, plus: trySplit ? ids1 : nil, experts: experts, xl)
                var best = xl[count] - aSum + Self.tableBits(present: aPresent, total: count)
                var chosen = (ids0, ids1)
                kinds[c] = .ids
                symbolsOf[c] = c * count
                if slot != 0 {
                    let (dSum, dPresent) = tally(deltas0, plus: trySplit ? deltas1 : nil, experts: experts, xl)
                    let cost = xl[count] - dSum + Self.tableBits(present: dPresent, total: count)
                    if cost < best {
                        best = cost
                        chosen = (deltas0, deltas1)
                        kinds[c] = .slotDelta
                        symbolsOf[c] = (columnCount + c) * count
                    }
                }
                if trySplit {
                    let (oSum, oPresent) = tally(chosen.0, plus: nil, experts: experts, xl)
                    let (rSum, rPresent) = tally(chosen.1, plus: nil, experts: experts, xl)
                    var repeatedRows = 0
                    for s in 0..<(experts + 4) { repeatedRows &+= Int(chosen.1[s]) }
                    let others = count - repeatedRows
                    let rCost = xl[repeatedRows] - rSum + Self.tableBits(present: rPresent, total: repeatedRows)
                    let oCost = xl[others] - oSum + Self.tableBits(present: oPresent, total: others)
                    // A clear gain only: the estimate ignores that unsplit columns share tables better.
                    if repeatedRows > 0 && rCost + oCost < 0.95 * best {
                        kinds[c] = kinds[c] == .ids ? .splitIDs : .splitSlotDelta
                        Self.store(chosen.1, plus: nil, experts: experts, into: unitCounts + units.count * alphabet)
                        units.append(Unit(column: c, context: 1, symbols: repeatedRows, ownCost: rCost))
                        Self.store(chosen.0, plus: nil, experts: experts, into: unitCounts + units.count * alphabet)
                        units.append(Unit(column: c, context: 2, symbols: others, ownCost: oCost))
                        continue
                    }
                }
                Self.store(chosen.0, plus: trySplit ? chosen.1 : nil, experts: experts, into: unitCounts + units.count * alphabet)
                units.append(Unit(column: c, context: 0, symbols: count, ownCost: best))
            }
        }
        return KindChoice(kinds: kinds, symbolsOf: symbolsOf, contextOf: contextOf, rowSymbols: rowSymbols,
                          unitCounts: unitCounts, stride: stride)
    }

    /// Step 2: each unit's table, its own or its (kind, context, slot) group's when that is
    /// cheaper; fills `tables` (their entries in `tableScratch`, `tableEntriesUsed` of them).
    private func chooseTables(_ choice: KindChoice) -> [Int] {
        let kinds = choice.kinds, unitCounts = choice.unitCounts
        let alphabet = schema.experts + 1, topk = schema.topk
        let groupCount = 6 * topk
        var tableOf = [Int](repeating: -1, count: units.count)
        let tableEntries = tableScratch.reserve(max(1, (units.count + groupCount) * alphabet), of: UInt32.self)
        var tableEntriesUsed = 0
        if !units.isEmpty {
            let groups = groupScratch.reserve(groupCount * alphabet, of: UInt32.self)
            groups.update(repeating: 0, count: groupCount * alphabet)
            var groupTable = [Int](repeating: -1, count: groupCount)
            var groupTotal = [Int](repeating: 0, count: groupCount)
            func group(_ unit: Unit) -> Int {
                ((kinds[unit.column].isDelta ? 3 : 0) + unit.context) * topk + unit.column % topk
            }
            for (u, unit) in units.enumerated() {
                let g = group(unit), histogram = groups + g * alphabet, counts = unitCounts + u * alphabet
                for s in 0..<alphabet { histogram[s] &+= counts[s] }
                groupTotal[g] += unit.symbols
            }
            // Per group, the cost in bits of each symbol coded with the group's frequencies.
            let costs = costScratch.reserve(groupCount * alphabet, of: Float.self)
            for g in 0..<groupCount where groupTotal[g] > 0 {
                let histogram = groups + g * alphabet, cost = costs + g * alphabet
                let logTotal = fastLog2(Float(groupTotal[g]))
                for s in 0..<alphabet {
                    let n = histogram[s]
                    cost[s] = n == 0 ? 0 : logTotal - fastLog2(Float(n))
                }
            }
            let ownBudget = CompactFormat.maxTables - groupTotal.lazy.filter { $0 > 0 }.count
            var ownTables = 0
            for (u, unit) in units.enumerated() {
                let g = group(unit), counts = unitCounts + u * alphabet, cost = costs + g * alphabet
                let shared = Self.dot(counts, cost, count: alphabet)
                if Double(shared) < unit.ownCost || ownTables >= ownBudget {
                    if groupTable[g] < 0 {
                        groupTable[g] = tables.count
                        tables.append(quantize(groups + g * alphabet, total: groupTotal[g], alphabet: alphabet,
                                               into: tableEntries, at: &tableEntriesUsed))
                    }
                    tableOf[u] = groupTable[g]
                } else {
                    tableOf[u] = tables.count
                    tables.append(quantize(counts, total: unit.symbols, alphabet: alphabet, into: tableEntries, at: &tableEntriesUsed))
                    ownTables += 1
                }
            }
        }
        self.tableEntriesUsed = tableEntriesUsed
        return tableOf
    }

    /// Step 3: the table stream: table count, tables, each coded column's table, constants.
    private func writeTableStream(_ choice: KindChoice, tableOf: [Int], _ cols: UnsafeMutablePointer<UInt16>,
                                  count: Int) -> (UnsafeMutablePointer<UInt8>, Int) {
        let columnCount = sourceIndex.count, width = schema.bitWidth, kinds = choice.kinds
        let tableEntries = tableScratch.base.assumingMemoryBound(to: UInt32.self), tableEntriesUsed = self.tableEntriesUsed
        let streamCapacity = 64 + 8 * tables.count + 10 * tableEntriesUsed + 4 * units.count + 2 * columnCount
        var bits = PointerBitWriter(streamScratch.reserve(streamCapacity, of: UInt8.self))
        bits.write(tables.count, bits: 8)
        for table in tables { write(table, tableEntries, to: &bits) }
        let refBits = tables.count <= 1 ? 0 : Int.bitWidth - (tables.count - 1).leadingZeroBitCount
        for table in tableOf { bits.write(table, bits: refBits) }
        for c in 0..<columnCount where kinds[c] == .constant { bits.write(Int(cols[c * count]), bits: width) }
        return (bits.base, bits.finish())
    }

    /// Step 4: rANS, backwards: last coded column first, its last row first; row t uses state
    /// t % 4. Returns the stream (states first) and its length, nil when no column is coded.
    private func encodeRANS(_ choice: KindChoice, tableOf: [Int], count: Int) -> (UnsafeMutablePointer<UInt8>?, Int) {
        let columnCount = sourceIndex.count, experts = schema.experts, stride = choice.stride
        let symbolsOf = choice.symbolsOf, contextOf = choice.contextOf, rowSymbols = choice.rowSymbols
        let tableEntries = tableScratch.base.assumingMemoryBound(to: UInt32.self)
        var ransBytes = 0
        var ransStart: UnsafeMutablePointer<UInt8>? = nil
        if !units.isEmpty {
            let capacity = 4 * count * columnCount + CompactFormat.stateBytes + 16
            let buffer = ransOut.reserve(capacity, of: UInt8.self)
            // Per table `stride` entries: the escape's at E and copied to its other lanes E + 1...3.
            let encodeSymbols = encodeTables.reserve(tables.count * stride, of: RANSEncodeSymbol.self)
            RANSEncodeSymbol.reciprocals.withUnsafeBufferPointer { reciprocals in
                for (i, table) in tables.enumerated() {
                    var start = 0
                    for k in 0..<table.present {
                        let entry = tableEntries[table.start + k]
                        let s = Int(entry & 0xFFFF), f = Int(entry >> 16)
                        encodeSymbols[i * stride + s] = RANSEncodeSymbol(start: start, freq: f, scale: table.scale,
                                                                         reciprocals: reciprocals.baseAddress!)
                        start += f
                    }
                    (encodeSymbols + i * stride + experts + 1).update(repeating: encodeSymbols[i * stride + experts], count: 3)
                }
            }
            var end = buffer + capacity
            var x0 = CompactFormat.stateLow, x1 = x0, x2 = x0, x3 = x0
            let entries = entryScratch.reserve(count, of: Int32.self)
            var u = units.count
            while u > 0 {
                u -= 1
                let c = units[u].column
                let other = UnsafePointer(encodeSymbols + tableOf[u] * stride)
                var repeated = other
                if units[u].context == 2 {
                    u -= 1
                    repeated = UnsafePointer(encodeSymbols + tableOf[u] * stride)
                }
                let symbols = UnsafePointer(rowSymbols + symbolsOf[c])
                if contextOf[c] {
                    Self.encodeColumn(SplitIDSymbols.self, symbols, count: count, stride: stride, other, repeated,
                                      entries: entries, &x0, &x1, &x2, &x3, &end)
                } else {
                    Self.encodeColumn(IDSymbols.self, symbols, count: count, stride: stride, other, repeated,
                                      entries: entries, &x0, &x1, &x2, &x3, &end)
                }
            }
            end -= CompactFormat.stateBytes
            let raw = UnsafeMutableRawPointer(end)
            raw.storeLE(x0, at: 0)
            raw.storeLE(x1, at: 8)
            raw.storeLE(x2, at: 16)
            raw.storeLE(x3, at: 24)
            ransStart = end
            ransBytes = buffer + capacity - end
        }
        return (ransStart, ransBytes)
    }

    /// The payload from the steps' output, or with every non-constant column raw when that is
    /// smaller (which bounds the payload, spec 1.10.7).
    private func finish(_ chosenKinds: [CompactKind], stream: UnsafeMutablePointer<UInt8>, _ streamBytes: Int,
                        _ cols: UnsafeMutablePointer<UInt16>, count: Int,
                        rans ransStart: UnsafeMutablePointer<UInt8>?, ransBytes: Int) -> (UnsafeRawPointer, Int) {
        let columnCount = sourceIndex.count, width = schema.bitWidth
        var kinds = chosenKinds
        let rawBytes = CompactFormat.rawColumnBytes(rows: count, width: width)
        let rawColumns = kinds.lazy.filter { $0 == .raw }.count
        let size = PayloadHeader.bytes + columnCount + 4 + streamBytes + rawColumns * rawBytes + ransBytes
        let constants = kinds.lazy.filter { $0 == .constant }.count
        let allRawSize = PayloadHeader.bytes + columnCount + 4 + (8 + constants * width + 7) / 8
            + (columnCount - constants) * rawBytes
        if size > allRawSize && !units.isEmpty {
            for c in 0..<columnCount where kinds[c] != .constant { kinds[c] = .raw }
            var rawBits = PointerBitWriter(streamScratch.reserve(16 + 2 * columnCount, of: UInt8.self))
            rawBits.write(0, bits: 8)
            for c in 0..<columnCount where kinds[c] == .constant { rawBits.write(Int(cols[c * count]), bits: width) }
            let rawStreamBytes = rawBits.finish()
            return write(kinds, rawBits.base, rawStreamBytes, cols, count: count, rans: nil, ransBytes: 0)
        }
        return write(kinds, stream, streamBytes, cols, count: count, rans: ransStart, ransBytes: ransBytes)
    }

    /// rANS-encodes one column backwards (row 0 last) from its rows' count indices (symbol,
    /// escape lane, and with `Shape.split` the context offset `stride` of rows coded with
    /// `repeated`). Row `t` uses state `t % 4`; tables hold `stride` entries, both in one array.
    /// `entries` is room for `count` indices (split columns).
    private static func encodeColumn<Shape: SymbolShape>(_ shape: Shape.Type, _ symbols: UnsafePointer<UInt16>, count n: Int,
                                                         stride: Int, _ other: UnsafePointer<RANSEncodeSymbol>,
                                                         _ repeated: UnsafePointer<RANSEncodeSymbol>,
                                                         entries: UnsafeMutablePointer<Int32>,
                                     _ x0: inout UInt64, _ x1: inout UInt64, _ x2: inout UInt64, _ x3: inout UInt64,
                                     _ end: inout UnsafeMutablePointer<UInt8>) {
        var s0 = x0, s1 = x1, s2 = x2, s3 = x3, out = end
        if Shape.split { splitEntries(symbols, count: n, stride: stride, toRepeated: (repeated - other) &- stride, into: entries) }
        /// Row `t`'s entry.
        @inline(__always) func entry(_ t: Int) -> UnsafePointer<RANSEncodeSymbol> {
            Shape.split ? other + Int(entries[t]) : other + Int(symbols[t])
        }
        @inline(__always) func putRow(_ t: Int) {
            switch t & 3 {
            case 0: RANSEncodeSymbol.put(&s0, entry(t), &out)
            case 1: RANSEncodeSymbol.put(&s1, entry(t), &out)
            case 2: RANSEncodeSymbol.put(&s2, entry(t), &out)
            default: RANSEncodeSymbol.put(&s3, entry(t), &out)
            }
        }
        let whole = n & ~3
        var t = n
        while t > max(whole, 1) {
            t &-= 1
            putRow(t)
        }
        while t >= 8 {
            t &-= 4
            RANSEncodeSymbol.put(&s3, entry(t &+ 3), &out)
            RANSEncodeSymbol.put(&s2, entry(t &+ 2), &out)
            RANSEncodeSymbol.put(&s1, entry(t &+ 1), &out)
            RANSEncodeSymbol.put(&s0, entry(t), &out)
        }
        while t > 1 {
            t &-= 1
            putRow(t)
        }
        // Row 0: no row above or context, the second table.
        RANSEncodeSymbol.put(&s0, other + Int(symbols[0]), &out)
        x0 = s0; x1 = s1; x2 = s2; x3 = s3; end = out
    }

    /// The entries of a split column's rows relative to `other`, in a pass of their own (inside
    /// the rANS loop, which keeps four states, the pointers and the output in registers, these
    /// steps make it spill registers to the stack). Both tables are in one array: an index with the context offset (at or above
    /// `stride`) moves by `toRepeated` entries, from `other + symbol` to `repeated + symbol -
    /// stride`. Eight rows at a time in SSE2 registers (the sum wraps to the Int32 index).
    private static func splitEntries(_ symbols: UnsafePointer<UInt16>, count n: Int, stride: Int, toRepeated: Int,
                                     into entries: UnsafeMutablePointer<Int32>) {
        typealias Lanes = SIMD4<UInt32>
        let belowContext = Lanes(repeating: UInt32(truncatingIfNeeded: stride)), zero = SIMD8<UInt16>()
        let move = Lanes(repeating: UInt32(truncatingIfNeeded: toRepeated))
        let source = UnsafeRawPointer(symbols), out = UnsafeMutableRawPointer(entries)
        @inline(__always) func index(_ s: Lanes) -> Lanes { s &+ move.replacing(with: 0, where: s .< belowContext) }
        var t = 0
        while t &+ 8 <= n {
            let s = source.loadUnaligned(fromByteOffset: 2 &* t, as: SIMD8<UInt16>.self)
            out.storeBytes(of: index(Unpack.low16(s, zero)), toByteOffset: 4 &* t, as: Lanes.self)
            out.storeBytes(of: index(Unpack.high16(s, zero)), toByteOffset: 4 &* t &+ 16, as: Lanes.self)
            t &+= 8
        }
        while t < n {
            let symbol = Int(symbols[t])
            let inContext = (stride &- 1 &- symbol) &>> 63 // all ones from `stride` on
            entries[t] = Int32(truncatingIfNeeded: symbol &+ (toRepeated & inContext))
            t &+= 1
        }
    }

    /// Quantizes `counts[0..<alphabet]` (summing to `total`) to a table: frequencies summing to a
    /// power of two just above the total (at most `2^maxScaleBits`), every present symbol at
    /// least 1; its `symbol | freq << 16` entries go to `entries` at `used`.
    private func quantize(_ counts: UnsafePointer<UInt32>, total: Int, alphabet: Int,
                          into entries: UnsafeMutablePointer<UInt32>, at used: inout Int) -> TableInfo {
        let out = entries + used
        // Every symbol is written, and the next one overwrites it unless its count is nonzero
        // (no branch). `out` has room for `alphabet` entries.
        var present = 0
        for s in 0..<alphabet {
            let n = counts[s]
            out[present] = UInt32(truncatingIfNeeded: s) | n << 16 // the count for now (< 2^16)
            present &+= nonzero(n)
        }
        let needed = Int.bitWidth - (max(total, present, 2) - 1).leadingZeroBitCount
        let scale = min(CompactFormat.maxScaleBits, needed)
        let target = 1 << scale
        var sum = 0, largest = 0, largestFreq = 0
        let t32 = UInt32(total), half = UInt32(total / 2)
        for i in 0..<present {
            let n = out[i] >> 16
            let f = max(1, Int((n * UInt32(target) + half) / t32))
            out[i] = out[i] & 0xFFFF | UInt32(f) << 16
            sum += f
            if f > largestFreq { (largest, largestFreq) = (i, f) }
        }
        let given = max(target - sum, 1 - largestFreq) // the largest keeps at least 1
        out[largest] = out[largest] & 0xFFFF | UInt32(largestFreq + given) << 16
        sum += given
        // Rare (more symbols than the largest can give back): take one from each in turn.
        var i = 0
        while sum > target {
            if out[i] >> 16 > 1 { out[i] -= 1 << 16; sum -= 1 }
            i = (i + 1) % present
        }
        let info = TableInfo(scale: scale, start: used, present: present)
        used += present
        return info
    }

    /// Writes a table: scale (4 bits), symbol count (gamma), symbol gaps (gamma), the
    /// exp-Golomb parameter (4 bits) and every frequency minus one (exp-Golomb).
    private func write(_ table: TableInfo, _ entries: UnsafePointer<UInt32>, to bits: inout PointerBitWriter) {
        let items = entries + table.start
        bits.write(table.scale, bits: 4)
        bits.gamma(table.present)
        // expGolomb_g(x) takes 2 floor(log2(x + 2^g)) - g + 1 bits. With b the bit length of x
        // and m that of x ^ (2^b - 1) (b less the leading ones of x), floor(log2(x + 2^g)) is
        // max(b - 1, g), plus 1 where m <= g < b (the add carries past bit b - 1). So the bits
        // of every g follow from two counts by bit length: lengths[b] and carries[m].
        let bestG = withUnsafeTemporaryAllocation(of: Int.self, capacity: 28) { counts -> Int in
            let lengths = counts.baseAddress!, carries = lengths + 14
            lengths.initialize(repeating: 0, count: 28)
            var previous = -1
            for k in 0..<table.present {
                let s = Int(items[k] & 0xFFFF)
                bits.gamma(s &- previous)
                previous = s
                let x = Int(items[k] >> 16) &- 1 // below 2^12
                let b = Int.bitWidth &- x.leadingZeroBitCount
                lengths[b] &+= 1
                carries[Int.bitWidth &- (x ^ ((1 &<< b) &- 1)).leadingZeroBitCount] &+= 1
            }
            /// The bits of every frequency at parameter `g`, estimated without the carries.
            func estimate(_ g: Int) -> Int {
                var n = 0
                for b in 0..<14 { n &+= lengths[b] &* (2 &* max(b &- 1, g) &- g &+ 1) }
                return n
            }
            /// Exactly: the carries are the values with m <= g, less those with b <= g.
            func exact(_ g: Int) -> Int {
                var carried = 0
                for b in 0...g { carried &+= carries[b] &- lengths[b] }
                return estimate(g) &+ 2 &* carried
            }
            // The best estimate, then the exact best among it and its neighbours (the choice
            // of the three passes over the frequencies this replaces).
            var estimateG = 0, estimateBits = Int.max
            for g in 0..<12 {
                let n = estimate(g)
                if n < estimateBits { (estimateG, estimateBits) = (g, n) }
            }
            var bestG = 0, bestBits = Int.max
            for g in max(0, estimateG - 1)...min(11, estimateG + 1) {
                let n = exact(g)
                if n < bestBits { (bestG, bestBits) = (g, n) }
            }
            return bestG
        }
        bits.write(bestG, bits: 4)
        for k in 0..<table.present { bits.expGolomb(Int(items[k] >> 16) - 1, bestG) }
    }

    /// `sum counts[s] * cost[s]`, in four sums: one would wait on each add's latency.
    @inline(__always)
    private static func dot(_ counts: UnsafePointer<UInt32>, _ cost: UnsafePointer<Float>, count n: Int) -> Float {
        var sum0: Float = 0, sum1: Float = 0, sum2: Float = 0, sum3: Float = 0
        var s = 0
        while s &+ 4 <= n {
            sum0 += Float(counts[s]) * cost[s]
            sum1 += Float(counts[s &+ 1]) * cost[s &+ 1]
            sum2 += Float(counts[s &+ 2]) * cost[s &+ 2]
            sum3 += Float(counts[s &+ 3]) * cost[s &+ 3]
            s &+= 4
        }
        while s < n {
            sum0 += Float(counts[s]) * cost[s]
            s &+= 1
        }
        return (sum0 + sum1) + (sum2 + sum3)
    }

    /// log2 within about 0.01, for cost estimates.
    @inline(__always)
    private func fastLog2(_ x: Float) -> Float {
        let bits = x.bitPattern
        let exponent = Float(Int(bits >> 23) - 127)
        let m = Float(bitPattern: (bits & 0x7F_FFFF) | 0x3F80_0000)
        return exponent + (-0.344_848_43 * m + 2.024_665_78) * m - 0.674_877_59
    }

    private func write(_ kinds: [CompactKind], _ tableStream: UnsafePointer<UInt8>, _ streamBytes: Int,
                       _ cols: UnsafeMutablePointer<UInt16>, count: Int,
                       rans: UnsafeMutablePointer<UInt8>?, ransBytes: Int) -> (UnsafeRawPointer, Int) {
        let columnCount = kinds.count, width = schema.bitWidth
        let rawBytes = CompactFormat.rawColumnBytes(rows: count, width: width)
        let rawColumns = kinds.lazy.filter { $0 == .raw }.count
        let size = PayloadHeader.bytes + columnCount + 4 + streamBytes + rawColumns * rawBytes + ransBytes
        let out = payload.reserve(size)
        writeHeader(out, count: count)
        var cursor = PayloadHeader.bytes
        for c in 0..<columnCount { out.storeLE(kinds[c].rawValue, at: cursor + c) }
        cursor += columnCount
        out.storeLE(UInt32(streamBytes), at: cursor)
        cursor += 4
        (out + cursor).copyMemory(from: tableStream, byteCount: streamBytes)
        cursor += streamBytes
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
}
