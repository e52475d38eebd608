import Testing
import ExpertCodec
@_exported import TestSupport
import TraceSynth

/// Seeded generators of rows for the codec's property tests.
enum Fixtures {
    /// A random schema across the whole supported range, biased toward the edges
    /// (1 layer, top-1, 2 experts, powers of two and their neighbours, 65536 experts).
    static func schema(_ random: inout SplitMix64, maxLayers: Int = 400, maxTopk: Int = 32) -> Schema {
        let layers = Bool.random(using: &random) ? Int.random(in: 1...4, using: &random) : Int.random(in: 1...maxLayers, using: &random)
        let topk = Bool.random(using: &random) ? Int.random(in: 1...2, using: &random) : Int.random(in: 1...maxTopk, using: &random)
        let edges = [2, 3, 7, 8, 9, 64, 127, 128, 129, 255, 256, 257, 384, 1000, 4096, 65535, 65536]
        let experts = Bool.random(using: &random) ? edges.randomElement(using: &random)! : Int.random(in: 2...65536, using: &random)
        let dense = layers > 1 && Int.random(in: 0..<4, using: &random) == 0
            ? Array(Set((0..<Int.random(in: 1...layers - 1, using: &random)).map { _ in Int.random(in: 0..<layers, using: &random) }))
            : []
        return try! Schema(layers: layers, topk: topk, experts: experts, denseLayers: dense)
    }

    /// A column that favours each coding in turn (`kind` 0-5): random ids, runs (repeats), ids
    /// close to the previous slot's (slot deltas), both, one value, and the extremes 0 and E - 1.
    static func column<S: FixedWidthInteger>(_ kind: Int, count: Int, experts: Int, previous: [S],
                                             random: inout SplitMix64) -> [S] {
        var ids = [S](repeating: 0, count: count)
        var current = Int(random.next() % UInt64(experts))
        for t in 0..<count {
            switch kind {
            case 0: current = Int(random.next() % UInt64(experts))
            case 1: if random.next() % 4 == 0 { current = Int(random.next() % UInt64(experts)) }
            case 2: current = (Int(previous[t]) + Int(random.next() % 3)) % experts
            case 3: if random.next() % 3 == 0 { current = (Int(previous[t]) + 1) % experts }
            case 4: break
            default: current = random.next() % 2 == 0 ? 0 : experts - 1
            }
            ids[t] = S(current)
        }
        return ids
    }

    /// Rows of one of several characters: realistic, uniform, constant, alternating, sorted slots.
    static func rows(_ schema: Schema, count: Int, _ random: inout SplitMix64) -> [Int64] {
        let kind = Int.random(in: 0..<5, using: &random)
        if kind == 0 {
            var synth = TraceSynthesizer(schema: schema, seed: random.next())
            return synth.rows(count, as: Int64.self)
        }
        var rows = [Int64](repeating: 0, count: count * schema.idsPerRow)
        let e = UInt64(schema.experts)
        let constant = Int64(random.next() % e)
        for t in 0..<count {
            for layer in schema.moeLayers {
                var slots = (0..<schema.topk).map { _ in Int64(random.next() % e) }
                switch kind {
                case 1: break
                case 2: slots = slots.map { _ in constant }
                case 3: slots = slots.indices.map { Int64((t + $0) % 2) * (Int64(e) - 1) }
                default: slots.sort()
                }
                for (slot, id) in slots.enumerated() { rows[t * schema.idsPerRow + layer * schema.topk + slot] = id }
            }
        }
        return rows
    }

    /// The rows a decoder must return: dense layers read as `Schema.denseFill`.
    static func expected(_ rows: [Int64], _ schema: Schema) -> [Int64] {
        guard !schema.denseLayers.isEmpty else { return rows }
        var out = rows
        for i in out.indices where schema.isDense(layer: (i % schema.idsPerRow) / schema.topk) {
            out[i] = Int64(Schema.denseFill)
        }
        return out
    }
}

extension BlockEncoder {
    func encode<T: ExpertID>(converting rows: [Int64], as: T.Type) throws -> [UInt8] {
        try encode(rows.map { T(truncatingIfNeeded: $0) })
    }
}

/// For each of `rows` and every stored index, and each of `values` that is a bad id (at least
/// `experts`, or negative) and fits `T`: `base` with that one id replaced must be refused with
/// the error that names its token, layer, slot and value. Layers are `topk` ids wide.
func expectEveryBadIDNamed<T: ExpertID>(_ type: T.Type, encoder: BlockEncoder, base: [Int64], rows: [Int], values: [Int64]) {
    let schema = encoder.schema, perRow = schema.idsPerRow, topk = schema.topk, experts = schema.experts
    for t in rows {
        for index in schema.storedIndices {
            for value in values where (value >= Int64(experts) || value < 0) && T(exactly: value) != nil {
                var bad = base
                bad[t * perRow + index] = value
                #expect(throws: CodecError.idOutOfRange(token: t, layer: index / topk, slot: index % topk, value: value, experts: experts),
                        "\(T.self) \(value) at row \(t), index \(index)") {
                    try encoder.encode(bad.map { T(truncatingIfNeeded: $0) })
                }
            }
        }
    }
}

