/// Decodes blocks made by ``BlockEncoder``. A decoder holds one *open* block: `open` checks the
/// frame (checksum, sizes) and the payload's structure, then `decodeRows` decodes any range of
/// it, touching only the groups of 8 rows that hold the range. Not thread-safe: one per thread.
public final class BlockDecoder {
    public let schema: Schema
    private let sourceIndex: [Int]
    private let frames = LZ4FrameDecoder()
    private let payload = Scratch(), columns = Scratch(), values = Scratch()
    private var layout = PayloadLayout()
    private lazy var compact = CompactDecoder(schema: schema)
    private lazy var byteScatter = ByteScatter(gather: ByteGather(schema: schema))
    /// The open block is a compact (layout 2) one, decoded whole by `open`.
    private var compactOpen = false

    public init(schema: Schema) {
        self.schema = schema
        sourceIndex = schema.storedIndices
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
    @discardableResult
    public func open(_ frame: UnsafeRawBufferPointer, expectedRows: Int? = nil, contentChecksum: Bool = true) throws -> Int {
        layout.clear()
        compactOpen = false
        let rowLimit = expectedRows ?? BlockFormat.maxRows(schema)
        let header = try frames.header(
            of: frame, limit: BlockFormat.maxPayloadBytes(schema, rows: min(rowLimit, BlockFormat.maxRows(schema))))
        let size = header.size
        // 8 bytes of slack: flag counts read whole words past a bitmap's end (`nonRepeatsThrough`).
        let bytes = payload.reserve(size + 8)
        try frames.decompress(frame, header: header, into: bytes, contentChecksum: contentChecksum)
        do {
            if size >= 1 && bytes.load(as: UInt8.self) == CompactFormat.layout {
                // The row count first: a compact block is decoded whole when it is opened.
                if let expectedRows, size >= 8, Int(UnsafeRawPointer(bytes).loadLE(UInt32.self, at: 4)) != expectedRows {
                    throw CodecError.corruptBlock("block holds \(UnsafeRawPointer(bytes).loadLE(UInt32.self, at: 4)) rows, \(expectedRows) expected",
                                                  offset: 4, inPayload: true)
                }
                layout.rows = try compact.decode(UnsafeRawBufferPointer(start: bytes, count: size))
                compactOpen = true
            } else {
                try layout.parse(UnsafeRawBufferPointer(start: bytes, count: size), schema: schema)
            }
            if let expectedRows, layout.rows != expectedRows {
                throw CodecError.corruptBlock("block holds \(layout.rows) rows, \(expectedRows) expected", offset: 4, inPayload: true)
            }
        } catch {
            layout.clear()
            compactOpen = false
            throw error
        }
        return layout.rows
    }

    /// Decodes rows `range` of the open block into `out`, token-major, `range.count * idsPerRow`
    /// ids; dense layers get ``Schema/denseFill``.
    public func decodeRows<T: ExpertID>(_ range: Range<Int>, into out: UnsafeMutableBufferPointer<T>) throws {
        guard range.lowerBound >= 0, range.upperBound <= layout.rows else {
            throw CodecError.shapeMismatch("rows \(range) are outside the block's 0..<\(layout.rows)")
        }
        guard out.count == range.count * schema.idsPerRow else {
            throw CodecError.shapeMismatch("output holds \(out.count) ids, \(range.count) rows need \(range.count * schema.idsPerRow)")
        }
        guard T.max >= schema.experts - 1 else {
            throw CodecError.outputTypeTooNarrow(type: "\(T.self)", experts: schema.experts)
        }
        guard !range.isEmpty else { return }
        let decoding = RowDecoding(decoder: self, range: range)
        out.withConcreteIDType(decoding)
        if let failure = decoding.failure { throw failure }
    }

    /// `decodeRows` for the concrete id type.
    private final class RowDecoding: ConcreteMutableIDBody {
        let decoder: BlockDecoder
        let range: Range<Int>
        var failure: (any Error)?
        init(decoder: BlockDecoder, range: Range<Int>) {
            self.decoder = decoder
            self.range = range
        }
        func callAsFunction<U: ExpertID>(_ out: UnsafeMutableBufferPointer<U>) {
            do {
                if decoder.compactOpen {
                    decoder.copyCompact(range, into: out.baseAddress!)
                } else if decoder.schema.bitWidth <= 8 {
                    try decoder.decode(range, into: out.baseAddress!, scalar: UInt8.self)
                } else {
                    try decoder.decode(range, into: out.baseAddress!, scalar: UInt16.self)
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

    /// Rows `range` of the open compact block, from its decoded columns.
    private func copyCompact<T: ExpertID>(_ range: Range<Int>, into out: UnsafeMutablePointer<T>) {
        let perRow = schema.idsPerRow, rows = compact.rows
        let cols = compact.column(0)
        sourceIndex.withUnsafeBufferPointer { source in
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

    private func decode<T: ExpertID, S: PlaneScalar>(_ range: Range<Int>, into out: UnsafeMutablePointer<T>,
                                                      scalar: S.Type) throws {
        let rows = layout.rows, padded = (rows + 7) & ~7, columnCount = sourceIndex.count
        let cols = columns.reserve(columnCount * padded, of: S.self)
        let reader = ColumnReader<S>(layout: layout, payload: UnsafeRawPointer(payload.base), schema: schema,
                                     values: values.reserve(padded, of: S.self))
        if range.count == 1 {
            // One row (a random read): each id read bit by bit, no group decoded.
            try reader.decodeRow(range.lowerBound, into: cols, stride: padded)
        } else {
            for c in 0..<columnCount {
                let previousSlot = c % schema.topk == 0 ? nil : UnsafePointer(cols + (c - 1) * padded)
                try reader.decode(column: c, range, into: cols + c * padded, previousSlot: previousSlot)
            }
        }
        let perRow = schema.idsPerRow
        if S.self == UInt8.self {
            byteScatter.scatter(UnsafeRawPointer(cols).assumingMemoryBound(to: UInt8.self), padded: padded, range: range, into: out)
            return
        }
        sourceIndex.withUnsafeBufferPointer { source in
            if source.count == perRow { // no dense layer: column c is row index c
                for t in range {
                    let row = out + (t &- range.lowerBound) &* perRow, column = cols + t
                    for c in 0..<perRow { row[c] = T(truncatingIfNeeded: column[c &* padded]) }
                }
            } else {
                for t in range {
                    let row = out + (t &- range.lowerBound) &* perRow, column = cols + t
                    row.update(repeating: T(Schema.denseFill), count: perRow)
                    for c in 0..<source.count { row[source[c]] = T(truncatingIfNeeded: column[c &* padded]) }
                }
            }
        }
    }
}

/// Where each column of a checked payload lives.
struct PayloadLayout {
    /// Set bits in `bytes` bytes at `p`, eight bytes at a time.
    @inline(__always)
    static func setBits(_ p: UnsafePointer<UInt8>, bytes: Int) -> Int {
        var count = 0, i = 0
        while i + 8 <= bytes {
            count &+= UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self).nonzeroBitCount
            i &+= 8
        }
        while i < bytes {
            count &+= p[i].nonzeroBitCount
            i &+= 1
        }
        return count
    }

    var rows = 0
    var codings: [ColumnCoding] = []
    /// Per column: the constant's value, or the body's byte offset in the payload.
    var constantOrOffset: [Int] = []
    /// Per column with flags: how many rows are not repeats (stored values).
    var kept: [Int] = []

    /// Forgets the last block, keeping the arrays' storage for the next.
    mutating func clear() {
        rows = 0
        codings.removeAll(keepingCapacity: true)
        constantOrOffset.removeAll(keepingCapacity: true)
        kept.removeAll(keepingCapacity: true)
    }

    /// Checks the whole structure of `payload` (header, codings, constants, every body's
    /// length, flag and padding bits) and records where each column lives.
    mutating func parse(_ payload: UnsafeRawBufferPointer, schema: Schema) throws {
        func fail(_ why: String, _ offset: Int) -> CodecError { .corruptBlock(why, offset: offset, inPayload: true) }
        let size = payload.count, columnCount = schema.storedIDsPerRow, width = schema.bitWidth
        guard size >= BlockFormat.headerBytes else { throw fail("payload of \(size) bytes is shorter than its header", 0) }
        let raw = payload.baseAddress!
        let layoutID = raw.loadLE(UInt8.self, at: 0), storedWidth = raw.loadLE(UInt8.self, at: 1)
        guard layoutID == BlockFormat.layout else { throw fail("unknown block layout \(layoutID)", 0) }
        guard storedWidth == width else { throw fail("bit width \(storedWidth), the schema has \(width)", 1) }
        guard raw.loadLE(UInt16.self, at: 2) == 0 else { throw fail("reserved field is not zero", 2) }
        let rowCount = Int(raw.loadLE(UInt32.self, at: 4))
        guard rowCount <= BlockFormat.maxRows(schema) else { throw fail("\(rowCount) rows exceed the block limit", 4) }
        let storedColumns = Int(raw.loadLE(UInt32.self, at: 8))
        guard storedColumns == columnCount else { throw fail("\(storedColumns) columns, the schema has \(columnCount)", 8) }
        rows = rowCount
        guard rowCount > 0 else {
            guard size == BlockFormat.headerBytes else { throw fail("an empty block has bytes after its header", 12) }
            return
        }

        var cursor = BlockFormat.headerBytes
        guard size >= cursor + columnCount else { throw fail("payload ends inside the column codings", size) }
        codings.reserveCapacity(columnCount)
        for c in 0..<columnCount {
            guard let coding = ColumnCoding(rawValue: raw.loadLE(UInt8.self, at: cursor + c)) else {
                throw fail("unknown coding \(raw.loadLE(UInt8.self, at: cursor + c)) of column \(c)", cursor + c)
            }
            if coding.usesPreviousSlot && c % schema.topk == 0 {
                throw fail("column \(c) is slot 0 and cannot be a slot delta", cursor + c)
            }
            codings.append(coding)
        }
        cursor += columnCount

        let constants = codings.lazy.filter { $0 == .constant }.count
        guard size >= cursor + 2 * constants else { throw fail("payload ends inside the constant table", size) }
        var bodyCursor = cursor + 2 * constants
        let planeBytes = BitPlanes.planeBytes(rowCount)
        constantOrOffset.append(contentsOf: repeatElement(0, count: columnCount))
        kept.append(contentsOf: repeatElement(rowCount, count: columnCount))
        // Filled as locals (moved out of self and back): element writes to a stored array
        // would check its uniqueness every time.
        var constantOrOffset: [Int] = [], kept: [Int] = []
        swap(&constantOrOffset, &self.constantOrOffset)
        swap(&kept, &self.kept)
        defer {
            swap(&constantOrOffset, &self.constantOrOffset)
            swap(&kept, &self.kept)
        }
        for c in 0..<columnCount {
            switch codings[c] {
            case .constant:
                let value = Int(raw.loadLE(UInt16.self, at: cursor))
                guard value < schema.experts else { throw fail("constant \(value) of column \(c) is not below \(schema.experts)", cursor) }
                constantOrOffset[c] = value
                cursor += 2
            case .plain, .slotDelta:
                guard size - bodyCursor >= width * planeBytes else { throw fail("payload ends inside column \(c)", size) }
                try checkPadding(raw + bodyCursor, count: rowCount, planes: width, at: bodyCursor)
                constantOrOffset[c] = bodyCursor
                bodyCursor += width * planeBytes
            case .repeat, .repeatSlotDelta:
                guard size - bodyCursor >= planeBytes else { throw fail("payload ends inside the flags of column \(c)", size) }
                let flags = (raw + bodyCursor).assumingMemoryBound(to: UInt8.self)
                guard flags[0] & 1 == 0 else { throw fail("row 0 of column \(c) is flagged as a repeat", bodyCursor) }
                try checkPadding(raw + bodyCursor, count: rowCount, planes: 1, at: bodyCursor)
                let keptRows = rowCount - Self.setBits(flags, bytes: planeBytes)
                let valueBytes = width * BitPlanes.planeBytes(keptRows)
                guard size - bodyCursor - planeBytes >= valueBytes else { throw fail("payload ends inside column \(c)", size) }
                try checkPadding(raw + bodyCursor + planeBytes, count: keptRows, planes: width, at: bodyCursor + planeBytes)
                constantOrOffset[c] = bodyCursor
                kept[c] = keptRows
                bodyCursor += planeBytes + valueBytes
            }
        }
        guard bodyCursor == size else { throw fail("\(size - bodyCursor) bytes follow the last column", bodyCursor) }

        @inline(__always)
        func checkPadding(_ planes: UnsafeRawPointer, count: Int, planes planeCount: Int, at offset: Int) throws {
            guard count & 7 != 0 else { return }
            let stride = BitPlanes.planeBytes(count), mask = UInt8(0xFF) &<< UInt8(count & 7)
            // The last byte of every plane, ORed: one test, and a search only on failure.
            var last = planes + (stride &- 1), padding: UInt8 = 0
            for _ in 0..<planeCount {
                padding |= last.load(as: UInt8.self)
                last += stride
            }
            guard padding & mask != 0 else { return }
            for p in 0..<planeCount where planes.load(fromByteOffset: p * stride + stride - 1, as: UInt8.self) & mask != 0 {
                throw fail("padding bits are set", offset + p * stride + stride - 1)
            }
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

    private var width: Int { schema.bitWidth }
    private var experts: Int { schema.experts }

    private func body(_ c: Int) -> UnsafePointer<UInt8> {
        (payload + layout.constantOrOffset[c]).assumingMemoryBound(to: UInt8.self)
    }

    private func fail(_ why: String, column c: Int) -> CodecError {
        .corruptBlock("column \(c): \(why)", offset: layout.constantOrOffset[c], inPayload: true)
    }

    /// Every decoded value must be below `experts`; planes hold up to `2^width - 1`.
    private func checkRange(_ ids: UnsafePointer<S>, _ range: Range<Int>, column c: Int) throws {
        guard experts < 1 << width else { return }
        var largest: S = 0
        for i in range { largest = Swift.max(largest, ids[i]) }
        if Int(largest) >= experts { throw fail("stored value \(largest) is not below \(experts)", column: c) }
    }

    /// Decodes rows `range` of column `c` into `out[range]`; `previousSlot[range]` is already decoded.
    func decode(column c: Int, _ range: Range<Int>, into out: UnsafeMutablePointer<S>,
                previousSlot: UnsafePointer<S>?) throws {
        let rows = layout.rows, groups = (range.lowerBound >> 3)..<((range.upperBound + 7) >> 3)
        switch layout.codings[c] {
        case .constant:
            (out + range.lowerBound).update(repeating: S(truncatingIfNeeded: layout.constantOrOffset[c]), count: range.count)
        case .plain:
            BitPlanes.load(body(c), count: rows, width: width, groups: groups, into: out)
            try checkRange(out, range, column: c)
        case .slotDelta:
            BitPlanes.load(body(c), count: rows, width: width, groups: groups, into: out)
            try checkRange(out, range, column: c)
            let previous = previousSlot!, modulus = S(truncatingIfNeeded: experts)
            for t in range { out[t] = addModulo(out[t], previous[t], modulus) }
        case .repeat, .repeatSlotDelta:
            let flags = body(c), kept = layout.kept[c]
            let first = nonRepeatsThrough(range.lowerBound, flags) - 1
            let end = range.count == 1 ? first + 1 : nonRepeatsThrough(range.upperBound - 1, flags)
            BitPlanes.load(flags + BitPlanes.planeBytes(rows), count: kept, width: width,
                           groups: (first >> 3)..<((end + 7) >> 3), into: values)
            try checkRange(values, first..<end, column: c)
            if layout.codings[c] == .repeat {
                var j = first, t = range.lowerBound &+ 1
                out[range.lowerBound] = values[j]
                if S.self == UInt8.self {
                    while t < range.upperBound && t & 7 != 0 {
                        j &+= 1 &- flag(t, flags)
                        out[t] = values[j]
                        t &+= 1
                    }
                    while t &+ 8 <= range.upperBound {
                        j = Self.expandGroup(flags: flags[t >> 3], values: UnsafeRawPointer(values), after: j,
                                             into: UnsafeMutableRawPointer(out + t))
                        t &+= 8
                    }
                }
                while t < range.upperBound {
                    j &+= 1 &- flag(t, flags)
                    out[t] = values[j]
                    t &+= 1
                }
            } else {
                let previous = previousSlot!, modulus = S(truncatingIfNeeded: experts)
                var j = first
                out[range.lowerBound] = flag(range.lowerBound, flags) == 1
                    ? S(truncatingIfNeeded: try pointValue(column: c, row: range.lowerBound))
                    : addModulo(values[j], previous[range.lowerBound], modulus)
                // A flag byte at a time: its bits shift out as the rows go.
                var t = range.lowerBound &+ 1, bits = Int(flags[t >> 3]) &>> (t & 7)
                while t < range.upperBound {
                    if t & 7 == 0 { bits = Int(flags[t >> 3]) }
                    let repeated = bits & 1
                    bits &>>= 1
                    j &+= 1 &- repeated
                    let fresh = addModulo(values[j], previous[t], modulus)
                    out[t] = repeated == 1 ? out[t &- 1] : fresh
                    t &+= 1
                }
            }
        }
    }

    /// Row `t` of every column into `out[c * stride + t]`, each id read bit by bit from its
    /// planes, in column order: a slot delta finds its previous slot's id of row `t` decoded.
    func decodeRow(_ t: Int, into out: UnsafeMutablePointer<S>, stride: Int) throws {
        let rows = layout.rows, width = width, experts = experts
        let modulus = S(truncatingIfNeeded: experts)
        try layout.codings.withUnsafeBufferPointer { codings in
            try layout.constantOrOffset.withUnsafeBufferPointer { offsets in
                var at = out + t
                for c in 0..<codings.count {
                    defer { at += stride }
                    let coding = codings[c]
                    if coding == .constant {
                        at.pointee = S(truncatingIfNeeded: offsets[c])
                        continue
                    }
                    let body = (payload + offsets[c]).assumingMemoryBound(to: UInt8.self)
                    let stored: Int
                    var base: S? = nil
                    switch coding {
                    case .plain, .slotDelta:
                        stored = BitPlanes.value(at: t, in: body, count: rows, width: width)
                        if coding == .slotDelta { base = (at - stride).pointee }
                    default:
                        let j = nonRepeatsThrough(t, body) - 1
                        stored = BitPlanes.value(at: j, in: body + BitPlanes.planeBytes(rows), count: layout.kept[c], width: width)
                        if coding == .repeatSlotDelta {
                            // A flagged row repeats row r, the last unflagged one: its slot delta
                            // is against the previous slot at row r.
                            let r = lastNonRepeat(atOrBefore: t, body)
                            base = r == t ? (at - stride).pointee : S(truncatingIfNeeded: try pointValue(column: c - 1, row: r))
                        }
                    }
                    guard stored < experts else { throw fail("stored value \(stored) is not below \(experts)", column: c) }
                    let value = S(truncatingIfNeeded: stored)
                    at.pointee = base.map { addModulo(value, $0, modulus) } ?? value
                }
            }
        }
    }

    /// One group of 8 rows of a repeat column of byte ids: row `i` takes stored value
    /// `j + (unflagged rows among 0...i)`, where `j` is the stored value of the row before the
    /// group. Returns the stored value of the group's last row.
    @inline(__always)
    static func expandGroup(flags: UInt8, values: UnsafeRawPointer, after j: Int, into out: UnsafeMutableRawPointer) -> Int {
        let lowBits: UInt64 = 0x0101_0101_0101_0101
        switch flags {
        case 0: // no repeat: the next 8 stored values
            out.storeBytes(of: values.loadUnaligned(fromByteOffset: j &+ 1, as: UInt64.self), as: UInt64.self)
            return j &+ 8
        case 0xFF: // all repeat the row before
            out.storeBytes(of: UInt64(values.load(fromByteOffset: j, as: UInt8.self)) &* lowBits, as: UInt64.self)
            return j
        default:
            // Byte i: 1 where row i is unflagged; times lowBits, byte i counts rows 0...i.
            let kept = (UInt64(~flags) &* lowBits) & 0x8040_2010_0804_0201
            let ones = ((((kept & 0x7F7F_7F7F_7F7F_7F7F) &+ 0x7F7F_7F7F_7F7F_7F7F) | kept) & 0x8080_8080_8080_8080) &>> 7
            let prefix = ones &* lowBits
            var word: UInt64 = 0, shift: UInt64 = 0
            for _ in 0..<8 {
                let index = j &+ Int((prefix &>> shift) & 0xFF)
                word |= UInt64(values.load(fromByteOffset: index, as: UInt8.self)) &<< shift
                shift &+= 8
            }
            out.storeBytes(of: word, as: UInt64.self)
            return j &+ Int(prefix &>> 56)
        }
    }

    /// The id of one row of column `c`, read bit by bit (a slot delta reads its previous slot too).
    func pointValue(column c: Int, row t: Int) throws -> Int {
        let rows = layout.rows
        let stored: Int, base: Int?
        switch layout.codings[c] {
        case .constant:
            return layout.constantOrOffset[c]
        case .plain, .slotDelta:
            stored = BitPlanes.value(at: t, in: body(c), count: rows, width: width)
            base = layout.codings[c] == .slotDelta ? try pointValue(column: c - 1, row: t) : nil
        case .repeat, .repeatSlotDelta:
            let flags = body(c)
            stored = BitPlanes.value(at: nonRepeatsThrough(t, flags) - 1, in: flags + BitPlanes.planeBytes(rows),
                                     count: layout.kept[c], width: width)
            base = layout.codings[c] == .repeatSlotDelta
                ? try pointValue(column: c - 1, row: lastNonRepeat(atOrBefore: t, flags)) : nil
        }
        guard stored < experts else { throw fail("stored value \(stored) is not below \(experts)", column: c) }
        return base.map { addModulo(stored, $0, experts) } ?? stored
    }

    @inline(__always)
    private func flag(_ t: Int, _ flags: UnsafePointer<UInt8>) -> Int { Int(flags[t >> 3] >> UInt8(t & 7)) & 1 }

    /// Rows `0...t` whose flag is clear: the stored value of row `t` is at this count minus one.
    /// Counts whole words; the last one is masked to rows through `t` (it may read up to 7
    /// bytes past the bitmap, inside the payload or its 8 bytes of slack).
    private func nonRepeatsThrough(_ t: Int, _ flags: UnsafePointer<UInt8>) -> Int {
        let raw = UnsafeRawPointer(flags), rows = t &+ 1
        var repeats = 0, offset = 0
        while offset &* 8 &+ 64 <= rows {
            repeats &+= raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self).nonzeroBitCount
            offset &+= 8
        }
        let tail = rows & 63
        if tail != 0 {
            let word = raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian
            repeats &+= (word & ((1 &<< UInt64(tail)) &- 1)).nonzeroBitCount
        }
        return rows &- repeats
    }

    /// The last row at or before `t` whose flag is clear (row 0's always is), a byte at a time.
    private func lastNonRepeat(atOrBefore t: Int, _ flags: UnsafePointer<UInt8>) -> Int {
        var byte = t >> 3
        // Clear flags of the rows through t in this byte, as set bits.
        var clear = ~flags[byte] & UInt8(truncatingIfNeeded: (1 &<< ((t & 7) &+ 1)) &- 1)
        while clear == 0 {
            byte -= 1
            clear = ~flags[byte]
        }
        return byte &* 8 &+ 7 &- clear.leadingZeroBitCount
    }
}
