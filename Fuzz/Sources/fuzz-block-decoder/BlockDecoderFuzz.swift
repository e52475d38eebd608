import ExpertCodec

/// Input: a 5-byte schema prefix, then one block frame.
///
///     0  layers - 1               1  topk - 1 (mod 64)
///     2  experts - 1, u16 LE      4  dense-layer bit mask (layers 0-7)
///
/// The frame is opened, decoded whole, and decoded again in a sub-range into another id type.
/// Any error is fine; a trap, an overflow or a memory error is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBlockDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 5 else { return 0 }
    let layers = 1 + Int(data[0]), topk = 1 + Int(data[1] % 64)
    let experts = (Int(data[2]) | Int(data[3]) << 8) + 1
    let dense = (0..<min(layers, 8)).filter { data[4] & (1 << $0) != 0 }
    guard let schema = try? Schema(layers: layers, topk: topk, experts: max(2, experts), denseLayers: dense) else {
        return 0
    }
    let frame = UnsafeRawBufferPointer(start: data + 5, count: size - 5)
    let decoder = BlockDecoder(schema: schema)
    guard let rows = try? decoder.open(frame) else { return 0 }
    var all = [UInt16](repeating: 0, count: rows * schema.idsPerRow)
    _ = try? all.withUnsafeMutableBufferPointer { try decoder.decodeRows(0..<rows, into: $0) }
    guard rows > 2 else { return 0 }
    let middle = 1..<(rows - 1)
    var part = [Int32](repeating: 0, count: middle.count * schema.idsPerRow)
    _ = try? part.withUnsafeMutableBufferPointer { try decoder.decodeRows(middle, into: $0) }
    // Reopening with the row count it holds must give the same rows.
    _ = try? decoder.open(frame, expectedRows: rows)
    return 0
}
