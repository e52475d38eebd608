import CVectorKernels

/// Where one stored column of a checked layout-1 payload lives.
struct ColumnPlace {
    var coding: ColumnCoding
    /// Rows whose value the body stores: all rows, or for a flagged column the unflagged ones.
    var kept: Int32
    /// The constant's value, or the byte offset of the body in the payload.
    var offsetOrValue: Int
}

/// The places of every column of the open layout-1 payload (spec 1.5), found and checked by
/// `parse`. Its storage is allocated once, for the schema's column count: opening a block at
/// random (a one-row read) parses hundreds of columns, and array bookkeeping was a third of it.
final class ColumnPlaces {
    /// Readable bytes a payload must have after its end: flag bitmaps are counted a word at a
    /// time (``BitCount``), or three words from their start (``PrefixBitCounter``).
    static let slackBytes = 24

    let columnCount: Int
    private(set) var rows = 0
    /// The columns `parse` checked and placed: all of them, or those it was asked for.
    private(set) var checked: Range<Int> = 0..<0
    /// `columnCount` places; meaningful for the `checked` columns after a successful `parse`
    /// of a non-empty block.
    let byColumn: UnsafeMutablePointer<ColumnPlace>
    /// The row `parse` was asked to decode, if the block has it: its ids are in `rowValues`.
    private(set) var decodedRow: Int?
    /// `columnCount` ids of `decodedRow`, in column order.
    let rowValues: UnsafeMutablePointer<UInt16>
    /// How far ahead of the column it checks `parse` touches the payload, and what it read there
    /// (kept only so that the loads stay).
    static let lookAhead = 512
    private var touched: UInt8 = 0
    /// Whether the columns before a layer range are measured by `ek_measure_columns`.
    private let vectorKernels: Bool

    init(columnCount: Int, vectorKernels: Bool) {
        self.columnCount = columnCount
        self.vectorKernels = vectorKernels
        byColumn = .allocate(capacity: max(columnCount, 1))
        byColumn.initialize(repeating: ColumnPlace(coding: .plain, kept: 0, offsetOrValue: 0), count: max(columnCount, 1))
        rowValues = .allocate(capacity: max(columnCount, 1))
        rowValues.initialize(repeating: 0, count: max(columnCount, 1))
    }

    deinit {
        byColumn.deallocate()
        rowValues.deallocate()
    }

    /// Forgets the last block.
    func clear() {
        rows = 0
        checked = 0..<0
        decodedRow = nil
    }

    /// A compact block was opened instead: it has `rows` rows and no places.
    func setCompact(rows: Int) {
        self.rows = rows
        checked = 0..<0
        decodedRow = nil
    }

    /// Checks the whole structure of `payload` (header, codings, constants, every body's
    /// length, flag and padding bits) and records where each column lives. `slackBytes`
    /// readable bytes must follow the payload.
    ///
    /// With `decodingRow`, the same pass decodes that row (when the block has it) into
    /// `rowValues`: a random one-row read then touches each column once, while it is in cache,
    /// and counts each flag bitmap in one go. On a throw the layout must be cleared.
    ///
    /// With `columns` (whole layers: a layer-range read), only those columns are checked and
    /// placed: the header, every coding and the constant table are checked, the columns before
    /// them only measured (each body inside the payload, flags counted), and the columns after
    /// them not looked at (nor whether the payload ends with the last). `decodingRow` then
    /// decodes that row's ids of `columns` only.
    func parse(_ payload: UnsafeRawBufferPointer, schema: Schema, decodingRow: Int? = nil, columns: Range<Int>? = nil) throws {
        func fail(_ why: String, _ offset: Int) -> CodecError { .corruptBlock(why, offset: offset, inPayload: true) }
        rows = 0
        checked = 0..<0
        decodedRow = nil
        let wanted = columns ?? 0..<columnCount
        let size = payload.count, width = schema.bitWidth, experts = schema.experts
        let rowCount = try PayloadHeader.rows(of: payload, layoutByte: FastFormat.layoutByte, schema: schema)
        let raw = payload.baseAddress!
        guard rowCount > 0 else {
            checked = wanted
            return
        }

        let codingsAt = PayloadHeader.bytes
        guard size - codingsAt >= columnCount else { throw fail("payload ends inside the column codings", size) }
        let codes = (raw + codingsAt).assumingMemoryBound(to: UInt8.self)
        var constants = 0
        for c in 0..<columnCount {
            let code = codes[c]
            guard code <= ColumnCoding.repeatSlotDelta.rawValue else {
                throw fail("unknown coding \(code) of column \(c)", codingsAt + c)
            }
            constants &+= code == ColumnCoding.constant.rawValue ? 1 : 0
        }
        for c in stride(from: 0, to: columnCount, by: schema.topk) where ColumnCoding(rawValue: codes[c])!.usesPreviousSlot {
            throw fail("column \(c) is slot 0 and cannot be a slot delta", codingsAt + c)
        }

        var constantCursor = codingsAt + columnCount
        guard size - constantCursor >= 2 * constants else { throw fail("payload ends inside the constant table", size) }
        var bodyCursor = constantCursor + 2 * constants
        let planeBytes = BitPlanes.planeBytes(rowCount), planesBytes = width * planeBytes
        let padded = rowCount & 7 == 0, n = Int32(rowCount)
        // The row to decode on the way, or -1; `previous` is its id in the column before.
        let t = decodingRow.map { 0 <= $0 && $0 < rowCount ? $0 : -1 } ?? -1
        var previous = 0
        let flagCounter = PrefixBitCounter(bits: rowCount, mark: t &+ 1)
        rows = rowCount // for `points`, which reads the places found so far
        // The columns before those wanted: only where each ends. With POPCNT (CVectorKernels)
        // a flag bitmap is counted in a few instructions; the loop below finds why one fails.
        var measured = 0
        if vectorKernels && wanted.lowerBound > 0 {
            var constantsBefore = 0
            let end = ek_measure_columns(raw.assumingMemoryBound(to: UInt8.self), size, codes, wanted.lowerBound, bodyCursor,
                                         rowCount, width, &constantsBefore)
            if end >= 0 { // SIZE_MAX, as Swift sees size_t, is -1
                bodyCursor = end
                constantCursor &+= 2 &* constantsBefore
                measured = wanted.lowerBound
            }
        }
        for c in measured..<wanted.lowerBound {
            switch ColumnCoding(rawValue: codes[c]).unsafelyUnwrapped {
            case .constant:
                constantCursor &+= 2
            case .plain, .slotDelta:
                guard size - bodyCursor >= planesBytes else { throw fail("payload ends inside column \(c)", size) }
                bodyCursor &+= planesBytes
            case .repeat, .repeatSlotDelta:
                guard size - bodyCursor >= planeBytes else { throw fail("payload ends inside the flags of column \(c)", size) }
                let kept = rowCount &- flagCounter.count(raw + bodyCursor).all
                let valuesAt = bodyCursor &+ planeBytes, valueBytes = width &* BitPlanes.planeBytes(kept)
                guard size - valuesAt >= valueBytes else { throw fail("payload ends inside column \(c)", size) }
                bodyCursor = valuesAt &+ valueBytes
            }
        }
        /// Reads ids of the columns placed so far (made where needed: kept out of the loop's registers).
        func points() -> PointReader { PointReader(places: self, payload: raw, schema: schema) }
        // Three cache lines a few columns ahead are loaded early (and kept, so that the loads
        // stay): a freshly decompressed payload is larger than L1, and the columns' lines then
        // come from L2 while earlier columns are checked instead of stalling each column's first
        // read (a one-row read of a Qwen3 block is 5-10% faster for it).
        var ahead: UInt8 = 0
        for c in wanted {
            let coding = ColumnCoding(rawValue: codes[c]).unsafelyUnwrapped
            let lookAt = bodyCursor &+ Self.lookAhead
            ahead |= raw.load(fromByteOffset: min(lookAt, size &- 1), as: UInt8.self)
                | raw.load(fromByteOffset: min(lookAt &+ 64, size &- 1), as: UInt8.self)
                | raw.load(fromByteOffset: min(lookAt &+ 128, size &- 1), as: UInt8.self)
            switch coding {
            case .constant:
                let value = Int(raw.loadLE(UInt16.self, at: constantCursor))
                guard value < experts else { throw fail("constant \(value) of column \(c) is not below \(experts)", constantCursor) }
                byColumn[c] = ColumnPlace(coding: coding, kept: n, offsetOrValue: value)
                constantCursor &+= 2
                previous = value
            case .plain, .slotDelta:
                guard size - bodyCursor >= planesBytes else { throw fail("payload ends inside column \(c)", size) }
                if !padded { try checkPadding(bodyCursor, count: rowCount, planes: width) }
                byColumn[c] = ColumnPlace(coding: coding, kept: n, offsetOrValue: bodyCursor)
                if t >= 0 {
                    let stored = BitPlanes.value(at: t, in: (raw + bodyCursor).assumingMemoryBound(to: UInt8.self),
                                                 stride: planeBytes, width: width)
                    guard stored < experts else { throw points().storedValueError(stored, column: c) }
                    previous = coding == .slotDelta ? addModulo(stored, previous, experts) : stored
                }
                bodyCursor &+= planesBytes
            case .repeat, .repeatSlotDelta:
                guard size - bodyCursor >= planeBytes else { throw fail("payload ends inside the flags of column \(c)", size) }
                let flags = (raw + bodyCursor).assumingMemoryBound(to: UInt8.self)
                guard flags[0] & 1 == 0 else { throw fail("row 0 of column \(c) is flagged as a repeat", bodyCursor) }
                if !padded { try checkPadding(bodyCursor, count: rowCount, planes: 1) }
                let (repeats, repeatsThroughT) = flagCounter.count(flags)
                let kept = rowCount &- repeats
                let valuesAt = bodyCursor &+ planeBytes, valueBytes = width &* BitPlanes.planeBytes(kept)
                guard size - valuesAt >= valueBytes else { throw fail("payload ends inside column \(c)", size) }
                if kept & 7 != 0 { try checkPadding(valuesAt, count: kept, planes: width) }
                byColumn[c] = ColumnPlace(coding: coding, kept: Int32(truncatingIfNeeded: kept), offsetOrValue: bodyCursor)
                if t >= 0 {
                    // Row t takes the stored value of the last unflagged row r <= t.
                    let stored = BitPlanes.value(at: t &- repeatsThroughT, in: (raw + valuesAt).assumingMemoryBound(to: UInt8.self),
                                                 stride: BitPlanes.planeBytes(kept), width: width)
                    guard stored < experts else { throw points().storedValueError(stored, column: c) }
                    if coding == .repeatSlotDelta {
                        // Its slot delta is against the previous slot at row r.
                        let r = RepeatFlags.lastNonRepeat(atOrBefore: t, flags)
                        previous = addModulo(stored, r == t ? previous : try points().value(column: c &- 1, row: r), experts)
                    } else {
                        previous = stored
                    }
                }
                bodyCursor = valuesAt &+ valueBytes
            }
            rowValues[c] = UInt16(truncatingIfNeeded: previous)
        }
        guard bodyCursor == size || wanted.upperBound < columnCount else {
            throw fail("\(size - bodyCursor) bytes follow the last column", bodyCursor)
        }
        checked = wanted
        decodedRow = t >= 0 ? t : nil
        touched = ahead

        /// The padding bits past `count` in the last byte of each plane must be clear: the last
        /// bytes are ORed and tested once (inlined: it runs for most columns), searched only
        /// on failure.
        @inline(__always)
        func checkPadding(_ offset: Int, count: Int, planes planeCount: Int) throws {
            let stride = BitPlanes.planeBytes(count), mask = UInt8(0xFF) &<< UInt8(count & 7)
            var last = raw + offset + (stride &- 1), padding: UInt8 = 0
            for _ in 0..<planeCount {
                padding |= last.load(as: UInt8.self)
                last += stride
            }
            if padding & mask != 0 { throw paddingError(offset, stride: stride, mask: mask, planes: planeCount) }
        }

        func paddingError(_ offset: Int, stride: Int, mask: UInt8, planes planeCount: Int) -> CodecError {
            let p = (0..<planeCount).first { raw.load(fromByteOffset: offset + $0 * stride + stride - 1, as: UInt8.self) & mask != 0 }!
            return fail("padding bits are set", offset + p * stride + stride - 1)
        }
    }
}
