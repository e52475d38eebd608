import Foundation
@testable import ExpertCodec

/// The layout 2 (compact) block vectors of `spec/vectors/compact` (FORMAT.md 1.10), from the row
/// generators below.
enum CompactVectors {
    static let kindNames = ["constant", "ids", "slotDelta", "raw", "splitIDs", "splitSlotDelta"]

    /// The JSON file, as `CompactSpecVectorTests` reads it.
    private struct File: Codable {
        struct SchemaFields: Codable { let layers: Int, topk: Int, experts: Int, dense_layers: [Int] }
        let name: String, description: String
        let schema: SchemaFields
        let kinds: [String]
        let rows: [[[Int64]]]
        let decoded: [[[Int64]]]
    }

    static func write(to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for source in CompactVectorSource.all {
            let schema = try Schema(layers: source.layers, topk: source.topk, experts: source.experts, denseLayers: source.dense)
            let flat = source.rows.flatMap { $0.flatMap { $0 } }
            let encoder = BlockEncoder(schema: schema, codec: .compact)
            let payload = try payloadBytes(encoder, flat)
            let frame = try encoder.encode(flat)
            let kinds = source.rows.isEmpty ? [] : payload[12..<(12 + schema.storedIDsPerRow)].map { kindNames[Int($0)] }
            let decoded = source.rows.map { row in
                row.enumerated().map { layer, ids in schema.isDense(layer: layer) ? ids.map { _ in Int64(Schema.denseFill) } : ids }
            }
            let file = File(name: source.name, description: source.description,
                            schema: .init(layers: source.layers, topk: source.topk, experts: source.experts, dense_layers: source.dense),
                            kinds: kinds, rows: source.rows, decoded: decoded)
            let encoderJSON = JSONEncoder()
            encoderJSON.outputFormatting = [.sortedKeys]
            try encoderJSON.encode(file).write(to: directory.appendingPathComponent("\(source.name).json"))
            try Data(payload).write(to: directory.appendingPathComponent("\(source.name).payload"))
            try Data(frame).write(to: directory.appendingPathComponent("\(source.name).lz4"))
        }
    }
}

/// The rows of each compact vector: fixed LCGs, so they never change.
struct CompactVectorSource {
    let name: String, description: String
    let layers: Int, topk: Int, experts: Int, dense: [Int]
    let rows: [[[Int64]]]

    struct LCG {
        var x: UInt64
        mutating func next(_ bound: Int) -> Int64 {
            x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int64((x >> 33) % UInt64(bound))
        }
    }

    /// Rows in which each layer keeps its ids with probability `hold` percent, else draws
    /// `topk` distinct ids (skewed to small ones), sorted when `sorted`.
    static func routed(_ n: Int, layers: Int, topk: Int, experts: Int, hold: [Int], sorted: Bool, seed: UInt64,
                       dense: [Int] = []) -> [[[Int64]]] {
        var random = LCG(x: seed)
        var last = [[Int64]](repeating: [], count: layers)
        var out: [[[Int64]]] = []
        for t in 0..<n {
            var row: [[Int64]] = []
            for layer in 0..<layers {
                if dense.contains(layer) { row.append(Array(repeating: 0xFFFF, count: topk)); continue }
                if t == 0 || random.next(100) >= hold[layer % hold.count] {
                    var set: [Int64] = []
                    while set.count < topk {
                        let id = min(random.next(experts), random.next(experts))
                        if !set.contains(id) { set.append(id) }
                    }
                    last[layer] = sorted ? set.sorted() : set
                }
                row.append(last[layer])
            }
            out.append(row)
        }
        return out
    }

    static let all: [CompactVectorSource] = [
        CompactVectorSource(
            name: "c_small_e6", description: "3 layers (layer 1 dense, 0xFFFF), top-3 of 6 experts (w 3), 40 rows; a constant column, and raw columns: tables would cost more than they save",
            layers: 3, topk: 3, experts: 6, dense: [1],
            rows: routed(40, layers: 3, topk: 3, experts: 6, hold: [60, 0, 30], sorted: false, seed: 6, dense: [1])
                .map { row in [[row[0][0], row[0][1], 4], row[1], row[2]] }),
        CompactVectorSource(
            name: "c_sorted_e64", description: "DeepSeek-like: 4 layers, top-6 of 64 experts (w 6), 200 rows, slots sorted; slot deltas, tables shared by slot",
            layers: 4, topk: 6, experts: 64, dense: [],
            rows: routed(200, layers: 4, topk: 6, experts: 64, hold: [20, 30, 10, 25], sorted: true, seed: 64)),
        CompactVectorSource(
            name: "c_split_e128", description: "4 layers, top-4 of 128 experts (w 7), 300 rows whose layers repeat as a whole half the time; split kinds",
            layers: 4, topk: 4, experts: 128, dense: [],
            rows: routed(300, layers: 4, topk: 4, experts: 128, hold: [50, 60, 40, 55], sorted: false, seed: 128)),
        CompactVectorSource(
            name: "c_raw_e4096", description: "2 layers, top-2 of 4096 experts (w 12), 10 rows: above 2048 experts, raw and constant columns only",
            layers: 2, topk: 2, experts: 4096, dense: [],
            rows: routed(10, layers: 2, topk: 2, experts: 4096, hold: [0], sorted: false, seed: 4096)
                .map { row in [row[0], [4095, 17]] }),
        CompactVectorSource(
            name: "c_empty_e384", description: "An empty block: 3 layers (layer 0 dense), top-2 of 384 experts (w 9); the payload is its 12-byte header",
            layers: 3, topk: 2, experts: 384, dense: [0], rows: []),
        CompactVectorSource(
            name: "c_one_row_e300", description: "One row: 2 layers, top-3 of 300 experts (w 9); every column constant, the constants in the table stream",
            layers: 2, topk: 3, experts: 300, dense: [], rows: [[[299, 0, 150], [1, 2, 3]]]),
        CompactVectorSource(
            name: "c_fallback_e2048", description: "1 layer, top-4 of 2048 experts (w 11), 6 rows of uniform ids: coding would be larger than raw, so every column is raw",
            layers: 1, topk: 4, experts: 2048, dense: [],
            rows: routed(6, layers: 1, topk: 4, experts: 2048, hold: [0], sorted: false, seed: 2048)),
    ]
}
