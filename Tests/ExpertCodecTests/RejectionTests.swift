import Testing
import TraceSynth
@testable import ExpertCodec

@Suite struct RejectionTests {
    let schema = try! Schema(layers: 4, topk: 2, experts: 100, denseLayers: [1])

    @Test func idOutsideTheRangeNamesTokenLayerSlotAndValue() throws {
        let encoder = BlockEncoder(schema: schema)
        var rows = [Int32](repeating: 1, count: 10 * 8)
        rows[3 * 8 + 2 * 2 + 1] = 100
        #expect(throws: CodecError.idOutOfRange(token: 3, layer: 2, slot: 1, value: 100, experts: 100)) { try encoder.encode(rows) }
        rows[3 * 8 + 2 * 2 + 1] = 1
        rows[7 * 8 + 0] = -1
        #expect(throws: CodecError.idOutOfRange(token: 7, layer: 0, slot: 0, value: -1, experts: 100)) { try encoder.encode(rows) }
        let huge = [Int64](repeating: 1 << 40, count: 8)
        #expect(throws: CodecError.idOutOfRange(token: 0, layer: 0, slot: 0, value: 1 << 40, experts: 100)) { try encoder.encode(huge) }
        rows[7 * 8 + 0] = 1
        rows[5 * 8 + 1 * 2] = -7 // dense layer 1: anything goes
        _ = try encoder.encode(rows)
        #expect(throws: CodecError.self) { try encoder.encode([Int32](repeating: 0, count: 7)) }
    }

    @Test func schemaLimits() {
        #expect(throws: CodecError.self) { try Schema(layers: 0, topk: 1, experts: 8) }
        #expect(throws: CodecError.self) { try Schema(layers: 1, topk: 65, experts: 8) }
        #expect(throws: CodecError.self) { try Schema(layers: 1, topk: 1, experts: 1) }
        #expect(throws: CodecError.self) { try Schema(layers: 1, topk: 1, experts: 65537) }
        #expect(throws: CodecError.self) { try Schema(layers: 2, topk: 1, experts: 8, denseLayers: [2]) }
        #expect(throws: CodecError.self) { try Schema(layers: 2, topk: 1, experts: 8, denseLayers: [0, 1]) }
    }

    private func sampleFrame() throws -> (frame: [UInt8], rows: [Int64]) {
        var synth = TraceSynthesizer(schema: schema, seed: 5)
        let rows = Fixtures.expected(synth.rows(60, as: Int64.self), schema)
        return (try BlockEncoder(schema: schema).encode(rows), rows)
    }

    /// Every single-bit flip anywhere in a frame is an error, never wrong rows and never a trap.
    @Test func everyFlippedBitIsRejected() throws {
        let (frame, _) = try sampleFrame()
        let decoder = BlockDecoder(schema: schema)
        for byte in frame.indices {
            for bit in 0..<8 {
                var damaged = frame
                damaged[byte] ^= 1 << bit
                let result = Result { try decoder.decode(damaged, as: Int64.self) }
                #expect(throws: CodecError.self, "flip of bit \(bit) of byte \(byte)") { try result.get().count }
            }
        }
    }

    @Test func everyCutAndAppendedByteIsRejected() throws {
        let (frame, rows) = try sampleFrame()
        let decoder = BlockDecoder(schema: schema)
        for length in 0..<frame.count {
            #expect(throws: CodecError.self, "cut at \(length)") { try decoder.decode(Array(frame[..<length]), as: Int64.self) }
        }
        #expect(throws: CodecError.self) { try decoder.decode(frame + [0], as: Int64.self) }
        #expect(try decoder.decode(frame, as: Int64.self) == rows, "the decoder recovers after errors")
    }

    @Test func wrongSizesAndFlagsAreRejected() throws {
        let (frame, _) = try sampleFrame()
        let decoder = BlockDecoder(schema: schema)
        // A frame from another schema: the payload header disagrees.
        let other = try Schema(layers: 4, topk: 2, experts: 1000, denseLayers: [1])
        #expect(throws: CodecError.self) { try BlockDecoder(schema: other).decode(frame, as: Int64.self) }
        // The expected row count disagrees.
        var out = [Int64](repeating: 0, count: 59 * schema.idsPerRow)
        #expect(throws: CodecError.self) { try frame.withUnsafeBytes { f in try out.withUnsafeMutableBufferPointer { try decoder.decode(f, into: $0) } } }
        // Not an LZ4 frame, a frame without checksum, a frame claiming terabytes.
        #expect(throws: CodecError.self) { try decoder.decode([0x50, 0x2A, 0x4D, 0x18, 0, 0, 0, 0], as: Int64.self) }
        #expect(throws: CodecError.self) { try decoder.decode(plainLZ4Frame([1, 2, 3], contentSize: 3, checksum: false), as: Int64.self) }
        #expect(throws: CodecError.self) { try decoder.decode(plainLZ4Frame([1, 2, 3], contentSize: 1 << 40, checksum: true), as: Int64.self) }
    }

    /// A frame that names a dictionary is not a block, even with valid checksums.
    @Test func dictionaryFramesAreRejected() throws {
        let (frame, _) = try sampleFrame()
        var descriptor = [UInt8](frame[4..<14])
        descriptor[0] |= 0x01
        descriptor += [1, 0, 0, 0]
        let withDictionary = Array(frame[0..<4]) + descriptor + [UInt8((xxh32(descriptor) >> 8) & 0xFF)] + Array(frame[15...])
        #expect(throws: CodecError.self) { try BlockDecoder(schema: schema).decode(withDictionary, as: Int64.self) }
    }

    /// Payloads that pass every checksum but lie: built by hand, wrapped in valid frames.
    @Test func hostilePayloadsAreRejected() throws {
        let decoder = BlockDecoder(schema: schema)
        let valid = try payloadOf(try sampleFrame().frame)
        func rejects(_ payload: [UInt8], _ why: String) {
            let frame = try! payload.withUnsafeBytes { try LZ4Frame.compress($0) }
            #expect(throws: CodecError.self, "\(why)") { try decoder.decode(frame, as: Int64.self) }
            for row in [0, 1, 7] { // the pass that decodes a row on its way checks the same
                #expect(throws: CodecError.self, "\(why), row \(row)") { try frame.withUnsafeBytes { try decoder.open($0, decodingRow: row) } }
            }
        }
        var p = valid; p[0] = 2; rejects(p, "unknown layout")
        p = valid; p[1] = 6; rejects(p, "bit width")
        p = valid; p[2] = 1; rejects(p, "reserved")
        p = valid; p[4] = 61; rejects(p, "row count")
        p = valid; p[7] = 0xFF; rejects(p, "row count beyond the limit")
        p = valid; p[8] = 7; rejects(p, "column count")
        p = valid; p[12] = 9; rejects(p, "unknown coding")
        p = valid; p[12] = ColumnCoding.slotDelta.rawValue; rejects(p, "slot delta on slot 0")
        p = valid; p.removeLast(); rejects(p, "short body")
        p = valid; p.append(0); rejects(p, "trailing byte")
        rejects(Array(valid[..<12]), "header only")
        // 100 experts in 7 bits: a plain column of 127s decodes outside the range.
        let schema1 = try Schema(layers: 1, topk: 1, experts: 100)
        let payload: [UInt8] = [1, 7, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 7)
        let frame = try payload.withUnsafeBytes { try LZ4Frame.compress($0) }
        #expect(throws: CodecError.self) { try BlockDecoder(schema: schema1).decode(frame, as: Int64.self) }
        // Each row alone too (the one-row path reads ids bit by bit).
        let oneRow = BlockDecoder(schema: schema1)
        _ = try frame.withUnsafeBytes { try oneRow.open($0) }
        for t in 0..<8 {
            var id: [Int64] = [-1]
            #expect(throws: CodecError.self, "row \(t) alone") { try id.withUnsafeMutableBufferPointer { try oneRow.decodeRows(t..<t + 1, into: $0) } }
            #expect(throws: CodecError.self, "row \(t) decoded by open") { try frame.withUnsafeBytes { try oneRow.open($0, decodingRow: t) } }
        }
        let good: [UInt8] = [1, 7, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 5) + [0, 0]
        let goodFrame = try good.withUnsafeBytes { try LZ4Frame.compress($0) }
        #expect(try BlockDecoder(schema: schema1).decode(goodFrame, as: Int64.self) == [Int64](repeating: 31, count: 8))
    }
}

/// An uncompressed LZ4 frame built by hand (one raw block), for header-level tests.
func plainLZ4Frame(_ content: [UInt8], contentSize: UInt64, checksum: Bool) -> [UInt8] {
    let flg: UInt8 = 0x40 | 0x20 | 0x10 | 0x08 | (checksum ? 0x04 : 0)
    var descriptor: [UInt8] = [flg, 0x40]
    withUnsafeBytes(of: contentSize.littleEndian) { descriptor += $0 }
    let hc = UInt8((xxh32(descriptor) >> 8) & 0xFF)
    var frame: [UInt8] = [0x04, 0x22, 0x4D, 0x18] + descriptor + [hc]
    withUnsafeBytes(of: (UInt32(content.count) | 0x8000_0000).littleEndian) { frame += $0 }
    frame += content
    withUnsafeBytes(of: xxh32(content).littleEndian) { frame += $0 } // block checksum
    frame += [0, 0, 0, 0]
    if checksum { withUnsafeBytes(of: xxh32(content).littleEndian) { frame += $0 } }
    return frame
}

/// xxHash32 with seed 0 (Debian's liblz4 does not export it), for hand-built frames.
func xxh32(_ data: [UInt8]) -> UInt32 {
    let p1: UInt32 = 2_654_435_761, p2: UInt32 = 2_246_822_519, p3: UInt32 = 3_266_489_917
    let p4: UInt32 = 668_265_263, p5: UInt32 = 374_761_393
    func rotl(_ x: UInt32, _ r: UInt32) -> UInt32 { (x << r) | (x >> (32 - r)) }
    func word(_ i: Int) -> UInt32 { UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24 }
    var i = 0, h: UInt32
    if data.count >= 16 {
        var v = [p1 &+ p2, p2, 0, 0 &- p1]
        while i + 16 <= data.count {
            for k in 0..<4 { v[k] = rotl(v[k] &+ word(i + 4 * k) &* p2, 13) &* p1 }
            i += 16
        }
        h = rotl(v[0], 1) &+ rotl(v[1], 7) &+ rotl(v[2], 12) &+ rotl(v[3], 18)
    } else {
        h = p5
    }
    h = h &+ UInt32(data.count)
    while i + 4 <= data.count { h = rotl(h &+ word(i) &* p3, 17) &* p4; i += 4 }
    while i < data.count { h = rotl(h &+ UInt32(data[i]) &* p5, 11) &* p1; i += 1 }
    h ^= h >> 15; h = h &* p2; h ^= h >> 13; h = h &* p3; h ^= h >> 16
    return h
}
