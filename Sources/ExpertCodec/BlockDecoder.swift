/// Decodes blocks made by ``BlockEncoder``, of any layout (the payload's first byte names it).
/// A decoder holds one *open* block: `open` checks the frame (checksum, sizes) and the payload's
/// structure, then `decodeRows` decodes any range of its rows and layers (a fast block touches
/// only the groups of 8 rows that hold the range). Not thread-safe: one per thread.
public final class BlockDecoder {
    public let schema: Schema
    private let frames = LZ4FrameDecoder()
    private let checksums: DataBlockChecksums
    /// Whether payloads are decoded with ``VectorKernels`` (tests compare both ways).
    private let vectorKernels: Bool
    private let payload = Scratch()
    /// One reader per layout byte, made when a block of that layout is first opened.
    private var readers = [(any PayloadReader)?](repeating: nil, count: 256)
    /// The reader of the open block, nil when none is open.
    private var reader: (any PayloadReader)?
    /// Rows and payload size of the open block.
    private var rows = 0, openSize = 0
    /// Every layer: what a whole-row read decodes.
    private lazy var allLayers = LayerColumns(schema: schema, layers: 0..<schema.layers)
    /// The layers of the last read of fewer layers, kept for the next (reads repeat their range).
    private var someLayers: LayerColumns?
    /// One row's ids in column order, for one-row reads.
    private let rowIDs: UnsafeMutablePointer<UInt16>

    public convenience init(schema: Schema) {
        self.init(schema: schema, vectorKernels: VectorKernels.available)
    }

    init(schema: Schema, vectorKernels: Bool) {
        self.schema = schema
        self.vectorKernels = vectorKernels
        checksums = DataBlockChecksums(sideBySide: vectorKernels)
        rowIDs = .allocate(capacity: max(1, schema.storedIDsPerRow))
    }

    deinit { rowIDs.deallocate() }

    /// Rows of the open block (0 before the first `open`).
    public var rowCount: Int { rows }

    /// Frames whose checksums `computeChecksums` computes side by side.
    public static let checksumBatch = DataBlockChecksums.batch

    /// Computes, side by side where the CPU can, the checksums of the data blocks of the
    /// ``checksumBatch`` `frames` that `open` is about to be given, in any order: a read of many
    /// blocks checks them in a fraction of the time. `open` still compares each with the stored
    /// checksum; a frame opened later without them is checked as usual. The checksums are of the
    /// bytes as they are now: call it right before opening them.
    public func computeChecksums(of frames: [UnsafeRawBufferPointer]) {
        checksums.compute(frames)
    }

    /// Forgets the checksums `computeChecksums` found and `open` did not take.
    public func forgetChecksums() {
        checksums.clear()
    }

    /// Decompresses and checks one frame, which becomes the open block. Returns its row count.
    /// With `expectedRows`, a block of another size is refused before anything is decompressed
    /// beyond what that many rows may need.
    ///
    /// Every data block's checksum is verified before its bytes are used. With
    /// `contentChecksum: false` the content checksum is not computed: the block checksums
    /// already cover every byte the payload comes from, and reading rows at random then costs
    /// one pass over the block instead of two (spec 1.4). Whole-block checks keep it on.
    ///
    /// With `decodingRow`, the pass that checks the payload also decodes that row, and a
    /// following `decodeRows` of that one row copies it: a random one-row read then touches
    /// each column once instead of twice.
    ///
    /// With `layers`, the payload is checked and decoded only as far as reading those layers
    /// needs (`decodeRows(_:layers:into:)` of other layers checks what they need then): the
    /// frame whole (header, every data block's checksum, sizes), the payload's header and
    /// column codings or kinds, and the columns of those layers; the columns before them only
    /// as far as finding these needs, those after them not. A whole-row read, or `verify`,
    /// checks the rest.
    @discardableResult
    public func open(_ frame: UnsafeRawBufferPointer, expectedRows: Int? = nil, contentChecksum: Bool = true,
                     decodingRow: Int? = nil, layers: Range<Int>? = nil) throws -> Int {
        close()
        try layers.map(checkLayers)
        let rowLimit = expectedRows ?? BlockLimits.maxRows(schema)
        let header = try frames.header(
            of: frame, limit: BlockLimits.maxPayloadBytes(schema, rows: min(rowLimit, BlockLimits.maxRows(schema))))
        let size = header.size
        // Slack: flag counts read whole words past a bitmap's end (`BitCount`, `PrefixBitCounter`),
        // plane loads up to 8 bytes of every plane (`BitPlanes.load`).
        let bytes = payload.reserve(size + max(ColumnPlaces.slackBytes, BitPlanes.loadSlackBytes))
        try frames.decompress(frame, header: header, into: bytes, contentChecksum: contentChecksum, checksums: checksums)
        guard size >= PayloadHeader.bytes else {
            throw CodecError.corruptBlock("payload of \(size) bytes is shorter than its header", offset: 0, inPayload: true)
        }
        let layoutByte = bytes.load(as: UInt8.self)
        guard let codec = BlockCodec(layoutByte: layoutByte) else {
            throw CodecError.corruptBlock("unknown block layout \(layoutByte)", offset: 0, inPayload: true)
        }
        let reader = readers[Int(layoutByte)] ?? codec.layout.makeReader(schema: schema, vectorKernels: vectorKernels)
        readers[Int(layoutByte)] = reader
        if let expectedRows, Int(UnsafeRawPointer(bytes).loadLE(UInt32.self, at: 4)) != expectedRows {
            // Before a compact block is decoded, which happens as it is checked.
            throw CodecError.corruptBlock("block holds \(UnsafeRawPointer(bytes).loadLE(UInt32.self, at: 4)) rows, \(expectedRows) expected",
                                          offset: 4, inPayload: true)
        }
        try prepare(reader, UnsafeRawBufferPointer(start: bytes, count: size), columns: layers.map { selection($0).columns },
                    decodingRow: decodingRow)
        return rows
    }

    /// Checks the columns `columns` (all when nil) of a decompressed payload with `reader`;
    /// the block is then open.
    private func prepare(_ reader: any PayloadReader, _ payload: UnsafeRawBufferPointer, columns: Range<Int>?,
                         decodingRow: Int?) throws {
        do {
            rows = try reader.prepare(payload, columns: columns, decodingRow: decodingRow)
        } catch {
            reader.clear()
            close()
            throw error
        }
        self.reader = reader
        openSize = payload.count
    }

    private func close() {
        reader?.clear()
        reader = nil
        rows = 0
    }

    private func checkLayers(_ layers: Range<Int>) throws {
        guard layers.lowerBound >= 0, layers.upperBound <= schema.layers else {
            throw CodecError.shapeMismatch("layers \(layers) are outside the schema's 0..<\(schema.layers)")
        }
    }

    /// Decodes rows `range` of the open block into `out`, token-major, `range.count * idsPerRow`
    /// ids; dense layers get ``Schema/denseFill``. After a throw, what `out` holds is unspecified
    /// (it may have been written in part).
    public func decodeRows<T: ExpertID>(_ range: Range<Int>, into out: UnsafeMutableBufferPointer<T>) throws {
        try decodeRows(range, layers: 0..<schema.layers, into: out)
    }

    /// Decodes layers `layers` of rows `range` of the open block into `out`, token-major,
    /// `range.count * layers.count * topk` ids (row `t`'s layer `l` slot `s` at
    /// `((t - range.lowerBound) * layers.count + l - layers.lowerBound) * topk + s`). Only the
    /// columns of those layers are decoded; dense layers among them get ``Schema/denseFill``.
    /// After a throw, what `out` holds is unspecified (it may have been written in part).
    public func decodeRows<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>, into out: UnsafeMutableBufferPointer<T>) throws {
        guard range.lowerBound >= 0, range.upperBound <= rows else {
            throw CodecError.shapeMismatch("rows \(range) are outside the block's 0..<\(rows)")
        }
        try checkLayers(layers)
        let perRow = layers.count * schema.topk
        guard out.count == range.count * perRow else {
            throw CodecError.shapeMismatch("output holds \(out.count) ids, \(range.count) rows of \(layers.count) layers need \(range.count * perRow)")
        }
        guard T.max >= schema.experts - 1 else {
            throw CodecError.outputTypeTooNarrow(type: "\(T.self)", experts: schema.experts)
        }
        guard !range.isEmpty, !layers.isEmpty else { return }
        let selection = selection(layers)
        guard let reader else { throw CodecError.shapeMismatch("no block is open") }
        if !selection.columns.isEmpty && !reader.isPrepared(selection.columns) {
            // Opened for other layers: check (and decode, compact) these in the payload kept.
            try prepare(reader, UnsafeRawBufferPointer(start: payload.base, count: openSize), columns: selection.columns,
                        decodingRow: nil)
        }
        let decoding = RowDecoding(decoder: self, reader: reader, range: range, selection: selection)
        out.withConcreteIDType(decoding)
        if let failure = decoding.failure { throw failure }
    }

    /// The columns of `layers`, made once for a range read again.
    private func selection(_ layers: Range<Int>) -> LayerColumns {
        if layers.count == schema.layers { return allLayers }
        if let someLayers, someLayers.layers == layers { return someLayers }
        let made = LayerColumns(schema: schema, layers: layers)
        someLayers = made
        return made
    }

    /// `decodeRows` for the concrete id type.
    private final class RowDecoding: ConcreteMutableIDBody {
        let decoder: BlockDecoder
        let reader: any PayloadReader
        let range: Range<Int>
        let selection: LayerColumns
        var failure: (any Error)?
        init(decoder: BlockDecoder, reader: any PayloadReader, range: Range<Int>, selection: LayerColumns) {
            self.decoder = decoder
            self.reader = reader
            self.range = range
            self.selection = selection
        }
        func callAsFunction<U: ExpertID>(_ out: UnsafeMutableBufferPointer<U>) {
            do {
                if range.count == 1 {
                    try reader.decodeRow(range.lowerBound, selection.columns, into: decoder.rowIDs)
                    decoder.copyRow(selection, into: out.baseAddress!)
                } else {
                    // The output's cache lines, claimed a share after each column (see `OutputLines`).
                    var lines = OutputLines(UnsafeMutableRawPointer(out.baseAddress!), bytes: out.count &* MemoryLayout<U>.size,
                                            columns: selection.columns.count)
                    let ids = try reader.decodeColumns(range, selection.columns, claiming: &lines)
                    decoder.scatter(ids, range, selection, into: out.baseAddress!)
                }
            } catch {
                failure = error
            }
        }
    }

    /// Opens `frame` and decodes all of it into `out`; returns the row count.
    @discardableResult
    public func decode<T: ExpertID>(_ frame: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<T>) throws -> Int {
        let rows = try open(frame, expectedRows: out.count / schema.idsPerRow)
        try decodeRows(0..<rows, into: out)
        return rows
    }

    /// Opens `frame` and returns all its rows as a new array.
    public func decode<T: ExpertID>(_ frame: [UInt8], as type: T.Type = T.self) throws -> [T] {
        try frame.withUnsafeBytes { bytes in
            let rows = try open(bytes)
            var ids = [T](repeating: 0, count: rows * schema.idsPerRow)
            try ids.withUnsafeMutableBufferPointer { try decodeRows(0..<rows, into: $0) }
            return ids
        }
    }

    /// Rows `range` of decoded columns into token-major rows: 8 x 8 transposes (``ByteScatter``,
    /// ``ShortScatter``), or for 16-bit columns into 8-bit ids row by row.
    private func scatter<T: ExpertID>(_ ids: IDColumns, _ range: Range<Int>, _ selection: LayerColumns,
                                      into out: UnsafeMutablePointer<T>) {
        if ids.bytes {
            selection.byteScatter.scatter(ids.base.assumingMemoryBound(to: UInt8.self), padded: ids.stride, range: range, into: out)
            return
        }
        let cols = ids.base.assumingMemoryBound(to: UInt16.self), stride = ids.stride
        if MemoryLayout<T>.size >= 2 {
            selection.shortScatter.scatter(cols, padded: stride, range: range, into: out)
            return
        }
        let perRow = selection.perRow
        selection.source.withUnsafeBufferPointer { source in
            // Row by row (sequential stores), eight rows at a time so that each column's reads
            // stay in one cache line.
            var t = range.lowerBound
            while t < range.upperBound {
                let end = min(range.upperBound, t &+ 8)
                for r in t..<end {
                    let row = out + (r &- range.lowerBound) &* perRow
                    if source.count == perRow {
                        for c in 0..<perRow { row[c] = T(truncatingIfNeeded: cols[c &* stride &+ r]) }
                    } else {
                        row.update(repeating: T(Schema.denseFill), count: perRow)
                        for c in 0..<source.count { row[source[c]] = T(truncatingIfNeeded: cols[c &* stride &+ r]) }
                    }
                }
                t = end
            }
        }
    }

    /// The row in `rowIDs` (column order) into `out`, dense layers filled.
    private func copyRow<T: ExpertID>(_ selection: LayerColumns, into out: UnsafeMutablePointer<T>) {
        let ids = rowIDs
        if selection.storesEveryID {
            for c in 0..<selection.perRow { out[c] = T(truncatingIfNeeded: ids[c]) }
        } else {
            out.update(repeating: T(Schema.denseFill), count: selection.perRow)
            selection.source.withUnsafeBufferPointer { source in
                for c in 0..<source.count { out[source[c]] = T(truncatingIfNeeded: ids[c]) }
            }
        }
    }
}
