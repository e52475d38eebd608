/// The shape of one routing row and the id range: what an engine's router produces per token.
///
/// A row holds `layers x topk` expert ids, layer-major then slot (`row[layer * topk + slot]`),
/// in the order the router returned them. Dense (non-MoE) layers carry no routing: engines fill
/// them with zeros, garbage or `0xFFFF`. Declaring them dense stores nothing for them, accepts any
/// value there on encode, and decodes them as ``Schema/denseFill``.
public struct Schema: Sendable, Hashable, CustomStringConvertible {
    public static let layerLimits = 1...4096
    public static let topkLimits = 1...64
    public static let expertLimits = 2...65536
    /// The id every dense layer decodes to.
    public static let denseFill = 0

    public let layers: Int
    public let topk: Int
    public let experts: Int
    /// Dense layer indices, ascending and unique.
    public let denseLayers: [Int]
    /// The MoE layer indices, ascending: the layers whose ids are stored.
    public let moeLayers: [Int]

    public init(layers: Int, topk: Int, experts: Int, denseLayers: some Sequence<Int> = [Int]()) throws {
        guard Schema.layerLimits.contains(layers) else {
            throw CodecError.invalidSchema("layers must be in \(Schema.layerLimits), got \(layers)")
        }
        guard Schema.topkLimits.contains(topk) else {
            throw CodecError.invalidSchema("topk must be in \(Schema.topkLimits), got \(topk)")
        }
        guard Schema.expertLimits.contains(experts) else {
            throw CodecError.invalidSchema("experts must be in \(Schema.expertLimits), got \(experts)")
        }
        let dense = Array(Set(denseLayers)).sorted()
        if let bad = dense.first(where: { !(0..<layers).contains($0) }) {
            throw CodecError.invalidSchema("dense layer \(bad) is outside 0..<\(layers)")
        }
        guard dense.count < layers else {
            throw CodecError.invalidSchema("all \(layers) layers are dense: nothing is routed")
        }
        self.layers = layers
        self.topk = topk
        self.experts = experts
        self.denseLayers = dense
        let denseSet = Set(dense)
        self.moeLayers = (0..<layers).filter { !denseSet.contains($0) }
    }

    /// Ids in one row, dense layers included: the width of the arrays users hand over.
    public var idsPerRow: Int { layers * topk }

    /// Ids actually stored per row (MoE layers only).
    public var storedIDsPerRow: Int { moeLayers.count * topk }

    /// The minimal fixed width of one id: `ceil(log2(experts))`, at least 1.
    public var bitWidth: Int { Int.bitWidth - (experts - 1).leadingZeroBitCount }

    public func isDense(layer: Int) -> Bool { denseLayers.contains(layer) }

    /// For each stored column (MoE layer, then slot), its index inside a row.
    public var storedIndices: [Int] { moeLayers.flatMap { layer in (0..<topk).map { layer * topk + $0 } } }

    public var description: String {
        var text = "\(layers) layers x top-\(topk) of \(experts) experts (\(bitWidth) bit)"
        if !denseLayers.isEmpty { text += ", dense layers \(denseLayers)" }
        return text
    }
}
