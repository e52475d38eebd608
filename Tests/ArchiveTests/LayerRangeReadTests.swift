import Archive
import Testing
import TraceSynth

/// `read(_:layers:into:)` and `rows(_:layers:as:)` of readers and writers: slices of whole reads.
@Suite struct LayerRangeReadTests {
    /// Layers `layers` of rows `rows` out of whole token-major rows of `schema`.
    static func slice(_ whole: [Int64], _ schema: Schema, rows: Range<Int>, layers: Range<Int>) -> [Int64] {
        rows.flatMap { t in whole[(t * schema.layers + layers.lowerBound) * schema.topk..<(t * schema.layers + layers.upperBound) * schema.topk] }
    }

    static let layerRanges = [0..<8, 0..<2, 2..<6, 6..<8, 1..<2, 3..<3, 0..<0, 7..<8]
    static let rowRanges = [0..<690, 0..<1, 99..<101, 150..<420, 689..<690, 590..<650, 640..<690, 250..<250, 13..<14]

    /// Reads crossing blocks, in both codecs and id widths, with dense layers inside and
    /// outside the range, from a reader and from a writer holding unflushed rows.
    @Test(arguments: BlockCodec.allCases, [128, 300])
    func layerRangeReadsAreSlicesOfWholeReads(codec: BlockCodec, experts: Int) throws {
        let dir = TemporaryDirectory()
        let schema = try Schema(layers: 8, topk: 4, experts: experts, denseLayers: [0, 5])
        var synth = TraceSynthesizer(schema: schema, seed: UInt64(experts))
        let all = synth.rows(690, as: Int64.self)
        let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema, blockRows: 100, codec: codec)
        try writer.append(all, at: 0)
        #expect(writer.flushedCount == 600) // 6 blocks, and 90 rows buffered
        let whole = try writer.rows(0..<690, as: Int64.self)
        // Whole reads of buffered rows alone, past the flushed ones.
        #expect(try writer.rows(640..<690, as: Int64.self) == Array(whole[(640 * 32)...]))
        for layers in Self.layerRanges {
            for rows in Self.rowRanges {
                #expect(try writer.rows(rows, layers: layers, as: Int64.self) == Self.slice(whole, schema, rows: rows, layers: layers),
                        "writer rows \(rows) layers \(layers)")
            }
        }
        try writer.close()
        let reader = try ArchiveReader(path: dir.file("a"))
        #expect(try reader.rows(0..<690, as: Int64.self) == whole)
        for layers in Self.layerRanges {
            for rows in Self.rowRanges {
                let want = Self.slice(whole, schema, rows: rows, layers: layers)
                #expect(try reader.rows(rows, layers: layers, as: Int64.self) == want, "reader rows \(rows) layers \(layers)")
                #expect(try reader.rows(rows, layers: layers, as: UInt16.self).map(Int64.init) == want)
                if experts <= 256 {
                    #expect(try reader.rows(rows, layers: layers, as: UInt8.self).map(Int64.init) == want)
                }
            }
        }
    }

    /// Layers outside the schema, outputs of the wrong size and rows past the end are refused
    /// with what is wrong; the file is unchanged.
    @Test func badRangesAreRefused() throws {
        let dir = TemporaryDirectory()
        let schema = try Schema(layers: 4, topk: 2, experts: 64)
        var synth = TraceSynthesizer(schema: schema, seed: 2)
        let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema)
        try writer.append(synth.rows(50, as: Int32.self), at: 0)
        #expect(throws: ArchiveError.invalidArgument("\(dir.file("a")): layers 2..<5 are outside the archive's 0..<4")) {
            _ = try writer.rows(0..<2, layers: 2..<5, as: Int32.self)
        }
        try writer.close()
        let before = fileBytes(dir.file("a"))
        let reader = try ArchiveReader(path: dir.file("a"))
        for layers in [0..<5, -1..<1] {
            #expect(throws: ArchiveError.invalidArgument("\(dir.file("a")): layers \(layers) are outside the archive's 0..<4")) {
                _ = try reader.rows(0..<2, layers: layers, as: Int32.self)
            }
        }
        #expect(throws: ArchiveError.outOfRange(path: dir.file("a"), requested: 40..<51, count: 50)) {
            _ = try reader.rows(40..<51, layers: 0..<1, as: Int32.self)
        }
        var out = [Int32](repeating: 0, count: 5)
        #expect(throws: ArchiveError.invalidArgument("\(dir.file("a")): an output of 5 ids cannot hold 1 rows of 4")) {
            try out.withUnsafeMutableBufferPointer { try reader.read(0..<1, layers: 1..<3, into: $0) }
        }
        #expect(fileBytes(dir.file("a")) == before)
    }
}
