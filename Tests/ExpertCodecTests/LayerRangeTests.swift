import Testing
import TraceSynth
@testable import ExpertCodec

/// Layers `layers` of rows `rows` out of whole token-major rows of `schema`.
func layerSlice<T>(_ whole: [T], _ schema: Schema, rows: Range<Int>, layers: Range<Int>) -> [T] {
    rows.flatMap { t in whole[(t * schema.layers + layers.lowerBound) * schema.topk..<(t * schema.layers + layers.upperBound) * schema.topk] }
}

/// Reads of a range of layers (`BlockDecoder.decodeRows(_:layers:into:)`) against slices of
/// whole-row reads, for both layouts and both column widths.
@Suite struct LayerRangeTests {
    static let schemas: [Schema] = [
        try! Schema(layers: 6, topk: 4, experts: 128),                         // 7 bit, byte columns
        try! Schema(layers: 7, topk: 8, experts: 256, denseLayers: [0, 3]),    // 8 bit, dense inside and at the edge
        try! Schema(layers: 5, topk: 3, experts: 384, denseLayers: [4]),       // 9 bit, word columns, dense last
        try! Schema(layers: 4, topk: 2, experts: 65536, denseLayers: [1, 2]),  // 16 bit, dense neighbours
        try! Schema(layers: 3, topk: 1, experts: 2),                           // 1 bit, top-1
    ]

    /// Decodes `layers` of `rows` of the open block as `T`.
    static func decode<T: ExpertID>(_ decoder: BlockDecoder, _ rows: Range<Int>, _ layers: Range<Int>, as: T.Type) throws -> [Int64] {
        var out = [T](repeating: 0, count: rows.count * layers.count * decoder.schema.topk)
        try out.withUnsafeMutableBufferPointer { try decoder.decodeRows(rows, layers: layers, into: $0) }
        return out.map { Int64($0) }
    }

    /// Every layer range of every row range kind (whole, inside, single rows, crossing 8-row
    /// groups, empty) equals the slice of the whole rows, for every output width.
    @Test(arguments: BlockCodec.allCases, schemas)
    func layerRangesAreSlicesOfWholeRows(codec: BlockCodec, schema: Schema) throws {
        var random = SplitMix64(seed: UInt64(schema.experts * 31 + schema.layers))
        let count = 203
        let rows = Fixtures.rows(schema, count: count, &random)
        let expected = Fixtures.expected(rows, schema)
        let frame = try BlockEncoder(schema: schema, codec: codec).encode(converting: rows, as: Int64.self)
        let decoder = BlockDecoder(schema: schema)
        try frame.withUnsafeBytes { _ = try decoder.open($0) }
        let rowRanges = [0..<count, 0..<1, 5..<6, count - 1..<count, 3..<19, 8..<16, 17..<200, 40..<40]
        for layers in (0...schema.layers).flatMap({ a in (a...schema.layers).map { a..<$0 } }) {
            for range in rowRanges {
                let want = layerSlice(expected, schema, rows: range, layers: layers)
                if schema.experts <= 256 {
                    #expect(try Self.decode(decoder, range, layers, as: UInt8.self) == want, "\(codec) \(schema) rows \(range) layers \(layers) UInt8")
                }
                #expect(try Self.decode(decoder, range, layers, as: UInt16.self) == want, "\(codec) \(schema) rows \(range) layers \(layers) UInt16")
                #expect(try Self.decode(decoder, range, layers, as: Int32.self) == want, "\(codec) \(schema) rows \(range) layers \(layers) Int32")
                #expect(try Self.decode(decoder, range, layers, as: Int64.self) == want, "\(codec) \(schema) rows \(range) layers \(layers) Int64")
            }
        }
    }

    /// A one-row read decoded while the block is opened (`decodingRow`) gives the row's layers too.
    @Test(arguments: BlockCodec.allCases, schemas)
    func oneRowDecodedOnOpenGivesLayerRanges(codec: BlockCodec, schema: Schema) throws {
        var random = SplitMix64(seed: UInt64(schema.topk * 7 + schema.experts))
        let rows = Fixtures.rows(schema, count: 61, &random)
        let expected = Fixtures.expected(rows, schema)
        let frame = try BlockEncoder(schema: schema, codec: codec).encode(converting: rows, as: Int64.self)
        let decoder = BlockDecoder(schema: schema)
        for t in [0, 30, 60] {
            for layers in [0..<schema.layers, 1..<schema.layers, 0..<1, schema.layers - 1..<schema.layers] {
                try frame.withUnsafeBytes { _ = try decoder.open($0, decodingRow: t) }
                #expect(try Self.decode(decoder, t..<t + 1, layers, as: Int32.self) == layerSlice(expected, schema, rows: t..<t + 1, layers: layers))
            }
        }
    }

    /// Random schemas across the supported range, random row and layer ranges.
    @Test func randomSchemasAndRanges() throws {
        var random = SplitMix64(seed: 0x1A7E)
        for _ in 0..<40 {
            let schema = Fixtures.schema(&random, maxLayers: 60, maxTopk: 9)
            let count = Int.random(in: 1...150, using: &random)
            let rows = Fixtures.rows(schema, count: count, &random)
            let expected = Fixtures.expected(rows, schema)
            for codec in BlockCodec.allCases {
                let frame = try BlockEncoder(schema: schema, codec: codec).encode(converting: rows, as: Int64.self)
                let decoder = BlockDecoder(schema: schema)
                for _ in 0..<8 {
                    // Opened whole, or for other layers (then these are checked when read).
                    let a = Int.random(in: 0...schema.layers, using: &random), b = Int.random(in: a...schema.layers, using: &random)
                    let o = Int.random(in: 0...schema.layers, using: &random), p = Int.random(in: o...schema.layers, using: &random)
                    try frame.withUnsafeBytes { _ = try decoder.open($0, layers: Bool.random(using: &random) ? o..<p : nil) }
                    let s = Int.random(in: 0...count, using: &random), e = Int.random(in: s...count, using: &random)
                    #expect(try Self.decode(decoder, s..<e, a..<b, as: Int32.self) == layerSlice(expected, schema, rows: s..<e, layers: a..<b),
                            "\(codec) \(schema) rows \(s..<e) layers \(a..<b)")
                }
            }
        }
    }

    /// Layers outside the schema, and outputs of the wrong size, are refused with what is wrong.
    @Test func badRangesAreRefused() throws {
        let schema = try Schema(layers: 4, topk: 2, experts: 64)
        var random = SplitMix64(seed: 3)
        let rows = Fixtures.rows(schema, count: 20, &random)
        let frame = try BlockEncoder(schema: schema).encode(converting: rows, as: Int64.self)
        let decoder = BlockDecoder(schema: schema)
        try frame.withUnsafeBytes { _ = try decoder.open($0) }
        for layers in [0..<5, -1..<2, 4..<6] {
            #expect(throws: CodecError.shapeMismatch("layers \(layers) are outside the schema's 0..<4")) {
                _ = try Self.decode(decoder, 0..<2, layers, as: Int32.self)
            }
        }
        var out = [Int32](repeating: 0, count: 2 * 2 * 2 + 1)
        #expect(throws: CodecError.shapeMismatch("output holds 9 ids, 2 rows of 2 layers need 8")) {
            try out.withUnsafeMutableBufferPointer { try decoder.decodeRows(0..<2, layers: 1..<3, into: $0) }
        }
        #expect(throws: CodecError.shapeMismatch("rows 19..<21 are outside the block's 0..<20")) {
            _ = try Self.decode(decoder, 19..<21, 1..<3, as: Int32.self)
        }
    }

    /// A damaged frame is refused by a layer-range read as by a whole one, whichever layers
    /// the damage is in: the block checksums cover every byte decompressed.
    @Test(arguments: BlockCodec.allCases)
    func damageIsRefusedByLayerRangeReads(codec: BlockCodec) throws {
        let schema = try Schema(layers: 8, topk: 4, experts: 128)
        var synth = TraceSynthesizer(schema: schema, seed: 9)
        let frame = try BlockEncoder(schema: schema, codec: codec).encode(synth.rows(500, as: Int32.self))
        let decoder = BlockDecoder(schema: schema)
        // Bytes of the first and of the last data block's data, and of the content checksum's neighbours.
        for at in [20, frame.count / 2, frame.count - 12] {
            var damaged = frame
            damaged[at] ^= 0x10
            for layers in [0..<1, 7..<8] {
                #expect(throws: CodecError.self, "byte \(at), layers \(layers)") {
                    try damaged.withUnsafeBytes { _ = try decoder.open($0, contentChecksum: false) }
                    _ = try Self.decode(decoder, 0..<500, layers, as: Int32.self)
                }
            }
        }
    }

    /// A block opened for some layers (`open(layers:)`, what archive reads do) reads those,
    /// then other layers and whole rows, as one opened whole does.
    @Test(arguments: BlockCodec.allCases, schemas)
    func blocksOpenedForSomeLayersReadAnyLayers(codec: BlockCodec, schema: Schema) throws {
        var random = SplitMix64(seed: UInt64(schema.experts + 5 * schema.layers))
        let count = 77
        let rows = Fixtures.rows(schema, count: count, &random)
        let expected = Fixtures.expected(rows, schema)
        let frame = try BlockEncoder(schema: schema, codec: codec).encode(converting: rows, as: Int64.self)
        let decoder = BlockDecoder(schema: schema)
        let ranges = (0...schema.layers).flatMap { a in (a...schema.layers).map { a..<$0 } }
        for opened in ranges {
            for decodingRow in [nil, 40] {
                try frame.withUnsafeBytes { _ = try decoder.open($0, expectedRows: count, contentChecksum: false, decodingRow: decodingRow, layers: opened) }
                for layers in [opened] + ranges + [opened] {
                    for range in [0..<count, 40..<41, 9..<30] {
                        #expect(try Self.decode(decoder, range, layers, as: Int32.self) == layerSlice(expected, schema, rows: range, layers: layers),
                                "\(codec) \(schema) opened for \(opened), rows \(range) layers \(layers)")
                    }
                    try frame.withUnsafeBytes { _ = try decoder.open($0, contentChecksum: false, decodingRow: decodingRow, layers: opened) }
                }
            }
        }
    }

    /// A block opened for some layers checks their columns and how to find them; what comes
    /// after them is checked when a read needs it: a payload with a byte after its last
    /// column (checksums right) reads its first layer, and is refused by a whole-row read.
    @Test(arguments: BlockCodec.allCases)
    func structureAfterTheLayersReadIsCheckedWhenNeeded(codec: BlockCodec) throws {
        let schema = try Schema(layers: 6, topk: 4, experts: 128)
        var synth = TraceSynthesizer(schema: schema, seed: 4)
        let rows = synth.rows(300, as: Int32.self)
        let frame = try frameOf(try payloadOf(try BlockEncoder(schema: schema, codec: codec).encode(rows)) + [0])
        let decoder = BlockDecoder(schema: schema)
        try frame.withUnsafeBytes { _ = try decoder.open($0, layers: 0..<1) }
        #expect(try Self.decode(decoder, 0..<300, 0..<1, as: Int32.self) == layerSlice(rows.map(Int64.init), schema, rows: 0..<300, layers: 0..<1))
        #expect(throws: CodecError.self) { _ = try Self.decode(decoder, 0..<300, 0..<6, as: Int32.self) }
        #expect(throws: CodecError.self) { try frame.withUnsafeBytes { _ = try decoder.open($0) } }
        // Refused reads leave no block open.
        #expect(throws: CodecError.self) { _ = try Self.decode(decoder, 0..<1, 0..<1, as: Int32.self) }
    }
}
