import Archive
import Foundation
import Testing
import TraceSynth

/// `ArchiveReader.decodingThreads`: a read of many blocks split between threads gives exactly
/// what a read on one thread gives, rows, layers and errors alike.
@Suite struct ParallelReadTests {
    static let schema = try! Schema(layers: 8, topk: 4, experts: 300, denseLayers: [0, 5])

    /// 2,000 rows in blocks of 50, truncated inside block 35 (at 1,777) and appended to 2,100:
    /// at least 42 blocks, one of them holding fewer rows than it stores.
    static func archive(_ dir: TemporaryDirectory, codec: BlockCodec) throws -> (path: String, rows: [Int64]) {
        var synth = TraceSynthesizer(schema: schema, seed: 11)
        let rows = synth.rows(2_100, as: Int64.self)
        let path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: schema, blockRows: 50, codec: codec)
        try writer.append(Array(rows[..<(2_000 * schema.idsPerRow)]), at: 0)
        try writer.truncate(to: 1_777)
        try writer.append(Array(rows[(1_777 * schema.idsPerRow)...]), at: 1_777)
        try writer.close()
        return (path, rows)
    }

    static let rowRanges = [0..<2_100, 1..<2_099, 49..<51, 100..<1_700, 1_700..<1_800, 1_776..<1_778, 333..<334, 0..<400]
    static let layerRanges = [0..<8, 2..<6, 7..<8, 0..<0]

    @Test(arguments: BlockCodec.allCases, [2, 3, 8])
    func parallelReadsEqualReadsOnOneThread(codec: BlockCodec, threads: Int) throws {
        let dir = TemporaryDirectory()
        let (path, rows) = try Self.archive(dir, codec: codec)
        let one = try ArchiveReader(path: path), many = try ArchiveReader(path: path)
        many.decodingThreads = threads
        #expect(many.blocks.count >= 42)
        #expect(try many.rows(0..<2_100, as: Int64.self) == rows)
        for range in Self.rowRanges {
            for layers in Self.layerRanges {
                #expect(try many.rows(range, layers: layers, as: UInt16.self) == one.rows(range, layers: layers, as: UInt16.self),
                        "rows \(range) layers \(layers) on \(threads) threads")
            }
            // A one-row read after a parallel one, and a parallel one after it, through the
            // block the one-row read left open.
            #expect(try many.row(at: range.lowerBound, as: Int64.self) == Array(rows[(range.lowerBound * 32)..<(range.lowerBound * 32 + 32)]))
            #expect(try many.rows(range, as: Int64.self) == Array(rows[(range.lowerBound * 32)..<(range.upperBound * 32)]))
        }
    }

    /// With two damaged blocks in different runs, the error is the one of the block nearest the
    /// range's start, as on one thread; the reader then reads the intact blocks.
    @Test(arguments: BlockCodec.allCases)
    func damageIsReportedAsOnOneThread(codec: BlockCodec) throws {
        let dir = TemporaryDirectory()
        let (path, rows) = try Self.archive(dir, codec: codec)
        let blocks = try ArchiveReader(path: path).blocks
        var bytes = fileBytes(path)
        for damaged in [30, 12] {
            let block = blocks[damaged]
            bytes[block.frameOffset + block.frameLength / 2] ^= 0x5A
        }
        writeFile(path, bytes)
        let one = try ArchiveReader(path: path), many = try ArchiveReader(path: path)
        many.decodingThreads = 4
        func failure(_ reader: ArchiveReader, _ range: Range<Int>) -> String {
            do {
                _ = try reader.rows(range, as: UInt16.self)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        for range in [0..<2_100, 650..<2_100, 0..<1_200] {
            let expected = failure(one, range)
            #expect(expected.contains("block of rows \(blocks[range.lowerBound < 650 ? 12 : 30].position)"), "\(expected)")
            #expect(failure(many, range) == expected, "rows \(range)")
        }
        #expect(try many.rows(0..<600, as: Int64.self) == Array(rows[..<(600 * 32)]))
        #expect(try many.rows(650..<1_500, as: Int64.self) == Array(rows[(650 * 32)..<(1_500 * 32)]))
    }

    /// A writer's reads of flushed blocks split the same way, buffered rows after them.
    @Test(arguments: BlockCodec.allCases)
    func writersReadOnThreadsToo(codec: BlockCodec) throws {
        let dir = TemporaryDirectory()
        var synth = TraceSynthesizer(schema: Self.schema, seed: 5)
        let rows = synth.rows(2_030, as: Int64.self)
        let writer = try ArchiveWriter.create(at: dir.file("w"), schema: Self.schema, blockRows: 50, codec: codec)
        writer.decodingThreads = 3
        try writer.append(rows, at: 0)
        #expect(writer.flushedCount == 2_000)
        #expect(try writer.rows(0..<2_030, as: Int64.self) == rows)
        #expect(try writer.rows(120..<2_020, layers: 2..<6, as: UInt16.self)
                == LayerRangeReadTests.slice(rows, Self.schema, rows: 120..<2_020, layers: 2..<6).map(UInt16.init))
        try writer.close()
    }

    @Test func threadsBelowOneMeanOne() throws {
        let dir = TemporaryDirectory()
        let (path, rows) = try Self.archive(dir, codec: .fast)
        let reader = try ArchiveReader(path: path)
        reader.decodingThreads = 0
        #expect(reader.decodingThreads == 1)
        #expect(try reader.rows(0..<2_100, as: Int64.self) == rows)
    }
}

/// `ArchiveReader.releasesPagesBehind`: a reader streaming an archive drops the pages it has
/// read from its resident memory; by default they stay mapped.
@Suite struct ReleaseBehindTests {
    /// The resident bytes of this process's mapping of `path` (its `Rss` in /proc/self/smaps).
    static func residentBytes(of path: String) throws -> Int {
        // Read to its end: /proc files report a size of 0.
        let data = FileHandle(forReadingAtPath: "/proc/self/smaps")?.readDataToEndOfFile() ?? Data()
        let smaps = String(decoding: data, as: UTF8.self).split(separator: "\n")
        guard let mapping = smaps.firstIndex(where: { $0.hasSuffix(" " + path) }),
              let rss = smaps[(mapping + 1)...].first(where: { $0.hasPrefix("Rss:") }) else {
            throw ArchiveError.invalidArgument("no mapping of \(path) in /proc/self/smaps")
        }
        return Int(rss.split(separator: " ")[1])! * 1024
    }

    @Test(arguments: [false, true], [1, 2])
    func readsDropTheirPagesOnlyWhenAsked(release: Bool, threads: Int) throws {
        let dir = TemporaryDirectory()
        let schema = try Schema(layers: 48, topk: 8, experts: 128)
        // Random ids: blocks LZ4 cannot shrink, a megabyte and a half of them, written quickly.
        var state: UInt64 = 3
        let rows = (0..<(4_096 * schema.idsPerRow)).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 57)
        }
        let path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: schema)
        try writer.append(rows, at: 0)
        try writer.close()
        let size = try ArchiveReader(path: path).fileBytes
        do {
            let reader = try ArchiveReader(path: path)
            reader.releasesPagesBehind = release
            reader.decodingThreads = threads
            #expect(try reader.rows(0..<4_096, as: UInt8.self) == rows)
            let resident = try Self.residentBytes(of: path)
            if release {
                #expect(resident * 2 < size, "\(resident) bytes of \(size) resident")
            } else {
                #expect(resident * 10 > size * 9, "\(resident) bytes of \(size) resident")
            }
            withExtendedLifetime(reader) {}
        }
        // Streaming block by block always drops them (the reader above is gone: one mapping).
        let streaming = try ArchiveReader(path: path)
        var count = 0
        try streaming.forEachBlock(as: UInt8.self) { range, _ in count += range.count }
        #expect(count == 4_096)
        #expect(try Self.residentBytes(of: path) * 2 < size)
        withExtendedLifetime(streaming) {}
    }
}
