import Foundation
@testable import ExpertCodec

/// The block vectors of `spec/vectors` (FORMAT.md Part 1, layout 1): `NAME.json`, `NAME.payload`
/// (the payload bytes) and `NAME.lz4` (the frame), from the row generators below.
enum BlockVectors {
    /// The column codings as `spec/FORMAT.md` numbers them.
    static let codingNumbers: [String: UInt8] = [
        "plain": 0, "constant": 1, "slotDelta": 2, "repeat": 3, "repeatSlotDelta": 4,
    ]

    static func write(to directory: URL) throws {
        for source in VectorSource.all {
            let schema = try Schema(layers: source.layers, topk: source.topk, experts: source.experts,
                                    denseLayers: source.dense)
            let flat = source.rows.flatMap { $0.flatMap { $0 } }
            let encoder = BlockEncoder(schema: schema)
            let payload = try payloadBytes(encoder, flat)
            let frame = try encoder.encode(flat)
            let codings = source.rows.isEmpty ? [] : payload[12..<(12 + schema.storedIDsPerRow)].map { byte in
                codingNumbers.first { $0.value == byte }!.key
            }
            guard codings == source.intended else {
                throw GeneratorError("\(source.name): the encoder chose \(codings), not \(source.intended)")
            }
            let decoded = source.rows.map { row in
                row.enumerated().map { layer, ids in schema.isDense(layer: layer) ? ids.map { _ in Int64(Schema.denseFill) } : ids }
            }
            try Data(payload).write(to: directory.appendingPathComponent("\(source.name).payload"))
            try Data(frame).write(to: directory.appendingPathComponent("\(source.name).lz4"))
            try Data(source.json(codings: codings, decoded: decoded).utf8)
                .write(to: directory.appendingPathComponent("\(source.name).json"))
        }
    }
}

/// A copy of the payload `encoder` makes of `rows` (it points into the encoder's scratch memory).
func payloadBytes(_ encoder: BlockEncoder, _ rows: [Int64]) throws -> [UInt8] {
    try withExtendedLifetime(encoder) {
        let (start, count) = try rows.withUnsafeBufferPointer { rows in try encoder.encodePayload(rows) }
        return Array(UnsafeRawBufferPointer(start: start, count: count))
    }
}

// MARK: - How the vectors were made

/// The rows of each vector and the coding the encoder is meant to pick for each stored column.
struct VectorSource {
    let name: String, description: String
    let layers: Int, topk: Int, experts: Int, dense: [Int]
    /// `[tokens][layers][topk]`.
    let rows: [[[Int64]]]
    let intended: [String]

    /// A fixed 64-bit LCG, so the generated rows never change.
    struct LCG {
        var x: UInt64
        mutating func next(_ bound: Int) -> Int64 {
            x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int64((x >> 33) % UInt64(bound))
        }
    }

    /// `columns[layer][slot]` of `n` values each into `[n][layers][topk]` rows.
    static func rows(_ columns: [[[Int64]]], _ n: Int) -> [[[Int64]]] {
        (0..<n).map { t in columns.map { layer in layer.map { $0[t] } } }
    }

    /// Each value that repeats the previous one except at rows where `keep(t)`, which take `fresh(t)`.
    static func held(_ n: Int, keep: (Int) -> Bool, fresh: (Int) -> Int64) -> [Int64] {
        var out = [Int64]()
        for t in 0..<n { out.append(t == 0 || keep(t) ? fresh(t) : out[t - 1]) }
        return out
    }

    static let all: [VectorSource] = [mixed, empty, oneRow, kimi, wide, sorted]

    /// The worked example of FORMAT.md: every coding, a dense layer, 6 experts in 3 bits.
    static let mixed: VectorSource = {
        let n = 12
        let c0: [Int64] = [0, 3, 1, 4, 2, 5, 0, 3, 1, 4, 2, 5]
        let c1 = c0.map { ($0 + 2) % 6 }
        let c3: [Int64] = [5, 5, 5, 5, 2, 2, 2, 2, 5, 5, 2, 2]
        let c4: [Int64] = [0, 0, 0, 0, 0, 3, 3, 3, 3, 0, 0, 3]
        let dense = [Int64](repeating: 0xFFFF, count: n)
        return VectorSource(
            name: "mixed_e6",
            description: "FORMAT.md worked example: 3 layers (layer 1 dense, 0xFFFF), top-3 of 6 experts (w 3), 12 rows; every coding",
            layers: 3, topk: 3, experts: 6, dense: [1],
            rows: rows([[c0, c1, [Int64](repeating: 4, count: n)], [dense, dense, dense],
                        [c3, c4, [Int64](repeating: 5, count: n)]], n),
            intended: ["plain", "slotDelta", "constant", "repeat", "repeatSlotDelta", "constant"])
    }()

    static let empty = VectorSource(
        name: "empty_e384",
        description: "An empty block: 4 layers (0 and 3 dense), top-2 of 384 experts (w 9), no rows; the payload is its 12-byte header",
        layers: 4, topk: 2, experts: 384, dense: [0, 3], rows: [], intended: [])

    static let oneRow = VectorSource(
        name: "one_row_e65536",
        description: "One row: 2 layers, top-3 of 65536 experts (w 16); every column of a one-row block is constant, values up to 65535",
        layers: 2, topk: 3, experts: 65536, dense: [],
        rows: [[[65535, 0, 256], [1, 32768, 65535]]],
        intended: Array(repeating: "constant", count: 6))

    /// Kimi-K2-like: 384 experts need 9 bits, so every plane coding crosses the byte boundary.
    static let kimi: VectorSource = {
        let n = 21, e = 384
        var random = LCG(x: 384)
        let l1s0 = (0..<n).map { _ in random.next(e) }
        let l1s1 = l1s0.map { ($0 + 1 + random.next(3)) % Int64(e) }
        let l1s3 = (0..<n).map { _ in random.next(e) }
        let l2s0 = (0..<n).map { t -> Int64 in (t / 4) % 2 == 0 ? 383 : 128 }
        let l2s1 = held(n, keep: { $0 % 4 == 2 }, fresh: { (l2s0[$0] + 5) % Int64(e) })
        let l2s2 = l2s1.map { ($0 - 10 - random.next(4) + Int64(e)) % Int64(e) }
        let l2s3 = (0..<n).map { _ in random.next(e) }
        let dense = [Int64](repeating: 0xFFFF, count: n)
        return VectorSource(
            name: "kimi_e384",
            description: "3 layers (layer 0 dense, 0xFFFF), top-4 of 384 experts (w 9), 21 rows; every coding at a width above 8, slot deltas that wrap",
            layers: 3, topk: 4, experts: e, dense: [0],
            rows: rows([[dense, dense, dense, dense], [l1s0, l1s1, [Int64](repeating: 383, count: n), l1s3],
                        [l2s0, l2s1, l2s2, l2s3]], n),
            intended: ["plain", "slotDelta", "constant", "plain", "repeat", "repeatSlotDelta", "slotDelta", "plain"])
    }()

    /// 65536 experts: all 16 planes, slot deltas that wrap around 2^16.
    static let wide: VectorSource = {
        let n = 13, e = 65536
        var random = LCG(x: 65536)
        let a = (0..<n).map { _ in random.next(e) }
        let b = a.map { ($0 + 40000 + random.next(3)) % Int64(e) }
        let c: [Int64] = [65535, 65535, 65535, 65535, 0, 0, 0, 32768, 32768, 32768, 32768, 12345, 12345]
        let d = held(n, keep: { $0 % 3 == 0 }, fresh: { (c[$0] + 65000) % Int64(e) })
        return VectorSource(
            name: "wide_e65536",
            description: "2 layers, top-2 of 65536 experts (w 16), 13 rows; plain, slot deltas wrapping mod 65536, repeats",
            layers: 2, topk: 2, experts: e, dense: [],
            rows: rows([[a, b], [c, d]], n),
            intended: ["plain", "slotDelta", "repeat", "repeatSlotDelta"])
    }()

    /// Router-like rows: 8 distinct sorted experts per layer that drift from token to token.
    static let sorted: VectorSource = {
        let n = 64, e = 128
        var random = LCG(x: 128)
        var sets = (0..<2).map { layer in Array(Set((0..<8).map { Int64((layer * 37 + $0 * 13) % e) })).sorted() }
        var out = [[[Int64]]]()
        for _ in 0..<n {
            var row = [[Int64]]()
            for layer in 0..<2 {
                if random.next(100) < (layer == 0 ? 15 : 70) {
                    var set = sets[layer]
                    let slot = Int(random.next(8))
                    var fresh: Int64
                    repeat { fresh = random.next(e) } while set.contains(fresh)
                    set.remove(at: slot)
                    set.append(fresh)
                    sets[layer] = set.sorted()
                }
                row.append(sets[layer])
            }
            out.append(row)
        }
        return VectorSource(
            name: "sorted_e128",
            description: "2 layers, top-8 of 128 experts (w 7), 64 rows (no padding bits) of sorted, drifting expert sets; the encoder's own mix of codings, an LZ4-compressed block",
            layers: 2, topk: 8, experts: e, dense: [], rows: out,
            intended: ["plain", "slotDelta", "slotDelta", "repeatSlotDelta", "repeatSlotDelta", "slotDelta", "plain", "plain",
                       "plain", "repeatSlotDelta", "repeatSlotDelta", "repeatSlotDelta", "slotDelta", "repeatSlotDelta",
                       "repeatSlotDelta", "repeatSlotDelta"])
    }()

    /// The JSON file: one token per line, dense layers as the engine wrote them.
    func json(codings: [String], decoded: [[[Int64]]]) -> String {
        func list(_ rows: [[[Int64]]]) -> String {
            if rows.isEmpty { return "[]" }
            let lines = rows.map { row in "    [" + row.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }.joined(separator: ", ") + "]" }
            return "[\n" + lines.joined(separator: ",\n") + "\n  ]"
        }
        var text = "{\n"
        text += "  \"name\": \"\(name)\",\n"
        text += "  \"description\": \"\(description)\",\n"
        text += "  \"schema\": {\"layers\": \(layers), \"topk\": \(topk), \"experts\": \(experts), \"dense_layers\": [\(dense.map(String.init).joined(separator: ", "))]},\n"
        text += "  \"codings\": [\(codings.map { "\"\($0)\"" }.joined(separator: ", "))],\n"
        text += "  \"rows\": \(list(rows))"
        if decoded != rows { text += ",\n  \"decoded\": \(list(decoded))" }
        return text + "\n}\n"
    }
}

