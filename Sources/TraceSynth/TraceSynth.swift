import Foundation
import ExpertCodec

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same trace everywhere.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The shapes of real MoE models (DOMAIN.md), by the names the CLI accepts.
public struct ModelShape: Sendable, Hashable {
    public let name: String
    public let layers: Int
    public let topk: Int
    public let experts: Int
    /// Leading dense layers (engines write zeros there).
    public let denseLayers: [Int]

    public static let all: [ModelShape] = [
        ModelShape(name: "qwen3-30b-a3b", layers: 48, topk: 8, experts: 128, denseLayers: []),
        ModelShape(name: "qwen3-235b-a22b", layers: 94, topk: 8, experts: 128, denseLayers: []),
        ModelShape(name: "deepseek-v3", layers: 61, topk: 8, experts: 256, denseLayers: [0, 1, 2]),
        ModelShape(name: "kimi-k2", layers: 61, topk: 8, experts: 384, denseLayers: [0]),
        ModelShape(name: "gpt-oss-120b", layers: 36, topk: 4, experts: 128, denseLayers: []),
        ModelShape(name: "mixtral-8x7b", layers: 32, topk: 2, experts: 8, denseLayers: []),
    ]

    public static func named(_ name: String) -> ModelShape? { all.first { $0.name == name.lowercased() } }

    public func schema() throws -> Schema {
        try Schema(layers: layers, topk: topk, experts: experts, denseLayers: denseLayers)
    }
}

/// Realistic routing rows: what the real traces show, as a generative model.
/// - per layer, expert popularity is skewed (a Zipf law over a per-layer random order of experts);
/// - per layer, the previous token's choice is repeated with a layer-specific probability
///   (8% to 99.8% on real Llama-4 traces);
/// - the top-k ids of a row are distinct (when `topk <= experts`), in the order sampled;
/// - dense layers hold zeros.
public struct TraceSynthesizer: Sendable {
    public let schema: Schema
    private var random: SplitMix64
    /// Per layer: inverse CDF of the popularity law, scaled to 2^32, and the expert order.
    private let cumulative: [[UInt32]]
    private let order: [[UInt16]]
    private let repeatChance: [Double]
    private var previous: [Int]

    public init(schema: Schema, seed: UInt64 = 1) {
        self.schema = schema
        var random = SplitMix64(seed: seed)
        var cumulative: [[UInt32]] = [], order: [[UInt16]] = [], repeatChance: [Double] = []
        for _ in 0..<schema.layers {
            let skew = Double.random(in: 0.6...1.4, using: &random)
            let weights = (1...schema.experts).map { 1 / pow(Double($0), skew) }
            let total = weights.reduce(0, +)
            var running = 0.0
            cumulative.append(weights.map { running += $0; return UInt32(min(running / total, 1) * Double(UInt32.max)) })
            order.append((0..<schema.experts).map { UInt16(truncatingIfNeeded: $0) }.shuffled(using: &random))
            // Most layers repeat rarely, some almost always.
            let u = Double.random(in: 0..<1, using: &random)
            repeatChance.append(u < 0.15 ? Double.random(in: 0.8...0.998, using: &random) : Double.random(in: 0.05...0.5, using: &random))
        }
        self.random = random
        self.cumulative = cumulative
        self.order = order
        self.repeatChance = repeatChance
        previous = Array(repeating: 0, count: schema.idsPerRow)
    }

    /// The next `count` rows, token-major, as `T`. Inlined so that the conversion runs
    /// specialized in the caller; the generation itself is not generic.
    @inlinable
    public mutating func rows<T: ExpertID>(_ count: Int, as: T.Type = T.self) -> [T] {
        nextRows(count).map { T(truncatingIfNeeded: $0) }
    }

    /// The next `count` rows, token-major.
    public mutating func nextRows(_ count: Int) -> [Int32] {
        var out = [Int32]()
        out.reserveCapacity(count * schema.idsPerRow)
        for _ in 0..<count { appendRow(to: &out) }
        return out
    }

    private mutating func appendRow(to out: inout [Int32]) {
        let topk = schema.topk
        for layer in 0..<schema.layers {
            let base = layer * topk
            if schema.isDense(layer: layer) {
                for slot in 0..<topk { previous[base + slot] = 0 }
            } else if Double(random.next() >> 11) * 0x1p-53 >= repeatChance[layer] {
                for slot in 0..<topk {
                    var id = sample(layer: layer)
                    var tries = 0
                    while topk <= schema.experts, tries < 64, (0..<slot).contains(where: { previous[base + $0] == id }) {
                        id = sample(layer: layer)
                        tries += 1
                    }
                    previous[base + slot] = id
                }
            }
            for slot in 0..<topk { out.append(Int32(truncatingIfNeeded: previous[base + slot])) }
        }
    }

    private mutating func sample(layer: Int) -> Int {
        let u = UInt32(truncatingIfNeeded: random.next())
        let table = cumulative[layer]
        var low = 0, high = table.count - 1
        while low < high {
            let mid = (low + high) / 2
            if table[mid] < u { low = mid + 1 } else { high = mid }
        }
        return Int(order[layer][low])
    }
}

/// Rows whose ids depend only on `(seed, position)`: any process can regenerate and check any
/// range of a trace another process wrote (the crash and concurrency tests do).
public struct PositionalRows: Sendable {
    public let schema: Schema
    public let seed: UInt64

    public init(schema: Schema, seed: UInt64) {
        self.schema = schema
        self.seed = seed
    }

    /// Row `position`: slot `s` keeps its id for `s + 1` positions, as routing repeats; dense layers 0.
    public func row<T: ExpertID>(_ position: Int, as: T.Type = T.self) -> [T] {
        (0..<schema.idsPerRow).map { i in
            let layer = i / schema.topk, slot = i % schema.topk
            guard !schema.isDense(layer: layer) else { return 0 }
            var mix = SplitMix64(seed: seed ^ UInt64(position / (slot + 1)) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(i) << 40)
            return T(truncatingIfNeeded: mix.next() % UInt64(schema.experts))
        }
    }

    public func rows<T: ExpertID>(_ positions: Range<Int>, as: T.Type = T.self) -> [T] {
        positions.flatMap { row($0, as: T.self) }
    }
}
