/// Decodes blocks made by ``BlockEncoder``. A decoder holds one *open* block: `open` checks the
/// frame (checksum, sizes) and the payload's structure, then `decodeRows` decodes any range of
/// it, touching only the groups of 8 rows that hold the range. Not thread-safe: one per thread.
public final class BlockDecoder {
    public let schema: Schema
    private let frames = LZ4FrameDecoder()
    private let payload = Scratch(), columns = Scratch(), values = Scratch()
    private let layout: PayloadLayout
    private lazy var compact = CompactDecoder(schema: schema)
    /// Every layer: what a whole-row read decodes.
    private lazy var allLayers = LayerColumns(schema: schema, layers: 0..<schema.layers)
    /// The layers of the last read of fewer layers, kept for the next (reads repeat their range).
    private var someLayers: LayerColumns?
    private let pulls = RepeatPulls.shared
    /// The open block is a compact (layout 2) one, decoded by `open` (whole, or the columns asked).
    private var compactOpen = false
    /// The payload size of the open block, nil when none is open.
    private var openSize: Int?

    public init(schema: Schema) {
        self.schema = schema
        layout = PayloadLayout(columnCount: schema.storedIDsPerRow)
    }

    /// Rows of the open block (0 before the first `open`).
    public var rowCount: Int { layout.rows }

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
        layout.clear()
        compactOpen = false
        openSize = nil
        try layers.map(checkLayers)
        let rowLimit = expectedRows ?? BlockFormat.maxRows(schema)
        let header = try frames.header(
            of: frame, limit: BlockFormat.maxPayloadBytes(schema, rows: min(rowLimit, BlockFormat.maxRows(schema))))
        let size = header.size
        // Slack: flag counts read whole words past a bitmap's end (`BitCount`, `PrefixBitCounter`),
        // plane loads up to 8 bytes of every plane (`BitPlanes.load`).
        let bytes = payload.reserve(size + max(PayloadLayout.slackBytes, BitPlanes.loadSlackBytes))
        try frames.decompress(frame, header: header, into: bytes, contentChecksum: contentChecksum)
        try prepare(UnsafeRawBufferPointer(start: bytes, count: size), columns: layers.map { selection($0).columns },
                    expectedRows: expectedRows, decodingRow: decodingRow)
        return layout.rows
    }

    /// Checks and decodes (compact) or places (layout 1) the columns `columns` (all when nil)
    /// of a decompressed payload, which becomes the open block's.
    private func prepare(_ payload: UnsafeRawBufferPointer, columns: Range<Int>?, expectedRows: Int?, decodingRow: Int?) throws {
        let bytes = payload.baseAddress!, size = payload.count
        do {
            if size >= 1 && bytes.load(as: UInt8.self) == CompactFormat.layout {
                // The row count first: a compact block is decoded when it is opened.
                if let expectedRows, size >= 8, Int(bytes.loadLE(UInt32.self, at: 4)) != expectedRows {
                    throw CodecError.corruptBlock("block holds \(bytes.loadLE(UInt32.self, at: 4)) rows, \(expectedRows) expected",
                                                  offset: 4, inPayload: true)
                }
                layout.setCompact(rows: try compact.decode(payload, columns: columns?.upperBound))
                compactOpen = true
            } else {
                try layout.parse(payload, schema: schema, decodingRow: decodingRow, columns: columns)
            }
            if let expectedRows, layout.rows != expectedRows {
                throw CodecError.corruptBlock("block holds \(layout.rows) rows, \(expectedRows) expected", offset: 4, inPayload: true)
            }
        } catch {
            layout.clear()
            compactOpen = false
            openSize = nil
            throw error
        }
        openSize = size
    }

    /// Whether the open block's columns `columns` were checked (and decoded, compact).
    private func isPrepared(_ columns: Range<Int>) -> Bool {
        if columns.isEmpty { return true }
        if compactOpen { return compact.decoded >= columns.upperBound }
        return layout.checked.lowerBound <= columns.lowerBound && columns.upperBound <= layout.checked.upperBound
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
        guard range.lowerBound >= 0, range.upperBound <= layout.rows else {
            throw CodecError.shapeMismatch("rows \(range) are outside the block's 0..<\(layout.rows)")
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
        if !isPrepared(selection.columns), let openSize {
            // Opened for other layers: check and place (or decode) these in the payload kept.
            try prepare(UnsafeRawBufferPointer(start: payload.base, count: openSize), columns: selection.columns,
                        expectedRows: layout.rows, decodingRow: nil)
        }
        let decoding = RowDecoding(decoder: self, range: range, selection: selection)
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
        let range: Range<Int>
        let selection: LayerColumns
        var failure: (any Error)?
        init(decoder: BlockDecoder, range: Range<Int>, selection: LayerColumns) {
            self.decoder = decoder
            self.range = range
            self.selection = selection
        }
        func callAsFunction<U: ExpertID>(_ out: UnsafeMutableBufferPointer<U>) {
            do {
                if decoder.compactOpen {
                    decoder.copyCompact(range, selection, into: out.baseAddress!)
                } else if range.count == 1 && decoder.layout.decodedRow == range.lowerBound {
                    decoder.copyDecodedRow(selection, into: out.baseAddress!)
                } else if range.count == 1 {
                    try decoder.decodeRow(range.lowerBound, selection, into: out.baseAddress!)
                } else if decoder.schema.bitWidth <= 8 {
                    try decoder.decode(range, selection, into: out.baseAddress!, scalar: UInt8.self)
                } else {
                    try decoder.decode(range, selection, into: out.baseAddress!, scalar: UInt16.self)
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

    /// Rows `range` of the open compact block, from its decoded columns: the fast codec's 16-bit
    /// scatter (8 x 8 transposes) for ids of 16 bits or more, else row by row.
    private func copyCompact<T: ExpertID>(_ range: Range<Int>, _ selection: LayerColumns, into out: UnsafeMutablePointer<T>) {
        let perRow = selection.perRow, rows = compact.rows
        let cols = compact.column(selection.columns.lowerBound)
        if MemoryLayout<T>.size >= 2 {
            selection.wordScatter.scatter(cols, padded: rows, range: range, into: out)
            return
        }
        selection.source.withUnsafeBufferPointer { source in
            // Row by row (sequential stores), eight rows at a time so that each column's reads
            // stay in one cache line.
            var t = range.lowerBound
            while t < range.upperBound {
                let end = min(range.upperBound, t &+ 8)
                for r in t..<end {
                    let row = out + (r &- range.lowerBound) &* perRow
                    if source.count == perRow {
                        for c in 0..<perRow { row[c] = T(truncatingIfNeeded: cols[c &* rows &+ r]) }
                    } else {
                        row.update(repeating: T(Schema.denseFill), count: perRow)
                        for c in 0..<source.count { row[source[c]] = T(truncatingIfNeeded: cols[c &* rows &+ r]) }
                    }
                }
                t = end
            }
        }
    }

    /// The row `open` decoded on its way (`decodingRow`).
    private func copyDecodedRow<T: ExpertID>(_ selection: LayerColumns, into out: UnsafeMutablePointer<T>) {
        let ids = layout.rowValues + selection.columns.lowerBound
        if selection.storesEveryID {
            for c in 0..<selection.perRow { out[c] = T(truncatingIfNeeded: ids[c]) }
        } else {
            out.update(repeating: T(Schema.denseFill), count: selection.perRow)
            selection.source.withUnsafeBufferPointer { source in
                for c in 0..<source.count { out[source[c]] = T(truncatingIfNeeded: ids[c]) }
            }
        }
    }

    /// One row (a random read) of the open layout-1 block: each id read bit by bit from its
    /// planes straight into `out`, no group decoded.
    private func decodeRow<T: ExpertID>(_ t: Int, _ selection: LayerColumns, into out: UnsafeMutablePointer<T>) throws {
        let reader = PointReader(layout: layout, payload: UnsafeRawPointer(payload.base), schema: schema)
        if selection.storesEveryID {
            try reader.decodeRow(t, columns: selection.columns, into: out, source: nil, perRow: selection.perRow)
        } else {
            try selection.source.withUnsafeBufferPointer {
                try reader.decodeRow(t, columns: selection.columns, into: out, source: $0, perRow: selection.perRow)
            }
        }
    }

    private func decode<T: ExpertID, S: PlaneScalar>(_ range: Range<Int>, _ selection: LayerColumns,
                                                      into out: UnsafeMutablePointer<T>, scalar: S.Type) throws {
        let rows = layout.rows, padded = (rows + 7) & ~7, first = selection.columns.lowerBound
        // Room for what `BitPlanes.load` writes past a column's last group.
        let cols = columns.reserve(selection.columns.count * padded + BitPlanes.loadSlackIDs, of: S.self)
        let reader = ColumnReader<S>(layout: layout, payload: UnsafeRawPointer(payload.base), schema: schema,
                                     values: values.reserve(padded + BitPlanes.loadSlackIDs, of: S.self), pulls: pulls)
        // The output's cache lines, claimed a share after each column (see `OutputLines`).
        var lines = OutputLines(out, ids: range.count &* selection.perRow, columns: selection.columns.count)
        for c in selection.columns {
            // A slot delta's previous slot is in the same layer, so in the selection.
            let previousSlot = c % schema.topk == 0 ? nil : UnsafePointer(cols + (c - 1 - first) * padded)
            try reader.decode(column: c, range, into: cols + (c - first) * padded, previousSlot: previousSlot)
            lines.claimNext()
        }
        if S.self == UInt8.self {
            selection.byteScatter.scatter(UnsafeRawPointer(cols).assumingMemoryBound(to: UInt8.self), padded: padded, range: range, into: out)
        } else {
            selection.wordScatter.scatter(UnsafeRawPointer(cols).assumingMemoryBound(to: UInt16.self), padded: padded, range: range, into: out)
        }
    }
}

/// Decodes ranges of columns of a checked payload.
private struct ColumnReader<S: PlaneScalar> {
    let layout: PayloadLayout
    let payload: UnsafeRawPointer
    let schema: Schema
    /// Scratch for the stored values of a flagged column.
    let values: UnsafeMutablePointer<S>
    let pulls: RepeatPulls

    private var width: Int { schema.bitWidth }
    private var experts: Int { schema.experts }

    private func body(_ c: Int) -> UnsafePointer<UInt8> {
        (payload + layout.places[c].offsetOrValue).assumingMemoryBound(to: UInt8.self)
    }

    private func fail(_ why: String, column c: Int) -> CodecError {
        .corruptBlock("column \(c): \(why)", offset: layout.places[c].offsetOrValue, inPayload: true)
    }

    /// Every decoded value must be below `experts`; planes hold up to `2^width - 1`. Inlined
    /// around a static loop: a call on `self` retained the layout and the schema's two arrays
    /// for it, 3 retains and releases a column.
    @inline(__always)
    private func checkRange(_ ids: UnsafePointer<S>, _ range: Range<Int>, column c: Int) throws {
        guard experts < 1 << width else { return }
        let largest = Self.largest(ids, range)
        if Int(largest) >= experts { throw fail("stored value \(largest) is not below \(experts)", column: c) }
    }

    private static func largest(_ ids: UnsafePointer<S>, _ range: Range<Int>) -> S {
        var largest: S = 0
        for i in range { largest = Swift.max(largest, ids[i]) }
        return largest
    }

    /// Decodes rows `range` of column `c` into `out[range]`; `previousSlot[range]` is already decoded.
    func decode(column c: Int, _ range: Range<Int>, into out: UnsafeMutablePointer<S>,
                previousSlot: UnsafePointer<S>?) throws {
        let rows = layout.rows, groups = (range.lowerBound >> 3)..<((range.upperBound + 7) >> 3)
        let place = layout.places[c]
        switch place.coding {
        case .constant:
            (out + range.lowerBound).update(repeating: S(truncatingIfNeeded: place.offsetOrValue), count: range.count)
        case .plain:
            BitPlanes.load(body(c), count: rows, width: width, groups: groups, into: out)
            try checkRange(out, range, column: c)
        case .slotDelta:
            BitPlanes.load(body(c), count: rows, width: width, groups: groups, into: out)
            try checkRange(out, range, column: c)
            addPreviousSlot(previousSlot!, range, to: out)
        case .repeat, .repeatSlotDelta:
            // The stored values of rows `range` are `first..<end`. The layout checked that row 0
            // is unflagged and counted the column's flags (`kept` is rows minus that count), so
            // the ends of the column need no bit count: a whole block's range needs none.
            let flags = body(c), kept = Int(place.kept)
            let first = range.lowerBound == 0 ? 0 : RepeatFlags.nonRepeats(through: range.lowerBound, flags) - 1
            let end = range.upperBound == rows ? kept
                : range.count == 1 ? first + 1 : RepeatFlags.nonRepeats(through: range.upperBound - 1, flags)
            BitPlanes.load(flags + BitPlanes.planeBytes(rows), count: kept, width: width,
                           groups: (first >> 3)..<((end + 7) >> 3), into: values)
            try checkRange(values, first..<end, column: c)
            RepeatRows.expand(flags: flags, values: values, first: first, range, into: out, pulls: pulls)
            guard place.coding == .repeatSlotDelta else { return }
            // Each row's stored delta plus the previous slot at that row: right for the unflagged
            // rows. A flagged row then copies the id above it (spec 1.5.5), row `range.lowerBound`
            // the one it repeats, read from the planes.
            addPreviousSlot(previousSlot!, range, to: out)
            if RepeatFlags.flag(range.lowerBound, flags) == 1 {
                out[range.lowerBound] = try pointValue(column: c, row: range.lowerBound)
            }
            RepeatRows.copyFlagged(flags, rows: (range.lowerBound &+ 1)..<range.upperBound, in: out)
        }
    }

    /// The id of column `c` at row `t`, read from the planes (``PointReader``). Out of line: the
    /// reader it makes copies the layout and the schema, which were otherwise retained around
    /// the kernels of every flagged column (3 retains and releases a column).
    @inline(never)
    private func pointValue(column c: Int, row t: Int) throws -> S {
        S(truncatingIfNeeded: try PointReader(layout: layout, payload: payload, schema: schema).value(column: c, row: t))
    }

    /// Slot deltas in `out[range]` become ids: each plus the previous slot's id at its row, mod `experts`.
    @inline(__always)
    private func addPreviousSlot(_ previous: UnsafePointer<S>, _ range: Range<Int>, to out: UnsafeMutablePointer<S>) {
        let modulus = S(truncatingIfNeeded: experts)
        for t in range { out[t] = addModulo(out[t], previous[t], modulus) }
    }
}

/// Writes one id of each cache line of a decode's output, a share after each column, so that
/// the lines are fetched (read for ownership, from memory for a large output) while the columns
/// are decoded instead of all at once when the rows are scattered into them, which then stalled
/// on them. The ids written are overwritten by the scatter.
private struct OutputLines<T: ExpertID> {
    let out: UnsafeMutablePointer<T>
    let end: Int, step: Int, perColumn: Int
    var next = 0

    init(_ out: UnsafeMutablePointer<T>, ids: Int, columns: Int) {
        self.out = out
        end = ids
        step = max(1, 64 / MemoryLayout<T>.size)
        perColumn = (ids / step + columns) / max(columns, 1) &* step
    }

    @inline(__always)
    mutating func claimNext() {
        let stop = min(end, next &+ perColumn)
        while next < stop {
            out[next] = 0
            next &+= step
        }
    }
}
