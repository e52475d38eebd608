/// Decodes blocks made by ``BlockEncoder``. A decoder holds one *open* block: `open` checks the
/// frame (checksum, sizes) and the payload's structure, then `decodeRows` decodes any range of
/// it, touching only the groups of 8 rows that hold the range. Not thread-safe: one per thread.
public final class BlockDecoder {
    public let schema: Schema
    private let sourceIndex: [Int]
    private let frames = LZ4FrameDecoder()
    private let payload = Scratch(), columns = Scratch(), values = Scratch()
    private let layout: PayloadLayout
    private lazy var compact = CompactDecoder(schema: schema)
    private lazy var byteScatter = ByteScatter(gather: ByteGather(schema: schema))
    /// The open block is a compact (layout 2) one, decoded whole by `open`.
    private var compactOpen = false

    public init(schema: Schema) {
        self.schema = schema
        sourceIndex = schema.storedIndices
        layout = PayloadLayout(columnCount: sourceIndex.count)
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
    @discardableResult
    public func open(_ frame: UnsafeRawBufferPointer, expectedRows: Int? = nil, contentChecksum: Bool = true,
                     decodingRow: Int? = nil) throws -> Int {
        layout.clear()
        compactOpen = false
        let rowLimit = expectedRows ?? BlockFormat.maxRows(schema)
        let header = try frames.header(
            of: frame, limit: BlockFormat.maxPayloadBytes(schema, rows: min(rowLimit, BlockFormat.maxRows(schema))))
        let size = header.size
        // Slack: flag counts read whole words past a bitmap's end (`BitCount`, `PrefixBitCounter`),
        // plane loads up to 8 bytes of every plane (`BitPlanes.load`).
        let bytes = payload.reserve(size + max(PayloadLayout.slackBytes, BitPlanes.loadSlackBytes))
        try frames.decompress(frame, header: header, into: bytes, contentChecksum: contentChecksum)
        do {
            if size >= 1 && bytes.load(as: UInt8.self) == CompactFormat.layout {
                // The row count first: a compact block is decoded whole when it is opened.
                if let expectedRows, size >= 8, Int(UnsafeRawPointer(bytes).loadLE(UInt32.self, at: 4)) != expectedRows {
                    throw CodecError.corruptBlock("block holds \(UnsafeRawPointer(bytes).loadLE(UInt32.self, at: 4)) rows, \(expectedRows) expected",
                                                  offset: 4, inPayload: true)
                }
                layout.setCompact(rows: try compact.decode(UnsafeRawBufferPointer(start: bytes, count: size)))
                compactOpen = true
            } else {
                try layout.parse(UnsafeRawBufferPointer(start: bytes, count: size), schema: schema, decodingRow: decodingRow)
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
                } else if range.count == 1 && decoder.layout.decodedRow == range.lowerBound {
                    decoder.copyDecodedRow(into: out.baseAddress!)
                } else if range.count == 1 {
                    try decoder.decodeRow(range.lowerBound, into: out.baseAddress!)
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

    /// The row `open` decoded on its way (`decodingRow`).
    private func copyDecodedRow<T: ExpertID>(into out: UnsafeMutablePointer<T>) {
        let ids = layout.rowValues
        if sourceIndex.count == schema.idsPerRow {
            for c in 0..<sourceIndex.count { out[c] = T(truncatingIfNeeded: ids[c]) }
        } else {
            out.update(repeating: T(Schema.denseFill), count: schema.idsPerRow)
            sourceIndex.withUnsafeBufferPointer { source in
                for c in 0..<source.count { out[source[c]] = T(truncatingIfNeeded: ids[c]) }
            }
        }
    }

    /// One row (a random read) of the open layout-1 block: each id read bit by bit from its
    /// planes straight into `out`, no group decoded.
    private func decodeRow<T: ExpertID>(_ t: Int, into out: UnsafeMutablePointer<T>) throws {
        let reader = PointReader(layout: layout, payload: UnsafeRawPointer(payload.base), schema: schema)
        if sourceIndex.count == schema.idsPerRow {
            try reader.decodeRow(t, into: out, source: nil)
        } else {
            try sourceIndex.withUnsafeBufferPointer { try reader.decodeRow(t, into: out, source: $0) }
        }
    }

    private func decode<T: ExpertID, S: PlaneScalar>(_ range: Range<Int>, into out: UnsafeMutablePointer<T>,
                                                      scalar: S.Type) throws {
        let rows = layout.rows, padded = (rows + 7) & ~7, columnCount = sourceIndex.count
        // Room for what `BitPlanes.load` writes past a column's last group.
        let cols = columns.reserve(columnCount * padded + BitPlanes.loadSlackIDs, of: S.self)
        let reader = ColumnReader<S>(layout: layout, payload: UnsafeRawPointer(payload.base), schema: schema,
                                     values: values.reserve(padded + BitPlanes.loadSlackIDs, of: S.self))
        for c in 0..<columnCount {
            let previousSlot = c % schema.topk == 0 ? nil : UnsafePointer(cols + (c - 1) * padded)
            try reader.decode(column: c, range, into: cols + c * padded, previousSlot: previousSlot)
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
        (payload + layout.places[c].offsetOrValue).assumingMemoryBound(to: UInt8.self)
    }

    private func fail(_ why: String, column c: Int) -> CodecError {
        .corruptBlock("column \(c): \(why)", offset: layout.places[c].offsetOrValue, inPayload: true)
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
            let previous = previousSlot!, modulus = S(truncatingIfNeeded: experts)
            for t in range { out[t] = addModulo(out[t], previous[t], modulus) }
        case .repeat, .repeatSlotDelta:
            let flags = body(c), kept = Int(place.kept)
            let first = RepeatFlags.nonRepeats(through: range.lowerBound, flags) - 1
            let end = range.count == 1 ? first + 1 : RepeatFlags.nonRepeats(through: range.upperBound - 1, flags)
            BitPlanes.load(flags + BitPlanes.planeBytes(rows), count: kept, width: width,
                           groups: (first >> 3)..<((end + 7) >> 3), into: values)
            try checkRange(values, first..<end, column: c)
            expand(flags: flags, values: values, first: first, range, into: out)
            guard place.coding == .repeatSlotDelta else { return }
            // Each row's stored delta plus the previous slot at that row: right for the unflagged
            // rows. A flagged row then copies the id above it (spec 1.5.5), row `range.lowerBound`
            // the one it repeats, read from the planes.
            let previous = previousSlot!, modulus = S(truncatingIfNeeded: experts)
            for t in range { out[t] = addModulo(out[t], previous[t], modulus) }
            if RepeatFlags.flag(range.lowerBound, flags) == 1 {
                out[range.lowerBound] = S(truncatingIfNeeded: try PointReader(layout: layout, payload: payload, schema: schema)
                    .value(column: c, row: range.lowerBound))
            }
            Self.copyFlagged(flags, rows: (range.lowerBound &+ 1)..<range.upperBound, in: out)
        }
    }

    /// Rows `range` of a flagged column from its stored values: row `t` takes `values[j]`, `j`
    /// counting the unflagged rows through `t` from `first`, the stored value of the range's first row.
    private func expand(flags: UnsafePointer<UInt8>, values: UnsafePointer<S>, first: Int, _ range: Range<Int>,
                        into out: UnsafeMutablePointer<S>) {
        var j = first, t = range.lowerBound &+ 1
        out[range.lowerBound] = values[j]
        if S.self == UInt8.self || S.self == UInt16.self {
            let pulls = RepeatPulls.shared.words
            while t < range.upperBound && t & 7 != 0 {
                j &+= 1 &- RepeatFlags.flag(t, flags)
                out[t] = values[j]
                t &+= 1
            }
            while t &+ 8 <= range.upperBound {
                j = Self.expandGroup(flags: flags[t >> 3], values: values, after: j, into: out + t, pulls: pulls)
                t &+= 8
            }
        }
        while t < range.upperBound {
            j &+= 1 &- RepeatFlags.flag(t, flags)
            out[t] = values[j]
            t &+= 1
        }
    }

    /// Flagged rows of `rows` take the value of the row before them, in order: a run of flagged
    /// rows takes the value of the row before the run.
    static func copyFlagged(_ flags: UnsafePointer<UInt8>, rows: Range<Int>, in out: UnsafeMutablePointer<S>) {
        @inline(__always) func copy(_ t: Int) {
            out[t] = RepeatFlags.flag(t, flags) == 1 ? out[t &- 1] : out[t]
        }
        var t = rows.lowerBound
        if S.self == UInt8.self {
            while t < rows.upperBound && t & 7 != 0 {
                copy(t)
                t &+= 1
            }
            while t &+ 8 <= rows.upperBound {
                copyFlaggedBytes(flags[t >> 3], in: UnsafeMutableRawPointer(out + t))
                t &+= 8
            }
        }
        while t < rows.upperBound {
            copy(t)
            t &+= 1
        }
    }

    /// `copyFlagged` on one group of 8 byte-wide rows at `group` (the row before it at
    /// `group - 1`), a word at a time: in three rounds every flagged row takes the value 1, 2, then
    /// 4 rows up, and stays flagged for the next round if that row was flagged too. Rows above
    /// the group read as the row before it.
    @inline(__always)
    static func copyFlaggedBytes(_ flags: UInt8, in group: UnsafeMutableRawPointer) {
        let lowBits: UInt64 = 0x0101_0101_0101_0101
        switch flags {
        case 0:
            return
        case 0xFF:
            group.storeBytes(of: UInt64(group.load(fromByteOffset: -1, as: UInt8.self)) &* lowBits, as: UInt64.self)
        default:
            let above = UInt64(group.load(fromByteOffset: -1, as: UInt8.self)) &* lowBits
            // Byte i of `bits` is 2^i or 0; adding 0x7F sets its high bit exactly when it is 2^i.
            let bits = (UInt64(flags) &* lowBits) & 0x8040_2010_0804_0201
            var flagged = (((bits &+ 0x7F7F_7F7F_7F7F_7F7F) & 0x8080_8080_8080_8080) &>> 7) &* 0xFF
            var word = group.loadUnaligned(as: UInt64.self)
            word = (word & ~flagged) | (((word &<< 8) | (above &>> 56)) & flagged)
            flagged &= flagged &<< 8
            word = (word & ~flagged) | (((word &<< 16) | (above &>> 48)) & flagged)
            flagged &= flagged &<< 16
            word = (word & ~flagged) | (((word &<< 32) | (above &>> 32)) & flagged)
            group.storeBytes(of: word, as: UInt64.self)
        }
    }

    /// One group of 8 rows of a repeat column: row `i` takes stored value
    /// `j + (unflagged rows among 0...i)`, where `j` is the stored value of the row before the
    /// group. Returns the stored value of the group's last row.
    @inline(__always)
    static func expandGroup(flags: UInt8, values: UnsafePointer<S>, after j: Int, into out: UnsafeMutablePointer<S>,
                            pulls: UnsafePointer<UInt64>) -> Int {
        let lowBits: UInt64 = 0x0101_0101_0101_0101
        switch flags {
        case 0: // no repeat: the next 8 stored values
            out.update(from: values + (j &+ 1), count: 8)
            return j &+ 8
        case 0xFF: // all repeat the row before
            out.update(repeating: values[j], count: 8)
            return j
        default:
            if S.self == UInt8.self {
                // A word of the 8 values after `j`, pulled into place in the rounds of ``RepeatPulls``;
                // above the word is `values[j]`.
                let above = UInt64(values[j]) &* lowBits, rounds = pulls + 4 &* Int(flags)
                var word = UnsafeRawPointer(values + (j &+ 1)).loadUnaligned(as: UInt64.self)
                @inline(__always) func pull(_ round: Int, rows: UInt64) {
                    let shift = 8 &* rows
                    word ^= (word ^ ((word &<< shift) | (above &>> (64 &- shift)))) & rounds[round]
                }
                pull(0, rows: 4)
                pull(1, rows: 2)
                pull(2, rows: 1)
                UnsafeMutableRawPointer(out).storeBytes(of: word, as: UInt64.self)
                return j &+ Int(rounds[3])
            }
            // Byte i: 1 where row i is unflagged; times lowBits, byte i counts rows 0...i.
            let kept = (UInt64(~flags) &* lowBits) & 0x8040_2010_0804_0201
            let ones = ((kept &+ 0x7F7F_7F7F_7F7F_7F7F) & 0x8080_8080_8080_8080) &>> 7
            let prefix = ones &* lowBits
            var shift: UInt64 = 0
            for i in 0..<8 {
                out[i] = values[j &+ Int((prefix &>> shift) & 0xFF)]
                shift &+= 8
            }
            return j &+ Int(prefix &>> 56)
        }
    }
}

/// How ``ColumnReader/expandGroup(flags:values:after:into:pulls:)`` places a group of 8 byte-wide
/// rows, for each flag byte but 0x00 and 0xFF: row `i` takes stored value `j + 1 + i - d(i)`,
/// `d(i)` the flagged rows among `0...i`. A word of the 8 values after `j` gets there in three
/// rounds where byte `i` takes the byte 4, 2, then 1 rows up, where that bit of `d(i)` is set:
/// `d` steps by at most 1 per row, so the bits a round has yet to pull are the same at the row
/// it pulls from. Built once and never changed, so shared by every thread; a load per round
/// instead of computing `d` and the rounds (about 20 instructions a group).
final class RepeatPulls: @unchecked Sendable {
    static let shared = RepeatPulls()

    /// 4 words at `4 * flags`: the rows (0xFF bytes) each of the 3 rounds pulls, then the rows unflagged.
    let words: UnsafeMutablePointer<UInt64>

    private init() {
        words = .allocate(capacity: 4 * 256)
        for flags in 0..<256 {
            var flagged = 0
            (words + 4 * flags).initialize(repeating: 0, count: 4)
            for i in 0..<8 {
                flagged += flags >> i & 1
                for (round, bit) in [2, 1, 0].enumerated() where flagged >> bit & 1 == 1 {
                    words[4 * flags + round] |= 0xFF << UInt64(8 * i)
                }
            }
            words[4 * flags + 3] = UInt64(8 - flagged)
        }
    }
}
