/// The stored columns of a range of layers, and where each goes in an output row that holds
/// only those layers: what a read of those layers decodes and scatters. Columns are
/// layer-major (spec 1.3), so a layer range's columns are consecutive and each of its slot
/// deltas has its previous slot inside it. A whole-row read is the range of every layer.
final class LayerColumns {
    let layers: Range<Int>
    /// The stored columns of `layers`.
    let columns: Range<Int>
    /// Ids in one output row: `layers.count * topk`.
    let perRow: Int
    /// For each column of `columns` (the first at 0), its index inside an output row.
    let source: [Int]
    let byteScatter: ByteScatter
    let shortScatter: ShortScatter

    init(schema: Schema, layers: Range<Int>) {
        precondition(layers.lowerBound >= 0 && layers.upperBound <= schema.layers, "layers \(layers) outside the schema")
        let topk = schema.topk
        self.layers = layers
        perRow = layers.count * topk
        // MoE layers below the range, and those in it, give the column range.
        let before = schema.moeLayers.prefix { $0 < layers.lowerBound }.count
        let inside = schema.moeLayers[before...].prefix { $0 < layers.upperBound }
        columns = before * topk..<(before + inside.count) * topk
        source = inside.flatMap { layer in (0..<topk).map { (layer - layers.lowerBound) * topk + $0 } }
        let dense = DenseRuns(denseLayers: schema.denseLayers.filter(layers.contains).map { $0 - layers.lowerBound }, topk: topk)
        byteScatter = ByteScatter(gather: ByteGather(perRow: perRow, source: source), dense: dense)
        shortScatter = ShortScatter(gather: ShortGather(perRow: perRow, experts: schema.experts, source: source), dense: dense)
    }

    /// Whether no dense layer is in the range: output index `i` is column `columns.lowerBound + i`.
    var storesEveryID: Bool { source.count == perRow }
}
