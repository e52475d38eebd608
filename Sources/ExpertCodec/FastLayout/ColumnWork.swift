/// The body of a non-constant layout-1 column (spec 1.5.2), written once its coding is chosen.
enum ColumnBody {
    /// Writes the planes of `ids` (plain) or `deltas` (slot delta), or the flag bitmap then the
    /// planes of the `kept` compacted ids or slot deltas (repeat codings). Returns the bytes written.
    @inline(__always)
    static func write<S: PlaneScalar>(_ coding: ColumnCoding, ids: UnsafePointer<S>, deltas: UnsafePointer<S>,
                                      flags: UnsafePointer<UInt8>, compacted: UnsafePointer<S>, compactedDeltas: UnsafePointer<S>,
                                      count: Int, kept: Int, width: Int, to out: UnsafeMutablePointer<UInt8>) -> Int {
        switch coding {
        case .plain:
            return BitPlanes.store(ids, count: count, width: width, to: out)
        case .slotDelta:
            return BitPlanes.store(deltas, count: count, width: width, to: out)
        case .repeat, .repeatSlotDelta:
            let flagBytes = BitPlanes.planeBytes(count)
            out.update(from: flags, count: flagBytes)
            let values = coding == .repeat ? compacted : compactedDeltas
            return flagBytes + BitPlanes.store(values, count: kept, width: width, to: out + flagBytes)
        case .constant:
            preconditionFailure("constant columns are chosen before their bodies are written")
        }
    }
}

/// Chooses and writes the coding of one non-constant column, using per-block scratch.
struct ColumnWork<S: PlaneScalar> {
    let count: Int, padded: Int, width: Int, experts: Int
    /// Three scratch columns: slot deltas, compacted ids, compacted slot deltas.
    let candidates: UnsafeMutablePointer<S>
    let flags: UnsafeMutablePointer<UInt8>

    /// Picks the coding LZ4 will shrink most (by `BitPlanes.estimatedCost`, ties to the simpler
    /// coding) and writes its body. Returns the coding, the bytes written and their estimated cost.
    func encode(_ ids: UnsafePointer<S>, previousSlot: UnsafePointer<S>?,
                to out: UnsafeMutablePointer<UInt8>) -> (ColumnCoding, Int, Int) {
        var best = ColumnCoding.plain
        var bestCost = BitPlanes.estimatedCost(ids, count: count, width: width)
        let deltas = candidates, compacted = candidates + padded, compactedDeltas = candidates + 2 * padded

        // Wrapping arithmetic throughout these loops: no overflow traps, so they vectorize.
        let modulus = S(truncatingIfNeeded: experts) // 0 when experts is 2^bitWidth of S: wraps by itself
        if let previousSlot {
            for t in 0..<count {
                let id = ids[t], base = previousSlot[t], wrapped = id &- base
                deltas[t] = id < base ? wrapped &+ modulus : wrapped
            }
            for t in count..<padded { deltas[t] = 0 }
            let cost = BitPlanes.estimatedCost(UnsafePointer(deltas), count: count, width: width)
            if cost < bestCost { (best, bestCost) = (.slotDelta, cost) }
        }

        let repeats = countRepeats(ids, count: count)
        // Flags cost up to a bit per row: only worth a look when repeats save more than that.
        var kept = count
        if repeats * width * 2 >= count {
            kept = compactRepeats(ids, previousSlot: previousSlot, deltas: deltas,
                                  into: compacted, compactedDeltas: compactedDeltas)
            let flagCost = nontrivialBytes(flags, BitPlanes.planeBytes(count))
            let cost = flagCost + BitPlanes.estimatedCost(UnsafePointer(compacted), count: kept, width: width)
            if cost < bestCost { (best, bestCost) = (.repeat, cost) }
            if previousSlot != nil {
                let cost = flagCost + BitPlanes.estimatedCost(UnsafePointer(compactedDeltas), count: kept, width: width)
                if cost < bestCost { (best, bestCost) = (.repeatSlotDelta, cost) }
            }
        }

        return (best, ColumnBody.write(best, ids: ids, deltas: deltas, flags: flags, compacted: compacted,
                                       compactedDeltas: compactedDeltas, count: count, kept: kept, width: width, to: out), bestCost)
    }

    /// Fills `flags` (bit t: row t repeats row t-1) and the ids (and slot deltas) of the other
    /// rows, zero-padded to a multiple of 8. Returns how many rows were kept.
    private func compactRepeats(_ ids: UnsafePointer<S>, previousSlot: UnsafePointer<S>?,
                                deltas: UnsafePointer<S>, into compacted: UnsafeMutablePointer<S>,
                                compactedDeltas: UnsafeMutablePointer<S>) -> Int {
        var kept = 0
        for group in 0..<(padded >> 3) {
            var bits: UInt8 = 0
            for i in 0..<8 {
                let t = group &* 8 &+ i
                let repeated = t > 0 && t < count && ids[t] == ids[t &- 1]
                bits |= (repeated ? 1 : 0) << UInt8(i)
                compacted[kept] = ids[t]
                compactedDeltas[kept] = deltas[t]
                kept &+= repeated || t >= count ? 0 : 1
            }
            flags[group] = bits
        }
        for t in kept..<((kept + 7) & ~7) {
            compacted[t] = 0
            compactedDeltas[t] = 0
        }
        return kept
    }

    /// Bytes that are neither 0x00 nor 0xFF: what LZ4 cannot remove from a bitmap.
    private func nontrivialBytes(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> Int {
        var n = 0
        for i in 0..<count where bytes[i] != 0 && bytes[i] != 0xFF { n += 1 }
        return n
    }
}
