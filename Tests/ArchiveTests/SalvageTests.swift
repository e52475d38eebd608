import Testing
import Archive
import TraceSynth

@Suite struct SalvageTests {
    let schema = try! Schema(layers: 6, topk: 4, experts: 100, denseLayers: [0])

    /// 160 rows in ten 16-row blocks, each synced.
    func makeArchive(_ path: String, _ truth: PositionalRows) throws -> [BlockInfo] {
        let writer = try ArchiveWriter.create(at: path, schema: schema, metadata: ["model": "m"], blockRows: 16)
        for start in stride(from: 0, to: 160, by: 16) {
            try writer.append(truth.rows(start..<start + 16, as: Int32.self))
            try writer.sync()
        }
        try writer.close()
        return try ArchiveReader(path: path).blocks
    }

    @Test func aDamagedRecordHeaderKeepsEveryIntactBlock() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let truth = PositionalRows(schema: schema, seed: 21)
        let blocks = try makeArchive(path, truth)
        var bytes = fileBytes(path)
        bytes[blocks[3].recordOffset + 20] ^= 0x04
        writeFile(path, bytes)
        #expect(throws: ArchiveError.self) { try ArchiveReader(path: path) }

        let report = try Salvage.scan(path)
        #expect(report.blocks.map(\.position) == [0, 16, 32, 64, 80, 96, 112, 128, 144])
        #expect(report.recoverable == 48)
        #expect(report.lostRows == [48..<64])
        #expect(report.damaged.count == 1 && report.damaged[0].contains(blocks[3].recordOffset + 20))
        #expect(try Salvage.write(report, to: dir.file("saved")) == 48)
        let saved = try ArchiveReader(path: dir.file("saved"))
        #expect(saved.metadata == ["model": "m"] && saved.schema == schema)
        #expect(try saved.rows(0..<saved.count, as: Int32.self) == truth.rows(0..<48, as: Int32.self).enumerated().map { $0.offset % 24 < 4 ? 0 : $0.element })
    }

    @Test func aDamagedBlockFrameIsReportedWithItsRows() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let truth = PositionalRows(schema: schema, seed: 22)
        let blocks = try makeArchive(path, truth)
        var bytes = fileBytes(path)
        bytes[blocks[5].frameOffset + blocks[5].frameLength / 2] ^= 0x80
        writeFile(path, bytes)
        let report = try Salvage.scan(path)
        #expect(report.recoverable == 80 && report.lostRows == [80..<96])
        #expect(report.damaged == [blocks[5].recordOffset..<blocks[5].frameOffset + blocks[5].frameLength])
        #expect(report.blocks.count == 9)
    }

    @Test func iterationVisitsEveryRowOnce() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let truth = PositionalRows(schema: schema, seed: 23)
        _ = try makeArchive(path, truth)
        let reader = try ArchiveReader(path: path)
        var seen: [Int32] = [], pieces: [Range<Int>] = []
        try reader.forEachBlock(in: 10..<150, as: Int32.self) { rows, ids in
            pieces.append(rows)
            seen += ids
        }
        #expect(pieces.first == 10..<16 && pieces.last == 144..<150 && pieces.count == 10)
        #expect(seen == truth.rows(10..<150, as: Int32.self))
    }
}
