/// The encoder's kernels for ids of at most 8 bits (every model up to 256 experts): the 8 ids
/// of one column in a group of 8 rows are the bytes of one word (row `8g + i` is byte `i`), so
/// one word operation does the work of eight. They compute the costs of spec 1.6 exactly as the
/// generic ``ColumnWork`` does (``ByteColumnWork`` looks at a sample of the groups of long
/// columns only).
enum ByteGroups {
    static let lowBits: UInt64 = 0x0101_0101_0101_0101
    static let highBits: UInt64 = 0x8080_8080_8080_8080
    static let low7Bits: UInt64 = 0x7F7F_7F7F_7F7F_7F7F

    /// Bit positions below `width` (set in `mask`) where the 8 ids do not all agree: the plane
    /// bytes of the group that are neither 0x00 nor 0xFF (``BitPlanes/estimatedCost``), as a mask.
    @inline(__always)
    static func nontrivialPlanes(_ x: UInt64, mask: UInt64) -> UInt64 {
        var o = x | (x >> 32), a = x & (x >> 32)
        o |= o >> 16; a &= a >> 16
        o |= o >> 8; a &= a >> 8
        return o & ~a & mask
    }

    /// Set bits of a word, without the POPCNT instruction (not in the x86-64 baseline that
    /// Swift compiles for, so `nonzeroBitCount` costs as much anyway): callers pack eight
    /// byte masks into one word and count them together.
    @inline(__always)
    static func setBits(_ word: UInt64) -> Int {
        var x = word &- ((word >> 1) & 0x5555_5555_5555_5555)
        x = (x & 0x3333_3333_3333_3333) &+ ((x >> 2) & 0x3333_3333_3333_3333)
        x = (x &+ (x >> 4)) & 0x0F0F_0F0F_0F0F_0F0F
        return Int((x &* lowBits) >> 56)
    }

    /// `(x - p) mod experts` in every byte, for bytes below `experts` (at most 256).
    /// `complement` is `256 - experts`.
    @inline(__always)
    static func slotDeltas(_ x: UInt64, _ p: UInt64, complement: UInt64) -> UInt64 {
        // Bytewise x - p mod 256, without borrows between bytes.
        let equalBits = ~(x ^ p)
        let difference = ((x | highBits) &- (p & ~highBits)) ^ (equalBits & highBits)
        // A byte borrowed (x < p) when its top bit's full subtractor borrows out.
        let borrowed = (((~x & p) | (equalBits & difference)) & highBits) >> 7
        // There the difference is x - p + 256; x - p + experts is that minus 256 - experts,
        // which cannot borrow into the next byte.
        return difference &- borrowed &* complement
    }

    /// Flags of the rows whose id equals the row before (bit `i` for byte `i`); `previous` is
    /// the id of the row before byte 0 (any other value than byte 0's for row 0).
    @inline(__always)
    static func repeatFlags(_ x: UInt64, previous: UInt64) -> UInt64 {
        let y = x ^ ((x << 8) | previous)
        // 0x80 in exactly the bytes of y that are zero.
        let zero = ~(((y & low7Bits) &+ low7Bits) | y | low7Bits)
        // Gathers the 8 top bits into the top byte.
        return ((zero >> 7) &* 0x0102_0408_1020_4080) >> 56
    }

    /// Bytes of a bitmap that are neither 0x00 nor 0xFF.
    static func nontrivialBytes(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> Int {
        var n = 0
        for i in 0..<count { n &+= bytes[i] &+ 1 > 1 ? 1 : 0 }
        return n
    }

    /// ``BitPlanes/estimatedCost`` of `count` ids (zero-padded to whole groups).
    static func estimatedCost(_ values: UnsafePointer<UInt8>, count: Int, width: Int) -> Int {
        let mask: UInt64 = (1 << UInt64(width)) - 1, raw = UnsafeRawPointer(values)
        var cost = PlaneCost()
        for g in 0..<BitPlanes.planeBytes(count) {
            cost.add(nontrivialPlanes(raw.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self), mask: mask), group: g)
        }
        return cost.total
    }
}

/// Sums the set bits of byte masks, one per group: eight masks are packed into a word and
/// counted at once.
struct PlaneCost {
    private var counted = 0, packed: UInt64 = 0

    /// Adds the mask of group `group` (groups are added in order 0, 1, 2, ...).
    @inline(__always)
    mutating func add(_ mask: UInt64, group: Int) {
        packed |= mask << UInt64((group & 7) << 3)
        if group & 7 == 7 {
            counted &+= ByteGroups.setBits(packed)
            packed = 0
        }
    }

    var total: Int { counted + ByteGroups.setBits(packed) }
}

/// ``ColumnWork`` for ids of at most 8 bits. A column of ``samplingGroups`` groups of 8 rows
/// or more chooses its coding on every `step`th group only, `step = min(4, groups / 16)`
/// (spec 1.6): at least 16 groups are looked at, and the choice takes up to a quarter of the work.
struct ByteColumnWork {
    /// Columns with at least this many groups choose on a sample.
    static let samplingGroups = 32

    /// Every how many groups a column of `groups` groups is sampled.
    static func samplingStep(groups: Int) -> Int { groups < samplingGroups ? 1 : min(4, groups / 16) }

    let count: Int, padded: Int, width: Int, experts: Int
    /// Three scratch columns: slot deltas, compacted ids, compacted slot deltas.
    let candidates: UnsafeMutablePointer<UInt8>
    let flags: UnsafeMutablePointer<UInt8>

    private var groups: Int { padded >> 3 }
    private var mask: UInt64 { (1 << UInt64(width)) - 1 }
    private var complement: UInt64 { UInt64(256 - experts) }
    private var deltas: UnsafeMutablePointer<UInt8> { candidates }
    private var compacted: UnsafeMutablePointer<UInt8> { candidates + padded }
    private var compactedDeltas: UnsafeMutablePointer<UInt8> { candidates + 2 * padded }

    /// Rows of group `g` that exist (the last group may be partly padding): a bit per row.
    @inline(__always)
    private func validRows(_ g: Int) -> UInt64 {
        g == groups &- 1 && count & 7 != 0 ? (1 << UInt64(count & 7)) - 1 : 0xFF
    }

    /// Picks the coding (as ``ColumnWork/encode(_:previousSlot:to:)`` does, on a sample of
    /// the groups for long columns) and writes its body. Returns the coding, the bytes written
    /// and their estimated cost (``BitPlanes/estimatedCost``, scaled up from the sample).
    func encode(_ ids: UnsafePointer<UInt8>, previousSlot: UnsafePointer<UInt8>?,
                to out: UnsafeMutablePointer<UInt8>) -> (ColumnCoding, Int, Int) {
        let step = Self.samplingStep(groups: groups)
        let choice = choose(ids, previousSlot: previousSlot, step: step)
        let cost = choice.cost * groups / choice.sampledGroups
        switch choice.coding {
        case .plain:
            return (.plain, BitPlanes.store(ids, count: count, width: width, to: out), cost)
        case .slotDelta:
            if step > 1 { fillDeltas(ids, previousSlot!) }
            return (.slotDelta, BitPlanes.store(UnsafePointer(deltas), count: count, width: width, to: out), cost)
        case .repeat, .repeatSlotDelta:
            var kept = choice.kept
            let values = choice.coding == .repeat ? compacted : compactedDeltas
            if step > 1 {
                fillFlags(ids)
                if choice.coding == .repeat {
                    kept = compact(ids, into: values)
                } else {
                    fillDeltas(ids, previousSlot!)
                    kept = compact(UnsafePointer(deltas), into: values)
                }
            }
            out.update(from: flags, count: groups)
            return (choice.coding, groups + BitPlanes.store(UnsafePointer(values), count: kept, width: width, to: out + groups), cost)
        case .constant:
            preconditionFailure("constant columns are chosen before ColumnWork")
        }
    }

    /// The estimated costs of every coding on groups `0, step, 2 step, ...`, and the cheapest.
    /// With `step` 1 it leaves the chosen body's inputs complete: the slot deltas, the flags,
    /// and the compacted ids and slot deltas (`kept` of them).
    private func choose(_ ids: UnsafePointer<UInt8>, previousSlot: UnsafePointer<UInt8>?, step: Int)
        -> (coding: ColumnCoding, cost: Int, sampledGroups: Int, kept: Int) {
        let source = UnsafeRawPointer(ids), mask = mask, complement = complement
        let deltaBytes = UnsafeMutableRawPointer(deltas)
        let keptIDs = UnsafeMutableRawPointer(compacted), keptDeltas = UnsafeMutableRawPointer(compactedDeltas)
        var plainCost = PlaneCost(), deltaCost = PlaneCost(), repeats = PlaneCost()
        var sampled = 0, sampledRows = 0, flagCost = 0, kept = 0
        for g in stride(from: 0, to: groups, by: step) {
            let x = source.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self)
            plainCost.add(ByteGroups.nontrivialPlanes(x, mask: mask), group: sampled)
            var d: UInt64 = 0
            if let previousSlot {
                let p = UnsafeRawPointer(previousSlot).loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self)
                d = ByteGroups.slotDeltas(x, p, complement: complement)
                deltaBytes.storeBytes(of: d, toByteOffset: g &* 8, as: UInt64.self)
                deltaCost.add(ByteGroups.nontrivialPlanes(d, mask: mask), group: sampled)
            }
            // Row 0 repeats nothing; padding rows are never flagged.
            let before = g == 0 ? UInt64(x & 0xFF) ^ 1 : UInt64(ids[g &* 8 &- 1])
            let valid = validRows(g)
            let f = ByteGroups.repeatFlags(x, previous: before) & valid
            flags[g] = UInt8(truncatingIfNeeded: f)
            repeats.add(f, group: sampled)
            flagCost &+= f != 0 && f != 0xFF ? 1 : 0
            let keep = ~f & valid
            _ = Self.append(x, keep: keep, to: keptIDs, at: kept)
            kept = Self.append(d, keep: keep, to: keptDeltas, at: kept)
            sampled &+= 1
            sampledRows &+= valid == 0xFF ? 8 : count & 7
        }
        var best = ColumnCoding.plain, bestCost = plainCost.total
        if previousSlot != nil && deltaCost.total < bestCost { (best, bestCost) = (.slotDelta, deltaCost.total) }
        // Flags cost up to a bit per row: only worth a look when repeats save more than that.
        if repeats.total * width * 2 >= sampledRows {
            for t in kept..<((kept + 7) & ~7) {
                compacted[t] = 0
                compactedDeltas[t] = 0
            }
            let cost = flagCost + ByteGroups.estimatedCost(compacted, count: kept, width: width)
            if cost < bestCost { (best, bestCost) = (.repeat, cost) }
            if previousSlot != nil {
                let cost = flagCost + ByteGroups.estimatedCost(compactedDeltas, count: kept, width: width)
                if cost < bestCost { (best, bestCost) = (.repeatSlotDelta, cost) }
            }
        }
        return (best, bestCost, sampled, kept)
    }

    /// Appends the bytes of `x` whose bit is set in `keep` at `out + kept`; returns the new
    /// count. Writes up to 8 bytes from `out + kept`: `kept` must be at most 8 less than the
    /// column's padded length (it is at most `8g` for group `g`).
    @inline(__always)
    private static func append(_ x: UInt64, keep: UInt64, to out: UnsafeMutableRawPointer, at kept: Int) -> Int {
        if keep == 0xFF {
            out.storeBytes(of: x, toByteOffset: kept, as: UInt64.self)
            return kept &+ 8
        }
        // Every byte is stored; a dropped one is overwritten by the next kept one.
        var bits = keep, xs = x, at = kept
        for _ in 0..<8 {
            out.storeBytes(of: UInt8(truncatingIfNeeded: xs), toByteOffset: at, as: UInt8.self)
            at &+= Int(bits & 1)
            bits >>= 1
            xs >>= 8
        }
        return at
    }

    /// The slot deltas of every group.
    private func fillDeltas(_ ids: UnsafePointer<UInt8>, _ previousSlot: UnsafePointer<UInt8>) {
        let source = UnsafeRawPointer(ids), previous = UnsafeRawPointer(previousSlot)
        let out = UnsafeMutableRawPointer(deltas), complement = complement
        for g in 0..<groups {
            let d = ByteGroups.slotDeltas(source.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self),
                                          previous.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self), complement: complement)
            out.storeBytes(of: d, toByteOffset: g &* 8, as: UInt64.self)
        }
    }

    /// The repeat flags of every group.
    private func fillFlags(_ ids: UnsafePointer<UInt8>) {
        let source = UnsafeRawPointer(ids)
        var before = UInt64(ids[0] ^ 1)
        for g in 0..<groups {
            let x = source.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self)
            flags[g] = UInt8(truncatingIfNeeded: ByteGroups.repeatFlags(x, previous: before) & validRows(g))
            before = x >> 56
        }
    }

    /// The values of the rows not flagged in `flags`, zero-padded to a whole group. Returns
    /// how many were kept.
    private func compact(_ values: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<UInt8>) -> Int {
        let source = UnsafeRawPointer(values), raw = UnsafeMutableRawPointer(out)
        var kept = 0
        for g in 0..<groups {
            kept = Self.append(source.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self),
                               keep: ~UInt64(flags[g]) & validRows(g), to: raw, at: kept)
        }
        for t in kept..<((kept + 7) & ~7) { out[t] = 0 }
        return kept
    }
}

/// Token-major rows into byte columns (ids of at most 8 bits), 8 rows x 8 columns at a time:
/// a row's 8 ids are narrowed to the 8 bytes of a word, and an 8x8 byte transpose turns 8 such
/// words into 8 column words. Ids are checked on the way against `2^width`: see `check`.
struct ByteGather {
    let perRow: Int
    /// Each stored column's index inside a row.
    let source: [Int]
    /// Runs of 8 stored columns side by side in a row.
    let tiles: ColumnTiles

    init(schema: Schema) {
        perRow = schema.idsPerRow
        source = schema.storedIndices
        tiles = ColumnTiles(source: source, width: 8)
    }

    /// Gathers `count` rows of `input` into `cols` (column `c` at `c * padded`, zero-padded).
    /// Returns false if some stored id has a bit at or above `width` (a negative id included):
    /// the caller then finds and reports it.
    func gather<T: ExpertID>(_ input: UnsafePointer<T>, count: Int, padded: Int, width: Int,
                             into cols: UnsafeMutablePointer<UInt8>) -> Bool {
        let raw = UnsafeRawPointer(input), tiledRows = count & ~7
        var clean: Bool
        switch MemoryLayout<T>.size {
        case 1: clean = gatherTiles(raw, lane: UInt8.self, rows: tiledRows, padded: padded, width: width, into: cols)
        case 2: clean = gatherTiles(raw, lane: UInt16.self, rows: tiledRows, padded: padded, width: width, into: cols)
        case 4: clean = gatherTiles(raw, lane: UInt32.self, rows: tiledRows, padded: padded, width: width, into: cols)
        default: clean = gatherTiles(raw, lane: UInt64.self, rows: tiledRows, padded: padded, width: width, into: cols)
        }
        // What the tiles left: columns outside them, rows after the last whole group.
        clean = tiles.gatherRest(input, perRow: perRow, source: source, tiledRows: tiledRows, count: count,
                                 bitWidth: width, into: cols, stride: padded) && clean
        for c in 0..<source.count { (cols + c &* padded + count).update(repeating: 0, count: padded &- count) }
        return clean
    }

    private func gatherTiles<L: FixedWidthInteger & UnsignedInteger & SIMDScalar>(
        _ input: UnsafeRawPointer, lane: L.Type, rows: Int, padded: Int, width: Int,
        into cols: UnsafeMutablePointer<UInt8>
    ) -> Bool {
        let outside = SIMD8<L>(repeating: ~L(truncatingIfNeeded: (UInt64(1) << UInt64(width)) &- 1))
        var high = SIMD8<L>()
        let rowBytes = perRow &* MemoryLayout<L>.size, out = UnsafeMutableRawPointer(cols)
        for t in stride(from: 0, to: rows, by: 8) {
            for c in tiles.starts {
                let first = input + (t &* perRow &+ source[c]) &* MemoryLayout<L>.size
                @inline(__always) func row(_ r: Int) -> UInt64 {
                    let ids = (first + r &* rowBytes).loadUnaligned(as: SIMD8<L>.self)
                    high |= ids & outside
                    return unsafeBitCast(SIMD8<UInt8>(truncatingIfNeeded: ids), to: UInt64.self)
                }
                var words = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
                transposeBytes(&words)
                let at = c &* padded &+ t
                out.storeBytes(of: words.0, toByteOffset: at, as: UInt64.self)
                out.storeBytes(of: words.1, toByteOffset: at &+ padded, as: UInt64.self)
                out.storeBytes(of: words.2, toByteOffset: at &+ 2 &* padded, as: UInt64.self)
                out.storeBytes(of: words.3, toByteOffset: at &+ 3 &* padded, as: UInt64.self)
                out.storeBytes(of: words.4, toByteOffset: at &+ 4 &* padded, as: UInt64.self)
                out.storeBytes(of: words.5, toByteOffset: at &+ 5 &* padded, as: UInt64.self)
                out.storeBytes(of: words.6, toByteOffset: at &+ 6 &* padded, as: UInt64.self)
                out.storeBytes(of: words.7, toByteOffset: at &+ 7 &* padded, as: UInt64.self)
            }
        }
        return high == SIMD8<L>()
    }
}

/// The inverse of ``ByteGather``: byte columns (ids of at most 8 bits) into token-major rows of
/// any id type, 8 rows x 8 columns at a time: 8 column words, an 8x8 byte transpose, then each
/// row's 8 ids widened and stored together.
struct ByteScatter {
    let gather: ByteGather

    /// Rows `range` of `cols` (column `c` at `c * padded`) into `out`, `range.count` rows of
    /// `perRow` ids; dense layers get ``Schema/denseFill`` (0).
    func scatter<T: ExpertID>(_ cols: UnsafePointer<UInt8>, padded: Int, range: Range<Int>, into out: UnsafeMutablePointer<T>) {
        let perRow = gather.perRow, source = gather.source
        if source.count != perRow { out.update(repeating: T(Schema.denseFill), count: range.count &* perRow) }
        // Tiles start at a multiple of 8 rows of the column, wherever the range starts.
        let first = (range.lowerBound &+ 7) & ~7, tiledEnd = max(first, range.upperBound & ~7)
        let inTile = gather.tiles.covered
        if first < tiledEnd {
            let raw = UnsafeMutableRawPointer(out + (first &- range.lowerBound) &* perRow)
            switch MemoryLayout<T>.size {
            case 1: scatterTiles(cols, padded: padded, rows: first..<tiledEnd, lane: UInt8.self, into: raw)
            case 2: scatterTiles(cols, padded: padded, rows: first..<tiledEnd, lane: UInt16.self, into: raw)
            case 4: scatterTiles(cols, padded: padded, rows: first..<tiledEnd, lane: UInt32.self, into: raw)
            default: scatterTiles(cols, padded: padded, rows: first..<tiledEnd, lane: UInt64.self, into: raw)
            }
        }
        // What the tiles left: columns outside them, and rows before and after the tiled ones.
        for c in 0..<source.count {
            let column = cols + c &* padded, index = source[c]
            @inline(__always) func rows(_ r: Range<Int>) {
                var at = out + ((r.lowerBound &- range.lowerBound) &* perRow &+ index)
                for t in r {
                    at.pointee = T(truncatingIfNeeded: column[t])
                    at += perRow
                }
            }
            if inTile[c] && first < tiledEnd {
                rows(range.lowerBound..<first)
                rows(tiledEnd..<range.upperBound)
            } else {
                rows(range)
            }
        }
    }

    private func scatterTiles<L: FixedWidthInteger & UnsignedInteger & SIMDScalar>(
        _ cols: UnsafePointer<UInt8>, padded: Int, rows: Range<Int>, lane: L.Type, into out: UnsafeMutableRawPointer
    ) {
        let perRow = gather.perRow, source = gather.source, input = UnsafeRawPointer(cols)
        let rowBytes = perRow &* MemoryLayout<L>.size
        for t in stride(from: rows.lowerBound, to: rows.upperBound, by: 8) {
            let rowOut = out + (t &- rows.lowerBound) &* rowBytes
            for c in gather.tiles.starts {
                let at = c &* padded &+ t
                var words = (input.loadUnaligned(fromByteOffset: at, as: UInt64.self),
                             input.loadUnaligned(fromByteOffset: at &+ padded, as: UInt64.self),
                             input.loadUnaligned(fromByteOffset: at &+ 2 &* padded, as: UInt64.self),
                             input.loadUnaligned(fromByteOffset: at &+ 3 &* padded, as: UInt64.self),
                             input.loadUnaligned(fromByteOffset: at &+ 4 &* padded, as: UInt64.self),
                             input.loadUnaligned(fromByteOffset: at &+ 5 &* padded, as: UInt64.self),
                             input.loadUnaligned(fromByteOffset: at &+ 6 &* padded, as: UInt64.self),
                             input.loadUnaligned(fromByteOffset: at &+ 7 &* padded, as: UInt64.self))
                transposeBytes(&words)
                let first = rowOut + source[c] &* MemoryLayout<L>.size
                @inline(__always) func store(_ word: UInt64, _ r: Int) {
                    let ids = SIMD8<L>(truncatingIfNeeded: unsafeBitCast(word, to: SIMD8<UInt8>.self))
                    (first + r &* rowBytes).storeBytes(of: ids, as: SIMD8<L>.self)
                }
                store(words.0, 0); store(words.1, 1); store(words.2, 2); store(words.3, 3)
                store(words.4, 4); store(words.5, 5); store(words.6, 6); store(words.7, 7)
            }
        }
    }
}
