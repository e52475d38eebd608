/// A payload layout (spec 1.1): how the rows of a block become its payload and back. The
/// payload's first byte names the layout and ``BlockCodec`` lists the layouts: adding one is a
/// type of this protocol (with its ``PayloadWriter`` and ``PayloadReader``) and a case of
/// ``BlockCodec`` that names it. The frame around payloads, the gathering of rows into columns
/// and the scattering of columns into rows are the same for every layout.
protocol BlockLayout: Sendable {
    /// The payload's first byte, and the archive header's codec field.
    static var layoutByte: UInt8 { get }
    /// The name it is chosen by (`--codec`).
    static var name: String { get }
    /// What it is, in a few words (`archive-tool stat`).
    static var summary: String { get }
    /// Fixed-width bytes of ids a block aims for by default.
    static var defaultBlockBytes: Int { get }
    /// The largest payload of `rows` rows a reader may have to allocate (spec 1.4).
    static func maxPayloadBytes(_ schema: Schema, rows: Int) -> Int
    static func makeWriter(schema: Schema) -> any PayloadWriter
    /// `vectorKernels`: whether it may use ``VectorKernels`` (the CPU has them).
    static func makeReader(schema: Schema, vectorKernels: Bool) -> any PayloadReader
}

/// Columns of ids: the stored columns of a block, one after the other.
struct IDColumns {
    /// Column `i` at `base + i * stride` ids.
    let base: UnsafeRawPointer
    /// Ids from one column to the next: the rows, or the rows rounded up to a multiple of 8.
    let stride: Int
    /// Ids are bytes (ids of at most 8 bits), else UInt16.
    let bytes: Bool
}

/// How a ``PayloadWriter`` wants a block's rows gathered into columns.
struct ColumnShape {
    /// Bytes for ids of at most 8 bits (else UInt16 for every width).
    let bytesWhenNarrow: Bool
    /// Each column zero-padded to a multiple of 8 rows (else columns `count` apart).
    let padded: Bool
}

/// Writes the payloads of one layout. Not thread-safe: one per ``BlockEncoder``.
protocol PayloadWriter: AnyObject {
    var columnShape: ColumnShape { get }
    /// The payload of `count` rows gathered into `columns` (checked ids, as `columnShape`
    /// asks), valid until the next call; `segments` gets the payload's runs worth compressing
    /// and not, in order.
    func write(_ columns: IDColumns, count: Int, segments: inout [PayloadSegment]) -> (UnsafeRawPointer, Int)
}

/// Checks and decodes the payloads of one layout. Not thread-safe: one per ``BlockDecoder``.
protocol PayloadReader: AnyObject {
    /// Checks `payload` (`slackBytes` readable bytes follow it), as a whole or, with `columns`
    /// (whole layers), what reading those columns needs (see ``BlockDecoder/open``), and keeps
    /// what decoding them needs; returns its row count. `decodingRow` is a row that will be
    /// read alone. On a throw, `clear()` must follow.
    func prepare(_ payload: UnsafeRawBufferPointer, columns: Range<Int>?, decodingRow: Int?) throws -> Int
    /// Whether the last `prepare` checked `columns`.
    func isPrepared(_ columns: Range<Int>) -> Bool
    /// Rows `range` of `columns` (prepared), valid until the next call: the column of
    /// `columns.lowerBound` first, row `t` at index `t`. `lines` is claimed a share after each
    /// column decoded.
    func decodeColumns(_ range: Range<Int>, _ columns: Range<Int>, claiming lines: inout OutputLines) throws -> IDColumns
    /// Row `t`'s ids of `columns` (prepared), in column order.
    func decodeRow(_ t: Int, _ columns: Range<Int>, into ids: UnsafeMutablePointer<UInt16>) throws
    /// Forgets the payload.
    func clear()
}

/// The header every layout's payload starts with (spec 1.5.1): layout, bit width, reserved,
/// rows, stored columns.
enum PayloadHeader {
    static let bytes = 12

    /// Checks the header of `payload` for `layoutByte` and `schema` and, for an empty block,
    /// that nothing follows it. Returns the row count.
    static func rows(of payload: UnsafeRawBufferPointer, layoutByte: UInt8, schema: Schema) throws -> Int {
        func fail(_ why: String, _ offset: Int) -> CodecError { .corruptBlock(why, offset: offset, inPayload: true) }
        let size = payload.count, width = schema.bitWidth
        guard size >= bytes else { throw fail("payload of \(size) bytes is shorter than its header", 0) }
        let raw = payload.baseAddress!
        let layoutID = raw.loadLE(UInt8.self, at: 0), storedWidth = raw.loadLE(UInt8.self, at: 1)
        guard layoutID == layoutByte else { throw fail("unknown block layout \(layoutID)", 0) }
        guard storedWidth == width else { throw fail("bit width \(storedWidth), the schema has \(width)", 1) }
        guard raw.loadLE(UInt16.self, at: 2) == 0 else { throw fail("reserved field is not zero", 2) }
        let rows = Int(raw.loadLE(UInt32.self, at: 4))
        guard rows <= BlockLimits.maxRows(schema) else { throw fail("\(rows) rows exceed the block limit", 4) }
        let storedColumns = Int(raw.loadLE(UInt32.self, at: 8))
        guard storedColumns == schema.storedIDsPerRow else {
            throw fail("\(storedColumns) columns, the schema has \(schema.storedIDsPerRow)", 8)
        }
        guard rows > 0 || size == bytes else { throw fail("an empty block has bytes after its header", 12) }
        return rows
    }

    static func write(_ out: UnsafeMutableRawPointer, layoutByte: UInt8, schema: Schema, rows: Int) {
        out.storeLE(layoutByte, at: 0)
        out.storeLE(UInt8(schema.bitWidth), at: 1)
        out.storeLE(UInt16(0), at: 2)
        out.storeLE(UInt32(rows), at: 4)
        out.storeLE(UInt32(schema.storedIDsPerRow), at: 8)
    }
}

/// Writes one byte of each cache line of a decode's output, a share after each column, so that
/// the lines are fetched (read for ownership, from memory for a large output) while the columns
/// are decoded instead of all at once when the rows are scattered into them, which then stalled
/// on them. The bytes written are overwritten by the scatter.
struct OutputLines {
    let out: UnsafeMutableRawPointer
    let end: Int, perColumn: Int
    var next = 0

    init(_ out: UnsafeMutableRawPointer, bytes: Int, columns: Int) {
        self.out = out
        end = bytes
        perColumn = (bytes / 64 + columns) / max(columns, 1) &* 64
    }

    @inline(__always)
    mutating func claimNext() {
        let stop = min(end, next &+ perColumn)
        while next < stop {
            out.storeBytes(of: 0, toByteOffset: next, as: UInt8.self)
            next &+= 64
        }
    }
}
