import Testing
import TraceSynth
@testable import ExpertCodec

/// The kernels for ids of 9 to 16 bits must choose and write exactly what the generic per-id
/// ``ColumnWork`` does (spec 1.6), and the whole encoder exactly what spec 1.6 says.
@Suite struct ShortColumnsTests {
    @Test(arguments: [257, 300, 384, 512, 1000, 4096, 32768, 65535, 65536])
    func sameChoicesAndBytesAsTheGenericCoder(experts: Int) throws {
        var random = SplitMix64(seed: UInt64(experts))
        let width = try Schema(layers: 1, topk: 1, experts: experts).bitWidth
        var chosen = Set<ColumnCoding>()
        for count in [1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 100, 120, 250] {
            let padded = (count + 7) & ~7
            var previous = [UInt16](repeating: 0, count: padded)
            for kind in 0..<6 {
                var ids = Fixtures.column(kind, count: count, experts: experts, previous: previous, random: &random)
                ids += [UInt16](repeating: 0, count: padded - count)
                for withPrevious in [false, true] {
                    var scratchA = [UInt16](repeating: 0xAAAA, count: CandidateColumns.count(padded: padded, of: UInt16.self)), flagsA = [UInt8](repeating: 0xAA, count: padded / 8)
                    var scratchB = [UInt16](repeating: 0x5555, count: CandidateColumns.count(padded: padded, of: UInt16.self)), flagsB = [UInt8](repeating: 0x55, count: padded / 8)
                    let bound = 2 * padded + 2 * width * padded
                    var outA = [UInt8](repeating: 0, count: bound), outB = [UInt8](repeating: 0, count: bound)
                    let a = scratchA.withUnsafeMutableBufferPointer { s in flagsA.withUnsafeMutableBufferPointer { f in
                        ids.withUnsafeBufferPointer { i in previous.withUnsafeBufferPointer { p in outA.withUnsafeMutableBufferPointer { o in
                            ColumnWork<UInt16>(count: count, padded: padded, width: width, experts: experts,
                                               candidates: s.baseAddress!, flags: f.baseAddress!)
                                .encode(i.baseAddress!, previousSlot: withPrevious ? p.baseAddress! : nil, to: o.baseAddress!)
                        } } } } }
                    let b = scratchB.withUnsafeMutableBufferPointer { s in flagsB.withUnsafeMutableBufferPointer { f in
                        ids.withUnsafeBufferPointer { i in previous.withUnsafeBufferPointer { p in outB.withUnsafeMutableBufferPointer { o in
                            ShortColumnWork(count: count, padded: padded, width: width, experts: experts,
                                           candidates: s.baseAddress!, flags: f.baseAddress!)
                                .encode(i.baseAddress!, previousSlot: withPrevious ? p.baseAddress! : nil, to: o.baseAddress!)
                        } } } } }
                    #expect(a.0 == b.0 && a.1 == b.1 && a.2 == b.2, "E \(experts), \(count) rows, kind \(kind): \(a) vs \(b)")
                    #expect(outA[0..<a.1] == outB[0..<b.1], "E \(experts), \(count) rows, kind \(kind): bodies differ")
                    chosen.insert(b.0)
                }
                previous = ids
            }
        }
        #expect(chosen.count == 4, "E \(experts): only \(chosen) chosen")
    }

    @Test func slotDeltasOfPairsOfLanes() {
        var random = SplitMix64(seed: 3)
        for experts in [257, 384, 512, 4096, 32768, 65535, 65536] {
            let complement = UInt64(65536 - experts)
            let pairs = [(0, 0), (0, experts - 1), (experts - 1, 0), (experts - 1, experts - 1)]
                + (0..<200).map { _ in (Int(random.next() % UInt64(experts)), Int(random.next() % UInt64(experts))) }
            for (x, p) in pairs {
                // The pair in lane 2, its neighbours chosen to borrow and not.
                let xs = UInt64(x) << 32 | UInt64(experts - 1) << 16 | 0
                let ps = UInt64(p) << 32 | 0 << 16 | UInt64(experts - 1)
                var results = [ShortGroups.slotDeltas(xs, ps, complement: complement)]
                if experts < 65536 && experts.nonzeroBitCount == 1 {
                    results.append(ShortGroups.slotDeltas(xs, ps, low: UInt64(experts - 1) &* ShortGroups.lowBits))
                }
                for d in results {
                    #expect((d >> 32) & 0xFFFF == UInt64((x - p + experts) % experts), "E \(experts): \(x) - \(p)")
                    #expect((d >> 16) & 0xFFFF == UInt64(experts - 1))
                    #expect(d & 0xFFFF == UInt64(1 % experts), "E \(experts): 0 - (E-1) mod E")
                    #expect(d >> 48 == 0)
                }
            }
        }
    }

    @Test func repeatFlagsAndLaneCompactionOfEveryMask() {
        var random = SplitMix64(seed: 4)
        let tables = KernelTables.shared
        for keep in 0..<16 {
            for _ in 0..<8 {
                // Both halves of the register, each on its own.
                let x = SIMD2(random.next(), random.next())
                var expected = SIMD2<UInt64>(), kept: UInt64 = 0
                for i in 0..<4 where keep >> i & 1 == 1 {
                    expected |= (x &>> UInt64(16 * i) & 0xFFFF) &<< (16 * kept)
                    kept += 1
                }
                #expect(tables.compactLanes(x, keep: UInt64(keep)) == expected, "keep \(keep), x \(x)")
                // Lanes equal to the one before where `keep` says so, the id before lane 0 too.
                var lanes = [UInt64](repeating: 0, count: 4)
                let before = random.next() & 0xFFFF
                for i in 0..<4 {
                    let previous = i == 0 ? before : lanes[i - 1]
                    lanes[i] = keep >> i & 1 == 1 ? previous : (previous ^ (1 << (random.next() % 16)))
                }
                let word = lanes.enumerated().reduce(UInt64(0)) { $0 | $1.element << UInt64(16 * $1.offset) }
                #expect(ShortGroups.repeatFlags(word, previous: before) == UInt64(keep), "keep \(keep)")
            }
        }
    }

    /// Two groups in SSE2 registers (``ShortPairs``) against the scalar kernels on each group's
    /// two words: the nontrivial planes and the repeat flags, on groups with and without repeats.
    @Test func pairsOfGroupsMatchTheScalarKernels() {
        var random = SplitMix64(seed: 7)
        for round in 0..<400 {
            // Three groups side by side: the row before each of the last two is in the column.
            var ids = [UInt16](repeating: 0, count: 24)
            for t in ids.indices {
                let repeats = t > 0 && random.next() % 4 < UInt64(round % 4)
                ids[t] = repeats ? ids[t - 1] : UInt16(truncatingIfNeeded: random.next() >> UInt64(round % 3 * 6))
            }
            ids.withUnsafeBytes { raw in
                func lanes(_ offset: Int) -> SIMD8<UInt16> { raw.loadUnaligned(fromByteOffset: offset, as: SIMD8<UInt16>.self) }
                let s = ShortPairs.scan((lanes(16), lanes(32)), before: (lanes(14), lanes(30)))
                for (k, g) in [1, 2].enumerated() {
                    let (low, high) = ShortGroups.load(raw.baseAddress!, group: g)
                    let flags = ShortGroups.repeatFlags(low, previous: UInt64(ids[8 * g - 1]))
                        | ShortGroups.repeatFlags(high, previous: low >> 48) << 4
                    #expect(s[k] & 0xFFFF == ShortGroups.nontrivialPlanes(low, high, mask: 0xFFFF), "\(ids)")
                    #expect(s[k] >> 32 & 0xFFFF == flags, "\(ids)")
                    #expect(ShortPairs.nontrivialPlanes(lanes(16), lanes(32))[k] & 0xFFFF == ShortGroups.nontrivialPlanes(low, high, mask: 0xFFFF))
                }
            }
        }
    }

    @Test func narrowingKeepsTheLow16BitsOfEveryLane() {
        var random = SplitMix64(seed: 8)
        func check<L: FixedWidthInteger & SIMDScalar>(_: L.Type) {
            let x = SIMD8<L>((0..<8).map { _ in L(truncatingIfNeeded: random.next()) })
            #expect(ShortGather.narrow(x) == SIMD8<UInt16>(truncatingIfNeeded: x), "\(L.self): \(x)")
        }
        for _ in 0..<50 {
            check(UInt8.self)
            check(UInt16.self)
            check(UInt32.self)
            check(UInt64.self)
        }
    }

    @Test func laneTransposeMatchesTheDefinition() {
        var random = SplitMix64(seed: 6)
        for _ in 0..<50 {
            let rows = (0..<8).map { _ in SIMD8<UInt16>((0..<8).map { _ in UInt16(truncatingIfNeeded: random.next()) }) }
            let t = ShortGather.transpose((rows[0], rows[1], rows[2], rows[3], rows[4], rows[5], rows[6], rows[7]))
            let columns = [t.0, t.1, t.2, t.3, t.4, t.5, t.6, t.7]
            for i in 0..<8 { for j in 0..<8 { #expect(columns[j][i] == rows[i][j]) } }
        }
    }

    /// The decoder's scatter of 16-bit columns into rows puts every id where the row-by-row
    /// definition does, into every output type it serves, for ranges starting and ending
    /// anywhere inside and outside the 8x8 tiles; dense layers read as the fill, and stores
    /// outside the range's rows never happen.
    @Test func shortScatterMatchesRowByRow() throws {
        var random = SplitMix64(seed: 9)
        // Dense layers between tiles, and a topk that leaves columns outside every tile.
        for (layers, topk, dense) in [(5, 8, [1, 2]), (7, 3, [0, 4]), (2, 16, [Int]())] {
            let schema = try Schema(layers: layers, topk: topk, experts: 384, denseLayers: dense)
            let gather = ShortGather(schema: schema)
            let scatter = ShortScatter(gather: gather, dense: DenseRuns(schema: schema))
            let rows = 37, padded = 40, perRow = schema.idsPerRow, stored = gather.source
            let cols = (0..<stored.count * padded).map { _ in UInt16(random.next() % 384) }
            func check<T: ExpertID>(_: T.Type) {
                for start in [0, 1, 7, 8, 9, 15, 16, 23] {
                    for end in [start, start + 1, start + 8, start + 13, rows] where end >= start && end <= rows {
                        let guardRows = 1
                        var out = [T](repeating: T(truncatingIfNeeded: -1), count: (end - start + 2 * guardRows) * perRow)
                        var expected = out
                        for t in start..<end {
                            let row = (t - start + guardRows) * perRow
                            for layer in dense { for s in 0..<topk { expected[row + layer * topk + s] = 0 } }
                            for c in 0..<stored.count { expected[row + stored[c]] = T(cols[c * padded + t]) }
                        }
                        cols.withUnsafeBufferPointer { cols in
                            out.withUnsafeMutableBufferPointer { out in
                                scatter.scatter(cols.baseAddress!, padded: padded, range: start..<end,
                                                into: out.baseAddress! + guardRows * perRow)
                            }
                        }
                        #expect(out == expected, "\(T.self) rows \(start)..<\(end), \(layers)x\(topk)")
                    }
                }
            }
            check(Int32.self)
            check(UInt16.self)
            check(Int64.self)
            check(UInt32.self)
        }
    }

    /// A bad id anywhere (inside an 8x8 tile of the gather, in the columns or rows it leaves)
    /// is reported with its token, layer, slot and value, whatever the input type: above E, above
    /// 2^w, and negative (also in types no wider than the ids: Int8 and Int16 with 65536 experts).
    /// 65535 experts: 16-bit ids below a count that is not a power of two.
    @Test(arguments: [257, 384, 512, 65535, 65536])
    func everyBadIDIsFoundAndNamed(experts: Int) throws {
        // 15 stored columns: 0...5 and 9...17 of each row (layer 2 is dense); only 9...16 form a tile.
        let schema = try Schema(layers: 6, topk: 3, experts: experts, denseLayers: [2])
        let rows = 21, perRow = schema.idsPerRow
        var base = [Int64](repeating: 0, count: rows * perRow)
        for t in 0..<rows { for i in 0..<perRow { base[t * perRow + i] = schema.denseLayers.contains(i / 3) ? 0xFFFF : Int64((t * 7 + i) % 127) } }
        func check<T: ExpertID>(_ type: T.Type, _ values: [Int64]) throws {
            let encoder = BlockEncoder(schema: schema)
            #expect(try encoder.encode(base.map { T(truncatingIfNeeded: $0) }).count > 0)
            expectEveryBadIDNamed(type, encoder: encoder, base: base, rows: [0, 7, 8, 20], values: values)
        }
        let values: [Int64] = [Int64(experts), 511, 512, 1023, 65535, 65536, 1 << 40, -1, -128, -32768]
        try check(UInt8.self, values)
        try check(Int8.self, values)
        try check(UInt16.self, values)
        try check(Int16.self, values)
        try check(UInt32.self, values)
        try check(Int32.self, values)
        try check(UInt64.self, values)
        try check(Int64.self, values)
    }
}

/// The whole encoder against spec 1.5 and 1.6 written from their text: for generated schemas
/// (both word widths and the edges of 16-bit ids, dense layers), numbers of rows that are and
/// are not multiples of 8, and every input type that holds the ids, the payload is the one built
/// column by column from ``SpecColumnChoice``.
@Suite struct PayloadSpecTests {
    /// The payload of `rows` by the spec's text: header, codings, constant table, bodies.
    static func specPayload(_ rows: [Int64], schema: Schema) -> [UInt8] {
        let count = rows.count / schema.idsPerRow, source = schema.storedIndices, width = schema.bitWidth
        func le(_ value: Int, _ bytes: Int) -> [UInt8] { (0..<bytes).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        let payload: [UInt8] = [1, UInt8(width), 0, 0] + le(count, 4) + le(source.count, 4)
        guard count > 0 else { return payload }
        let columns = source.map { index in (0..<count).map { Int(rows[$0 * schema.idsPerRow + index]) } }
        var codings: [UInt8] = [], constants: [UInt8] = [], bodies: [UInt8] = []
        for (c, column) in columns.enumerated() {
            if Set(column).count == 1 {
                codings.append(ColumnCoding.constant.rawValue)
                constants += le(column[0], 2)
                continue
            }
            let choice = SpecColumnChoice.choose(ids: column, previous: c % schema.topk == 0 ? nil : columns[c - 1],
                                                 experts: schema.experts, width: width)
            codings.append(choice.coding.rawValue)
            bodies += choice.body
        }
        return payload + codings + constants + bodies
    }

    @Test(arguments: [257, 384, 512, 1000, 65536, 7, 128, 256])
    func payloadsAreTheSpecs(experts: Int) throws {
        var random = SplitMix64(seed: UInt64(experts) &* 7)
        let shapes = [(1, 1, [Int]()), (3, 8, [1]), (5, 4, [0, 3]), (2, 9, [])]
        for (layers, topk, dense) in shapes {
            let schema = try Schema(layers: layers, topk: topk, experts: experts, denseLayers: dense)
            let encoder = BlockEncoder(schema: schema)
            for count in [1, 2, 7, 8, 9, 16, 23, 120, 257] {
                var rows = Fixtures.rows(schema, count: count, &random)
                // Dense layers hold what engines put there: anything.
                for i in rows.indices where schema.isDense(layer: (i % schema.idsPerRow) / topk) { rows[i] = [0, 0xFFFF, -3][i % 3] }
                let expected = Self.specPayload(rows, schema: schema)
                func check<T: ExpertID>(_: T.Type) throws {
                    let input = rows.map { T(truncatingIfNeeded: $0) }
                    let payload = try input.withUnsafeBufferPointer { buffer in
                        let (start, size) = try encoder.encodePayload(buffer)
                        return Array(UnsafeRawBufferPointer(start: start, count: size))
                    }
                    #expect(payload == expected, "\(schema), \(count) rows as \(T.self)")
                }
                // Dense layers' -3 only fits signed types, 0xFFFF only 16 bits and more.
                if dense.isEmpty && experts <= 256 { try check(UInt8.self) }
                if dense.isEmpty && experts <= 65536 { try check(UInt16.self) }
                try check(Int32.self)
                try check(Int64.self)
            }
        }
    }
}
