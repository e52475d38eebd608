import ExpertCodec
import Testing

/// `Schema.audit`: the first id outside `[0, experts)` on a MoE layer, and the non-zero ids on
/// dense layers, for every kind of id type.
@Suite struct IDAuditTests {
    let schema = try! Schema(layers: 3, topk: 2, experts: 10, denseLayers: [1])

    @Test func cleanRowsPass() {
        let rows: [Int16] = [1, 2, 0, 0, 9, 8, 3, 4, 0, 0, 5, 6]
        #expect(rows.withUnsafeBufferPointer { schema.audit($0) } == IDAudit())
    }

    @Test func firstInvalidAndDenseCounts() {
        var rows = [Int64](repeating: 1, count: 5 * 6)
        for row in 0..<5 { rows[row * 6 + 2] = 0; rows[row * 6 + 3] = 0 }
        rows[1 * 6 + 3] = 7          // dense: row 1, layer 1, slot 1
        rows[2 * 6 + 2] = -2         // dense, negative
        rows[3 * 6 + 4] = -1         // invalid: row 3, layer 2, slot 0
        rows[4 * 6 + 0] = 10         // invalid too, later
        let audit = rows.withUnsafeBufferPointer { schema.audit($0) }
        #expect(audit.firstInvalid == IDPosition(row: 3, layer: 2, slot: 0, value: "-1"))
        #expect(audit.denseNonZero == 2)
        #expect(audit.firstDenseNonZero == IDPosition(row: 1, layer: 1, slot: 1, value: "7"))
    }

    @Test func everyIDTypeNamesItsValue() {
        let plain = try! Schema(layers: 2, topk: 1, experts: 10)
        func first<T: ExpertID>(_ rows: [T]) -> IDPosition? { rows.withUnsafeBufferPointer { plain.audit($0, threads: 2) }.firstInvalid }
        #expect(first([UInt64(3), .max]) == IDPosition(row: 0, layer: 1, slot: 0, value: "18446744073709551615"))
        #expect(first([Int8(3), 4, -128, 0]) == IDPosition(row: 1, layer: 0, slot: 0, value: "-128"))
        #expect(first([UInt8(9), 9, 9, 10]) == IDPosition(row: 1, layer: 1, slot: 0, value: "10"))
        #expect(first([UInt32(9), 9]) == nil)
    }
}
