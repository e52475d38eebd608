import Archive
import Foundation
import Testing
import TraceSynth

@Suite struct CompactArchiveTests {
    /// A compact archive behaves as a fast one: appends by the replay rules, reopen, truncate,
    /// threads, verify and salvage; the header names the codec and the bytes differ only there
    /// and in the blocks.
    @Test func compactArchiveRoundTripsAndKeepsItsCodec() throws {
        let dir = TemporaryDirectory()
        let schema = try Schema(layers: 6, topk: 4, experts: 300, denseLayers: [0])
        var synth = TraceSynthesizer(schema: schema, seed: 21)
        let all = synth.rows(5000, as: Int64.self)
        let expected = all.rows(of: 24).flatMap { row in row.enumerated().map { $0.offset < 4 ? 0 : $0.element } }
        do {
            let writer = try ArchiveWriter.create(at: dir.file("c"), schema: schema, blockRows: 1024, codec: .compact)
            writer.encodingThreads = 2
            #expect(writer.codec == .compact)
            try writer.append(Array(all[..<(3000 * 24)]), at: 0)
            try writer.append(Array(all[(2000 * 24)..<(3001 * 24)]), at: 2000) // overlap kept, one row appended
            try writer.sync()
        }
        let writer = try ArchiveWriter.open(at: dir.file("c"))
        #expect(writer.codec == .compact && writer.count == 3001)
        try writer.append(Array(all[(3001 * 24)...]), at: 3001)
        try writer.truncate(to: 4500)
        try writer.close()

        let reader = try ArchiveReader(path: dir.file("c"))
        #expect(reader.codec == .compact && reader.count == 4500)
        #expect(try reader.rows(0..<4500, as: Int64.self) == Array(expected[..<(4500 * 24)]))
        #expect(try reader.rows(1234..<1240, as: Int32.self) == expected[(1234 * 24)..<(1240 * 24)].map { Int32($0) })
        #expect(reader.verify().isEmpty)

        // Salvage keeps the codec.
        let report = try Salvage.scan(dir.file("c"))
        #expect(report.codec == .compact)
        try Salvage.write(report, to: dir.file("s"))
        let saved = try ArchiveReader(path: dir.file("s"))
        #expect(saved.codec == .compact && saved.count == 4500)
        #expect(try saved.rows(0..<4500, as: Int64.self) == Array(expected[..<(4500 * 24)]))

        // The same rows in a fast archive: the compact one is smaller.
        let fast = try ArchiveWriter.create(at: dir.file("f"), schema: schema, blockRows: 1024)
        try fast.append(Array(all[..<(4500 * 24)]), at: 0)
        try fast.close()
        #expect(try ArchiveReader(path: dir.file("f")).codec == .fast)
        let fastBytes = try ArchiveReader(path: dir.file("f")).fileBytes
        #expect(reader.fileBytes < fastBytes, "compact \(reader.fileBytes) bytes, fast \(fastBytes)")
    }
}
