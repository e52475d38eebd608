/// Reads single ids of a checked layout-1 payload bit by bit, without decoding a group: a
/// random one-row read costs about one id's planes per column.
struct PointReader {
    let places: ColumnPlaces
    let payload: UnsafeRawPointer
    let schema: Schema

    /// A stored value of column `c` is not below the expert count (planes hold up to 2^w - 1).
    func storedValueError(_ stored: Int, column c: Int) -> CodecError {
        .corruptBlock("column \(c): stored value \(stored) is not below \(schema.experts)",
                      offset: places.byColumn[c].offsetOrValue, inPayload: true)
    }

    /// Stored columns `columns` (whole layers) of row `t` into `row`, `perRow` ids.
    /// `source[c - columns.lowerBound]` is the row index of stored column `c` (nil when the
    /// layers have no dense layer: column `c` is index `c - columns.lowerBound`); dense layers
    /// get ``Schema/denseFill``.
    func decodeRow<T: ExpertID>(_ t: Int, columns: Range<Int>, into row: UnsafeMutablePointer<T>,
                                source: UnsafeBufferPointer<Int>?, perRow: Int) throws {
        if source != nil { row.update(repeating: T(Schema.denseFill), count: perRow) }
        let width = schema.bitWidth, experts = schema.experts, first = columns.lowerBound
        let planeBytes = BitPlanes.planeBytes(places.rows), byColumn = places.byColumn
        // The id of the previous column at row t: a slot delta's base (a layer's first column
        // is never a slot delta, and `columns` starts at one).
        var previous = 0
        for c in columns {
            let place = byColumn[c]
            let stored: Int
            switch place.coding {
            case .constant: // checked below experts when parsed
                previous = place.offsetOrValue
                row[source?[c &- first] ?? c &- first] = T(truncatingIfNeeded: previous)
                continue
            case .plain, .slotDelta:
                stored = BitPlanes.value(at: t, in: body(place), stride: planeBytes, width: width)
            case .repeat, .repeatSlotDelta:
                let flags = body(place)
                stored = BitPlanes.value(at: RepeatFlags.nonRepeats(through: t, flags) &- 1, in: flags + planeBytes,
                                         stride: BitPlanes.planeBytes(Int(place.kept)), width: width)
            }
            guard stored < experts else { throw storedValueError(stored, column: c) }
            switch place.coding {
            case .slotDelta:
                previous = addModulo(stored, previous, experts)
            case .repeatSlotDelta:
                // A flagged row repeats row r, the last unflagged one: its slot delta is
                // against the previous slot at row r.
                let r = RepeatFlags.lastNonRepeat(atOrBefore: t, body(place))
                previous = addModulo(stored, r == t ? previous : try value(column: c &- 1, row: r), experts)
            default:
                previous = stored
            }
            row[source?[c &- first] ?? c &- first] = T(truncatingIfNeeded: previous)
        }
    }

    /// The id of column `c` at row `t` (a slot delta reads its previous slot too).
    func value(column c: Int, row t: Int) throws -> Int {
        let place = places.byColumn[c], width = schema.bitWidth, experts = schema.experts
        let stored: Int, base: Int?
        switch place.coding {
        case .constant:
            return place.offsetOrValue
        case .plain, .slotDelta:
            stored = BitPlanes.value(at: t, in: body(place), stride: BitPlanes.planeBytes(places.rows), width: width)
            base = place.coding == .slotDelta ? try value(column: c - 1, row: t) : nil
        case .repeat, .repeatSlotDelta:
            let flags = body(place)
            stored = BitPlanes.value(at: RepeatFlags.nonRepeats(through: t, flags) - 1, in: flags + BitPlanes.planeBytes(places.rows),
                                     stride: BitPlanes.planeBytes(Int(place.kept)), width: width)
            base = place.coding == .repeatSlotDelta
                ? try value(column: c - 1, row: RepeatFlags.lastNonRepeat(atOrBefore: t, flags)) : nil
        }
        guard stored < experts else { throw storedValueError(stored, column: c) }
        return base.map { addModulo(stored, $0, experts) } ?? stored
    }

    @inline(__always)
    private func body(_ place: ColumnPlace) -> UnsafePointer<UInt8> {
        (payload + place.offsetOrValue).assumingMemoryBound(to: UInt8.self)
    }
}

/// The flag bitmap of a repeat column: bit `t` set means row `t` repeats row `t - 1`.
enum RepeatFlags {
    @inline(__always)
    static func flag(_ t: Int, _ flags: UnsafePointer<UInt8>) -> Int { Int(flags[t >> 3] >> UInt8(t & 7)) & 1 }

    /// The 8 flags of a bitmap byte, one per byte: byte `i` of the result is bit `i` of `flags`.
    /// (Byte `i` of the masked product is `2^i` or 0; adding 0x7F sets its high bit exactly
    /// when it is `2^i`.)
    @inline(__always)
    static func spread(_ flags: UInt8) -> UInt64 {
        let bits = (UInt64(flags) &* 0x0101_0101_0101_0101) & 0x8040_2010_0804_0201
        return ((bits &+ 0x7F7F_7F7F_7F7F_7F7F) & 0x8080_8080_8080_8080) &>> 7
    }

    /// All ones when every row of a flag byte's group is flagged (`flags + 1` reaches bit 8 only
    /// then), else 0: the groups the kernels' rounds cannot pull 8 rows up take the row before.
    @inline(__always)
    static func allFlaggedMask(_ flags: UInt8) -> UInt64 {
        0 &- UInt64(truncatingIfNeeded: (Int(flags) &+ 1) &>> 8)
    }

    /// Rows `0...t` whose flag is clear: the stored value of row `t` is at this count minus one.
    /// May read up to 7 bytes past the bitmap, inside the payload or its slack.
    @inline(__always)
    static func nonRepeats(through t: Int, _ flags: UnsafePointer<UInt8>) -> Int {
        t &+ 1 &- BitCount.ones(UnsafeRawPointer(flags), bits: t &+ 1)
    }

    /// The last row at or before `t` whose flag is clear (row 0's always is), a byte at a time.
    static func lastNonRepeat(atOrBefore t: Int, _ flags: UnsafePointer<UInt8>) -> Int {
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
