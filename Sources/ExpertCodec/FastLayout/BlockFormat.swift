/// The block payload, version 1 ("column bit-planes"); `spec/FORMAT.md` is the normative text.
///
///     offset  size  field
///     0       1     layout, 1
///     1       1     bit width w of the schema
///     2       2     reserved, 0
///     4       4     rows n (u32 LE)
///     8       4     stored columns C (u32 LE): MoE layers x topk
///     12      C     column codings (absent when n == 0)
///     ...     2K    one u16 LE value per constant column, in column order
///     ...           the bodies of the other columns, in column order
///
/// Column `c` is MoE layer `c / topk`, slot `c % topk`: layer-major, the order of a row.
enum BlockFormat {
    static let layoutByte: UInt8 = 1
    static let headerBytes = 12
    /// Ids (rows x stored columns) one block may hold: bounds every allocation a decoder makes.
    static let maxIDs = 1 << 26

    static func maxRows(_ schema: Schema) -> Int { maxIDs / schema.storedIDsPerRow }

    /// Bytes of the largest payload `rows` rows can produce in any layout: what a decoder may allocate.
    static func maxPayloadBytes(_ schema: Schema, rows: Int) -> Int {
        var largest = 0
        for layout in layouts { largest = max(largest, layout.maxPayloadBytes(schema, rows: rows)) }
        return largest
    }

    private static let layouts = BlockCodec.allCases.map(\.layout)
}

extension Schema {
    /// The most rows one block of this schema may hold (``BlockFormat`` caps ids per block).
    public var maxBlockRows: Int { BlockFormat.maxRows(self) }
}

/// How one column of a block is stored. Every coding keeps ids at the fixed width `w`.
enum ColumnCoding: UInt8, CaseIterable, Sendable {
    /// `w` planes of the `n` ids.
    case plain = 0
    /// No body: one u16 in the constant table, the id of every row.
    case constant = 1
    /// `w` planes of `(id - id of the previous slot of the same layer and row) mod E`.
    /// Sorted or correlated top-k slots give small differences. Not allowed on slot 0.
    case slotDelta = 2
    /// A flag bitmap (`ceil(n/8)` bytes, bit `t` set: row `t` repeats row `t-1`'s id; bit 0
    /// clear), then `w` planes of the `m` ids of the rows whose flag is clear.
    case `repeat` = 3
    /// As `repeat`, the `m` stored values being slot deltas (as in `slotDelta`) of those rows.
    case repeatSlotDelta = 4

    var hasFlags: Bool { self == .repeat || self == .repeatSlotDelta }
    var usesPreviousSlot: Bool { self == .slotDelta || self == .repeatSlotDelta }
}

/// Growable scratch memory owned by one encoder or decoder, reused from block to block.
final class Scratch {
    private(set) var base: UnsafeMutableRawPointer
    private var capacity: Int

    init() {
        capacity = 64
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    /// At least `bytes` bytes; earlier contents are not kept when it grows.
    func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > capacity {
            base.deallocate()
            capacity = max(bytes, capacity * 2)
            base = .allocate(byteCount: capacity, alignment: 16)
        }
        return base
    }

    func reserve<S>(_ count: Int, of: S.Type) -> UnsafeMutablePointer<S> {
        reserve(count * MemoryLayout<S>.stride).bindMemory(to: S.self, capacity: count)
    }
}

/// Little-endian field access on raw bytes.
extension UnsafeMutableRawPointer {
    @inline(__always)
    func storeLE<I: FixedWidthInteger>(_ value: I, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: I.self)
    }
}

extension UnsafeRawPointer {
    @inline(__always)
    func loadLE<I: FixedWidthInteger>(_: I.Type, at offset: Int) -> I {
        I(littleEndian: loadUnaligned(fromByteOffset: offset, as: I.self))
    }
}

/// `(a + b) mod experts` for `a, b < experts`.
@inline(__always)
func addModulo(_ a: Int, _ b: Int, _ experts: Int) -> Int {
    let sum = a &+ b
    return sum >= experts ? sum &- experts : sum
}

/// `(a + b) mod experts` in the scratch type, `modulus` being `experts` truncated to it (0 when
/// experts is 2^bits of the type, where wrapping is the modulo). Branch-free, so loops vectorize.
@inline(__always)
func addModulo<S: PlaneScalar>(_ a: S, _ b: S, _ modulus: S) -> S {
    let sum = a &+ b
    // Reduce when the sum reached experts, or wrapped past the type (only possible when the
    // modulus is 0, where wrapping already reduced it).
    return modulus != 0 && (sum >= modulus || sum < a) ? sum &- modulus : sum
}
