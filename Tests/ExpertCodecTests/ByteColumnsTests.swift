import Testing
import TraceSynth
@testable import ExpertCodec

/// The word-at-a-time kernels for ids of at most 8 bits must choose and write exactly what the
/// generic per-id ``ColumnWork`` does (spec 1.6), on columns of every kind.
@Suite struct ByteColumnsTests {
    /// Below ``ByteColumnWork/samplingGroups`` groups, where every group is looked at.
    @Test(arguments: [2, 3, 6, 7, 8, 60, 64, 100, 128, 160, 200, 255, 256])
    func sameChoicesAndBytesAsTheGenericCoder(experts: Int) throws {
        var random = SplitMix64(seed: UInt64(experts))
        let width = try Schema(layers: 1, topk: 1, experts: experts).bitWidth
        for count in [1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 100, 8 * (ByteColumnWork.samplingGroups - 1)] {
            let padded = (count + 7) & ~7
            var previous = [UInt8](repeating: 0, count: padded)
            for kind in 0..<6 {
                var ids = Fixtures.column(kind, count: count, experts: experts, previous: previous, random: &random)
                ids += [UInt8](repeating: 0, count: padded - count)
                for withPrevious in [false, true] {
                    var scratchA = [UInt8](repeating: 0xAA, count: CandidateColumns.count(padded: padded, of: UInt8.self)), flagsA = [UInt8](repeating: 0xAA, count: padded / 8)
                    var scratchB = [UInt8](repeating: 0x55, count: CandidateColumns.count(padded: padded, of: UInt8.self)), flagsB = [UInt8](repeating: 0x55, count: padded / 8)
                    let bound = 2 * padded + width * padded
                    var outA = [UInt8](repeating: 0, count: bound), outB = [UInt8](repeating: 0, count: bound)
                    let a = scratchA.withUnsafeMutableBufferPointer { s in flagsA.withUnsafeMutableBufferPointer { f in
                        ids.withUnsafeBufferPointer { i in previous.withUnsafeBufferPointer { p in outA.withUnsafeMutableBufferPointer { o in
                            ColumnWork<UInt8>(count: count, padded: padded, width: width, experts: experts,
                                              candidates: s.baseAddress!, flags: f.baseAddress!)
                                .encode(i.baseAddress!, previousSlot: withPrevious ? p.baseAddress! : nil, to: o.baseAddress!)
                        } } } } }
                    let b = scratchB.withUnsafeMutableBufferPointer { s in flagsB.withUnsafeMutableBufferPointer { f in
                        ids.withUnsafeBufferPointer { i in previous.withUnsafeBufferPointer { p in outB.withUnsafeMutableBufferPointer { o in
                            ByteColumnWork(count: count, padded: padded, width: width, experts: experts,
                                           candidates: s.baseAddress!, flags: f.baseAddress!)
                                .encode(i.baseAddress!, previousSlot: withPrevious ? p.baseAddress! : nil, to: o.baseAddress!)
                        } } } } }
                    #expect(a.0 == b.0 && a.1 == b.1 && a.2 == b.2, "E \(experts), \(count) rows, kind \(kind): \(a) vs \(b)")
                    #expect(outA[0..<a.1] == outB[0..<b.1], "E \(experts), \(count) rows, kind \(kind): bodies differ")
                }
                previous = ids
            }
        }
    }

    /// Long columns choose on a sample: the choice still follows what the column holds, and
    /// the body is the one of the chosen coding (the round trip tests check it decodes).
    @Test func sampledChoicesFollowTheColumn() throws {
        var random = SplitMix64(seed: 5)
        let experts = 128, width = 7
        for count in [8 * ByteColumnWork.samplingGroups, 561, 3120] {
            let padded = (count + 7) & ~7
            var previous = [UInt8](repeating: 0, count: padded)
            for t in 0..<count { previous[t] = UInt8(random.next() % UInt64(experts)) }
            // Runs of random length (12 on average) in a column, or in the previous slot.
            var runs = [UInt8](repeating: 0, count: count)
            for t in 0..<count { runs[t] = t > 0 && random.next() % 12 != 0 ? runs[t - 1] : UInt8(random.next() % UInt64(experts)) }
            let expected: [(Int, Bool, ColumnCoding)] = [(0, false, .plain), (1, false, .repeat), (2, true, .slotDelta), (3, true, .slotDelta)]
            for (kind, withPrevious, coding) in expected {
                var ids = Fixtures.column(kind, count: count, experts: experts, previous: previous, random: &random)
                if kind == 1 { ids = runs }
                if kind == 3 { // the previous slot plus one: the slot delta is constant
                    for t in 0..<count { previous[t] = runs[t] }
                    ids = runs.map { UInt8((Int($0) + 1) % experts) }
                }
                ids += [UInt8](repeating: 0, count: padded - count)
                var scratch = [UInt8](repeating: 0, count: CandidateColumns.count(padded: padded, of: UInt8.self)), flags = [UInt8](repeating: 0, count: padded / 8)
                var out = [UInt8](repeating: 0, count: 2 * padded + width * padded)
                let result = scratch.withUnsafeMutableBufferPointer { s in flags.withUnsafeMutableBufferPointer { f in
                    ids.withUnsafeBufferPointer { i in previous.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { o in
                        ByteColumnWork(count: count, padded: padded, width: width, experts: experts,
                                       candidates: s.baseAddress!, flags: f.baseAddress!)
                            .encode(i.baseAddress!, previousSlot: withPrevious ? p.baseAddress! : nil, to: o.baseAddress!)
                    } } } } }
                var scratchA = [UInt8](repeating: 0, count: CandidateColumns.count(padded: padded, of: UInt8.self)), flagsA = [UInt8](repeating: 0, count: padded / 8)
                let exact = scratchA.withUnsafeMutableBufferPointer { s in flagsA.withUnsafeMutableBufferPointer { f in
                    ids.withUnsafeBufferPointer { i in previous.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { o in
                        ColumnWork<UInt8>(count: count, padded: padded, width: width, experts: experts,
                                          candidates: s.baseAddress!, flags: f.baseAddress!)
                            .encode(i.baseAddress!, previousSlot: withPrevious ? p.baseAddress! : nil, to: o.baseAddress!)
                    } } } } }
                #expect(result.0 == coding && exact.0 == coding, "\(count) rows, kind \(kind): \(result), every group: \(exact)")
            }
        }
    }

    /// Long columns, sampled or not: the choice, the estimated cost and the body are those of
    /// spec 1.6 (``SpecColumnChoice``), on columns of every kind, with and without a previous slot.
    @Test(arguments: [2, 7, 64, 100, 128, 256])
    func sampledChoicesAreTheSpecs(experts: Int) throws {
        var random = SplitMix64(seed: UInt64(experts) &* 31)
        let width = try Schema(layers: 1, topk: 1, experts: experts).bitWidth
        var chosen = Set<ColumnCoding>()
        for count in [8 * ByteColumnWork.samplingGroups - 1, 8 * ByteColumnWork.samplingGroups, 8 * 33 + 3, 561, 1000] {
            let padded = (count + 7) & ~7
            var previous = [UInt8](repeating: 0, count: padded)
            for kind in 0..<6 {
                var ids = Fixtures.column(kind, count: count, experts: experts, previous: previous, random: &random)
                if kind == 1 { // runs of 8 rows or so, so that the repeat codings get a look
                    for t in 1..<count where random.next() % 8 != 0 { ids[t] = ids[t - 1] }
                }
                guard Set(ids).count > 1 else { continue } // constant columns never get here
                ids += [UInt8](repeating: 0, count: padded - count)
                for withPrevious in [false, true] {
                    let spec = SpecColumnChoice.choose(ids: ids[0..<count].map(Int.init), previous: withPrevious ? previous[0..<count].map(Int.init) : nil,
                                                       experts: experts, width: width)
                    var scratch = [UInt8](repeating: 0xAA, count: CandidateColumns.count(padded: padded, of: UInt8.self)), flags = [UInt8](repeating: 0x55, count: padded / 8)
                    var out = [UInt8](repeating: 0, count: 2 * padded + width * padded)
                    let result = scratch.withUnsafeMutableBufferPointer { s in flags.withUnsafeMutableBufferPointer { f in
                        ids.withUnsafeBufferPointer { i in previous.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { o in
                            ByteColumnWork(count: count, padded: padded, width: width, experts: experts,
                                           candidates: s.baseAddress!, flags: f.baseAddress!)
                                .encode(i.baseAddress!, previousSlot: withPrevious ? p.baseAddress! : nil, to: o.baseAddress!)
                        } } } } }
                    #expect(result.0 == spec.coding && result.2 == spec.cost, "E \(experts), \(count) rows, kind \(kind): \(result) vs \(spec.coding) \(spec.cost)")
                    #expect(Array(out[0..<result.1]) == spec.body, "E \(experts), \(count) rows, kind \(kind): bodies differ")
                    chosen.insert(result.0)
                }
                previous = ids
            }
        }
        // With 1-bit ids a flag bitmap costs what the plane it saves does: repeats never win.
        #expect(chosen.count >= (experts == 2 ? 2 : 3), "E \(experts): only \(chosen) chosen")
    }

    /// Every keep mask on random pairs of words: in each, the kept bytes in order at the bottom, zeros above;
    /// and the table's bit counts.
    @Test func compactionKeepsTheMaskedBytesInOrder() {
        var random = SplitMix64(seed: 11)
        let tables = KernelTables.shared
        for keep in 0..<256 {
            #expect(tables.setBits(UInt64(keep)) == keep.nonzeroBitCount)
            for _ in 0..<8 {
                // Both halves of the register, each on its own.
                let x = SIMD2(random.next(), random.next())
                var expected = SIMD2<UInt64>(), kept: UInt64 = 0
                for i in 0..<8 where keep >> i & 1 == 1 {
                    expected |= (x &>> UInt64(8 * i) & 0xFF) &<< (8 * kept)
                    kept += 1
                }
                #expect(tables.compact(x, keep: UInt64(keep)) == expected, "keep \(keep), x \(x)")
            }
        }
    }

    /// The two-group kernels give each lane what the one-group kernels give its word: the
    /// nontrivial planes (ids below 2^width, as the gathers ensure), the repeat flags against the
    /// row before, and the bit counts of both; on random groups, groups of one value and runs.
    @Test func groupPairsMatchTheWordKernels() {
        var random = SplitMix64(seed: 23)
        for width in 1...8 {
            let mask: UInt64 = (1 << UInt64(width)) - 1
            func group() -> UInt64 {
                var x: UInt64 = 0, current = random.next() & mask
                let kind = random.next() % 3
                for i in 0..<8 {
                    if kind == 0 || (kind == 2 && random.next() % 3 == 0) { current = random.next() & mask }
                    x |= current << UInt64(8 * i)
                }
                return x
            }
            for _ in 0..<500 {
                let a = group(), b = group(), c = group(), d = group()
                let beforeA = random.next() & mask, beforeB = random.next() % 2 == 0 ? a & 0xFF : random.next() & mask
                let planes = GroupPairs.nontrivialPlanes(GroupPairs.Pair(a, b), GroupPairs.Pair(c, d))
                #expect(planes[0] & 0xFF == ByteGroups.nontrivialPlanes(a, mask: mask))
                #expect(planes[1] & 0xFF == ByteGroups.nontrivialPlanes(b, mask: mask))
                #expect(planes[0] >> 32 & 0xFF == ByteGroups.nontrivialPlanes(c, mask: mask))
                #expect(planes[1] >> 32 & 0xFF == ByteGroups.nontrivialPlanes(d, mask: mask))
                let counts = GroupPairs.halves(GroupPairs.setBits(planes))
                #expect(counts.low == (ByteGroups.nontrivialPlanes(a, mask: mask) | ByteGroups.nontrivialPlanes(b, mask: mask) << 8).nonzeroBitCount)
                #expect(counts.high == (ByteGroups.nontrivialPlanes(c, mask: mask) | ByteGroups.nontrivialPlanes(d, mask: mask) << 8).nonzeroBitCount)
                // The rows before: each group's ids one row later, the row before it first.
                let scan = GroupPairs.scan(GroupPairs.Pair(a, b), before: GroupPairs.Pair(a << 8 | beforeA, b << 8 | beforeB))
                #expect(scan[0] & 0xFF == ByteGroups.nontrivialPlanes(a, mask: mask))
                #expect(scan[1] & 0xFF == ByteGroups.nontrivialPlanes(b, mask: mask))
                #expect(scan[0] >> 32 & 0xFF == ByteGroups.repeatFlags(a, previous: beforeA))
                #expect(scan[1] >> 32 & 0xFF == ByteGroups.repeatFlags(b, previous: beforeB))
            }
        }
    }

    @Test func slotDeltasOfEveryPairOfBytes() {
        for experts in [2, 4, 6, 64, 100, 128, 255, 256] {
            let complement = UInt64(256 - experts)
            for x in 0..<experts {
                for p in stride(from: 0, to: experts, by: max(1, experts / 37)) {
                    // The pair in byte 3, its neighbours chosen to borrow and not.
                    let xs = UInt64(x) << 24 | UInt64(experts - 1) << 16 | 0
                    let ps = UInt64(p) << 24 | 0 << 16 | UInt64(experts - 1)
                    var results = [ByteGroups.slotDeltas(xs, ps, complement: complement)]
                    if experts < 256 && experts.nonzeroBitCount == 1 {
                        results.append(ByteGroups.slotDeltas(xs, ps, low: UInt64(experts - 1) &* ByteGroups.lowBits))
                    }
                    for d in results {
                        #expect((d >> 24) & 0xFF == UInt64((x - p + experts) % experts))
                        #expect((d >> 16) & 0xFF == UInt64(experts - 1))
                        #expect(d & 0xFF == UInt64(1 % experts), "E \(experts): 0 - (E-1) mod E")
                    }
                }
            }
        }
    }

    /// The delta rules' SSE2 form (two groups a register) gives the word form's bytes, and
    /// both the definition's `(x - p) mod experts`.
    @Test func deltaRulesAgreeInBothForms() {
        var random = SplitMix64(seed: 9)
        func check<Rule: ByteDeltaRule>(_ rule: Rule, experts: Int) {
            for _ in 0..<200 {
                let x = SIMD16<UInt8>((0..<16).map { _ in UInt8(random.next() % UInt64(experts)) })
                let p = SIMD16<UInt8>((0..<16).map { _ in UInt8(random.next() % UInt64(experts)) })
                let d = rule.pairs(x, p), words = unsafeBitCast(d, to: SIMD2<UInt64>.self)
                let xw = unsafeBitCast(x, to: SIMD2<UInt64>.self), pw = unsafeBitCast(p, to: SIMD2<UInt64>.self)
                #expect(words[0] == rule.group(xw[0], pw[0]) && words[1] == rule.group(xw[1], pw[1]), "E \(experts)")
                for i in 0..<16 { #expect(Int(d[i]) == (Int(x[i]) - Int(p[i]) + experts) % experts, "E \(experts)") }
            }
        }
        for experts in [2, 4, 64, 128] { check(PowerOfTwoByteDeltas(mask: UInt64(experts - 1)), experts: experts) }
        for experts in [2, 3, 6, 64, 100, 128, 255, 256] { check(ModuloByteDeltas(experts: experts), experts: experts) }
    }

    /// A bad id anywhere (inside an 8x8 tile of the gather, in the columns or rows it leaves)
    /// is reported with its token, layer, slot and value, whatever the input type (a negative
    /// Int8 too, with 256 experts, where it passes the width check).
    @Test(arguments: [100, 128, 256])
    func everyBadIDIsFoundAndNamed(experts: Int) throws {
        // 15 stored columns: 0...5 and 9...17 of each row (layer 2 is dense); only 9...16 form a tile.
        let schema = try Schema(layers: 6, topk: 3, experts: experts, denseLayers: [2])
        let rows = 21, perRow = schema.idsPerRow
        var base = [Int64](repeating: 0, count: rows * perRow)
        for t in 0..<rows { for i in 0..<perRow { base[t * perRow + i] = schema.denseLayers.contains(i / 3) ? 0xFFFF : Int64((t * 7 + i) % min(experts, 128)) } }
        func check<T: ExpertID>(_ type: T.Type, _ values: [Int64]) throws {
            let encoder = BlockEncoder(schema: schema)
            #expect(try encoder.encode(base.map { T(truncatingIfNeeded: $0) }).count > 0)
            expectEveryBadIDNamed(type, encoder: encoder, base: base, rows: [0, 7, 8, 15, 16, 20], values: values)
        }
        let values: [Int64] = [Int64(experts), 127, 128, 255, 256, 65535, 1 << 40, -1, -128]
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
