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
enum FastFormat {
    static let layoutByte: UInt8 = 1
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
