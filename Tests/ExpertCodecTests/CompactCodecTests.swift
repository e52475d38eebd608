import Foundation
import NumpyFile
import Testing
import TraceSynth
@testable import ExpertCodec

/// A frame around any payload (checksums right), for feeding the decoder hostile payloads.
func frameOf(_ payload: [UInt8]) throws -> [UInt8] {
    try payload.withUnsafeBytes { try LZ4Frame.compress($0) }
}

@Suite struct CompactRoundTripTests {
    /// Seeded property test across the whole schema range with the compact codec.
    @Test(.tags(.slow), arguments: 0..<60)
    func generatedSchemasRoundTrip(seed: UInt64) throws {
        var random = SplitMix64(seed: 7000 + seed)
        let schema = Fixtures.schema(&random)
        let count = [0, 1, 2, 3, 5, 7, 8, 9, 100, 513, 3000].randomElement(using: &random)!
        let rows = Fixtures.rows(schema, count: min(count, 60_000 / schema.idsPerRow + 1), &random)
        let expected = Fixtures.expected(rows, schema)
        let encoder = BlockEncoder(schema: schema, codec: .compact)
        let frame = try encoder.encode(rows)
        #expect(try encoder.encode(converting: rows, as: Int32.self) == frame, "the input type does not change the encoding")
        #expect(try payloadOf(frame).first == CompactFormat.layoutByte)
        try expectDecodesInEveryType(frame, schema, expected)
        // The payload never exceeds the bound a decoder allows.
        let rowCount = rows.count / schema.idsPerRow
        #expect(try payloadOf(frame).count <= CompactFormat.maxPayloadBytes(schema, rows: rowCount))
    }

    @Test(.tags(.slow), arguments: [
        (1, 1, 2), (1, 1, 65536), (24, 1, 128), (26, 6, 64), (48, 8, 128), (61, 8, 384), (400, 32, 65536),
        (3, 64, 4096), (4, 32, 2048), (2, 8, 2049), (36, 4, 128), (32, 2, 8),
    ])
    func realisticTracesRoundTrip(shape: (Int, Int, Int)) throws {
        let schema = try Schema(layers: shape.0, topk: shape.1, experts: shape.2)
        var synth = TraceSynthesizer(schema: schema, seed: 42)
        let rows = synth.rows(max(1, 200_000 / schema.idsPerRow), as: Int64.self)
        let frame = try BlockEncoder(schema: schema, codec: .compact).encode(rows)
        try expectDecodesInEveryType(frame, schema, rows)
        let fast = try BlockEncoder(schema: schema).encode(rows)
        // Smaller than the fast codec wherever ids are entropy-coded (1-bit ids: within 0.1%).
        if schema.experts <= CompactFormat.maxCodedExperts {
            #expect(Double(frame.count) < Double(fast.count) * (schema.bitWidth == 1 ? 1.001 : 1),
                    "compact \(frame.count) bytes, fast \(fast.count) bytes for \(schema)")
        }
    }

    /// Blocks made to be hard: uniform random ids, one id, alternating ids, sorted slots, the
    /// largest schemas, one row, top-32, 65536 experts.
    @Test(.tags(.slow), arguments: [
        (4, 8, 128), (1, 1, 2), (2, 32, 64), (3, 2, 65536), (8, 4, 2048), (8, 4, 2049), (5, 3, 3), (1, 64, 256),
    ])
    func adversarialBlocks(shape: (Int, Int, Int)) throws {
        let schema = try Schema(layers: shape.0, topk: shape.1, experts: shape.2)
        let encoder = BlockEncoder(schema: schema, codec: .compact), decoder = BlockDecoder(schema: schema)
        var random = SplitMix64(seed: UInt64(shape.0 * 1000 + shape.1 * 10 + shape.2))
        let e = UInt64(schema.experts), perRow = schema.idsPerRow
        for count in [1, 2, 4, 5, 1000, 4099] {
            let n = count * perRow
            let patterns: [[Int64]] = [
                (0..<n).map { _ in Int64(random.next() % e) },                     // uniform
                [Int64](repeating: Int64(e - 1), count: n),                         // one id
                (0..<n).map { Int64(($0 / perRow) % 2) * Int64(e - 1) },           // alternating rows
                (0..<n).map { Int64($0 % 2) * Int64(e - 1) },                      // alternating slots
                (0..<n).map { Int64(($0 / perRow + $0 % perRow) % Int(e)) },       // a diagonal
                (0..<n).map { _ in random.next() % 16 == 0 ? Int64(random.next() % e) : 0 }, // mostly one id
            ]
            for rows in patterns {
                let frame = try encoder.encode(rows)
                #expect(try decoder.decode(frame, as: Int64.self) == rows, "\(schema), \(count) rows")
                #expect(try payloadOf(frame).count <= CompactFormat.maxPayloadBytes(schema, rows: count))
            }
        }
    }

    /// Partial decodes of a compact block agree with the whole.
    @Test func rangesOfACompactBlock() throws {
        let schema = try Schema(layers: 6, topk: 4, experts: 160, denseLayers: [0, 3])
        var synth = TraceSynthesizer(schema: schema, seed: 9)
        let rows = Fixtures.expected(synth.rows(333, as: Int64.self), schema)
        let frame = try BlockEncoder(schema: schema, codec: .compact).encode(rows)
        let decoder = BlockDecoder(schema: schema)
        var random = SplitMix64(seed: 1)
        try frame.withUnsafeBytes { _ = try decoder.open($0) }
        for _ in 0..<50 {
            let a = Int.random(in: 0..<333, using: &random), b = Int.random(in: a...min(333, a + 40), using: &random)
            var part = [Int64](repeating: -1, count: (b - a) * schema.idsPerRow)
            try part.withUnsafeMutableBufferPointer { try decoder.decodeRows(a..<b, into: $0) }
            #expect(part[...] == rows[a * schema.idsPerRow..<b * schema.idsPerRow])
        }
    }

    /// A decoder reads fast and compact blocks alike, one after the other.
    @Test func oneDecoderReadsBothLayouts() throws {
        let schema = try Schema(layers: 10, topk: 2, experts: 64)
        var synth = TraceSynthesizer(schema: schema, seed: 3)
        let rows = synth.rows(500, as: Int32.self)
        let decoder = BlockDecoder(schema: schema)
        for codec in [BlockCodec.compact, .fast, .compact, .fast] {
            let frame = try BlockEncoder(schema: schema, codec: codec).encode(rows)
            #expect(try payloadOf(frame)[0] == UInt8(codec.rawValue))
            #expect(try decoder.decode(frame, as: Int32.self) == rows)
        }
    }
}

@Suite(.enabled(if: hasSharedData, "the real traces of ../shared/data are not beside this clone"), .tags(.realTraces, .slow))
struct CompactRealTraceTests {
    /// Both real traces in blocks of the archive's default size, bit for bit; the ratio is
    /// printed and must not fall below what this codec reached when written (7.00 and 6.40;
    /// 7.10 and 6.47 in the compact codec's default blocks, 4x larger: a regression guard). Issue #5's goal (7.58 and 6.42, zstd -19 on the whole trace) is
    /// met on deepseek and not on llama4; zstd -19 in the same blocks gets 7.04 and 5.74
    /// (Benchmarks/COMPACT_MODEL.md).
    @Test(arguments: [("llama4-maverick-mmlu", 6.99, false), ("deepseek-v2-lite-prefill", 6.39, false),
                      ("llama4-maverick-mmlu", 7.09, true), ("deepseek-v2-lite-prefill", 6.46, true)])
    func realTracesRoundTrip(name: String, floor: Double, compactBlocks: Bool) throws {
        let reader = try NumpyReader(path: "\(sharedData)/\(name).npy")
        let ids: [UInt8] = try reader.withData(as: UInt8.self) { Array($0) }
        let shape = reader.header.shape
        let schema = try Schema(layers: shape[1], topk: shape[2], experts: Int(ids.max()!) + 1)
        let encoder = BlockEncoder(schema: schema, codec: .compact), decoder = BlockDecoder(schema: schema)
        let blockRows = compactBlocks ? BlockEncoder.defaultBlockRows(for: schema, codec: .compact)
            : BlockEncoder.defaultBlockRows(for: schema), perRow = schema.idsPerRow
        var stored = 0
        for start in stride(from: 0, to: shape[0], by: blockRows) {
            let rows = Array(ids[start * perRow..<min(shape[0], start + blockRows) * perRow])
            let frame = try encoder.encode(rows)
            if !compactBlocks { #expect(try encoder.encode(rows.map { Int32($0) }) == frame) }
            #expect(try decoder.decode(frame, as: Int32.self) == rows.map { Int32($0) }, "rows from \(start)")
            stored += frame.count
        }
        let ratio = Double(ids.count * 4) / Double(stored)
        print("compact \(name): ratio \(ratio) in \(blockRows)-row blocks")
        #expect(ratio >= floor, "ratio \(ratio)")
    }
}

@Suite struct CompactKernelTests {
    /// The encoder's division by a frequency as a multiply by its reciprocal is exact for every
    /// frequency and every state the encoder divides (below `f << (63 - scale)`, so below 2^63).
    @Test func reciprocalsDivideExactly() {
        var random = SplitMix64(seed: 5)
        RANSEncodeSymbol.reciprocals.withUnsafeBufferPointer { reciprocals in
            for f in 2...(1 << CompactFormat.maxScaleBits) {
                let symbol = RANSEncodeSymbol(start: 0, freq: f, scale: CompactFormat.maxScaleBits,
                                              reciprocals: reciprocals.baseAddress!)
                let top = UInt64(1) << 63 - 1
                var states: [UInt64] = [CompactFormat.stateLow, CompactFormat.stateLow + 1, top, top - 1,
                                        symbol.limit - 1, UInt64(f) * (top / UInt64(f)), UInt64(f) * (top / UInt64(f)) - 1]
                for _ in 0..<64 { states.append(random.next() >> 1) }
                for x in states where x < UInt64(1) << 63 {
                    let q = x.multipliedFullWidth(by: symbol.reciprocal).high >> UInt64(symbol.shift)
                    if q != x / UInt64(f) { Issue.record("\(x) / \(f): \(q)"); return }
                }
            }
        }
    }

    /// The compact encoder's gather (4x4 tiles of columns side by side, the columns and rows
    /// they leave) reports a bad id anywhere with its token, layer, slot and value, whatever the
    /// input type, and gathers good rows of every type alike.
    @Test(arguments: [100, 128, 384, 40000])
    func compactGatherFindsEveryBadID(experts: Int) throws {
        // 12 stored columns, row indices 0...5 and 9...14 (layer 2 is dense): tiles of indices
        // 0...3 and 9...12, then 4, 5, 13, 14 alone; rows 8...10 after the last tile rows.
        let schema = try Schema(layers: 5, topk: 3, experts: experts, denseLayers: [2])
        let rows = 11, perRow = schema.idsPerRow
        var base = [Int64](repeating: 0, count: rows * perRow)
        for t in 0..<rows { for i in 0..<perRow { base[t * perRow + i] = schema.denseLayers.contains(i / 3) ? 0xFFFF : Int64((t * 37 + i * 11) % experts) } }
        func check<T: ExpertID>(_ type: T.Type, _ values: [Int64]) throws {
            let encoder = BlockEncoder(schema: schema, codec: .compact)
            guard base.allSatisfy({ T(exactly: $0) != nil || $0 == 0xFFFF }) else { return }
            let frame = try encoder.encode(base.map { T(truncatingIfNeeded: $0) })
            #expect(frame == (try encoder.encode(base)), "\(T.self)")
            expectEveryBadIDNamed(type, encoder: encoder, base: base, rows: [0, 3, 4, 7, 8, 10], values: values)
        }
        let values: [Int64] = [Int64(experts), 127, 128, 255, 256, 511, 512, 40000, 65535, 65536, 1 << 40, -1, -128]
        try check(UInt8.self, values)
        try check(Int8.self, values)
        try check(UInt16.self, values)
        try check(Int16.self, values)
        try check(UInt32.self, values)
        try check(Int32.self, values)
        try check(UInt64.self, values)
        try check(Int64.self, values)
    }

    /// The bit reader's fast paths (a 64-bit window while eight bytes remain) and slow paths
    /// (the stream's last bytes) read back what ``BitWriter`` wrote, field by field, and a stream
    /// cut short anywhere throws instead of reading past its end.
    @Test func bitReaderReadsEveryFieldAndRejectsCutStreams() throws {
        var random = SplitMix64(seed: 77)
        enum Field { case bits(Int, Int), gamma(Int), expGolomb(Int, Int) }
        var fields: [Field] = []
        var writer = BitWriter()
        for _ in 0..<3000 {
            switch random.next() % 3 {
            case 0:
                let n = Int(random.next() % 33), v = Int(random.next() & ((1 << UInt64(n)) - 1))
                fields.append(.bits(v, n)); writer.write(v, bits: n)
            case 1:
                // Mostly short codes, sometimes up to 2^30 (61 bits, beyond the fast window).
                let v = random.next() % 8 == 0 ? 1 + Int(random.next() % (1 << 30)) : 1 + Int(random.next() % 5000)
                fields.append(.gamma(v)); writer.gamma(v)
            default:
                let g = Int(random.next() % 12), v = Int(random.next() % 70_000)
                fields.append(.expGolomb(v, g)); writer.expGolomb(v, g)
            }
        }
        writer.finish()
        let bytes = writer.bytes
        try bytes.withUnsafeBufferPointer { buffer in
            var reader = BitReader(buffer.baseAddress!, count: buffer.count, offset: 0)
            for (i, field) in fields.enumerated() {
                switch field {
                case let .bits(v, n): #expect(try reader.read(n) == v, "field \(i)")
                case let .gamma(v): #expect(try reader.gamma() == v, "field \(i)")
                case let .expGolomb(v, g): #expect(try reader.expGolomb(g) == v, "field \(i)")
                }
            }
            #expect(reader.bitsLeft < 8)
            // Cut: the last fields of a shorter stream must throw, never read on.
            for cut in [1, 2, 3, 5, 8, 9, 17] where cut < buffer.count {
                var short = BitReader(buffer.baseAddress!, count: buffer.count - cut, offset: 0)
                var threw = false
                for field in fields {
                    do {
                        switch field {
                        case let .bits(_, n): _ = try short.read(n)
                        case .gamma: _ = try short.gamma()
                        case let .expGolomb(_, g): _ = try short.expGolomb(g)
                        }
                    } catch is CodecError { threw = true; break }
                    #expect(short.bitsLeft >= 0)
                }
                #expect(threw, "a stream cut by \(cut) bytes read to the end")
            }
        }
    }

    /// Every decode kernel (ids, slot deltas, split or not; the branch-free loop and the
    /// bounds-checked tail) given damaged rANS streams: each decode either throws a
    /// `CodecError` or returns ids below E, never traps.
    @Test(arguments: [(4, 6, 64), (3, 4, 128), (2, 3, 6), (2, 8, 2048)])
    func damagedStreamsAreRejectedOrDecodeInRange(shape: (Int, Int, Int)) throws {
        let schema = try Schema(layers: shape.0, topk: shape.1, experts: shape.2)
        var synth = TraceSynthesizer(schema: schema, seed: 11)
        let rows = synth.rows(700, as: Int64.self)
        let payload = try payloadOf(try BlockEncoder(schema: schema, codec: .compact).encode(rows))
        let kinds = Set(payload[12..<(12 + schema.storedIDsPerRow)])
        #expect(kinds.contains(CompactKind.ids.rawValue), "\(kinds)")
        let decoder = BlockDecoder(schema: schema)
        var random = SplitMix64(seed: UInt64(shape.2))
        var rejected = 0
        for trial in 0..<300 {
            var damaged = payload
            // Damage the rANS section (the payload's last bytes) or, less often, anywhere.
            let span = trial % 4 == 0 ? damaged.count : min(damaged.count, 64 + Int(random.next() % 2048))
            for _ in 0...(random.next() % 3) {
                let at = damaged.count - 1 - Int(random.next() % UInt64(span))
                damaged[at] ^= UInt8(truncatingIfNeeded: 1 + random.next() % 255)
            }
            if trial % 7 == 0 { damaged.removeLast(Int(random.next() % 6)) }
            if trial % 11 == 0 { damaged += [UInt8](repeating: 0, count: Int(random.next() % 9)) }
            do {
                let ids = try decoder.decode(try frameOf(damaged), as: Int64.self)
                #expect(ids.allSatisfy { $0 < Int64(schema.experts) })
            } catch is CodecError {
                rejected += 1
            }
        }
        #expect(rejected > 250, "only \(rejected) of 300 damaged payloads rejected")
    }
}
