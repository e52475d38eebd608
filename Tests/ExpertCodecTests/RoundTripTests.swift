import CLZ4
import Testing
import TraceSynth
@testable import ExpertCodec

/// Decodes `frame` as every supported type and checks each against `expected`, bit for bit.
func expectDecodesInEveryType(_ frame: [UInt8], _ schema: Schema, _ expected: [Int64],
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
    let decoder = BlockDecoder(schema: schema)
    func check<T: ExpertID>(_: T.Type) throws {
        guard T.max >= schema.experts - 1 else {
            #expect(throws: CodecError.outputTypeTooNarrow(type: "\(T.self)", experts: schema.experts),
                    sourceLocation: sourceLocation) { try decoder.decode(frame, as: T.self) }
            return
        }
        let decoded = try decoder.decode(frame, as: T.self)
        #expect(decoded.map { Int64($0) } == expected, "decoded as \(T.self)", sourceLocation: sourceLocation)
    }
    try check(UInt8.self); try check(Int8.self); try check(UInt16.self); try check(Int16.self)
    try check(UInt32.self); try check(Int32.self); try check(UInt64.self); try check(Int64.self)
}

@Suite struct RoundTripTests {
    /// Seeded property test across the whole schema range: every input type, every output type.
    @Test(.tags(.slow), arguments: 0..<40)
    func generatedSchemasRoundTrip(seed: UInt64) throws {
        var random = SplitMix64(seed: 1000 + seed)
        let schema = Fixtures.schema(&random)
        let count = [0, 1, 2, 7, 8, 9, 100, 513].randomElement(using: &random)!
        let rows = Fixtures.rows(schema, count: min(count, 40_000 / schema.idsPerRow + 1), &random)
        let expected = Fixtures.expected(rows, schema)
        let encoder = BlockEncoder(schema: schema)
        var frames: [[UInt8]] = []
        frames.append(try encoder.encode(rows))
        frames.append(try encoder.encode(converting: rows, as: Int32.self))
        if schema.experts <= 65536 { frames.append(try encoder.encode(converting: rows, as: UInt16.self)) }
        if schema.experts <= 256 && schema.denseLayers.isEmpty { frames.append(try encoder.encode(converting: rows, as: UInt8.self)) }
        for frame in frames {
            #expect(frame == frames[0], "the input type does not change the encoding (\(schema))")
            try expectDecodesInEveryType(frame, schema, expected)
        }
    }

    @Test(.tags(.slow), arguments: [
        (1, 1, 2), (1, 1, 65536), (24, 1, 128), (26, 6, 64), (48, 8, 128), (61, 8, 384), (400, 32, 65536), (3, 64, 4096),
    ])
    func realisticTracesRoundTrip(shape: (Int, Int, Int)) throws {
        let schema = try Schema(layers: shape.0, topk: shape.1, experts: shape.2)
        var synth = TraceSynthesizer(schema: schema, seed: 42)
        let rows = synth.rows(max(1, 200_000 / schema.idsPerRow), as: Int64.self)
        let frame = try BlockEncoder(schema: schema).encode(rows)
        try expectDecodesInEveryType(frame, schema, rows)
    }

    @Test func denseLayersCostNothingAndDecodeToTheFill() throws {
        let schema = try Schema(layers: 4, topk: 2, experts: 16, denseLayers: [0, 2])
        let moeOnly = try Schema(layers: 2, topk: 2, experts: 16)
        // Dense layers hold garbage and the GLM sentinel 0xFFFF: accepted, not stored.
        var rows: [Int32] = [], moeRows: [Int32] = []
        for t in 0..<300 {
            let a = Int32(t % 16), b = Int32((t * 7) % 16)
            rows += [0xFFFF, -5, a, b, 12345, 0xFFFF, b, a]
            moeRows += [a, b, b, a]
        }
        let frame = try BlockEncoder(schema: schema).encode(rows)
        let moeFrame = try BlockEncoder(schema: moeOnly).encode(moeRows)
        #expect(frame == moeFrame, "dense layers add no byte")
        let decoded = try BlockDecoder(schema: schema).decode(frame, as: Int32.self)
        #expect(decoded == rows.enumerated().map { i, v in [0, 2].contains((i % 8) / 2) ? 0 : v })
    }

    @Test func constantColumnsAreStoredOnce() throws {
        let schema = try Schema(layers: 8, topk: 4, experts: 256)
        let rows = (0..<4096).flatMap { _ in (0..<32).map { UInt8($0 * 7) } }
        let frame = try BlockEncoder(schema: schema).encode(rows)
        let payload = try payloadOf(frame)
        #expect(payload.count == PayloadHeader.bytes + 32 + 2 * 32, "codings and the constant table only")
        #expect(try BlockDecoder(schema: schema).decode(frame, as: UInt8.self) == rows)
    }

    @Test func singleRowAndEmptyBlock() throws {
        let schema = try Schema(layers: 3, topk: 2, experts: 100)
        let encoder = BlockEncoder(schema: schema), decoder = BlockDecoder(schema: schema)
        let one: [Int64] = [99, 0, 5, 6, 98, 97]
        #expect(try decoder.decode(try encoder.encode(one), as: Int64.self) == one)
        let empty = try encoder.encode([UInt16]())
        #expect(try decoder.decode(empty, as: UInt16.self) == [])
        #expect(try payloadOf(empty).count == PayloadHeader.bytes)
    }

    @Test(.tags(.slow)) func adversarialBlocks() throws {
        var random = SplitMix64(seed: 3)
        for (layers, topk, experts) in [(4, 8, 65536), (16, 4, 128), (2, 32, 3)] {
            let schema = try Schema(layers: layers, topk: topk, experts: experts)
            let n = 2000, width = schema.idsPerRow
            let uniform = (0..<n * width).map { _ in Int64(random.next() % UInt64(experts)) }
            let oneID = [Int64](repeating: Int64(experts - 1), count: n * width)
            let alternating = (0..<n * width).map { Int64(($0 / width) % 2 == 0 ? 0 : experts - 1) }
            for rows in [uniform, oneID, alternating] {
                let frame = try BlockEncoder(schema: schema).encode(rows)
                try expectDecodesInEveryType(frame, schema, rows)
            }
        }
    }

    /// Row ranges decode the same ids as the whole block, from any start (point look-ups of
    /// repeat and slot-delta columns included), and so does every row decoded by `open` on its
    /// way. Blocks of 333 rows, and of 192 and 77 (flag bitmaps of at most three words, counted
    /// without a loop).
    @Test(arguments: 0..<12)
    func rowRangesMatchTheWholeBlock(seed: UInt64) throws {
        var random = SplitMix64(seed: 77 + seed)
        let schema = Fixtures.schema(&random, maxLayers: 12, maxTopk: 8)
        var synth = TraceSynthesizer(schema: schema, seed: seed)
        let n = [333, 192, 77][Int(seed % 3)]
        var rows = synth.rows(n, as: Int64.self)
        if seed % 2 == 0 { // sorted slots: slot deltas and repeats of them
            for r in stride(from: 0, to: rows.count, by: schema.topk) { rows[r..<r + schema.topk].sort() }
        }
        let decoder = BlockDecoder(schema: schema)
        let frame = try BlockEncoder(schema: schema).encode(rows)
        let whole = try decoder.decode(frame, as: Int64.self)
        _ = try frame.withUnsafeBytes { try decoder.open($0) }
        for _ in 0..<50 {
            let a = Int.random(in: 0..<n, using: &random), b = Int.random(in: a...min(n, a + 40), using: &random)
            var part = [Int64](repeating: -1, count: (b - a) * schema.idsPerRow)
            try part.withUnsafeMutableBufferPointer { try decoder.decodeRows(a..<b, into: $0) }
            #expect(part[...] == whole[a * schema.idsPerRow..<b * schema.idsPerRow])
        }
        // Every row alone: the one-row path reads ids bit by bit.
        var one = [Int64](repeating: -1, count: schema.idsPerRow)
        for t in 0..<n {
            try one.withUnsafeMutableBufferPointer { try decoder.decodeRows(t..<t + 1, into: $0) }
            #expect(one[...] == whole[t * schema.idsPerRow..<(t + 1) * schema.idsPerRow], "row \(t)")
        }
        // Every row decoded while `open` checks the payload, copied by `decodeRows`.
        for t in 0..<n {
            _ = try frame.withUnsafeBytes { try decoder.open($0, decodingRow: t) }
            one = [Int64](repeating: -1, count: schema.idsPerRow)
            try one.withUnsafeMutableBufferPointer { try decoder.decodeRows(t..<t + 1, into: $0) }
            #expect(one[...] == whole[t * schema.idsPerRow..<(t + 1) * schema.idsPerRow], "row \(t) decoded by open")
        }
    }
}

/// The decompressed payload of a frame, through liblz4's own frame decoder (`LZ4F_decompress`,
/// which checks every checksum): an oracle independent of the codec's frame reader.
func payloadOf(_ frame: [UInt8]) throws -> [UInt8] {
    var context: OpaquePointer?
    _ = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
    defer { LZ4F_freeDecompressionContext(context) }
    let size = frame.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 6, as: UInt64.self).littleEndian }
    var payload = [UInt8](repeating: 0, count: Int(size))
    var outBytes = payload.count, inBytes = frame.count
    let hint = payload.withUnsafeMutableBytes { out in
        frame.withUnsafeBytes { LZ4F_decompress(context, out.baseAddress, &outBytes, $0.baseAddress, &inBytes, nil) }
    }
    guard LZ4F_isError(hint) == 0, hint == 0, outBytes == payload.count, inBytes == frame.count else {
        throw CodecError.corruptBlock("liblz4 refuses the frame", offset: 0, inPayload: false)
    }
    return payload
}
