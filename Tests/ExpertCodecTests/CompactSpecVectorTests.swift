import Foundation
import Testing
import TraceSynth
@testable import ExpertCodec

/// The layout 2 (compact) vectors of `spec/vectors/compact` (spec/FORMAT.md 1.10), checked both
/// ways, and an independent decoder written from 1.10 alone. `scripts/make-vectors` writes them.
@Suite struct CompactSpecVectorTests {
    static let names = ["c_small_e6", "c_sorted_e64", "c_split_e128", "c_raw_e4096", "c_empty_e384", "c_one_row_e300",
                        "c_fallback_e2048"]
    static let kindNames = ["constant", "ids", "slotDelta", "raw", "splitIDs", "splitSlotDelta"]

    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("spec/vectors/compact", isDirectory: true)

    private struct File: Decodable {
        struct SchemaFields: Decodable { let layers: Int, topk: Int, experts: Int, dense_layers: [Int] }
        let name: String, description: String
        let schema: SchemaFields
        let kinds: [String]
        let rows: [[[Int64]]]
        let decoded: [[[Int64]]]
    }

    private static func load(_ name: String) throws -> (Schema, File, [UInt8], [UInt8]) {
        func read(_ ext: String) throws -> Data {
            let path = directory.appendingPathComponent("\(name).\(ext)").path
            guard let data = FileManager.default.contents(atPath: path) else {
                Issue.record("missing vector file \(path)")
                throw CocoaError(.fileNoSuchFile)
            }
            return data
        }
        let file = try JSONDecoder().decode(File.self, from: try read("json"))
        let schema = try Schema(layers: file.schema.layers, topk: file.schema.topk, experts: file.schema.experts,
                                denseLayers: file.schema.dense_layers)
        return (schema, file, Array(try read("payload")), Array(try read("lz4")))
    }

    @Test(arguments: names)
    func encodingGivesTheStoredPayloadAndFrame(name: String) throws {
        let (schema, file, payload, frame) = try Self.load(name)
        let encoder = BlockEncoder(schema: schema, codec: .compact)
        let rows = file.rows.flatMap { $0.flatMap { $0 } }
        #expect(try compactPayloadBytes(encoder, rows) == payload, "payload of \(name)")
        #expect(try encoder.encode(rows) == frame, "frame of \(name)")
        #expect(try encoder.encode(rows.map { UInt16($0) }) == frame, "frame of \(name) from UInt16 rows")
        #expect(file.rows.isEmpty || payload[12..<(12 + schema.storedIDsPerRow)].map { Self.kindNames[Int($0)] } == file.kinds)
    }

    @Test(arguments: names)
    func decodingGivesTheStoredRows(name: String) throws {
        let (schema, file, payload, frame) = try Self.load(name)
        let decoded = file.decoded.flatMap { $0.flatMap { $0 } }
        let decoder = BlockDecoder(schema: schema)
        #expect(try decoder.decode(frame, as: Int64.self) == decoded)
        #expect(try payloadOf(frame) == payload, "the frame's content is the payload")
        #expect(try decoder.decode(try frameOf(payload), as: Int64.self) == decoded, "in a fresh frame")
        #expect(CompactSpecDecoder.decode(payload, schema) == decoded, "the independent decoder of \(name)")
        let perRow = schema.idsPerRow
        _ = try frame.withUnsafeBytes { try decoder.open($0, expectedRows: file.rows.count) }
        for start in 0..<file.rows.count {
            var out = [Int64](repeating: -1, count: (file.rows.count - start) * perRow)
            try out.withUnsafeMutableBufferPointer { try decoder.decodeRows(start..<file.rows.count, into: $0) }
            #expect(out == Array(decoded[(start * perRow)...]))
        }
    }

    /// The vectors together cover every kind, shared and own tables, a fallback to raw, an empty
    /// and a one-row block; no stray file.
    @Test func vectorsCoverEveryKind() throws {
        var kinds = Set<String>()
        for name in Self.names { kinds.formUnion(try Self.load(name).1.kinds) }
        #expect(kinds == Set(Self.kindNames), "kinds covered: \(kinds.sorted())")
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path)
        #expect(files.filter { $0.hasSuffix(".json") && !Self.names.contains(String($0.dropLast(5))) }.isEmpty)
    }

    /// The independent decoder agrees with the codec on generated blocks, and both reject what
    /// the other rejects under damage.
    @Test(.tags(.slow), arguments: 0..<40)
    func specDecoderAgreesOnGeneratedBlocks(seed: UInt64) throws {
        var random = SplitMix64(seed: 9100 + seed)
        let schema = Fixtures.schema(&random, maxLayers: 12, maxTopk: 8)
        let count = [1, 2, 5, 9, 64, 300].randomElement(using: &random)!
        let rows = Fixtures.rows(schema, count: count, &random)
        let frame = try BlockEncoder(schema: schema, codec: .compact).encode(rows)
        let payload = try payloadOf(frame)
        #expect(CompactSpecDecoder.decode(payload, schema) == Fixtures.expected(rows, schema), "\(schema)")
        let decoder = BlockDecoder(schema: schema)
        for i in 0..<min(200, payload.count) {
            var damaged = payload
            damaged[Int(random.next() % UInt64(payload.count))] ^= UInt8(1 << (i % 8))
            let ours = try? decoder.decode(try frameOf(damaged), as: Int64.self)
            #expect(ours == CompactSpecDecoder.decode(damaged, schema), "damage \(i) of \(schema)")
        }
    }
}

private func compactPayloadBytes(_ encoder: BlockEncoder, _ rows: [Int64]) throws -> [UInt8] {
    try withExtendedLifetime(encoder) {
        let (start, count) = try rows.withUnsafeBufferPointer { try encoder.encodePayload($0) }
        return Array(UnsafeRawBufferPointer(start: start, count: count))
    }
}

/// A decoder written from spec/FORMAT.md 1.10 alone: plain arrays, no shared code with the
/// codec. Returns the decoded rows (dense layers 0), or nil for any block the spec rejects.
enum CompactSpecDecoder {
    static func decode(_ p: [UInt8], _ schema: Schema) -> [Int64]? {
        func u32(_ at: Int) -> Int { Int(p[at]) | Int(p[at + 1]) << 8 | Int(p[at + 2]) << 16 | Int(p[at + 3]) << 24 }
        let w = schema.bitWidth, e = schema.experts, cCount = schema.storedIDsPerRow, topk = schema.topk
        guard p.count >= 12, p[0] == 2, Int(p[1]) == w, p[2] == 0, p[3] == 0, u32(8) == cCount else { return nil }
        let n = u32(4)
        guard n <= (1 << 26) / cCount else { return nil }
        if n == 0 { return p.count == 12 ? [] : nil }
        guard p.count >= 16 + cCount else { return nil }
        let kinds = Array(p[12..<(12 + cCount)])
        for (c, k) in kinds.enumerated() {
            guard k <= 5 else { return nil }
            if [2, 4, 5].contains(k) && c % topk == 0 { return nil }
            if [1, 2, 4, 5].contains(k) && e > 2048 { return nil }
        }
        let h = u32(12 + cCount), streamStart = 16 + cCount
        guard h <= p.count - streamStart else { return nil }
        var bit = 0
        func readBits(_ k: Int) -> Int? {
            guard bit + k <= 8 * h else { return nil }
            var v = 0
            for i in 0..<k { v |= Int((p[streamStart + (bit + i) / 8] >> UInt8((bit + i) % 8)) & 1) << i }
            bit += k
            return v
        }
        func gamma() -> Int? {
            var zeros = 0
            while true {
                guard let b = readBits(1) else { return nil }
                if b == 1 { break }
                zeros += 1
                if zeros > 30 { return nil }
            }
            guard let low = readBits(zeros) else { return nil }
            return 1 << zeros | low
        }
        guard let t = readBits(8) else { return nil }
        var tables: [(scale: Int, symbols: [Int], freqs: [Int])] = []
        for _ in 0..<t {
            guard let scale = readBits(4), (1...12).contains(scale), let k = gamma(), k >= 1, k <= min(e + 1, 1 << scale)
            else { return nil }
            var symbols: [Int] = [], previous = -1
            for _ in 0..<k {
                guard let gap = gamma() else { return nil }
                previous += gap
                guard previous <= e else { return nil }
                symbols.append(previous)
            }
            guard let g = readBits(4), g <= 11 else { return nil }
            var freqs: [Int] = []
            for _ in 0..<k {
                guard let high = gamma(), high - 1 < 1 << 20, let low = readBits(g) else { return nil }
                freqs.append(((high - 1) << g | low) + 1)
            }
            guard freqs.reduce(0, +) == 1 << scale else { return nil }
            tables.append((scale, symbols, freqs))
        }
        let coded = kinds.filter { [1, 2, 4, 5].contains($0) }.count
        guard (t == 0) == (coded == 0) else { return nil }
        let refBits = t <= 1 ? 0 : Int.bitWidth - (t - 1).leadingZeroBitCount
        var refs = [[Int]](repeating: [], count: cCount)
        var used = Set<Int>()
        for c in 0..<cCount where [1, 2, 4, 5].contains(kinds[c]) {
            for _ in 0..<(kinds[c] >= 4 ? 2 : 1) {
                guard let r = readBits(refBits), r < t else { return nil }
                refs[c].append(r)
                used.insert(r)
            }
        }
        guard used.count == t else { return nil }
        var ids = [[Int]](repeating: [], count: cCount)
        for c in 0..<cCount where kinds[c] == 0 {
            guard let v = readBits(w), v < e else { return nil }
            ids[c] = Array(repeating: v, count: n)
        }
        guard 8 * h - bit < 8, let pad = readBits(8 * h - bit), pad == 0 else { return nil }
        var pos = streamStart + h
        let rawBytes = (n * w + 7) / 8
        for c in 0..<cCount where kinds[c] == 3 {
            guard pos + rawBytes <= p.count else { return nil }
            var values: [Int] = []
            for r in 0..<n {
                var v = 0
                for i in 0..<w { v |= Int((p[pos + (r * w + i) / 8] >> UInt8((r * w + i) % 8)) & 1) << i }
                guard v < e else { return nil }
                values.append(v)
            }
            for i in (n * w)..<(rawBytes * 8) where (p[pos + i / 8] >> UInt8(i % 8)) & 1 != 0 { return nil }
            ids[c] = values
            pos += rawBytes
        }
        if coded > 0 {
            let low = 1 << 31
            guard pos + 32 <= p.count else { return nil }
            // u64 states: below 2^63 fits Int; a set top bit reads negative, out of range.
            var x = (0..<4).map { u32(pos + 8 * $0) | u32(pos + 8 * $0 + 4) << 32 }
            guard x.allSatisfy({ $0 >= low }) else { return nil }
            pos += 32
            for c in 0..<cCount where [1, 2, 4, 5].contains(kinds[c]) {
                var column: [Int] = []
                for r in 0..<n {
                    let split = kinds[c] >= 4
                    let first = split && r >= 1 && ids[c - 1][r] == ids[c - 1][r - 1]
                    let tab = tables[split ? (first ? refs[c][0] : refs[c][1]) : refs[c][0]]
                    let m = 1 << tab.scale, j = r % 4
                    let slot = x[j] % m
                    var cum = 0, i = 0
                    while !(cum <= slot && slot < cum + tab.freqs[i]) { cum += tab.freqs[i]; i += 1 }
                    x[j] = tab.freqs[i] * (x[j] / m) + slot - cum
                    if x[j] < low {
                        guard pos + 4 <= p.count else { return nil }
                        x[j] = x[j] << 32 | u32(pos)
                        pos += 4
                    }
                    let s = tab.symbols[i]
                    if s == e {
                        guard r > 0 else { return nil }
                        column.append(column[r - 1])
                    } else if kinds[c] == 1 || kinds[c] == 4 {
                        column.append(s)
                    } else {
                        column.append((s + ids[c - 1][r]) % e)
                    }
                }
                ids[c] = column
            }
            guard x.allSatisfy({ $0 == low }) else { return nil }
        }
        guard pos == p.count else { return nil }
        var out = [Int64](repeating: Int64(Schema.denseFill), count: n * schema.idsPerRow)
        let stored = schema.storedIndices
        for r in 0..<n { for c in 0..<cCount { out[r * schema.idsPerRow + stored[c]] = Int64(ids[c][r]) } }
        return out
    }
}
