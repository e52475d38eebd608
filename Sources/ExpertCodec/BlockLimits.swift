/// What bounds one block in every layout: a decoder allocates no more than these allow.
enum BlockLimits {
    /// Ids (rows x stored columns) one block may hold.
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
    /// The most rows one block of this schema may hold (``BlockLimits`` caps ids per block).
    public var maxBlockRows: Int { BlockLimits.maxRows(self) }
}
