@testable import ExpertCodec

/// Spec 1.6 written from its text, one id at a time: the coding the reference encoder picks for
/// a non-constant column, its estimated cost (a sampled column's scaled up to the column), and
/// the body it writes (1.5.5). The word kernels are checked against it.
enum SpecColumnChoice {
    /// `w` planes of `values` (1.5.3), padding bits 0.
    static func planes(_ values: [Int], width: Int) -> [UInt8] {
        let stride = (values.count + 7) / 8
        var out = [UInt8](repeating: 0, count: width * stride)
        for (i, v) in values.enumerated() {
            for b in 0..<width where v >> b & 1 == 1 { out[b * stride + i / 8] |= 1 << (i % 8) }
        }
        return out
    }

    /// Plane bytes neither 0x00 nor 0xFF: for each group of 8 values (missing ones count as 0),
    /// the bit positions below `width` where they do not all agree.
    static func cost(_ values: [Int], width: Int) -> Int {
        var total = 0
        for start in stride(from: 0, to: values.count, by: 8) {
            let group = (start..<start + 8).map { $0 < values.count ? values[$0] : 0 }
            for b in 0..<width where Set(group.map { $0 >> b & 1 }).count > 1 { total += 1 }
        }
        return total
    }

    static func choose(ids: [Int], previous: [Int]?, experts: Int, width: Int) -> (coding: ColumnCoding, cost: Int, body: [UInt8]) {
        let n = ids.count, groups = (n + 7) / 8
        let step = width <= 8 && groups >= 32 ? min(4, groups / 16) : 1
        let sampled = Array(stride(from: 0, to: groups, by: step))
        let rows = sampled.flatMap { g in (8 * g..<min(n, 8 * g + 8)) }
        let deltas = previous.map { p in (0..<n).map { (ids[$0] - p[$0] + experts) % experts } }
        let flagged = (0..<n).map { $0 > 0 && ids[$0] == ids[$0 - 1] }

        // Costs over the sampled groups only, as if they alone made the column.
        func sampleCost(_ values: [Int]) -> Int { cost(rows.map { values[$0] }, width: width) }
        var candidates: [(ColumnCoding, Int)] = [(.plain, sampleCost(ids))]
        if let deltas { candidates.append((.slotDelta, sampleCost(deltas))) }
        let repeats = rows.filter { flagged[$0] }.count
        if repeats * width * 2 >= rows.count {
            var flagCost = 0
            for g in sampled {
                var byte = 0
                for t in 8 * g..<min(n, 8 * g + 8) where flagged[t] { byte |= 1 << (t - 8 * g) }
                flagCost += byte != 0 && byte != 0xFF ? 1 : 0
            }
            let kept = rows.filter { !flagged[$0] }
            candidates.append((.repeat, flagCost + cost(kept.map { ids[$0] }, width: width)))
            if let deltas { candidates.append((.repeatSlotDelta, flagCost + cost(kept.map { deltas[$0] }, width: width))) }
        }
        // The cheapest; on equal costs the first (simplest) of the order above.
        let (coding, sampleCost) = candidates.min { $0.1 < $1.1 }!

        let kept = (0..<n).filter { !flagged[$0] }
        let body: [UInt8]
        switch coding {
        case .plain: body = planes(ids, width: width)
        case .slotDelta: body = planes(deltas!, width: width)
        case .repeat: body = planes(flagged.map { $0 ? 1 : 0 }, width: 1) + planes(kept.map { ids[$0] }, width: width)
        default: body = planes(flagged.map { $0 ? 1 : 0 }, width: 1) + planes(kept.map { deltas![$0] }, width: width)
        }
        return (coding, sampleCost * groups / sampled.count, body)
    }
}
