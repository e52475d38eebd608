/// Encodes blocks of rows into LZ4 frames. Reuses its scratch memory from block to block:
/// it allocates per block (the returned frame), never per row. Not thread-safe: one per thread.
public final class BlockEncoder {
    public let schema: Schema
    /// The payload layout this encoder writes.
    public let codec: BlockCodec
    private let writer: any PayloadWriter
    /// For each stored column, its index inside a row (dense layers skipped).
    private let sourceIndex: [Int]
    private lazy var byteGather = ByteGather(schema: schema)
    private lazy var shortGather = ShortGather(schema: schema)
    private let columns = Scratch()
    private let frames = LZ4FrameWriter()
    /// The payload's runs worth compressing or not, from the last `encodePayload`.
    private var segments: [PayloadSegment] = []

    /// Fixed-width bytes a block aims for by default: small enough that reading one row
    /// (decompressing and checking its block) stays in the tens of microseconds, large enough
    /// for the per-block framing to cost well under 1%.
    public static let defaultBlockBytes = FastLayout.defaultBlockBytes

    /// Fixed-width bytes a compact block aims for by default: four times the fast codec's.
    /// Its frequency tables cost less per row in larger blocks (deepseek: ratio 6.40 at 560
    /// rows, 6.47 at 2240) and its per-block work is amortised; a read decodes a whole block.
    public static let defaultCompactBlockBytes = CompactLayout.defaultBlockBytes

    /// Rows per block for `schema` at ``defaultBlockBytes``: a multiple of 8 in 64...65536.
    public static func defaultBlockRows(for schema: Schema) -> Int {
        defaultBlockRows(for: schema, codec: .fast)
    }

    /// Rows per block for `schema` and `codec`: its layout's default bytes of fixed-width ids
    /// (``defaultBlockBytes``, ``defaultCompactBlockBytes``), a multiple of 8 in 64...65536.
    public static func defaultBlockRows(for schema: Schema, codec: BlockCodec) -> Int {
        let rowBits = schema.storedIDsPerRow * schema.bitWidth
        return min(65536, max(64, codec.layout.defaultBlockBytes * 8 / rowBits)) & ~7
    }

    public init(schema: Schema, codec: BlockCodec = .fast) {
        self.schema = schema
        self.codec = codec
        writer = codec.layout.makeWriter(schema: schema)
        sourceIndex = schema.storedIndices
    }

    /// Encodes `rows` (token-major `[tokens][layers][topk]`, a whole number of rows) as one frame.
    /// Every id of a MoE layer must be in `[0, experts)`; dense layers may hold anything.
    public func encode<T: ExpertID>(_ rows: UnsafeBufferPointer<T>) throws -> [UInt8] {
        let encoding = PayloadEncoding(encoder: self)
        rows.withConcreteIDType(encoding)
        guard let result = encoding.result else { throw CodecError.shapeMismatch("not encoded") }
        let (payloadStart, payloadCount) = try result.get()
        return frames.frame(UnsafeRawBufferPointer(start: payloadStart, count: payloadCount), segments: segments)
    }

    public func encode<T: ExpertID>(_ rows: [T]) throws -> [UInt8] {
        try rows.withUnsafeBufferPointer { try encode($0) }
    }

    /// The uncompressed payload of `rows`: what `lz4 -d` returns for the frame `encode` makes.
    func encodePayload<T: ExpertID>(_ rows: UnsafeBufferPointer<T>) throws -> (UnsafeRawPointer, Int) {
        let perRow = schema.idsPerRow
        guard rows.count % perRow == 0 else {
            throw CodecError.shapeMismatch("\(rows.count) ids are not a whole number of \(perRow)-id rows")
        }
        let count = rows.count / perRow
        guard count <= BlockLimits.maxRows(schema) else {
            throw CodecError.blockTooLarge(rows: count, limit: BlockLimits.maxIDs)
        }
        let ids = try gather(rows, count: count, shape: writer.columnShape)
        // Appended to as a local: on the property, every column's append paid two dynamic
        // exclusivity checks.
        var runs = segments
        segments = []
        defer { segments = runs }
        runs.removeAll(keepingCapacity: true)
        return writer.write(ids, count: count, segments: &runs)
    }

    /// The stored columns of `count` rows, as the writer's `shape` asks, every id checked.
    private func gather<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, count: Int, shape: ColumnShape) throws -> IDColumns {
        let columnCount = sourceIndex.count, width = schema.bitWidth
        let stride = shape.padded ? (count + 7) & ~7 : count
        if shape.bytesWhenNarrow && width <= 8 {
            let cols = columns.reserve(columnCount * stride, of: UInt8.self)
            if let input = rows.baseAddress {
                let clean = byteGather.gather(input, count: count, padded: stride, width: width, into: cols)
                // The byte gather checks ids against 2^width; this completes the check when
                // experts is less.
                let below = schema.experts == 1 << width || allBelow(schema.experts, UnsafePointer(cols), total: columnCount * stride)
                if !clean || !below {
                    try Self.reportFirstBadID(rows, count: count, schema: schema, sourceIndex: sourceIndex)
                }
            }
            return IDColumns(base: UnsafeRawPointer(cols), stride: stride, bytes: true)
        }
        let cols = columns.reserve(max(1, columnCount * stride), of: UInt16.self)
        // The word gather checks ids against experts itself.
        if let input = rows.baseAddress, count > 0, !shortGather.gather(input, count: count, padded: stride, width: width, into: cols) {
            try Self.reportFirstBadID(rows, count: count, schema: schema, sourceIndex: sourceIndex)
        }
        return IDColumns(base: UnsafeRawPointer(cols), stride: stride, bytes: false)
    }

    static func reportFirstBadID<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, count: Int, schema: Schema,
                                              sourceIndex: [Int]) throws {
        for t in 0..<count {
            for index in sourceIndex {
                let id = rows[t * schema.idsPerRow + index]
                if id < 0 || UInt64(truncatingIfNeeded: id) >= UInt64(schema.experts) {
                    throw CodecError.idOutOfRange(token: t, layer: index / schema.topk, slot: index % schema.topk,
                                        value: Int64(truncatingIfNeeded: id), experts: schema.experts)
                }
            }
        }
    }
}

/// `encodePayload` for the concrete id type.
private final class PayloadEncoding: ConcreteIDBody {
    let encoder: BlockEncoder
    /// Set by the call (nil until then, so that no error is allocated for every block).
    var result: Result<(UnsafeRawPointer, Int), any Error>?
    init(encoder: BlockEncoder) { self.encoder = encoder }
    func callAsFunction<U: ExpertID>(_ ids: UnsafeBufferPointer<U>) {
        do { result = .success(try encoder.encodePayload(ids)) } catch { result = .failure(error) }
    }
}
