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
        // The bits where some id differs from id 0: an OR over the bytes of x ^ (id 0 in every byte).
        var y = x ^ ((x & 0xFF) &* lowBits)
        y |= y >> 32
        y |= y >> 16
        y |= y >> 8
        return y & mask
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

    /// ``slotDeltas(_:_:complement:)`` when `experts` is `2^width` and `width < 8`:
    /// `(x - p) mod 2^width` is `x + 128 - p` (which borrows from no other byte) cut to the
    /// low `width` bits of each byte, `low` in every byte.
    @inline(__always)
    static func slotDeltas(_ x: UInt64, _ p: UInt64, low: UInt64) -> UInt64 {
        ((x | highBits) &- p) & low
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

    /// Whether a bitmap byte (`0...255`) is neither 0x00 nor 0xFF: what LZ4 cannot remove.
    @inline(__always)
    static func isNontrivial(_ byte: UInt64) -> Bool { (byte &+ 1) & 0xFF > 1 }
}

/// ``ByteGroups`` kernels on two groups at once: the two 64-bit lanes of an SSE2 register
/// (`SIMD2<UInt64>`, shifts per lane) each hold the 8 ids of one group, so one vector
/// operation does the work of two scalar ones. A group's plane bytes that are neither 0x00
/// nor 0xFF are the bits where some id differs from the one before it in the group: the OR
/// of the 7 neighbour differences, which two lanes fold together.
enum GroupPairs {
    typealias Pair = SIMD2<UInt64>

    /// Every byte but byte 0 of each lane: the neighbour difference of a group's first row
    /// compares it with another group's row, or with nothing.
    /// (Computed, not stored: a stored static is read through a `swift_once` check.)
    private static var allButFirst: Pair { Pair(repeating: ~0xFF) }
    /// Bit `i` in byte `i` of each lane: turns a lane of 0x00/0xFF bytes into its byte mask.
    private static var byteWeights: Pair { Pair(repeating: 0x8040_2010_0804_0201) }
    private static var low32: Pair { Pair(repeating: 0xFFFF_FFFF) }
    private static var high32: Pair { Pair(repeating: 0xFFFF_FFFF_0000_0000) }

    /// `low`'s 8 bytes ORed together into byte 0 of each lane, `high`'s into byte 4 (the
    /// other bytes hold leftovers): the 4 folds two lanes share.
    @inline(__always)
    static func fold(low: Pair, high: Pair) -> Pair {
        var c = ((low | low &>> 32) & low32) | ((high | high &<< 32) & high32)
        c |= c &>> 16
        c |= c &>> 8
        return c
    }

    /// For each lane of `x`, its rows' repeat flags (a row repeats the byte of `before` in
    /// the same place: the row before it) in byte 4, and the nontrivial plane bytes of the
    /// group, as a ``ByteGroups/nontrivialPlanes(_:mask:)`` mask, in byte 0.
    @inline(__always)
    static func scan(_ x: Pair, before: Pair) -> Pair {
        let differences = x ^ before
        let equal = unsafeBitCast(unsafeBitCast(differences, to: SIMD16<UInt8>.self) .== SIMD16<UInt8>(), to: Pair.self)
        return fold(low: differences & allButFirst, high: equal & byteWeights)
    }

    /// The nontrivial plane bytes (``ByteGroups/nontrivialPlanes(_:mask:)``) of the 4 groups in
    /// the lanes of `a` and `b`, as masks in bytes 0 (`a`) and 4 (`b`) of each lane.
    @inline(__always)
    static func nontrivialPlanes(_ a: Pair, _ b: Pair) -> Pair {
        fold(low: (a ^ a &<< 8) & allButFirst, high: (b ^ b &<< 8) & allButFirst)
    }

    /// The set bits of bytes 0 and 4 of each lane, in the low and high halves of the lanes:
    /// summed over fewer than 2^24 calls, the halves of the two lanes are two counts.
    @inline(__always)
    static func setBits(_ masks: Pair) -> Pair {
        var v = masks & Pair(repeating: 0x0000_00FF_0000_00FF)
        v = v &- ((v &>> 1) & Pair(repeating: 0x5555_5555_5555_5555))
        v = (v & Pair(repeating: 0x3333_3333_3333_3333)) &+ ((v &>> 2) & Pair(repeating: 0x3333_3333_3333_3333))
        return (v &+ v &>> 4) & Pair(repeating: 0x0F0F_0F0F_0F0F_0F0F)
    }

    /// The two halves of `sums` (from ``setBits(_:)``), each added over both lanes.
    @inline(__always)
    static func halves(_ sums: Pair) -> (low: Int, high: Int) {
        let total = sums[0] &+ sums[1]
        return (Int(truncatingIfNeeded: total & 0xFFFF_FFFF), Int(truncatingIfNeeded: total >> 32))
    }

    /// The 8 bytes at `offset` and the 8 at `other` of `base`, as the two lanes.
    @inline(__always)
    static func load(_ base: UnsafeRawPointer, _ offset: Int, _ other: Int) -> Pair {
        Pair(base.loadUnaligned(fromByteOffset: offset, as: UInt64.self), base.loadUnaligned(fromByteOffset: other, as: UInt64.self))
    }
}

/// The scratch columns the column kernels (``ByteColumnWork``, ``ShortColumnWork``) choose in:
/// slot deltas, compacted slot deltas, compacted ids. The compacted ones are each followed by
/// ``spillBytes`` that their whole-register stores may write past the column (and no one reads).
enum CandidateColumns {
    static let spillBytes = 16

    /// Elements of `S` for columns of `padded` rows.
    static func count<S>(padded: Int, of _: S.Type) -> Int { 3 * padded + 2 * spillBytes / MemoryLayout<S>.size }
}

/// How the slot deltas of byte ids wrap, `(x - p) mod experts` in every byte: of two groups
/// in an SSE2 register, or of one group in a word. Types rather than closures: the closures of
/// the SSE2 form stayed calls in the loop (with their registers spilled around them).
protocol ByteDeltaRule {
    func pairs(_ x: SIMD16<UInt8>, _ p: SIMD16<UInt8>) -> SIMD16<UInt8>
    func group(_ x: UInt64, _ p: UInt64) -> UInt64
}

/// `experts` is `2^width`, `width < 8`: the difference cut to the low `width` bits.
struct PowerOfTwoByteDeltas: ByteDeltaRule {
    let low: UInt64, lowBytes: SIMD16<UInt8>

    init(mask: UInt64) {
        low = mask &* ByteGroups.lowBits
        lowBytes = SIMD16(repeating: UInt8(truncatingIfNeeded: mask))
    }

    @inline(__always)
    func pairs(_ x: SIMD16<UInt8>, _ p: SIMD16<UInt8>) -> SIMD16<UInt8> { (x &- p) & lowBytes }

    @inline(__always)
    func group(_ x: UInt64, _ p: UInt64) -> UInt64 { ByteGroups.slotDeltas(x, p, low: low) }
}

/// Any other `experts` (at most 256): where x < p the byte difference wrapped by 256, and
/// x - p + experts is 256 - experts less.
struct ModuloByteDeltas: ByteDeltaRule {
    let complement: UInt64, complementBytes: SIMD16<UInt8>

    init(experts: Int) {
        complement = UInt64(256 &- experts)
        complementBytes = SIMD16(repeating: UInt8(truncatingIfNeeded: complement))
    }

    @inline(__always)
    func pairs(_ x: SIMD16<UInt8>, _ p: SIMD16<UInt8>) -> SIMD16<UInt8> {
        (x &- p) &- (unsafeBitCast(x .< p, to: SIMD16<UInt8>.self) & complementBytes)
    }

    @inline(__always)
    func group(_ x: UInt64, _ p: UInt64) -> UInt64 { ByteGroups.slotDeltas(x, p, complement: complement) }
}

/// ``ColumnWork`` for ids of at most 8 bits. A column of ``samplingGroups`` groups of 8 rows
/// or more chooses its coding on every `step`th group only, `step = min(4, groups / 16)`
/// (spec 1.6): at least 16 groups are looked at, and the choice takes up to a quarter of the work.
///
/// Columns are zero-padded to whole groups (the ids and the previous slot's): padding rows
/// give zero slot deltas and are never flagged.
///
/// The choice makes a few passes over the sampled groups, each with few values live (one pass
/// doing everything kept too many in registers): the ids (plain cost and repeat flags), the slot
/// deltas, then, only when repeats are worth a look, the unflagged ids and slot deltas.
struct ByteColumnWork {
    /// Columns with at least this many groups choose on a sample.
    static let samplingGroups = 32

    /// Every how many groups a column of `groups` groups is sampled.
    static func samplingStep(groups: Int) -> Int { groups < samplingGroups ? 1 : min(4, groups / 16) }

    let count: Int, padded: Int, width: Int, experts: Int
    /// The ``CandidateColumns``.
    let candidates: UnsafeMutablePointer<UInt8>
    let flags: UnsafeMutablePointer<UInt8>
    let tables = KernelTables.shared

    private var groups: Int { padded >> 3 }
    private var mask: UInt64 { (1 << UInt64(width)) - 1 }
    private var deltas: UnsafeMutablePointer<UInt8> { candidates }
    private var compactedDeltas: UnsafeMutablePointer<UInt8> { candidates + padded }
    private var compacted: UnsafeMutablePointer<UInt8> { candidates + 2 * padded + CandidateColumns.spillBytes }

    /// The rows of the last group that exist (it may be partly padding), a bit per row.
    private var lastValid: UInt64 { count & 7 == 0 ? 0xFF : (1 << UInt64(count & 7)) - 1 }

    /// Picks the coding (as ``ColumnWork/encode(_:previousSlot:to:)`` does, on a sample of
    /// the groups for long columns) and writes its body. Returns the coding, the bytes written
    /// and their estimated cost (``BitPlanes/estimatedCost``, scaled up from the sample).
    func encode(_ ids: UnsafePointer<UInt8>, previousSlot: UnsafePointer<UInt8>?,
                to out: UnsafeMutablePointer<UInt8>) -> (ColumnCoding, Int, Int) {
        let step = Self.samplingStep(groups: groups)
        let choice = choose(ids, previousSlot: previousSlot, step: step)
        let cost = step == 1 ? choice.cost : choice.cost * groups / choice.sampledGroups
        switch choice.coding {
        case .plain:
            return (.plain, BitPlanes.store(ids, count: count, width: width, to: out), cost)
        case .slotDelta:
            if step > 1 { fillDeltas(ids, previousSlot!, step: 1) }
            return (.slotDelta, BitPlanes.store(UnsafePointer(deltas), count: count, width: width, to: out), cost)
        case .repeat, .repeatSlotDelta:
            var kept = choice.kept
            let values = choice.coding == .repeat ? compacted : compactedDeltas
            if step > 1 {
                fillFlags(ids)
                if choice.coding == .repeatSlotDelta { fillDeltas(ids, previousSlot!, step: 1) }
                kept = compactRepeats(ids, withDeltas: choice.coding == .repeatSlotDelta, step: 1)
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
        let sampled = step == 1 ? groups : (groups &+ step &- 1) / step
        // Every sampled group has 8 rows but the last group of the column, when it is sampled.
        let lastSampled = (groups &- 1) &- (sampled &- 1) &* step == 0
        let sampledRows = 8 &* sampled &- (lastSampled ? 8 &- tables.setBits(lastValid) : 0)

        let scan = scanIDs(ids, step: step)
        var best = ColumnCoding.plain, bestCost = scan.plainCost
        if let previousSlot {
            let cost = fillDeltas(ids, previousSlot, step: step)
            if cost < bestCost { (best, bestCost) = (.slotDelta, cost) }
        }
        // Flags cost up to a bit per row: only worth a look when repeats save more than that.
        var kept = 0
        if scan.repeats * width * 2 >= sampledRows {
            kept = compactRepeats(ids, withDeltas: previousSlot != nil, step: step)
            let costs = compactedCosts(kept: kept, withDeltas: previousSlot != nil)
            if scan.flagCost + costs.ids < bestCost { (best, bestCost) = (.repeat, scan.flagCost + costs.ids) }
            if previousSlot != nil && scan.flagCost + costs.deltas < bestCost {
                (best, bestCost) = (.repeatSlotDelta, scan.flagCost + costs.deltas)
            }
        }
        return (best, bestCost, sampled, kept)
    }

    /// Over groups `0, step, 2 step, ...`: the estimated cost of the ids' planes, the repeat
    /// flags (into `flags`), how many rows they flag and the flag bytes LZ4 cannot remove.
    private func scanIDs(_ ids: UnsafePointer<UInt8>, step: Int) -> (plainCost: Int, repeats: Int, flagCost: Int) {
        let source = UnsafeRawPointer(ids), mask = mask, tables = tables, flags = flags
        var plainCost = 0, statistics: UInt64 = 0
        @inline(__always) func scan(_ g: Int, before: UInt64) {
            let x = source.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self)
            plainCost &+= tables.setBits(ByteGroups.nontrivialPlanes(x, mask: mask))
            let f = ByteGroups.repeatFlags(x, previous: before)
            flags[g] = UInt8(truncatingIfNeeded: f)
            statistics &+= tables.flagStatistics(f)
        }
        // Two groups at a time; `before` is the ids one row earlier, row 8g - 1 first.
        @inline(__always) func scan(_ g: Int, _ h: Int, _ x: GroupPairs.Pair, before: GroupPairs.Pair) {
            let s = GroupPairs.scan(x, before: before), a = s[0], b = s[1]
            plainCost &+= tables.setBits(a) &+ tables.setBits(b)
            flags[g] = UInt8(truncatingIfNeeded: a >> 32)
            flags[h] = UInt8(truncatingIfNeeded: b >> 32)
            statistics &+= tables.flagStatistics(a >> 32) &+ tables.flagStatistics(b >> 32)
        }
        // Row 0 repeats nothing: any other id than its own stands before it.
        scan(0, before: UInt64(ids[0] ^ 1))
        var g = step
        if step == 1 {
            while g &+ 1 < groups {
                scan(g, g &+ 1, source.loadUnaligned(fromByteOffset: g &* 8, as: GroupPairs.Pair.self),
                     before: source.loadUnaligned(fromByteOffset: g &* 8 &- 1, as: GroupPairs.Pair.self))
                g &+= 2
            }
        } else {
            while g &+ step < groups {
                let h = g &+ step
                scan(g, h, GroupPairs.load(source, g &* 8, h &* 8), before: GroupPairs.load(source, g &* 8 &- 1, h &* 8 &- 1))
                g &+= 2 &* step
            }
        }
        if g < groups {
            scan(g, before: UInt64(ids[g &* 8 &- 1]))
            g &+= step
        }
        // Padding rows are never flagged: taken out of the last group's flags, if it was scanned.
        if count & 7 != 0 && g &- step == groups &- 1 {
            let f = UInt64(flags[g &- step]), valid = f & lastValid
            flags[g &- step] = UInt8(truncatingIfNeeded: valid)
            statistics = statistics &- tables.flagStatistics(f) &+ tables.flagStatistics(valid)
        }
        return (plainCost, Int(truncatingIfNeeded: statistics & 0xFFFF_FFFF), Int(truncatingIfNeeded: statistics >> 32))
    }

    /// The slot deltas of groups `0, step, 2 step, ...` into `deltas`; returns their estimated cost.
    @discardableResult
    private func fillDeltas(_ ids: UnsafePointer<UInt8>, _ previousSlot: UnsafePointer<UInt8>, step: Int) -> Int {
        if experts == 1 << width && width < 8 {
            return fillDeltas(ids, previousSlot, step: step, rule: PowerOfTwoByteDeltas(mask: mask))
        }
        return fillDeltas(ids, previousSlot, step: step, rule: ModuloByteDeltas(experts: experts))
    }

    /// `rule` computes the slot deltas of two groups in one SSE2 register, or of one group in a
    /// word. Every group (`step` 1) goes four at a time, then one at a time.
    @inline(__always)
    private func fillDeltas<Rule: ByteDeltaRule>(_ ids: UnsafePointer<UInt8>, _ previousSlot: UnsafePointer<UInt8>,
                                                 step: Int, rule: Rule) -> Int {
        let source = UnsafeRawPointer(ids), previous = UnsafeRawPointer(previousSlot)
        let out = UnsafeMutableRawPointer(deltas), mask = mask, tables = tables
        var cost = 0, g = 0
        if step == 1 {
            @inline(__always) func deltas(_ g: Int) -> GroupPairs.Pair {
                let d = rule.pairs(source.loadUnaligned(fromByteOffset: g &* 8, as: SIMD16<UInt8>.self),
                                   previous.loadUnaligned(fromByteOffset: g &* 8, as: SIMD16<UInt8>.self))
                out.storeBytes(of: d, toByteOffset: g &* 8, as: SIMD16<UInt8>.self)
                return unsafeBitCast(d, to: GroupPairs.Pair.self)
            }
            var sums = GroupPairs.Pair()
            while g &+ 4 <= groups {
                sums &+= GroupPairs.setBits(GroupPairs.nontrivialPlanes(deltas(g), deltas(g &+ 2)))
                g &+= 4
            }
            let (low, high) = GroupPairs.halves(sums)
            cost = low &+ high
        }
        while g < groups {
            let d = rule.group(source.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self),
                               previous.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self))
            out.storeBytes(of: d, toByteOffset: g &* 8, as: UInt64.self)
            cost &+= tables.setBits(ByteGroups.nontrivialPlanes(d, mask: mask))
            g &+= step
        }
        return cost
    }

    /// The ids and (when `withDeltas`) the slot deltas of groups `0, step, 2 step, ...` whose
    /// rows `flags` does not flag, put together into `compacted` and `compactedDeltas` and
    /// zero-padded to a whole group. Returns how many rows were kept.
    private func compactRepeats(_ ids: UnsafePointer<UInt8>, withDeltas: Bool, step: Int) -> Int {
        let source = UnsafeRawPointer(ids), keptIDs = UnsafeMutableRawPointer(compacted)
        let slotDeltas = UnsafeRawPointer(deltas), keptDeltas = UnsafeMutableRawPointer(compactedDeltas)
        let tables = tables, flags = flags, groups = groups
        // One loop with and one without slot deltas (a test and a branch per group less).
        @inline(__always) func pack(withDeltas: Bool) -> (kept: Int, end: Int) {
            var kept = 0, g = 0
            while g < groups {
                let keep = ~UInt64(flags[g]) & 0xFF
                // The group's ids and slot deltas share the keep mask: packed together, in one register.
                let packed = tables.compact(GroupPairs.Pair(source.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self),
                                                            withDeltas ? slotDeltas.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self) : 0),
                                            keep: keep)
                // The whole register at the next free byte (no lane taken out of it, which costs more
                // than packing): the 8 bytes due, then 8 that the next group overwrites, or that spill
                // past the column after the last (at most 8g values are kept before group g).
                keptIDs.storeBytes(of: packed, toByteOffset: kept, as: GroupPairs.Pair.self)
                if withDeltas { keptDeltas.storeBytes(of: GroupPairs.Pair(packed[1], packed[0]), toByteOffset: kept, as: GroupPairs.Pair.self) }
                kept &+= tables.setBits(keep)
                g &+= step
            }
            return (kept, g)
        }
        var (kept, end) = withDeltas ? pack(withDeltas: true) : pack(withDeltas: false)
        // The padding rows of a partial last group (never flagged) were kept last: drop them.
        if count & 7 != 0 && end &- step == groups &- 1 { kept &-= 8 &- count & 7 }
        // Zeros to the end of the last group (within the spill room: kept <= padded).
        keptIDs.storeBytes(of: 0, toByteOffset: kept, as: UInt64.self)
        keptDeltas.storeBytes(of: 0, toByteOffset: kept, as: UInt64.self)
        return kept
    }

    /// The repeat flags of every group.
    private func fillFlags(_ ids: UnsafePointer<UInt8>) {
        let source = UnsafeRawPointer(ids), last = groups &- 1, lastValid = lastValid
        var before = UInt64(ids[0] ^ 1)
        for g in 0...last {
            let x = source.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self)
            flags[g] = UInt8(truncatingIfNeeded: ByteGroups.repeatFlags(x, previous: before) & (g == last ? lastValid : 0xFF))
            before = x >> 56
        }
    }

    /// The estimated costs of the `kept` compacted ids and (when `withDeltas`) slot deltas.
    private func compactedCosts(kept: Int, withDeltas: Bool) -> (ids: Int, deltas: Int) {
        let ids = UnsafeRawPointer(compacted), deltas = UnsafeRawPointer(compactedDeltas)
        let mask = mask, tables = tables, keptGroups = BitPlanes.planeBytes(kept)
        var sums = GroupPairs.Pair(), g = 0
        @inline(__always) func pair(_ base: UnsafeRawPointer, _ g: Int) -> GroupPairs.Pair {
            base.loadUnaligned(fromByteOffset: g &* 8, as: GroupPairs.Pair.self)
        }
        // Four groups a step: two of ids and two of slot deltas, or four of ids.
        if withDeltas {
            while g &+ 2 <= keptGroups {
                sums &+= GroupPairs.setBits(GroupPairs.nontrivialPlanes(pair(ids, g), pair(deltas, g)))
                g &+= 2
            }
        } else {
            while g &+ 4 <= keptGroups {
                sums &+= GroupPairs.setBits(GroupPairs.nontrivialPlanes(pair(ids, g), pair(ids, g &+ 2)))
                g &+= 4
            }
        }
        let (low, high) = GroupPairs.halves(sums)
        var idCost = withDeltas ? low : low &+ high, deltaCost = withDeltas ? high : 0
        while g < keptGroups {
            idCost &+= tables.setBits(ByteGroups.nontrivialPlanes(ids.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self), mask: mask))
            if withDeltas {
                deltaCost &+= tables.setBits(ByteGroups.nontrivialPlanes(deltas.loadUnaligned(fromByteOffset: g &* 8, as: UInt64.self), mask: mask))
            }
            g &+= 1
        }
        return (idCost, deltaCost)
    }
}

/// Token-major rows into byte columns (ids of at most 8 bits), 8 rows x 8 columns at a time:
/// a row's 8 ids are narrowed to the 8 bytes of a word, and an 8x8 byte transpose (SSE2, two
/// words a register) turns 8 such words into 8 column words. Ids are checked on the way against
/// `2^width`, and against the sign of a signed input type: see `gather`.
struct ByteGather {
    let perRow: Int
    /// Each stored column's index inside a row.
    let source: [Int]
    /// Runs of 8 stored columns side by side in a row.
    let tiles: ColumnTiles

    init(schema: Schema) {
        self.init(perRow: schema.idsPerRow, source: schema.storedIndices)
    }

    /// Rows of `perRow` ids holding stored column `c` at index `source[c]`.
    init(perRow: Int, source: [Int]) {
        self.perRow = perRow
        self.source = source
        tiles = ColumnTiles(source: source, width: 8)
    }

    /// Gathers `count` rows of `input` into `cols` (column `c` at `c * padded`, zero-padded).
    /// Returns false if some stored id has a bit at or above `width` or is negative: the caller
    /// then finds and reports it.
    func gather<T: ExpertID>(_ input: UnsafePointer<T>, count: Int, padded: Int, width: Int,
                             into cols: UnsafeMutablePointer<UInt8>) -> Bool {
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
                                 bitWidth: width, into: cols, stride: padded) && clean
        for c in 0..<source.count { (cols + c &* padded + count).update(repeating: 0, count: padded &- count) }
        return clean
    }

    private func gatherTiles<L: FixedWidthInteger & UnsignedInteger & SIMDScalar>(
        _ input: UnsafeRawPointer, lane: L.Type, signed: Bool, rows: Int, padded: Int, width: Int,
        into cols: UnsafeMutablePointer<UInt8>
    ) -> Bool {
        // Bits an id may not have: those at or above `width`, and a signed type's sign bit (an
        // Int8 id passes the width check of 8-bit ids negative).
        let sign: L = signed ? 1 << (L.bitWidth - 1) : 0
        let outside = SIMD16<L>(repeating: ~L(truncatingIfNeeded: (UInt64(1) << UInt64(width)) &- 1) | sign)
        // Every id gathered, ORed together: checked once at the end.
        var seen = SIMD16<L>()
        let rowBytes = perRow &* MemoryLayout<L>.size, out = UnsafeMutableRawPointer(cols)
        let prefetch = GatherPrefetch(input, rows: rows, rowBytes: rowBytes, tiles: tiles.starts.count)
        for t in stride(from: 0, to: rows, by: 8) {
            var ahead = prefetch.start(at: input + t &* rowBytes)
            for c in tiles.starts {
                prefetch.tile(&ahead)
                let first = input + (t &* perRow &+ source[c]) &* MemoryLayout<L>.size
                // Rows r and r + 1 narrowed into one SSE2 register, as its two words.
                @inline(__always) func rows(_ r: Int) -> SIMD16<UInt8> {
                    let ids = SIMD16(lowHalf: (first + r &* rowBytes).loadUnaligned(as: SIMD8<L>.self),
                                     highHalf: (first + (r &+ 1) &* rowBytes).loadUnaligned(as: SIMD8<L>.self))
                    seen |= ids
                    return SIMD16<UInt8>(truncatingIfNeeded: ids)
                }
                // The SSE2 byte transpose: two columns' 8 rows in each register out.
                let columns = WidePlanes.transposeBytes(rows(0), rows(2), rows(4), rows(6))
                let at = c &* padded &+ t
                @inline(__always) func store(_ pair: SIMD16<UInt8>, _ j: Int) {
                    let words = unsafeBitCast(pair, to: SIMD2<UInt64>.self)
                    out.storeBytes(of: words[0], toByteOffset: at &+ j &* padded, as: UInt64.self)
                    out.storeBytes(of: words[1], toByteOffset: at &+ (j &+ 1) &* padded, as: UInt64.self)
                }
                store(columns.0, 0)
                store(columns.1, 2)
                store(columns.2, 4)
                store(columns.3, 6)
            }
        }
        return seen & outside == SIMD16<L>()
    }
}

/// The inverse of ``ByteGather``: byte columns (ids of at most 8 bits) into token-major rows of
/// any id type, 8 rows x 8 columns at a time: 8 column words, an 8x8 byte transpose (SSE2
/// unpacks, ``WidePlanes/transposeLoadedBytes(_:)``), then each row's 8 ids widened and stored
/// together.
struct ByteScatter {
    let gather: ByteGather
    let dense: DenseRuns

    /// Rows `range` of `cols` (column `c` at `c * padded`) into `out`, `range.count` rows of
    /// `perRow` ids; dense layers get ``Schema/denseFill`` (0).
    func scatter<T: ExpertID>(_ cols: UnsafePointer<UInt8>, padded: Int, range: Range<Int>, into out: UnsafeMutablePointer<T>) {
        let perRow = gather.perRow, source = gather.source
        dense.fill(rows: range.count, perRow: perRow, in: out)
        // Tiles start at a multiple of 8 rows of the column, wherever the range starts.
        let first = (range.lowerBound &+ 7) & ~7, tiledEnd = max(first, range.upperBound & ~7)
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
        gather.tiles.scatterRest(cols, stride: padded, range: range, tiled: first..<tiledEnd, perRow: perRow, source: source, into: out)
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
                // Column i's 8 rows in the low half of a 16-byte load (the high half, the next
                // column's rows or the scratch's slack, is not used); out, rows 2i and 2i + 1.
                @inline(__always) func column(_ i: Int) -> SIMD16<UInt8> {
                    input.loadUnaligned(fromByteOffset: at &+ i &* padded, as: SIMD16<UInt8>.self)
                }
                let rowPairs = WidePlanes.transposeLoadedBytes(column)
                let first = rowOut + source[c] &* MemoryLayout<L>.size
                @inline(__always) func store(_ pair: SIMD16<UInt8>, _ r: Int) {
                    (first + r &* rowBytes).storeBytes(of: convertLanes(pair.lowHalf, to: L.self), as: SIMD8<L>.self)
                    (first + (r &+ 1) &* rowBytes).storeBytes(of: convertLanes(pair.highHalf, to: L.self), as: SIMD8<L>.self)
                }
                store(rowPairs.0, 0); store(rowPairs.1, 2); store(rowPairs.2, 4); store(rowPairs.3, 6)
            }
        }
    }
}
