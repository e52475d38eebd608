/// The encoder's kernels for ids of 9 to 16 bits (257 to 65536 experts): the 8 ids of one column
/// in a group of 8 rows are the 16-bit lanes of two words, rows `8g ..< 8g + 4` in the first and
/// `8g + 4 ..< 8g + 8` in the second, so that one word operation does the work of four. They
/// compute the costs of spec 1.6 exactly as the generic ``ColumnWork`` does, on every group
/// (spec 1.6 samples only columns of ids of at most 8 bits). ``ByteGroups`` is the same for bytes.
/// (Names: `Byte…` for columns of 8-bit ids, `Short…` for 16-bit ones; a *word* is a UInt64.)
enum ShortGroups {
    static let lowBits: UInt64 = 0x0001_0001_0001_0001
    static let highBits: UInt64 = 0x8000_8000_8000_8000
    static let low15Bits: UInt64 = 0x7FFF_7FFF_7FFF_7FFF

    /// The two words of group `g` of a column of 16-bit ids at `column`.
    @inline(__always)
    static func load(_ column: UnsafeRawPointer, group g: Int) -> (low: UInt64, high: UInt64) {
        (column.loadUnaligned(fromByteOffset: g &* 16, as: UInt64.self),
         column.loadUnaligned(fromByteOffset: g &* 16 &+ 8, as: UInt64.self))
    }

    /// Bit positions below `width` (set in `mask`) where the 8 ids of a group do not all agree:
    /// the plane bytes of the group that are neither 0x00 nor 0xFF, as a mask of up to 16 bits.
    @inline(__always)
    static func nontrivialPlanes(_ low: UInt64, _ high: UInt64, mask: UInt64) -> UInt64 {
        // The bits where some id differs from id 0: an OR over the lanes of both words ^ id 0.
        let first = (low & 0xFFFF) &* lowBits
        var y = (low ^ first) | (high ^ first)
        y |= y >> 32
        y |= y >> 16
        return y & mask
    }

    /// `(x - p) mod experts` in every 16-bit lane, for lanes below `experts` (at most 65536).
    /// `complement` is `65536 - experts`. ``ByteGroups/slotDeltas(_:_:complement:)`` for lanes of 16 bits.
    @inline(__always)
    static func slotDeltas(_ x: UInt64, _ p: UInt64, complement: UInt64) -> UInt64 {
        // Lanewise x - p mod 65536, without borrows between lanes.
        let equalBits = ~(x ^ p)
        let difference = ((x | highBits) &- (p & ~highBits)) ^ (equalBits & highBits)
        // A lane borrowed (x < p) when its top bit's full subtractor borrows out.
        let borrowed = (((~x & p) | (equalBits & difference)) & highBits) >> 15
        // There the difference is x - p + 65536; x - p + experts is that minus 65536 - experts,
        // which cannot borrow into the next lane.
        return difference &- borrowed &* complement
    }

    /// ``slotDeltas(_:_:complement:)`` when `experts` is `2^width` and `width < 16`:
    /// `(x - p) mod 2^width` is `x + 32768 - p` (which borrows from no other lane) cut to the
    /// low `width` bits of each lane, `low` in every lane.
    @inline(__always)
    static func slotDeltas(_ x: UInt64, _ p: UInt64, low: UInt64) -> UInt64 {
        ((x | highBits) &- p) & low
    }

    /// Flags of the 4 rows of `x` whose id equals the row before (bit `i` for lane `i`);
    /// `previous` is the id of the row before lane 0.
    @inline(__always)
    static func repeatFlags(_ x: UInt64, previous: UInt64) -> UInt64 {
        let y = x ^ ((x << 16) | previous)
        // 0x8000 in exactly the lanes of y that are zero.
        let zero = ~(((y & low15Bits) &+ low15Bits) | y | low15Bits)
        // Bit 15 of lane i lands on bit 48 + i, every other product term below bit 48.
        return ((zero >> 15) &* 0x0001_0002_0004_0008) >> 48
    }
}

/// ``ShortGroups`` kernels on two groups at once, in SSE2 registers: a group's 8 ids of 16 bits
/// fill one register (`SIMD8<UInt16>`), so one vector operation does the work of two scalar
/// ones on its two words. ``GroupPairs`` is the same for groups of bytes: as there, a group's
/// plane bytes that are neither 0x00 nor 0xFF are the bits where some id differs from the one
/// before it in the group.
enum ShortPairs {
    typealias Lanes = SIMD8<UInt16>
    typealias Pair = SIMD2<UInt64>

    /// Every lane but lane 0: the neighbour difference of a group's first row compares it with
    /// another group's row, or with nothing. (Computed, not stored: see ``GroupPairs``.)
    private static var allButFirst: Lanes { Lanes(0, ~0, ~0, ~0, ~0, ~0, ~0, ~0) }
    /// Bit `i` in lane `i`: turns a lane mask of 0x0000/0xFFFF lanes into its bits.
    private static var laneWeights: Lanes { Lanes(1, 2, 4, 8, 16, 32, 64, 128) }
    private static var low32: Pair { Pair(repeating: 0xFFFF_FFFF) }
    private static var high32: Pair { Pair(repeating: 0xFFFF_FFFF_0000_0000) }

    /// The two groups' registers folded into one: lane `k` of the result is the OR of the two
    /// words of group `k`.
    @inline(__always)
    static func halves(_ a: Lanes, _ b: Lanes) -> Pair {
        let a = unsafeBitCast(a, to: Pair.self), b = unsafeBitCast(b, to: Pair.self)
        return Pair(a[0], b[0]) | Pair(a[1], b[1])
    }

    /// The nontrivial planes of groups `a` and `b` (as ``ShortGroups/nontrivialPlanes(_:_:mask:)``
    /// masks, before the width mask) in bits 0-15 of lanes 0 and 1: the bits set in some id
    /// and clear in another, the OR of the ids less their AND (a broadcast of each group's
    /// first id to XOR with made LLVM take the lanes out one by one).
    @inline(__always)
    static func nontrivialPlanes(_ a: Lanes, _ b: Lanes) -> Pair {
        let a = unsafeBitCast(a, to: Pair.self), b = unsafeBitCast(b, to: Pair.self)
        let low = Pair(a[0], b[0]), high = Pair(a[1], b[1])
        // Folded in 32-bit lanes, the halves of each word swapped by a shuffle (64-bit shifts
        // made LLVM take the words out and fold them in scalar registers, 3 times the instructions).
        typealias Quads = SIMD4<UInt32>
        var or = unsafeBitCast(low | high, to: Quads.self), and = unsafeBitCast(low & high, to: Quads.self)
        or |= Quads(or[1], or[0], or[3], or[2])
        and &= Quads(and[1], and[0], and[3], and[2])
        or |= or &>> 16
        and &= and &>> 16
        return unsafeBitCast(or & ~and, to: Pair.self) & Pair(repeating: 0xFFFF) // (LLVM: fewer instructions with the mask)
    }

    /// For groups `x.0` and `x.1`, each with the ids one row earlier in `before` (the row
    /// before them first): lane `k` holds group `k`'s nontrivial planes (as a
    /// ``ShortGroups/nontrivialPlanes(_:_:mask:)`` mask, before the width mask) in bits 0-15 and
    /// its repeat flags in bits 32-39.
    @inline(__always)
    static func scan(_ x: (Lanes, Lanes), before: (Lanes, Lanes)) -> Pair {
        let d0 = x.0 ^ before.0, d1 = x.1 ^ before.1
        let zero = Lanes()
        let planes = halves(d0 & allButFirst, d1 & allButFirst)
        let flags = halves(unsafeBitCast(d0 .== zero, to: Lanes.self) & laneWeights,
                           unsafeBitCast(d1 .== zero, to: Lanes.self) & laneWeights)
        // The 4 lanes of 16 bits of `planes` ORed into bits 0-15, those of `flags` into 32-47.
        var c = ((planes | planes &>> 32) & low32) | ((flags | flags &<< 32) & high32)
        c |= c &>> 16
        return c
    }
}

/// ``ByteColumnWork`` for ids of 9 to 16 bits, on 16-bit scratch columns, every group costed.
/// Columns are zero-padded to whole groups (the ids and the previous slot's): padding rows give
/// zero slot deltas and are never flagged.
struct ShortColumnWork {
    let count: Int, padded: Int, width: Int, experts: Int
    /// The ``CandidateColumns``.
    let candidates: UnsafeMutablePointer<UInt16>
    let flags: UnsafeMutablePointer<UInt8>
    let tables = KernelTables.shared

    private var groups: Int { padded >> 3 }
    private var mask: UInt64 { (1 << UInt64(width)) - 1 }
    private var deltas: UnsafeMutablePointer<UInt16> { candidates }
    private var compactedDeltas: UnsafeMutablePointer<UInt16> { candidates + padded }
    private var compacted: UnsafeMutablePointer<UInt16> { candidates + 2 * padded + CandidateColumns.spillBytes / 2 }

    /// The rows of the last group that exist (it may be partly padding), a bit per row.
    private var lastValid: UInt64 { count & 7 == 0 ? 0xFF : (1 << UInt64(count & 7)) - 1 }

    /// Set bits of a mask of up to 16 plane positions.
    @inline(__always)
    private func setBits(_ planes: UInt64) -> Int { tables.setBits(planes) &+ tables.setBits(planes >> 8) }

    /// Picks the coding as ``ColumnWork/encode(_:previousSlot:to:)`` does and writes its body.
    /// Returns the coding, the bytes written and their estimated cost (``BitPlanes/estimatedCost``).
    func encode(_ ids: UnsafePointer<UInt16>, previousSlot: UnsafePointer<UInt16>?,
                to out: UnsafeMutablePointer<UInt8>) -> (ColumnCoding, Int, Int) {
        let scan = scanIDs(ids)
        var best = ColumnCoding.plain, bestCost = scan.plainCost
        if let previousSlot {
            let cost = fillDeltas(ids, previousSlot)
            if cost < bestCost { (best, bestCost) = (.slotDelta, cost) }
        }
        // Flags cost up to a bit per row: only worth a look when repeats save more than that.
        var kept = count
        if scan.repeats * width * 2 >= count {
            kept = compactRepeats(ids, withDeltas: previousSlot != nil)
            let costs = compactedCosts(kept: kept, withDeltas: previousSlot != nil)
            if scan.flagCost + costs.ids < bestCost { (best, bestCost) = (.repeat, scan.flagCost + costs.ids) }
            if previousSlot != nil && scan.flagCost + costs.deltas < bestCost {
                (best, bestCost) = (.repeatSlotDelta, scan.flagCost + costs.deltas)
            }
        }
        return (best, ColumnBody.write(best, ids: ids, deltas: deltas, flags: flags, compacted: compacted,
                                       compactedDeltas: compactedDeltas, count: count, kept: kept, width: width, to: out), bestCost)
    }

    /// The estimated cost of the ids' planes, the repeat flags (into `flags`), how many rows
    /// they flag and the flag bytes LZ4 cannot remove.
    private func scanIDs(_ ids: UnsafePointer<UInt16>) -> (plainCost: Int, repeats: Int, flagCost: Int) {
        let source = UnsafeRawPointer(ids), mask = mask, tables = tables, flags = flags
        var plainCost = 0, statistics: UInt64 = 0
        @inline(__always) func scan(_ g: Int, before: UInt64) {
            let (low, high) = ShortGroups.load(source, group: g)
            plainCost &+= setBits(ShortGroups.nontrivialPlanes(low, high, mask: mask))
            let f = ShortGroups.repeatFlags(low, previous: before) | ShortGroups.repeatFlags(high, previous: low >> 48) << 4
            flags[g] = UInt8(truncatingIfNeeded: f)
            statistics &+= tables.flagStatistics(f)
        }
        // Two groups at a time (``ShortPairs``); `before` is the ids one row earlier.
        @inline(__always) func lanes(_ offset: Int) -> ShortPairs.Lanes {
            source.loadUnaligned(fromByteOffset: offset, as: ShortPairs.Lanes.self)
        }
        @inline(__always) func scan(_ g: Int, _ h: Int) {
            let s = ShortPairs.scan((lanes(g &* 16), lanes(h &* 16)), before: (lanes(g &* 16 &- 2), lanes(h &* 16 &- 2)))
            let a = s[0], b = s[1]
            plainCost &+= setBits(a & mask) &+ setBits(b & mask)
            flags[g] = UInt8(truncatingIfNeeded: a >> 32)
            flags[h] = UInt8(truncatingIfNeeded: b >> 32)
            statistics &+= tables.flagStatistics(a >> 32) &+ tables.flagStatistics(b >> 32)
        }
        // Row 0 repeats nothing: any other id than its own stands before it.
        scan(0, before: UInt64(ids[0] ^ 1))
        var g = 1
        while g &+ 1 < groups {
            scan(g, g &+ 1)
            g &+= 2
        }
        if g < groups { scan(g, before: UInt64(ids[g &* 8 &- 1])) }
        // Padding rows are never flagged: taken out of the last group's flags.
        if count & 7 != 0 {
            let f = UInt64(flags[groups &- 1]), valid = f & lastValid
            flags[groups &- 1] = UInt8(truncatingIfNeeded: valid)
            statistics = statistics &- tables.flagStatistics(f) &+ tables.flagStatistics(valid)
        }
        return (plainCost, Int(truncatingIfNeeded: statistics & 0xFFFF_FFFF), Int(truncatingIfNeeded: statistics >> 32))
    }

    /// The slot deltas of every group into `deltas`; returns their estimated cost.
    private func fillDeltas(_ ids: UnsafePointer<UInt16>, _ previousSlot: UnsafePointer<UInt16>) -> Int {
        if experts == 1 << width && width < 16 {
            let low = mask &* ShortGroups.lowBits, lowLanes = ShortPairs.Lanes(repeating: UInt16(truncatingIfNeeded: mask))
            return fillDeltas(ids, previousSlot, pairs: { ($0 &- $1) & lowLanes }) { ShortGroups.slotDeltas($0, $1, low: low) }
        }
        let complement = UInt64(65536 &- experts), complementLanes = ShortPairs.Lanes(repeating: UInt16(truncatingIfNeeded: complement))
        // Where x < p the lane difference wrapped by 65536; x - p + experts is 65536 - experts less.
        return fillDeltas(ids, previousSlot, pairs: { x, p in
            (x &- p) &- (unsafeBitCast(x .< p, to: ShortPairs.Lanes.self) & complementLanes)
        }) { ShortGroups.slotDeltas($0, $1, complement: complement) }
    }

    /// `pairs` computes the slot deltas of a group in one SSE2 register, `delta` those of one
    /// word. Two groups at a time (``ShortPairs``), then the last one in words.
    @inline(__always)
    private func fillDeltas(_ ids: UnsafePointer<UInt16>, _ previousSlot: UnsafePointer<UInt16>,
                            pairs: (ShortPairs.Lanes, ShortPairs.Lanes) -> ShortPairs.Lanes,
                            delta: (UInt64, UInt64) -> UInt64) -> Int {
        let source = UnsafeRawPointer(ids), previous = UnsafeRawPointer(previousSlot)
        let out = UnsafeMutableRawPointer(deltas), mask = mask
        @inline(__always) func groupDeltas(_ g: Int) -> ShortPairs.Lanes {
            let d = pairs(source.loadUnaligned(fromByteOffset: g &* 16, as: ShortPairs.Lanes.self),
                          previous.loadUnaligned(fromByteOffset: g &* 16, as: ShortPairs.Lanes.self))
            out.storeBytes(of: d, toByteOffset: g &* 16, as: ShortPairs.Lanes.self)
            return d
        }
        var cost = 0, g = 0
        while g &+ 2 <= groups {
            let planes = ShortPairs.nontrivialPlanes(groupDeltas(g), groupDeltas(g &+ 1))
            cost &+= setBits(planes[0] & mask) &+ setBits(planes[1] & mask)
            g &+= 2
        }
        if g < groups {
            let x = ShortGroups.load(source, group: g), p = ShortGroups.load(previous, group: g)
            let low = delta(x.low, p.low), high = delta(x.high, p.high)
            out.storeBytes(of: low, toByteOffset: g &* 16, as: UInt64.self)
            out.storeBytes(of: high, toByteOffset: g &* 16 &+ 8, as: UInt64.self)
            cost &+= setBits(ShortGroups.nontrivialPlanes(low, high, mask: mask))
        }
        return cost
    }

    /// The ids and (when `withDeltas`) the slot deltas of the rows `flags` does not flag, put
    /// together into `compacted` and `compactedDeltas` and zero-padded to a whole group.
    /// Returns how many rows were kept.
    private func compactRepeats(_ ids: UnsafePointer<UInt16>, withDeltas: Bool) -> Int {
        let source = UnsafeRawPointer(ids), keptIDs = UnsafeMutableRawPointer(compacted)
        let slotDeltas = UnsafeRawPointer(deltas), keptDeltas = UnsafeMutableRawPointer(compactedDeltas)
        let tables = tables, flags = flags, groups = groups
        // Each half's ids and slot deltas share its keep mask: packed together, in one register,
        // stored whole at the next free lane (no lane taken out of it): the 4 lanes due, then 4
        // that the next half overwrites, or that spill past the column after the last (at most
        // 8g + 4 lanes are kept before the high half of group g).
        @inline(__always) func append(_ x: SIMD2<UInt64>, keep: UInt64, at lane: Int, withDeltas: Bool) {
            let packed = tables.compactLanes(x, keep: keep)
            keptIDs.storeBytes(of: packed, toByteOffset: lane &* 2, as: SIMD2<UInt64>.self)
            if withDeltas { keptDeltas.storeBytes(of: SIMD2(packed[1], packed[0]), toByteOffset: lane &* 2, as: SIMD2<UInt64>.self) }
        }
        // One loop with and one without slot deltas (a test and a branch per group less).
        @inline(__always) func pack(withDeltas: Bool) -> Int {
            var kept = 0
            for g in 0..<groups {
                let keep = ~UInt64(flags[g]) & 0xFF, keptLow = tables.setBits(keep & 0xF)
                let x = ShortGroups.load(source, group: g), d = withDeltas ? ShortGroups.load(slotDeltas, group: g) : (low: 0, high: 0)
                append(SIMD2(x.low, d.low), keep: keep, at: kept, withDeltas: withDeltas)
                append(SIMD2(x.high, d.high), keep: keep >> 4, at: kept &+ keptLow, withDeltas: withDeltas)
                kept &+= tables.setBits(keep)
            }
            return kept
        }
        var kept = withDeltas ? pack(withDeltas: true) : pack(withDeltas: false)
        // The padding rows of a partial last group (never flagged) were kept last: drop them.
        if count & 7 != 0 { kept &-= 8 &- count & 7 }
        // Zeros to the end of the last group (within the spill room: kept <= padded).
        keptIDs.storeBytes(of: SIMD2<UInt64>(), toByteOffset: kept &* 2, as: SIMD2<UInt64>.self)
        keptDeltas.storeBytes(of: SIMD2<UInt64>(), toByteOffset: kept &* 2, as: SIMD2<UInt64>.self)
        return kept
    }

    /// The estimated costs of the `kept` compacted ids and (when `withDeltas`) slot deltas.
    private func compactedCosts(kept: Int, withDeltas: Bool) -> (ids: Int, deltas: Int) {
        let ids = UnsafeRawPointer(compacted), deltas = UnsafeRawPointer(compactedDeltas), mask = mask
        var idCost = 0, deltaCost = 0
        for g in 0..<BitPlanes.planeBytes(kept) {
            let x = ShortGroups.load(ids, group: g)
            idCost &+= setBits(ShortGroups.nontrivialPlanes(x.low, x.high, mask: mask))
            if withDeltas {
                let d = ShortGroups.load(deltas, group: g)
                deltaCost &+= setBits(ShortGroups.nontrivialPlanes(d.low, d.high, mask: mask))
            }
        }
        return (idCost, deltaCost)
    }
}

/// Token-major rows into 16-bit columns (ids of 9 to 16 bits), 8 rows x 8 columns at a time:
/// a row's 8 ids are narrowed to the 16-bit lanes of a register, and an 8x8 transpose of those
/// lanes turns 8 rows into 8 column pieces. Ids are checked on the way against `2^width`, the
/// sign of a signed input type and the expert count: see `gather`. ``ByteGather`` is the same
/// for bytes.
struct ShortGather {
    let perRow: Int
    let experts: Int
    /// Each stored column's index inside a row.
    let source: [Int]
    /// Runs of 8 stored columns side by side in a row.
    let tiles: ColumnTiles

    init(schema: Schema) {
        self.init(perRow: schema.idsPerRow, experts: schema.experts, source: schema.storedIndices)
    }

    /// Rows of `perRow` ids holding stored column `c` at index `source[c]`.
    init(perRow: Int, experts: Int, source: [Int]) {
        self.perRow = perRow
        self.experts = experts
        self.source = source
        tiles = ColumnTiles(source: source, width: 8)
    }

    /// Gathers `count` rows of `input` into `cols` (column `c` at `c * padded`, zero-padded).
    /// Returns false if some stored id has a bit at or above `width`, is negative or is not below
    /// `experts`: the caller then finds and reports it.
    func gather<T: ExpertID>(_ input: UnsafePointer<T>, count: Int, padded: Int, width: Int,
                             into cols: UnsafeMutablePointer<UInt16>) -> Bool {
        let raw = UnsafeRawPointer(input), tiledRows = count & ~7
        var clean: Bool
        switch MemoryLayout<T>.size {
        case 1: clean = gatherTiles(raw, lane: UInt8.self, signed: T.isSigned, rows: tiledRows, padded: padded, width: width, into: cols)
        case 2: clean = gatherTiles(raw, lane: UInt16.self, signed: T.isSigned, rows: tiledRows, padded: padded, width: width, into: cols)
        case 4: clean = gatherTiles(raw, lane: UInt32.self, signed: T.isSigned, rows: tiledRows, padded: padded, width: width, into: cols)
        default: clean = gatherTiles(raw, lane: UInt64.self, signed: T.isSigned, rows: tiledRows, padded: padded, width: width, into: cols)
        }
        // What the tiles left: columns outside them, rows after the last whole group.
        clean = tiles.gatherRest(input, perRow: perRow, source: source, tiledRows: tiledRows, count: count,
                                 bitWidth: width, experts: experts, into: cols, stride: padded) && clean
        for c in 0..<source.count { (cols + c &* padded + count).update(repeating: 0, count: padded &- count) }
        // The tiles' check against `experts` holds for ids below 2^15 only: 16-bit ids with
        // fewer than 65536 experts get a separate pass over the columns.
        if clean && width == 16 && experts < 1 << 16 {
            clean = allBelow(experts, UnsafePointer(cols), total: source.count &* padded)
        }
        return clean
    }

    private func gatherTiles<L: FixedWidthInteger & UnsignedInteger & SIMDScalar>(
        _ input: UnsafeRawPointer, lane: L.Type, signed: Bool, rows: Int, padded: Int, width: Int,
        into cols: UnsafeMutablePointer<UInt16>
    ) -> Bool {
        // Bits an id may not have: those at or above `width`, and a signed type's sign bit (an
        // id of a signed type as wide as the ids or narrower would pass the width check negative).
        let sign: L = signed ? 1 << (L.bitWidth - 1) : 0
        let outside = SIMD8<L>(repeating: ~L(truncatingIfNeeded: (UInt64(1) << UInt64(width)) &- 1) | sign)
        var high = SIMD8<L>()
        // The check against `experts`, two operations per 8 ids where a separate pass reloaded
        // every column: an id x below 2^15 plus 2^15 - experts has bit 15 set exactly when
        // x >= experts (`gather` covers 16-bit ids). The bits of every such sum are ORed.
        let bias = SIMD8<UInt16>(repeating: UInt16(truncatingIfNeeded: 0x8000 &- experts))
        var over = SIMD8<UInt16>()
        let rowBytes = perRow &* MemoryLayout<L>.size, out = UnsafeMutableRawPointer(cols), columnBytes = 2 &* padded
        let prefetch = GatherPrefetch(input, rows: rows, rowBytes: rowBytes, tiles: tiles.starts.count)
        for t in stride(from: 0, to: rows, by: 8) {
            var ahead = prefetch.start(at: input + t &* rowBytes)
            for c in tiles.starts {
                prefetch.tile(&ahead)
                let first = input + (t &* perRow &+ source[c]) &* MemoryLayout<L>.size
                @inline(__always) func row(_ r: Int) -> SIMD8<UInt16> {
                    let ids = (first + r &* rowBytes).loadUnaligned(as: SIMD8<L>.self)
                    high |= ids & outside
                    return Self.narrow(ids)
                }
                let columns = Self.transpose((row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7)))
                // On the transposed columns: on the rows, LLVM no longer merged narrowing into the
                // transpose's shuffles (13M more instructions for kimi per 20K rows).
                over |= (columns.0 &+ bias) | (columns.1 &+ bias) | (columns.2 &+ bias) | (columns.3 &+ bias)
                over |= (columns.4 &+ bias) | (columns.5 &+ bias) | (columns.6 &+ bias) | (columns.7 &+ bias)
                let at = out + (c &* padded &+ t) &* 2
                at.storeBytes(of: columns.0, as: SIMD8<UInt16>.self)
                (at + columnBytes).storeBytes(of: columns.1, as: SIMD8<UInt16>.self)
                (at + 2 &* columnBytes).storeBytes(of: columns.2, as: SIMD8<UInt16>.self)
                (at + 3 &* columnBytes).storeBytes(of: columns.3, as: SIMD8<UInt16>.self)
                (at + 4 &* columnBytes).storeBytes(of: columns.4, as: SIMD8<UInt16>.self)
                (at + 5 &* columnBytes).storeBytes(of: columns.5, as: SIMD8<UInt16>.self)
                (at + 6 &* columnBytes).storeBytes(of: columns.6, as: SIMD8<UInt16>.self)
                (at + 7 &* columnBytes).storeBytes(of: columns.7, as: SIMD8<UInt16>.self)
            }
        }
        return high == SIMD8<L>() && (width == 16 || over & SIMD8(repeating: 0x8000) == SIMD8())
    }

    /// The low 16 bits of each lane, spelled lane by lane: LLVM makes a few SSE2 shuffles of it,
    /// where the standard library's `init(truncatingIfNeeded:)` from `SIMD8<UInt32>` stayed a
    /// call per row.
    @inline(__always)
    static func narrow<L: FixedWidthInteger & SIMDScalar>(_ x: SIMD8<L>) -> SIMD8<UInt16> {
        @inline(__always) func lane(_ i: Int) -> UInt16 { UInt16(truncatingIfNeeded: x[i]) }
        return SIMD8(lane(0), lane(1), lane(2), lane(3), lane(4), lane(5), lane(6), lane(7))
    }

    typealias Lanes8 = (SIMD8<UInt16>, SIMD8<UInt16>, SIMD8<UInt16>, SIMD8<UInt16>,
                        SIMD8<UInt16>, SIMD8<UInt16>, SIMD8<UInt16>, SIMD8<UInt16>)

    /// The 8x8 transpose of 16-bit lanes (lane `j` of register `i` becomes lane `i` of register
    /// `j`): three rounds interleaving lanes of 16, 32 then 64 bits of two registers (``Unpack``).
    @inline(__always)
    static func transpose(_ r: Lanes8) -> Lanes8 {
        // Lane j of registers 0 and 1 (2 and 3, ...) side by side: 32-bit lane j % 4 of the low
        // (j < 4) or high result.
        typealias U = Unpack
        let a0 = U.low16(r.0, r.1), a1 = U.high16(r.0, r.1), b0 = U.low16(r.2, r.3), b1 = U.high16(r.2, r.3)
        let c0 = U.low16(r.4, r.5), c1 = U.high16(r.4, r.5), d0 = U.low16(r.6, r.7), d1 = U.high16(r.6, r.7)
        // Lane j of registers 0-3 (4-7): 64-bit lane j % 2.
        let e0 = U.low32(a0, b0), e1 = U.high32(a0, b0), e2 = U.low32(a1, b1), e3 = U.high32(a1, b1)
        let f0 = U.low32(c0, d0), f1 = U.high32(c0, d0), f2 = U.low32(c1, d1), f3 = U.high32(c1, d1)
        return (U.low64(e0, f0), U.high64(e0, f0), U.low64(e1, f1), U.high64(e1, f1),
                U.low64(e2, f2), U.high64(e2, f2), U.low64(e3, f3), U.high64(e3, f3))
    }
}

/// The inverse of ``ShortGather``: 16-bit columns (ids of 9-16 bits) into token-major rows of any
/// id type, 8 rows x 8 columns at a time: each column's 8 rows in one register, the 8x8 transpose
/// of 16-bit lanes (``ShortGather/transpose(_:)``), then each row's 8 ids widened and stored
/// together (kimi: about 1 instruction an id, 4 id by id).
struct ShortScatter {
    let gather: ShortGather
    let dense: DenseRuns

    /// Rows `range` of `cols` (column `c` at `c * padded`) into `out`, `range.count` rows of
    /// `perRow` ids; dense layers get ``Schema/denseFill`` (0).
    func scatter<T: ExpertID>(_ cols: UnsafePointer<UInt16>, padded: Int, range: Range<Int>, into out: UnsafeMutablePointer<T>) {
        let perRow = gather.perRow
        dense.fill(rows: range.count, perRow: perRow, in: out)
        // Tiles start at a multiple of 8 rows of the column, wherever the range starts.
        let first = (range.lowerBound &+ 7) & ~7, tiledEnd = max(first, range.upperBound & ~7)
        if first < tiledEnd {
            let raw = UnsafeMutableRawPointer(out + (first &- range.lowerBound) &* perRow)
            switch MemoryLayout<T>.size { // 16-bit ids never go to 8-bit outputs (`decodeRows` checks)
            case 2: scatterTiles(cols, padded: padded, rows: first..<tiledEnd, lane: UInt16.self, into: raw)
            case 4: scatterTiles(cols, padded: padded, rows: first..<tiledEnd, lane: UInt32.self, into: raw)
            default: scatterTiles(cols, padded: padded, rows: first..<tiledEnd, lane: UInt64.self, into: raw)
            }
        }
        // What the tiles left: columns outside them, and rows before and after the tiled ones.
        gather.tiles.scatterRest(cols, stride: padded, range: range, tiled: first..<tiledEnd, perRow: perRow,
                                 source: gather.source, into: out)
    }

    private func scatterTiles<L: FixedWidthInteger & UnsignedInteger & SIMDScalar>(
        _ cols: UnsafePointer<UInt16>, padded: Int, rows: Range<Int>, lane: L.Type, into out: UnsafeMutableRawPointer
    ) {
        let source = gather.source, input = UnsafeRawPointer(cols)
        let rowBytes = gather.perRow &* MemoryLayout<L>.size, columnBytes = 2 &* padded
        for t in stride(from: rows.lowerBound, to: rows.upperBound, by: 8) {
            let rowOut = out + (t &- rows.lowerBound) &* rowBytes
            for c in gather.tiles.starts {
                let at = input + (c &* padded &+ t) &* 2
                @inline(__always) func column(_ i: Int) -> SIMD8<UInt16> {
                    (at + i &* columnBytes).loadUnaligned(as: SIMD8<UInt16>.self)
                }
                let ids = ShortGather.transpose((column(0), column(1), column(2), column(3),
                                                column(4), column(5), column(6), column(7)))
                let first = rowOut + source[c] &* MemoryLayout<L>.size
                @inline(__always) func store(_ row: SIMD8<UInt16>, _ r: Int) {
                    let to = first + r &* rowBytes
                    switch MemoryLayout<L>.size {
                    case 2:
                        to.storeBytes(of: row, as: SIMD8<UInt16>.self)
                    case 4: // widened by unpacks with zero: `SIMD8<UInt32>(truncatingIfNeeded:)` stayed a call
                        to.storeBytes(of: Unpack.low16(row, SIMD8()), as: SIMD4<UInt32>.self)
                        to.storeBytes(of: Unpack.high16(row, SIMD8()), toByteOffset: 16, as: SIMD4<UInt32>.self)
                    default:
                        to.storeBytes(of: convertLanes(row, to: L.self), as: SIMD8<L>.self)
                    }
                }
                store(ids.0, 0); store(ids.1, 1); store(ids.2, 2); store(ids.3, 3)
                store(ids.4, 4); store(ids.5, 5); store(ids.6, 6); store(ids.7, 7)
            }
        }
    }
}
