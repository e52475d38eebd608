/// Layout 2, "compact" (spec 1.10): per column symbols (ids or slot deltas, with a repeat-the-row-
/// above escape) coded with static frequency tables and interleaved rANS, one stream through
/// the columns in order. Smaller, slower; a block is decoded as far as its last column read.
enum CompactLayout: BlockLayout {
    static let layoutByte = CompactFormat.layoutByte
    static let name = "compact"
    static let summary = "compact v2 (rANS) in LZ4 frames"
    static let defaultBlockBytes = 256 * 1024

    static func maxPayloadBytes(_ schema: Schema, rows: Int) -> Int { CompactFormat.maxPayloadBytes(schema, rows: rows) }
    static func makeWriter(schema: Schema) -> any PayloadWriter { CompactEncoder(schema: schema) }
    static func makeReader(schema: Schema, vectorKernels: Bool) -> any PayloadReader { CompactDecoder(schema: schema) }
}

extension CompactEncoder: PayloadWriter {
    /// 16-bit columns `count` apart, for every width.
    var columnShape: ColumnShape { ColumnShape(bytesWhenNarrow: false, padded: false) }

    func write(_ columns: IDColumns, count: Int, segments: inout [PayloadSegment]) -> (UnsafeRawPointer, Int) {
        let (start, size) = encodeColumns(UnsafeMutablePointer(mutating: columns.base.assumingMemoryBound(to: UInt16.self)), count: count)
        // rANS bytes are random to LZ4: the whole payload is stored.
        segments.append(PayloadSegment(range: 0..<size, compress: false))
        return (start, size)
    }
}

extension CompactDecoder: PayloadReader {
    func prepare(_ payload: UnsafeRawBufferPointer, columns: Range<Int>?, decodingRow: Int?) throws -> Int {
        try decode(payload, columns: columns?.upperBound)
    }

    func isPrepared(_ columns: Range<Int>) -> Bool { decoded >= columns.upperBound }

    /// The columns decoded by `prepare`, `rows` apart.
    func decodeColumns(_ range: Range<Int>, _ columns: Range<Int>, claiming lines: inout OutputLines) throws -> IDColumns {
        IDColumns(base: UnsafeRawPointer(column(columns.lowerBound)), stride: rows, bytes: false)
    }

    func decodeRow(_ t: Int, _ columns: Range<Int>, into ids: UnsafeMutablePointer<UInt16>) throws {
        for c in columns { ids[c &- columns.lowerBound] = column(c)[t] }
    }
}
