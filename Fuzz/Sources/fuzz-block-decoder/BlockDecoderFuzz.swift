import ExpertCodec
import FuzzLZ4

/// Input: a 5-byte schema prefix, then one block frame or one block payload.
///
///     0  layers - 1               1  topk - 1 (mod 64)
///     2  experts - 1, u16 LE      4  dense-layer bit mask (layers 0-7)
///
/// The bytes after the prefix are decoded as a frame, then wrapped in a valid LZ4 frame (content
/// size, content and block checksums) and decoded again: the payload parser is reached without
/// the fuzzer having to forge checksums. Any error is fine; a trap, an overflow or a memory error
/// is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBlockDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 5 else { return 0 }
    let layers = 1 + Int(data[0]), topk = 1 + Int(data[1] % 64)
    let experts = (Int(data[2]) | Int(data[3]) << 8) + 1
    let dense = (0..<min(layers, 8)).filter { data[4] & (1 << $0) != 0 }
    guard let schema = try? Schema(layers: layers, topk: topk, experts: max(2, experts), denseLayers: dense) else {
        return 0
    }
    let decoder = BlockDecoder(schema: schema)
    let bytes = UnsafeRawBufferPointer(start: data + 5, count: size - 5)
    exercise(decoder, frame: bytes)
    let frame = lz4Frame(bytes)
    frame.withUnsafeBytes { exercise(decoder, frame: $0) }
    return 0
}

/// Opens `frame`, decodes it whole, then its last row as `open` decodes it on its way (which
/// must equal the whole decode's when that succeeded), then rows 1..<n-1 into a wider id type,
/// then reopens it with the row count it holds.
func exercise(_ decoder: BlockDecoder, frame: UnsafeRawBufferPointer) {
    let schema = decoder.schema
    guard let rows = try? decoder.open(frame) else { return }
    var all = [UInt16](repeating: 0, count: rows * schema.idsPerRow)
    let wholeDecoded = (try? all.withUnsafeMutableBufferPointer { try decoder.decodeRows(0..<rows, into: $0) }) != nil
    if rows > 0 {
        var last = [UInt16](repeating: 0, count: schema.idsPerRow)
        let fused = (try? decoder.open(frame, decodingRow: rows - 1)) != nil
            && (try? last.withUnsafeMutableBufferPointer { try decoder.decodeRows((rows - 1)..<rows, into: $0) }) != nil
        if wholeDecoded {
            precondition(fused && last[...] == all[((rows - 1) * schema.idsPerRow)...],
                         "the row decoded by open differs from the whole decode")
        }
        _ = try? decoder.open(frame, decodingRow: rows)
    }
    guard rows > 2 else { return }
    let middle = 1..<(rows - 1)
    var part = [Int32](repeating: 0, count: middle.count * schema.idsPerRow)
    _ = try? part.withUnsafeMutableBufferPointer { try decoder.decodeRows(middle, into: $0) }
    _ = try? decoder.open(frame, expectedRows: rows)
}

/// `payload` as an LZ4 frame of the kind blocks are stored in.
func lz4Frame(_ payload: UnsafeRawBufferPointer) -> [UInt8] {
    var preferences = LZ4F_preferences_t()
    preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
    preferences.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled
    preferences.frameInfo.contentSize = UInt64(payload.count)
    var frame = [UInt8](repeating: 0, count: LZ4F_compressFrameBound(payload.count, &preferences))
    let written = frame.withUnsafeMutableBytes { out in
        LZ4F_compressFrame(out.baseAddress, out.count, payload.baseAddress, payload.count, &preferences)
    }
    precondition(LZ4F_isError(written) == 0, "fuzz harness: LZ4F_compressFrame failed")
    return Array(frame[..<written])
}
