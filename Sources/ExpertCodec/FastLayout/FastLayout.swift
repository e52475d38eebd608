import CVectorKernels

/// Layout 1, "column bit-planes" (spec 1.5): each column at the fixed width as bit planes,
/// constant, a slot delta, or with a repeat flag bitmap; LZ4 removes the runs of the planes.
/// Any range of rows decodes alone, touching only its groups of 8 rows.
enum FastLayout: BlockLayout {
    static let layoutByte = FastFormat.layoutByte
    static let name = "fast"
    static let summary = "column bit-planes v1 in LZ4 frames"
    static let defaultBlockBytes = 64 * 1024

    static func maxPayloadBytes(_ schema: Schema, rows: Int) -> Int {
        let columns = schema.storedIDsPerRow
        return PayloadHeader.bytes + 3 * columns + columns * (schema.bitWidth + 1) * BitPlanes.planeBytes(rows)
    }

    static func makeWriter(schema: Schema) -> any PayloadWriter { FastPayloadWriter(schema: schema) }
    static func makeReader(schema: Schema, vectorKernels: Bool) -> any PayloadReader {
        FastPayloadReader(schema: schema, vectorKernels: vectorKernels)
    }
}

/// Writes layout-1 payloads from columns padded to groups of 8 rows: bytes for ids of at most
/// 8 bits, 16-bit columns above.
final class FastPayloadWriter: PayloadWriter {
    let schema: Schema
    let columnShape = ColumnShape(bytesWhenNarrow: true, padded: true)
    private let candidates = Scratch(), flags = Scratch(), payload = Scratch()

    init(schema: Schema) {
        self.schema = schema
    }

    func write(_ columns: IDColumns, count: Int, segments: inout [PayloadSegment]) -> (UnsafeRawPointer, Int) {
        if columns.bytes {
            return write(columns.base.assumingMemoryBound(to: UInt8.self), count: count, padded: columns.stride, runs: &segments)
        } else {
            return write(columns.base.assumingMemoryBound(to: UInt16.self), count: count, padded: columns.stride, runs: &segments)
        }
    }

    private func write<S: PlaneScalar>(_ cols: UnsafePointer<S>, count: Int, padded: Int,
                                       runs: inout [PayloadSegment]) -> (UnsafeRawPointer, Int) {
        let columnCount = schema.storedIDsPerRow, width = schema.bitWidth
        let bytes = Self.retyped(cols, as: UInt8.self), words = Self.retyped(cols, as: UInt16.self)
        let out = payload.reserve(BlockLimits.maxPayloadBytes(schema, rows: count)).assumingMemoryBound(to: UInt8.self)
        let raw = UnsafeMutableRawPointer(out)
        PayloadHeader.write(raw, layoutByte: FastFormat.layoutByte, schema: schema, rows: count)
        guard count > 0 else {
            runs.append(PayloadSegment(range: 0..<PayloadHeader.bytes, compress: false))
            return (UnsafeRawPointer(out), PayloadHeader.bytes)
        }

        // Constant columns first: their table sits between the codings and the bodies.
        let codings = out + PayloadHeader.bytes
        var constantCount = 0
        for c in 0..<columnCount {
            let column = cols + c * padded
            let constant = Self.isConstant(column, count: count)
            codings[c] = constant ? ColumnCoding.constant.rawValue : ColumnCoding.plain.rawValue
            if constant {
                raw.storeLE(UInt16(column[0]), at: PayloadHeader.bytes + columnCount + 2 * constantCount)
                constantCount += 1
            }
        }

        var cursor = PayloadHeader.bytes + columnCount + 2 * constantCount
        runs.append(PayloadSegment(range: 0..<cursor, compress: true))
        let candidates = candidates.reserve(CandidateColumns.count(padded: padded, of: S.self), of: S.self)
        let flags = flags.reserve(padded / 8, of: UInt8.self)
        let byteWork = ByteColumnWork(count: count, padded: padded, width: width, experts: schema.experts,
                                      candidates: Self.retyped(candidates, as: UInt8.self), flags: flags)
        let shortWork = ShortColumnWork(count: count, padded: padded, width: width, experts: schema.experts,
                                      candidates: Self.retyped(candidates, as: UInt16.self), flags: flags)
        var slot = 0
        for c in 0..<columnCount {
            defer { slot = slot + 1 == schema.topk ? 0 : slot + 1 }
            guard codings[c] != ColumnCoding.constant.rawValue else { continue }
            let (coding, written, cost) = S.self == UInt8.self
                ? byteWork.encode(bytes + c * padded, previousSlot: slot == 0 ? nil : bytes + (c - 1) * padded, to: out + cursor)
                : shortWork.encode(words + c * padded, previousSlot: slot == 0 ? nil : words + (c - 1) * padded, to: out + cursor)
            codings[c] = coding.rawValue
            // A body whose plane bytes are nearly all random is stored, not searched by LZ4.
            Self.addSegment(cursor..<cursor + written, compress: cost * 10 < written * 9, to: &runs)
            cursor += written
        }
        return (UnsafeRawPointer(out), cursor)
    }

    /// Whether the `count` ids of `column` are all equal, compared 8 bytes at a time.
    private static func isConstant<S: PlaneScalar>(_ column: UnsafePointer<S>, count: Int) -> Bool {
        let raw = UnsafeRawPointer(column), bytes = count &* MemoryLayout<S>.size
        // The first id in every lane of a word.
        let pattern = UInt64(column[0]) &* (MemoryLayout<S>.size == 1 ? 0x0101_0101_0101_0101 : 0x0001_0001_0001_0001)
        var at = 0
        while at &+ 8 <= bytes {
            if raw.loadUnaligned(fromByteOffset: at, as: UInt64.self) != pattern { return false }
            at &+= 8
        }
        for t in at / MemoryLayout<S>.size..<count where column[t] != column[0] { return false }
        return true
    }

    /// Extends the last segment when it is of the same kind or either is too small to be worth
    /// a block of its own (each block costs 8 bytes of framing).
    private static func addSegment(_ range: Range<Int>, compress: Bool, to segments: inout [PayloadSegment]) {
        let last = segments.count - 1
        if segments[last].compress == compress || range.count < 1024 || segments[last].range.count < 1024 {
            segments[last].range = segments[last].range.lowerBound..<range.upperBound
        } else {
            segments.append(PayloadSegment(range: range, compress: compress))
        }
    }

    /// The columns `pointer` as the column type of the path taken (`S` is that type).
    @inline(__always)
    private static func retyped<S, U>(_ pointer: UnsafePointer<S>, as _: U.Type) -> UnsafePointer<U> {
        UnsafeRawPointer(pointer).assumingMemoryBound(to: U.self)
    }

    @inline(__always)
    private static func retyped<S, U>(_ pointer: UnsafeMutablePointer<S>, as _: U.Type) -> UnsafeMutablePointer<U> {
        UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: U.self)
    }
}

/// Checks layout-1 payloads (``ColumnPlaces``) and decodes their columns: ranges of rows into
/// byte or 16-bit columns, or one row read bit by bit (``PointReader``).
final class FastPayloadReader: PayloadReader {
    let schema: Schema
    private let places: ColumnPlaces
    private var payload: UnsafeRawPointer?
    private let columns = Scratch(), values = Scratch()
    private let pulls = RepeatPulls.shared
    private let vectorKernels: Bool

    init(schema: Schema, vectorKernels: Bool) {
        self.schema = schema
        self.vectorKernels = vectorKernels
        places = ColumnPlaces(columnCount: schema.storedIDsPerRow, vectorKernels: vectorKernels)
    }

    func prepare(_ payload: UnsafeRawBufferPointer, columns: Range<Int>?, decodingRow: Int?) throws -> Int {
        self.payload = payload.baseAddress
        try places.parse(payload, schema: schema, decodingRow: decodingRow, columns: columns)
        return places.rows
    }

    func isPrepared(_ columns: Range<Int>) -> Bool {
        places.checked.lowerBound <= columns.lowerBound && columns.upperBound <= places.checked.upperBound
    }

    func clear() {
        places.clear()
        payload = nil
    }

    /// The row `prepare` decoded on its way (`decodingRow`), else each id read bit by bit from
    /// its planes, no group decoded.
    func decodeRow(_ t: Int, _ columns: Range<Int>, into ids: UnsafeMutablePointer<UInt16>) throws {
        if places.decodedRow == t {
            ids.update(from: places.rowValues + columns.lowerBound, count: columns.count)
        } else {
            try PointReader(places: places, payload: payload!, schema: schema)
                .decodeRow(t, columns: columns, into: ids, source: nil, perRow: columns.count)
        }
    }

    func decodeColumns(_ range: Range<Int>, _ columns: Range<Int>, claiming lines: inout OutputLines) throws -> IDColumns {
        if schema.bitWidth <= 8 {
            return try decode(range, columns, claiming: &lines, scalar: UInt8.self)
        } else {
            return try decode(range, columns, claiming: &lines, scalar: UInt16.self)
        }
    }

    private func decode<S: PlaneScalar>(_ range: Range<Int>, _ selected: Range<Int>, claiming lines: inout OutputLines,
                                        scalar: S.Type) throws -> IDColumns {
        let rows = places.rows, padded = (rows + 7) & ~7, first = selected.lowerBound
        // Room for what `BitPlanes.load` writes past a column's last group.
        let cols = columns.reserve(selected.count * padded + BitPlanes.loadSlackIDs, of: S.self)
        let reader = ColumnReader<S>(places: places, payload: payload!, schema: schema,
                                     values: values.reserve(padded + BitPlanes.loadSlackIDs, of: S.self), pulls: pulls,
                                     vectorKernels: vectorKernels)
        for c in selected {
            // A slot delta's previous slot is in the same layer, so among the columns asked.
            let previousSlot = c % schema.topk == 0 ? nil : UnsafePointer(cols + (c - 1 - first) * padded)
            try reader.decode(column: c, range, into: cols + (c - first) * padded, previousSlot: previousSlot)
            lines.claimNext()
        }
        return IDColumns(base: UnsafeRawPointer(cols), stride: padded, bytes: S.self == UInt8.self)
    }
}

/// Decodes ranges of columns of a checked payload.
private struct ColumnReader<S: PlaneScalar> {
    let places: ColumnPlaces
    let payload: UnsafeRawPointer
    let schema: Schema
    /// Scratch for the stored values of a flagged column.
    let values: UnsafeMutablePointer<S>
    let pulls: RepeatPulls
    /// Whole columns go to ``VectorKernels``.
    let vectorKernels: Bool

    private var width: Int { schema.bitWidth }
    private var experts: Int { schema.experts }

    private func body(_ c: Int) -> UnsafePointer<UInt8> {
        (payload + places.byColumn[c].offsetOrValue).assumingMemoryBound(to: UInt8.self)
    }

    private func fail(_ why: String, column c: Int) -> CodecError {
        .corruptBlock("column \(c): \(why)", offset: places.byColumn[c].offsetOrValue, inPayload: true)
    }

    /// Every decoded value must be below `experts`; planes hold up to `2^width - 1`. Inlined
    /// around a static loop: a call on `self` retained the layout and the schema's two arrays
    /// for it, 3 retains and releases a column.
    @inline(__always)
    private func checkRange(_ ids: UnsafePointer<S>, _ range: Range<Int>, column c: Int) throws {
        guard experts < 1 << width else { return }
        let largest = Self.largest(ids, range)
        if largest >= experts { throw fail("stored value \(largest) is not below \(experts)", column: c) }
    }

    private static func largest(_ ids: UnsafePointer<S>, _ range: Range<Int>) -> S {
        var largest: S = 0
        for i in range { largest = Swift.max(largest, ids[i]) }
        return largest
    }

    /// Decodes rows `range` of column `c` into `out[range]`; `previousSlot[range]` is already decoded.
    func decode(column c: Int, _ range: Range<Int>, into out: UnsafeMutablePointer<S>,
                previousSlot: UnsafePointer<S>?) throws {
        let rows = places.rows, groups = (range.lowerBound >> 3)..<((range.upperBound + 7) >> 3)
        let place = places.byColumn[c]
        // A whole column goes 64 (byte-wide ids) or 32 rows at a time where the CPU can (CVectorKernels).
        let whole = vectorKernels && range == 0..<rows
        switch place.coding {
        case .constant:
            (out + range.lowerBound).update(repeating: S(truncatingIfNeeded: place.offsetOrValue), count: range.count)
        case .plain, .slotDelta:
            if whole {
                try checkLargest(VectorColumn<S>.load(body(c), width: width, count: rows, into: out), column: c)
            } else {
                BitPlanes.load(body(c), count: rows, width: width, groups: groups, into: out)
                try checkRange(out, range, column: c)
            }
            if place.coding == .slotDelta { addPreviousSlot(previousSlot!, range, to: out) }
        case .repeat, .repeatSlotDelta:
            let flags = body(c), kept = Int(place.kept)
            if whole {
                try checkLargest(VectorColumn<S>.decodeRepeats(flags, planes: flags + BitPlanes.planeBytes(rows), width: width,
                                                               kept: kept, rows: rows, into: out), column: c)
            } else {
                // The stored values of rows `range` are `first..<end`. The layout checked that row 0
                // is unflagged and counted the column's flags (`kept` is rows minus that count), so
                // the ends of the column need no bit count: a whole block's range needs none.
                let first = range.lowerBound == 0 ? 0 : RepeatFlags.nonRepeats(through: range.lowerBound, flags) - 1
                let end = range.upperBound == rows ? kept
                    : range.count == 1 ? first + 1 : RepeatFlags.nonRepeats(through: range.upperBound - 1, flags)
                BitPlanes.load(flags + BitPlanes.planeBytes(rows), count: kept, width: width,
                               groups: (first >> 3)..<((end + 7) >> 3), into: values)
                try checkRange(values, first..<end, column: c)
                RepeatRows.expand(flags: flags, values: values, first: first, range, into: out, pulls: pulls)
            }
            guard place.coding == .repeatSlotDelta else { return }
            // Each row's stored delta plus the previous slot at that row: right for the unflagged
            // rows. A flagged row then copies the id above it (spec 1.5.5), row `range.lowerBound`
            // the one it repeats, read from the planes.
            addPreviousSlot(previousSlot!, range, to: out)
            if RepeatFlags.flag(range.lowerBound, flags) == 1 {
                out[range.lowerBound] = try pointValue(column: c, row: range.lowerBound)
            }
            if whole {
                VectorColumn<S>.fillFlagged(flags, rows: rows, in: out)
            } else {
                RepeatRows.copyFlagged(flags, rows: (range.lowerBound &+ 1)..<range.upperBound, in: out)
            }
        }
    }

    /// `largest`, the largest stored value of column `c`, must be below `experts`.
    @inline(__always)
    private func checkLargest(_ largest: Int, column c: Int) throws {
        if largest >= experts { throw fail("stored value \(largest) is not below \(experts)", column: c) }
    }

    /// The id of column `c` at row `t`, read from the planes (``PointReader``). Out of line: the
    /// reader it makes copies the layout and the schema, which were otherwise retained around
    /// the kernels of every flagged column (3 retains and releases a column).
    @inline(never)
    private func pointValue(column c: Int, row t: Int) throws -> S {
        S(truncatingIfNeeded: try PointReader(places: places, payload: payload, schema: schema).value(column: c, row: t))
    }

    /// Slot deltas in `out[range]` become ids: each plus the previous slot's id at its row, mod `experts`.
    @inline(__always)
    private func addPreviousSlot(_ previous: UnsafePointer<S>, _ range: Range<Int>, to out: UnsafeMutablePointer<S>) {
        let modulus = S(truncatingIfNeeded: experts)
        for t in range { out[t] = addModulo(out[t], previous[t], modulus) }
    }
}

/// The kernels of `CVectorKernels` for a whole column of `S` ids (their bounds are stated there).
private enum VectorColumn<S: PlaneScalar> {
    private static func bytes(_ out: UnsafeMutablePointer<S>) -> UnsafeMutablePointer<UInt8> {
        UnsafeMutableRawPointer(out).assumingMemoryBound(to: UInt8.self)
    }

    private static func shorts(_ out: UnsafeMutablePointer<S>) -> UnsafeMutablePointer<UInt16> {
        UnsafeMutableRawPointer(out).assumingMemoryBound(to: UInt16.self)
    }

    /// `count` values of `width` planes into `out[0..<count]`; returns the largest.
    @inline(__always)
    static func load(_ planes: UnsafePointer<UInt8>, width: Int, count: Int, into out: UnsafeMutablePointer<S>) -> Int {
        S.self == UInt8.self ? Int(ek_load_planes_u8(planes, width, count, bytes(out)))
            : Int(ek_load_planes_u16(planes, width, count, shorts(out)))
    }

    /// A repeat column of `rows` rows from the planes of its `kept` stored values; returns the largest.
    @inline(__always)
    static func decodeRepeats(_ flags: UnsafePointer<UInt8>, planes: UnsafePointer<UInt8>, width: Int, kept: Int, rows: Int,
                              into out: UnsafeMutablePointer<S>) -> Int {
        S.self == UInt8.self ? Int(ek_decode_repeats_u8(flags, planes, width, kept, rows, bytes(out)))
            : Int(ek_decode_repeats_u16(flags, planes, width, kept, rows, shorts(out)))
    }

    /// Flagged rows of `out[1..<rows]` take the row before them.
    @inline(__always)
    static func fillFlagged(_ flags: UnsafePointer<UInt8>, rows: Int, in out: UnsafeMutablePointer<S>) {
        if S.self == UInt8.self { ek_fill_flagged_u8(flags, rows, bytes(out)) } else { ek_fill_flagged_u16(flags, rows, shorts(out)) }
    }
}
