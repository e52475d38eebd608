import Foundation
import Testing
import TraceSynth
@testable import ExpertCodec

/// The test vectors of `spec/vectors` (see its README and `spec/FORMAT.md`), checked both ways:
/// the encoder must produce exactly the stored payload and frame, the decoder must return exactly
/// the stored rows, and an independent decoder written from `spec/FORMAT.md` alone must agree.
///
/// `scripts/make-vectors` writes the files (after an intended format or encoder change: then
/// review the diff and rerun `lz4 -t` / `lz4 -dc` as the README says).
@Suite struct SpecVectorTests {
    /// Every vector the spec ships. A missing file of any of them fails the suite.
    static let names = ["mixed_e6", "empty_e384", "one_row_e65536", "kimi_e384", "wide_e65536", "sorted_e128"]

    /// The column codings as `spec/FORMAT.md` numbers them.
    static let codingNumbers: [String: UInt8] = [
        "plain": 0, "constant": 1, "slotDelta": 2, "repeat": 3, "repeatSlotDelta": 4,
    ]

    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent() // ExpertCodecTests
        .deletingLastPathComponent() // Tests
        .deletingLastPathComponent() // package root
        .appendingPathComponent("spec/vectors", isDirectory: true)

    // MARK: - The vectors, both ways

    @Test(arguments: names)
    func encodingGivesTheStoredPayloadAndFrame(name: String) throws {
        let vector = try Vector.load(name)
        let encoder = BlockEncoder(schema: vector.schema)
        #expect(try payloadBytes(encoder, vector.rows) == vector.payload, "payload of \(name)")
        #expect(try encoder.encode(vector.rows) == vector.frame, "frame of \(name)")
        // The input integer type does not matter: every value of every vector fits in a UInt16.
        #expect(try encoder.encode(vector.rows.map { UInt16($0) }) == vector.frame, "frame of \(name) from UInt16 rows")
    }

    @Test(arguments: names)
    func decodingGivesTheStoredRows(name: String) throws {
        let vector = try Vector.load(name)
        let decoder = BlockDecoder(schema: vector.schema)
        #expect(try decoder.decode(vector.frame, as: Int64.self) == vector.decoded, "rows of \(name).lz4")
        // The frame's content is the stored payload (what `lz4 -dc` returns).
        #expect(try frameContent(vector.frame, vector.schema) == vector.payload, "content of \(name).lz4")
        // The payload in a fresh frame (another compressor's output) decodes the same.
        let fresh = try vector.payload.withUnsafeBytes { try LZ4Frame.compress($0) }
        #expect(try decoder.decode(fresh, as: Int64.self) == vector.decoded, "rows of \(name).payload in a fresh frame")
        // Row ranges decode the same as the whole block.
        let perRow = vector.schema.idsPerRow
        _ = try vector.frame.withUnsafeBytes { frame in try decoder.open(frame, expectedRows: vector.rowCount) }
        for start in 0..<vector.rowCount {
            var out = [Int64](repeating: -1, count: (vector.rowCount - start) * perRow)
            try out.withUnsafeMutableBufferPointer { try decoder.decodeRows(start..<vector.rowCount, into: $0) }
            #expect(out == Array(vector.decoded[(start * perRow)...]), "rows \(start)... of \(name)")
            var one = [Int64](repeating: -1, count: perRow)
            try one.withUnsafeMutableBufferPointer { try decoder.decodeRows(start..<start + 1, into: $0) }
            #expect(one[...] == vector.decoded[(start * perRow)..<((start + 1) * perRow)], "row \(start) alone of \(name)")
        }
        // A row decoded by `open` on its way (a random read), then copied by `decodeRows`.
        let fused = BlockDecoder(schema: vector.schema)
        for row in 0..<vector.rowCount {
            _ = try vector.frame.withUnsafeBytes { try fused.open($0, expectedRows: vector.rowCount, decodingRow: row) }
            var one = [Int64](repeating: -1, count: perRow)
            try one.withUnsafeMutableBufferPointer { try fused.decodeRows(row..<row + 1, into: $0) }
            #expect(one[...] == vector.decoded[(row * perRow)..<((row + 1) * perRow)], "row \(row) of \(name), decoded by open")
        }
    }

    /// The frame is the one `spec/FORMAT.md` describes: magic, FLG 0x7C (version 01, independent
    /// blocks, block checksums, content size, content checksum, no dictionary), content size.
    @Test(arguments: names)
    func frameHeaderIsTheDocumentedOne(name: String) throws {
        let vector = try Vector.load(name)
        let frame = vector.frame
        try #require(frame.count >= 15 + 4 + 4)
        #expect(Array(frame[0..<4]) == [0x04, 0x22, 0x4D, 0x18], "magic")
        #expect(frame[4] == 0x7C, "FLG")
        #expect(frame[5] == 0x40, "BD: 64 KiB blocks, liblz4's default")
        let contentSize = (0..<8).reduce(UInt64(0)) { $0 | UInt64(frame[6 + $1]) << (8 * $1) }
        #expect(contentSize == UInt64(vector.payload.count), "content size")
        #expect(UInt32(frame[14]) == (xxh32(Array(frame[4..<14])) >> 8) & 0xFF, "header checksum")
        #expect(Array(frame[(frame.count - 8)..<(frame.count - 4)]) == [0, 0, 0, 0], "end mark")
        let checksum = (0..<4).reduce(UInt32(0)) { $0 | UInt32(frame[frame.count - 4 + $1]) << (8 * $1) }
        #expect(checksum == xxh32(vector.payload), "content checksum")
    }

    /// The payload's header and coding bytes are the documented ones, so that the vectors keep
    /// covering every coding.
    @Test(arguments: names)
    func payloadHeaderAndCodingsAreTheDocumentedOnes(name: String) throws {
        let vector = try Vector.load(name)
        let p = vector.payload, schema = vector.schema
        try #require(p.count >= 12)
        #expect(p[0] == 1, "layout")
        #expect(Int(p[1]) == schema.bitWidth, "bit width")
        #expect(p[2] == 0 && p[3] == 0, "reserved")
        #expect(Int(le32(p, 4)) == vector.rowCount, "rows")
        #expect(Int(le32(p, 8)) == schema.storedIDsPerRow, "stored columns")
        let expected = try vector.codings.map { name in try #require(Self.codingNumbers[name], "unknown coding name \(name)") }
        if vector.rowCount == 0 {
            #expect(expected.isEmpty && p.count == 12, "an empty block is its header")
        } else {
            #expect(Array(p[12..<(12 + schema.storedIDsPerRow)]) == expected, "coding bytes of \(name)")
        }
    }

    /// An independent decoder written from `spec/FORMAT.md` alone reads every payload.
    @Test(arguments: names)
    func specDecoderReadsThePayload(name: String) throws {
        let vector = try Vector.load(name)
        let rows = try #require(SpecDecoder.decode(vector.payload, vector.schema), "the spec decoder rejects \(name)")
        #expect(rows == vector.decoded)
    }

    /// The spec decoder and the codec agree on generated blocks across the schema range...
    @Test(arguments: 0..<30)
    func specDecoderAgreesOnGeneratedBlocks(seed: UInt64) throws {
        var random = SplitMix64(seed: 7000 + seed)
        let schema = Fixtures.schema(&random, maxLayers: 40, maxTopk: 8)
        let count = [0, 1, 2, 7, 8, 9, 33, 200].randomElement(using: &random)!
        let rows = Fixtures.rows(schema, count: count, &random)
        let payload = try payloadBytes(BlockEncoder(schema: schema), rows)
        #expect(SpecDecoder.decode(payload, schema) == Fixtures.expected(rows, schema), "\(schema), \(count) rows")
    }

    /// ...and on every damaged payload: each byte of the worked example set to every value, cut
    /// short, or extended. Both accept and return the same rows, or both reject.
    @Test func specDecoderAndCodecRejectTheSamePayloads() throws {
        let vector = try Vector.load("mixed_e6")
        let decoder = BlockDecoder(schema: vector.schema)
        var variants = [[UInt8]]()
        for i in vector.payload.indices {
            for value in 0...255 where value != vector.payload[i] {
                var p = vector.payload
                p[i] = UInt8(value)
                variants.append(p)
            }
            variants.append(Array(vector.payload[..<i]))
        }
        variants.append(vector.payload + [0])
        var accepted = 0
        for payload in variants {
            let frame = try payload.withUnsafeBytes { try LZ4Frame.compress($0) }
            let codec = try? decoder.decode(frame, as: Int64.self)
            let spec = SpecDecoder.decode(payload, vector.schema)
            #expect(codec == spec, "payload \(payload.map { String($0, radix: 16) })")
            accepted += spec == nil ? 0 : 1
        }
        // Some damage is undetectable by design (a plane bit inside the range changes an id).
        #expect(accepted > 0 && accepted < variants.count / 2)
    }

    /// Together the vectors cover every coding and every edge the README promises.
    @Test func vectorsCoverEveryCodingAndEdge() throws {
        let vectors = try Self.names.map { try Vector.load($0) }
        let used = Set(vectors.flatMap(\.codings))
        #expect(used == Set(Self.codingNumbers.keys), "codings covered: \(used.sorted())")
        #expect(vectors.contains { $0.rowCount == 0 }, "an empty block")
        #expect(vectors.contains { $0.rowCount == 1 }, "a one-row block")
        #expect(vectors.contains { $0.rowCount > 8 && $0.rowCount % 8 != 0 }, "padding bits")
        #expect(vectors.contains { $0.rowCount >= 8 && $0.rowCount % 8 == 0 }, "no padding bits")
        #expect(vectors.contains { $0.schema.bitWidth > 8 && $0.codings.contains("repeatSlotDelta") }, "w > 8")
        #expect(vectors.contains { $0.schema.bitWidth == 16 && $0.rowCount > 1 }, "w = 16")
        #expect(vectors.contains { !$0.schema.denseLayers.isEmpty && $0.rows != $0.decoded }, "a dense layer")
        #expect(vectors.contains { $0.schema.experts & ($0.schema.experts - 1) != 0 }, "experts not a power of two")
        // A frame whose block liblz4 actually compressed (block size high bit clear).
        #expect(vectors.contains { $0.frame.count > 19 && $0.frame[18] & 0x80 == 0 }, "a compressed LZ4 block")
        // No stray vector file that this suite does not check.
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path)
        let stray = files.filter { $0.hasSuffix(".json") && !Self.names.contains(String($0.dropLast(5))) }
        #expect(stray.isEmpty, "vectors not listed in SpecVectorTests.names: \(stray)")
    }
}

// MARK: - Loading

/// One vector as stored: the JSON's schema and rows, the payload and the frame.
private struct Vector {
    let name: String
    let schema: Schema
    let codings: [String]
    /// Flat token-major ids as an engine hands them over, and as a decoder returns them.
    let rows: [Int64], decoded: [Int64]
    let rowCount: Int
    let payload: [UInt8], frame: [UInt8]

    private struct File: Decodable {
        struct SchemaFields: Decodable {
            let layers: Int, topk: Int, experts: Int
            let dense_layers: [Int]
        }
        let name: String
        let schema: SchemaFields
        let codings: [String]
        let rows: [[[Int64]]]
        let decoded: [[[Int64]]]?
    }

    static func load(_ name: String) throws -> Vector {
        func read(_ ext: String) throws -> Data {
            let url = SpecVectorTests.directory.appendingPathComponent("\(name).\(ext)")
            guard let data = FileManager.default.contents(atPath: url.path) else {
                Issue.record("missing vector file \(url.path)")
                throw CocoaError(.fileNoSuchFile)
            }
            return data
        }
        let file = try JSONDecoder().decode(File.self, from: read("json"))
        #expect(file.name == name)
        let schema = try Schema(layers: file.schema.layers, topk: file.schema.topk, experts: file.schema.experts,
                                denseLayers: file.schema.dense_layers)
        let shapeOK = (file.rows + (file.decoded ?? [])).allSatisfy { row in
            row.count == schema.layers && row.allSatisfy { $0.count == schema.topk }
        }
        try #require(shapeOK, "\(name).json: every row must be [layers][topk]")
        let rows = file.rows.flatMap { $0.flatMap { $0 } }
        return Vector(name: name, schema: schema, codings: file.codings, rows: rows,
                      decoded: file.decoded.map { $0.flatMap { $0.flatMap { $0 } } } ?? rows,
                      rowCount: file.rows.count, payload: Array(try read("payload")), frame: Array(try read("lz4")))
    }
}

/// A copy of the payload `encoder` makes of `rows` (it points into the encoder's scratch memory).
private func payloadBytes(_ encoder: BlockEncoder, _ rows: [Int64]) throws -> [UInt8] {
    try withExtendedLifetime(encoder) {
        let (start, count) = try rows.withUnsafeBufferPointer { rows in try encoder.encodePayload(rows) }
        return Array(UnsafeRawBufferPointer(start: start, count: count))
    }
}

/// The content of a frame, through the decoder's own LZ4 layer (what `lz4 -dc` prints).
private func frameContent(_ frame: [UInt8], _ schema: Schema) throws -> [UInt8] {
    let lz4 = LZ4FrameDecoder()
    return try frame.withUnsafeBytes { bytes in
        let header = try lz4.header(of: bytes, limit: BlockLimits.maxPayloadBytes(schema, rows: BlockLimits.maxRows(schema)))
        var out = [UInt8](repeating: 0, count: header.size)
        try out.withUnsafeMutableBytes { try lz4.decompress(bytes, header: header, into: $0.baseAddress!) }
        return out
    }
}

private func le32(_ p: [UInt8], _ at: Int) -> UInt32 {
    UInt32(p[at]) | UInt32(p[at + 1]) << 8 | UInt32(p[at + 2]) << 16 | UInt32(p[at + 3]) << 24
}

// MARK: - A decoder written from spec/FORMAT.md alone

/// Straight from the text of `spec/FORMAT.md` part 1, bit by bit, sharing no code with the codec:
/// returns the rows (token-major, dense layers 0), or nil where the text says a reader must reject.
private enum SpecDecoder {
    static func decode(_ p: [UInt8], _ schema: Schema) -> [Int64]? {
        let E = schema.experts, topk = schema.topk
        var w = 1
        while (1 << w) < E { w += 1 }
        let moe = (0..<schema.layers).filter { !schema.denseLayers.contains($0) }
        let C = moe.count * topk
        guard p.count >= 12, p[0] == 1, Int(p[1]) == w, p[2] == 0, p[3] == 0 else { return nil }
        let n = Int(le32(p, 4))
        guard Int(le32(p, 8)) == C, n <= (1 << 26) / C else { return nil }
        if n == 0 { return p.count == 12 ? [] : nil }
        guard p.count >= 12 + C else { return nil }
        let codings = Array(p[12..<(12 + C)])
        for c in 0..<C {
            guard codings[c] <= 4 else { return nil }
            if (codings[c] == 2 || codings[c] == 4) && c % topk == 0 { return nil }
        }
        var pos = 12 + C
        var constants = [Int: Int]()
        for c in 0..<C where codings[c] == 1 {
            guard pos + 2 <= p.count else { return nil }
            let v = Int(p[pos]) | Int(p[pos + 1]) << 8
            guard v < E else { return nil }
            constants[c] = v
            pos += 2
        }
        /// `w` bit planes of `m` values at `pos`; padding bits must be 0, values below E.
        func planes(_ m: Int, width: Int, checkRange: Bool) -> [Int]? {
            let stride = (m + 7) / 8
            guard pos + width * stride <= p.count else { return nil }
            var values = [Int](repeating: 0, count: m)
            for b in 0..<width {
                for i in 0..<(8 * stride) {
                    let bit = Int(p[pos + b * stride + i / 8] >> (i % 8)) & 1
                    if i >= m { if bit != 0 { return nil } } else { values[i] |= bit << b }
                }
            }
            pos += width * stride
            if checkRange && values.contains(where: { $0 >= E }) { return nil }
            return values
        }
        var columns = [[Int]]()
        for c in 0..<C {
            var column = [Int](repeating: 0, count: n)
            switch codings[c] {
            case 1:
                column = [Int](repeating: constants[c]!, count: n)
            case 0, 2:
                guard let v = planes(n, width: w, checkRange: true) else { return nil }
                for t in 0..<n { column[t] = codings[c] == 0 ? v[t] : (v[t] + columns[c - 1][t]) % E }
            default: // 3, 4
                guard let f = planes(n, width: 1, checkRange: false), f[0] == 0 else { return nil }
                let m = n - f.reduce(0, +)
                guard let v = planes(m, width: w, checkRange: true) else { return nil }
                var j = -1
                for t in 0..<n {
                    if f[t] == 1 { column[t] = column[t - 1]; continue }
                    j += 1
                    column[t] = codings[c] == 3 ? v[j] : (v[j] + columns[c - 1][t]) % E
                }
            }
            columns.append(column)
        }
        guard pos == p.count else { return nil }
        var rows = [Int64](repeating: 0, count: n * schema.layers * topk)
        for (k, layer) in moe.enumerated() {
            for s in 0..<topk {
                for t in 0..<n { rows[(t * schema.layers + layer) * topk + s] = Int64(columns[k * topk + s][t]) }
            }
        }
        return rows
    }
}
