/// Where an id sits in a buffer of rows: its row (counted from the buffer's first), layer and
/// slot, and its value as written (any integer type's, negative ones and `UInt64.max` too).
public struct IDPosition: Sendable, Equatable {
    public let row: Int
    public let layer: Int
    public let slot: Int
    public let value: String

    public init(row: Int, layer: Int, slot: Int, value: String) {
        self.row = row
        self.layer = layer
        self.slot = slot
        self.value = value
    }
}

/// What a check of a whole batch of rows found before any of it is stored: the first id on a
/// MoE layer outside `[0, experts)` (a batch holding one is refused whole), and the non-zero
/// ids on dense layers (not stored: they read back as 0, so a wrong dense-layer list loses
/// routing silently unless someone says so).
public struct IDAudit: Sendable, Equatable {
    /// The first id on a MoE layer outside `[0, experts)`, in row order.
    public var firstInvalid: IDPosition?
    /// Non-zero ids on dense layers (counted up to the first invalid id's row, whole).
    public var denseNonZero = 0
    /// The first of them.
    public var firstDenseNonZero: IDPosition?

    public init() {}
}

extension Schema {
    /// Checks every id of `rows` (token-major, a whole number of rows of this schema). One pass
    /// that vectorizes (split over `threads` for large buffers) when the schema has no dense
    /// layers and every id is valid; a row-by-row pass otherwise.
    public func audit<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, threads: Int = 1) -> IDAudit {
        precondition(rows.count % idsPerRow == 0, "a whole number of rows")
        if denseLayers.isEmpty && largestUnsignedID(rows, threads: threads) < UInt64(experts) {
            return IDAudit()
        }
        let body = AuditRows(schema: self)
        rows.withConcreteIDType(body)
        return body.result
    }
}

/// ``Schema/audit(_:threads:)`` row by row, for the concrete id type.
private final class AuditRows: ConcreteIDBody {
    let schema: Schema
    var result = IDAudit()

    init(schema: Schema) { self.schema = schema }

    func callAsFunction<U: ExpertID>(_ ids: UnsafeBufferPointer<U>) {
        let perRow = schema.idsPerRow, topk = schema.topk, limit = UInt64(schema.experts)
        let moe = schema.moeLayers, dense = schema.denseLayers
        for row in 0..<(ids.count / perRow) {
            let base = row * perRow
            for layer in dense {
                for slot in 0..<topk where ids[base + layer * topk + slot] != 0 {
                    result.denseNonZero += 1
                    if result.firstDenseNonZero == nil {
                        result.firstDenseNonZero = IDPosition(row: row, layer: layer, slot: slot,
                                                              value: String(ids[base + layer * topk + slot]))
                    }
                }
            }
            for layer in moe {
                for slot in 0..<topk {
                    let id = ids[base + layer * topk + slot]
                    // A negative id wraps to a huge unsigned value: one compare covers both ends.
                    if UInt64(truncatingIfNeeded: id) >= limit || id < 0 {
                        result.firstInvalid = IDPosition(row: row, layer: layer, slot: slot, value: String(id))
                        return
                    }
                }
            }
        }
    }
}
