import Foundation
import Testing
import VectorRecipes
@testable import Archive

/// The archive test vector of `spec/vectors/archive/` (see `spec/FORMAT.md` Part 2), checked
/// against the library and against a minimal reader written from Part 2 alone (`SpecArchive`
/// below: it uses nothing of `Archive` but Part 1's `BlockDecoder` to check block frames).
///
/// `small.archive` is format version 1, as the library wrote it before commit anchors: kept
/// unchanged, it shows that archives written then still read. `small-v2.archive` is the same
/// recipe as the library writes it now. `scripts/make-vectors` writes the version 2 files (after
/// an intended format change: then review the diff, rerun `lz4 -t` on it and update FORMAT.md 2.9).
@Suite struct ArchiveSpecTests {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent() // ArchiveTests
        .deletingLastPathComponent() // Tests
        .deletingLastPathComponent() // package root
        .appendingPathComponent("spec/vectors/archive", isDirectory: true)

    // MARK: - The vector's recipe (Tests/VectorRecipes: scripts/make-vectors writes it)

    static let schema = SmallArchiveRecipe.schema
    static var expectedRows: [[[Int64]]] { SmallArchiveRecipe.expectedRows }

    // MARK: - The vector through the library

    static let vectorNames = ["small", "small-v2"]

    @Test(arguments: vectorNames)
    func vectorOpensWithTheExpectedRowsSchemaAndMetadata(name: String) throws {
        let vector = try ArchiveVector.load(name)
        let reader = try ArchiveReader(path: vector.archivePath)
        #expect(reader.schema == vector.schema)
        #expect(reader.schema == Self.schema)
        #expect(reader.metadata == vector.metadata)
        #expect(reader.blockRows == vector.blockRows)
        #expect(reader.count == vector.rows.count)
        #expect(try reader.rows(0..<reader.count, as: Int64.self) == vector.rows.flatMap { $0.flatMap { $0 } })
        #expect(vector.rows == Self.expectedRows, "the JSON's rows are the recipe's")
        #expect(reader.ignoredTail == nil)
        #expect(reader.fileBytes == vector.bytes.count)
        #expect(reader.verify().isEmpty)
        // Every row alone, through the row index (binary search over the live blocks).
        for p in 0..<reader.count {
            #expect(try reader.row(at: p, as: Int64.self) == vector.rows[p].flatMap { $0 }, "row \(p)")
        }
        #expect(reader.blocks.map(BlockSpec.init) == vector.blocks)
    }

    // MARK: - The vector through a reader written from the spec

    @Test(arguments: vectorNames)
    func specReaderAgreesWithArchiveReader(name: String) throws {
        let vector = try ArchiveVector.load(name)
        let spec = try SpecArchive(vector.bytes)
        let reader = try ArchiveReader(path: vector.archivePath)
        #expect(spec.header.layers == 2 && spec.header.topk == 2 && spec.header.experts == 16)
        #expect(spec.header.dense.isEmpty)
        #expect(spec.header.blockRows == reader.blockRows)
        #expect(spec.header.metadata.map { "\($0.key)=\($0.value)" } == ["model=demo"])
        #expect(spec.header.end == vector.headerBytes)
        #expect(spec.header.version == reader.formatVersion)
        #expect(spec.outcome == .complete)
        #expect(spec.count == reader.count)
        #expect(spec.end == reader.fileBytes)
        #expect(spec.blocks == reader.blocks.map(BlockSpec.init))
        #expect(spec.records == vector.records)
        #expect(spec.records.map(\.kind) == [1, 1, 3, 2, 3, 1, 3])
        // Rows decoded block by block with Part 1, cut to each block's live rows, give the rows.
        var rows: [Int64] = []
        for block in spec.blocks {
            let frame = Array(vector.bytes[block.frameOffset..<block.frameOffset + block.frameLength])
            let ids = try BlockDecoder(schema: Self.schema).decode(frame, as: Int64.self)
            #expect(ids.count == block.storedRows * Self.schema.idsPerRow)
            rows += ids[0..<(block.rows * Self.schema.idsPerRow)]
        }
        #expect(rows == vector.rows.flatMap { $0.flatMap { $0 } })
        // The row index: the block holding row p is the last live block with position <= p.
        for p in 0..<spec.count {
            let block = spec.blocks.last { $0.position <= p }!
            #expect(p < block.position + block.rows)
        }
    }

    /// The header bytes follow from the spec: a header written from FORMAT.md 2.3 alone equals the
    /// vector's, and equals what the library writes for another schema with dense layers and
    /// several metadata entries (sorted by key).
    @Test func headerWrittenFromTheSpecMatches() throws {
        let vector = try ArchiveVector.load()
        let small = SpecArchive.headerFrame(version: 1, layers: 2, topk: 2, experts: 16, blockRows: 4, dense: [],
                                            metadata: [("model", "demo")])
        #expect(small == Array(vector.bytes[0..<vector.headerBytes]))
        let v2 = try ArchiveVector.load("small-v2")
        #expect(SpecArchive.headerFrame(version: 2, layers: 2, topk: 2, experts: 16, blockRows: 4, dense: [],
                                        metadata: [("model", "demo")]) == Array(v2.bytes[0..<v2.headerBytes]))

        let dir = TemporaryDirectory(), path = dir.file("dense")
        let schema = try Schema(layers: 5, topk: 3, experts: 384, denseLayers: [0, 3])
        let metadata = ["model": "kimi", "engine": "sglang", "note": "", "größe": "8×", "Z": "upper"]
        try ArchiveWriter.create(at: path, schema: schema, metadata: metadata, blockRows: 100).close()
        let written = Array(FileManager.default.contents(atPath: path)!)
        // Keys sorted by their UTF-8 bytes: "Z" < "engine" < "größe" < "model" < "note".
        let header = SpecArchive.headerFrame(version: 2, layers: 5, topk: 3, experts: 384, blockRows: 100, dense: [0, 3],
                                             metadata: [("Z", "upper"), ("engine", "sglang"), ("größe", "8×"),
                                                        ("model", "kimi"), ("note", "")])
        // Two anchors (2.3a), both of the empty log: sequence 0, log end just after them, 0 rows.
        let anchor = SpecArchive.anchorFrame(sequence: 0, logEnd: header.count + 88, rows: 0, lastRecordCRC: 0)
        #expect(written == header + anchor + anchor, "an archive closed without rows is its header frame and two anchors")
        let spec = try SpecArchive(written)
        #expect(spec.header.dense == [0, 3])
        #expect(spec.count == 0 && spec.records.isEmpty && spec.outcome == .complete)
        let reader = try ArchiveReader(path: path)
        #expect(reader.schema == schema && reader.metadata == metadata && reader.blockRows == 100)
    }

    /// The reader compares keys as Swift strings, under Unicode canonical equivalence: "é" (C3 A9)
    /// and "e" + U+0301 (65 CC 81) are the same key, so a header holding both is refused (FORMAT.md
    /// 2.3 allows this: no writer wrote such a file).
    @Test func canonicallyEquivalentKeysAreDuplicates() throws {
        let dir = TemporaryDirectory(), path = dir.file("dup")
        let frame = SpecArchive.headerFrame(version: 1, layers: 2, topk: 2, experts: 16, blockRows: 4, dense: [],
                                            metadata: [("e\u{301}", "1"), ("\u{E9}", "2")])
        try Data(frame).write(to: URL(fileURLWithPath: path))
        #expect(throws: ArchiveError.self) { try ArchiveReader(path: path) }
        // The same two keys spelled apart are fine.
        let distinct = SpecArchive.headerFrame(version: 1, layers: 2, topk: 2, experts: 16, blockRows: 4, dense: [],
                                               metadata: [("e", "1"), ("\u{E9}", "2")])
        try Data(distinct).write(to: URL(fileURLWithPath: path))
        #expect(try ArchiveReader(path: path).metadata == ["e": "1", "\u{E9}": "2"])
    }

    /// A writer writes NFC keys only (FORMAT.md 2.3): "e" + U+0301 is refused, naming the key, and
    /// no file is left behind; its NFC form "é" is written as C3 A9.
    @Test func writerRefusesKeysNotInNFC() throws {
        let dir = TemporaryDirectory(), path = dir.file("nfd")
        let schema = try Schema(layers: 2, topk: 2, experts: 16)
        #expect {
            try ArchiveWriter.create(at: path, schema: schema, metadata: ["caf" + "e\u{301}": "1"], blockRows: 4)
        } throws: { error in
            guard case ArchiveError.invalidArgument(let why) = error else { return false }
            return why.contains("not in Unicode NFC")
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        try ArchiveWriter.create(at: path, schema: schema, metadata: ["caf\u{E9}": "1"], blockRows: 4).close()
        let bytes = Array(FileManager.default.contents(atPath: path)!)
        #expect(bytes.firstRange(of: Array("caf".utf8) + [0xC3, 0xA9]) != nil)
    }

    /// A file of an earlier writer with a key not in NFC still opens, returns the key's bytes as
    /// stored, and salvage copies it with those bytes (FORMAT.md 2.3: readers MUST NOT reject it).
    @Test func keysNotInNFCFromEarlierWritersStillRead() throws {
        let dir = TemporaryDirectory(), path = dir.file("old"), copy = dir.file("copy")
        let nfd = "caf" + "e\u{301}"
        let frame = SpecArchive.headerFrame(version: 1, layers: 2, topk: 2, experts: 16, blockRows: 4, dense: [],
                                            metadata: [(nfd, "1")])
        try Data(frame).write(to: URL(fileURLWithPath: path))
        let key = try #require(ArchiveReader(path: path).metadata.keys.first)
        #expect(Array(key.utf8) == Array(nfd.utf8))
        try Salvage.write(try Salvage.scan(path), to: copy)
        let copied = try #require(ArchiveReader(path: copy).metadata.keys.first)
        #expect(Array(copied.utf8) == Array(nfd.utf8))
    }

    // MARK: - CRC-32C

    @Test(arguments: vectorNames)
    func crc32cCheckValueAndStoredChecksums(name: String) throws {
        let check = Array("123456789".utf8)
        #expect(SpecArchive.crc32c(check) == 0xE306_9283)
        #expect(CRC32C.checksum(check) == 0xE306_9283, "the library's table-driven CRC")
        #expect(SpecArchive.crc32c([]) == 0)
        #expect(SpecArchive.crc32c([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA, "RFC 3720 B.4: 32 bytes of zeros")
        #expect(SpecArchive.crc32c([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43, "RFC 3720 B.4: 32 bytes of ones")
        let vector = try ArchiveVector.load(name)
        let bytes = vector.bytes
        let size = Int(LE.u32(bytes, 4))
        let stored = LE.u32(bytes, 8 + size - 4)
        #expect(stored == SpecArchive.crc32c(bytes[8..<(8 + size - 4)]))
        #expect(stored == vector.headerCRC)
        for record in vector.records {
            let content = record.offset + 8
            #expect(LE.u32(bytes, content + 32) == SpecArchive.crc32c(bytes[content..<content + 32]), "record at \(record.offset)")
        }
    }

    // MARK: - The format has not changed

    /// The library writes today exactly the bytes of `small-v2.archive`. Fails on any change of the
    /// on-disk format (or of the encoder's coding choices, or of liblz4's output: see Part 1 1.9).
    @Test func rebuildingGivesTheSameBytes() throws {
        let vector = try ArchiveVector.load("small-v2")
        let dir = TemporaryDirectory(), path = dir.file("small.archive")
        try SmallArchiveRecipe.build(at: path)
        let rebuilt = Array(FileManager.default.contents(atPath: path)!)
        #expect(rebuilt.count == vector.bytes.count)
        if let first = (0..<min(rebuilt.count, vector.bytes.count)).first(where: { rebuilt[$0] != vector.bytes[$0] }) {
            Issue.record("small.archive differs from the library's output first at byte \(first)")
        }
        #expect(rebuilt == vector.bytes)
    }

    // MARK: - Tail or damage: the spec's replay decides as the library does

    /// Every cut of the vector, and every one-bit change of it: the spec reader and ArchiveReader
    /// both refuse the file, or both replay the same rows and ignore the same tail. A refusal of
    /// the log (damage) names the same offset.
    @Test(arguments: vectorNames)
    func specReplayDecidesTailAndDamageAsTheLibrary(name: String) throws {
        let vector = try ArchiveVector.load(name)
        let dir = TemporaryDirectory(), path = dir.file("variant")
        var variants: [(String, [UInt8])] = (0..<vector.bytes.count).map { ("cut at \($0)", Array(vector.bytes[..<$0])) }
        // The whole file, and two prefixes whose last blocks lie past every synced claim (so that
        // step 3 of the replay checks them): without the last commit (record G) and with records
        // A and B only. Zero bytes appended are slack.
        variants.append(("zeros appended", vector.bytes + [UInt8](repeating: 0, count: 100)))
        for length in [vector.bytes.count, vector.records[6].offset, vector.records[2].offset] {
            for offset in 0..<length {
                for bit in [0, 7] {
                    var bytes = Array(vector.bytes[..<length])
                    bytes[offset] ^= UInt8(1 << bit)
                    variants.append(("bit \(bit) of byte \(offset) of the first \(length)", bytes))
                }
            }
        }
        var outcomes: [String: Int] = [:]
        for (name, bytes) in variants {
            replaceFile(path, bytes)
            let library: String
            let headerValid = bytes.withUnsafeBytes { (try? ArchiveHeader.parse($0, path: path)) != nil }
            do {
                let reader = try ArchiveReader(path: path)
                library = "rows \(reader.count), blocks \(reader.blocks.map(BlockSpec.init)), tail \(reader.ignoredTail?.offset ?? -1)"
            } catch let ArchiveError.corrupt(_, offset, _) where headerValid {
                library = "damage at \(offset)"
            } catch {
                library = "refused header"
            }
            let spec: String
            do {
                let archive = try SpecArchive(bytes)
                var tail = -1
                if case .tail(let at) = archive.outcome { tail = at }
                spec = "rows \(archive.count), blocks \(archive.blocks), tail \(tail)"
            } catch SpecArchive.Failure.damage(let offset) {
                spec = "damage at \(offset)"
            } catch {
                spec = "refused header"
            }
            #expect(library == spec, "\(name)")
            outcomes[String(spec.prefix(4)), default: 0] += 1
        }
        // The sweep reaches all three outcomes.
        #expect((outcomes["dama"] ?? 0) > 0 && (outcomes["refu"] ?? 0) > 0 && (outcomes["rows"] ?? 0) > 0, "\(outcomes)")
    }

    /// The outcomes FORMAT.md 2.9 states for damaged and cut copies of the vector.
    @Test func workedExampleOutcomes() throws {
        let vector = try ArchiveVector.load("small")
        let records = vector.records, blocks = vector.blocks
        try #require(records.map(\.offset) == [65, 171, 278, 322, 366, 410, 509] && blocks.count == 3)
        try #require(records.map(\.syncedLength) == [65, 65, 278, 322, 366, 410, 509])
        try #require(vector.bytes.count == 553)
        let dir = TemporaryDirectory(), path = dir.file("variant")
        func write(_ bytes: [UInt8]) throws { replaceFile(path, bytes) }
        func size() throws -> Int? { try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int }
        func expectDamage(at offset: Int, _ bytes: [UInt8], _ comment: Comment) throws {
            try write(bytes)
            let error = #expect(throws: ArchiveError.self, comment) { try ArchiveReader(path: path) }
            guard case .corrupt(_, let at, _)? = error else {
                Issue.record("\(comment): expected damage at \(offset), got \(String(describing: error))")
                return
            }
            #expect(at == offset, comment)
        }
        let all = vector.rows.flatMap { $0.flatMap { $0 } }, perRow = Self.schema.idsPerRow
        // Cut inside the last commit record G: 6 rows and a torn tail at 509; a writer cuts it there.
        for length in 510..<vector.bytes.count {
            try write(Array(vector.bytes[..<length]))
            let reader = try ArchiveReader(path: path)
            #expect(reader.count == 6 && reader.ignoredTail?.offset == 509, "cut at \(length)")
        }
        try write(Array(vector.bytes[..<528]))
        let writer = try ArchiveWriter.open(at: path)
        #expect(writer.recoveredTail?.offset == 509 && writer.recoveredTail?.bytes == 19)
        #expect(try size() == 528, "a writer that writes nothing changes nothing")
        try writer.close()
        #expect(try size() == 528, "nothing written, no commit, the tail left as it was")
        let appender = try ArchiveWriter.open(at: path)
        try appender.truncate(to: 6) // a no-op: nothing written
        try appender.append([Int64](repeating: 1, count: 4), at: 6)
        try appender.flush()
        let frameLength = try ArchiveReader(path: path).blocks.last!.frameLength
        #expect(try size() == 509 + 44 + frameLength, "the tail cut (no reader) before the first record was written at 509")
        try appender.close()
        // Cut inside record F or its block frame: the 5 rows before F.
        for length in 411..<509 {
            try write(Array(vector.bytes[..<length]))
            let reader = try ArchiveReader(path: path)
            #expect(reader.count == 5 && reader.ignoredTail?.offset == 410, "cut at \(length)")
        }
        // Cut at a record boundary: a shorter archive, no tail.
        for (length, rows) in [(65, 0), (171, 4), (278, 6), (322, 6), (366, 5), (410, 5)] {
            try write(Array(vector.bytes[..<length]))
            let reader = try ArchiveReader(path: path)
            #expect(reader.count == rows && reader.ignoredTail == nil, "cut at \(length)")
        }
        // A bit of any record A-F: damage at its offset (a later record claims past it). Of G: a
        // torn tail at 509.
        for record in records.dropLast() {
            for offset in record.offset..<record.offset + 44 {
                var bytes = vector.bytes
                bytes[offset] ^= 0x04
                try expectDamage(at: record.offset, bytes, "bit of byte \(offset)")
            }
        }
        for offset in 509..<vector.bytes.count {
            var bytes = vector.bytes
            bytes[offset] ^= 0x04
            try write(bytes)
            let reader = try ArchiveReader(path: path)
            #expect(reader.count == 6 && reader.ignoredTail?.offset == 509, "bit of byte \(offset)")
        }
        // The file as a crash right after `sync()` leaves it (A, B, C: 322 bytes). C vouches for A
        // and B: a bit of record B is damage at 171; a bit of B's block frame fails reads of rows
        // 4-5. Without C (278 bytes: a crash between B's fsync and C), the same bit of B is a
        // torn tail at 171, and the next writer would cut rows 4-5.
        let afterSync = Array(vector.bytes[..<322])
        for offset in 171..<215 {
            var bytes = afterSync
            bytes[offset] ^= 0x04
            try expectDamage(at: 171, bytes, "after sync, bit of byte \(offset)")
            try write(Array(bytes[..<278])) // the same damage, without C
            let reader = try ArchiveReader(path: path)
            #expect(reader.count == 4 && reader.ignoredTail?.offset == 171, "without C, bit of byte \(offset)")
        }
        // Reads skip the content checksum (the frame's last 4 bytes, spec 1.4): damage there
        // leaves the rows right, and only verify() finds it.
        func isContentChecksum(_ offset: Int, _ block: BlockSpec) -> Bool { offset >= block.frameOffset + block.frameLength - 4 }
        try write(afterSync)
        let rowsAfterSync = try ArchiveReader(path: path).rows(4..<6, as: Int64.self)
        for offset in blocks[1].frameOffset..<blocks[1].frameOffset + blocks[1].frameLength {
            var bytes = afterSync
            bytes[offset] ^= 0x04
            try write(bytes)
            let reader = try ArchiveReader(path: path)
            #expect(reader.count == 6 && reader.ignoredTail == nil, "after sync, bit of byte \(offset)")
            if isContentChecksum(offset, blocks[1]) {
                #expect(try reader.rows(4..<6, as: Int64.self) == rowsAfterSync)
            } else {
                #expect(throws: ArchiveError.self, "bit of byte \(offset)") { try reader.rows(4..<6, as: Int64.self) }
            }
            #expect(try reader.rows(0..<4, as: Int64.self) == Array(all[..<(4 * perRow)]))
            #expect(reader.verify().count == 1)
        }
        // Past every claim, a damaged block frame ends the log at its record (2.5 step 3).
        var noCommit = Array(vector.bytes[..<509])
        noCommit[blocks[2].frameOffset + 30] ^= 0x04
        try write(noCommit)
        var reader = try ArchiveReader(path: path)
        #expect(reader.count == 5 && reader.ignoredTail?.offset == 410)
        var onlyAB = Array(vector.bytes[..<278])
        onlyAB[blocks[0].frameOffset + 20] ^= 0x04
        try write(onlyAB)
        reader = try ArchiveReader(path: path)
        #expect(reader.count == 0 && reader.ignoredTail?.offset == 65)
        // A bit of A's block frame (before every claim): opens; rows 0-3 fail, rows 4-5 read.
        for offset in blocks[0].frameOffset..<blocks[0].frameOffset + blocks[0].frameLength {
            var bytes = vector.bytes
            bytes[offset] ^= 0x04
            try write(bytes)
            let reader = try ArchiveReader(path: path)
            #expect(reader.count == 6 && reader.ignoredTail == nil)
            if isContentChecksum(offset, blocks[0]) {
                #expect(try reader.rows(0..<4, as: Int64.self) == Array(all[..<(4 * perRow)]))
            } else {
                #expect(throws: ArchiveError.self, "bit of byte \(offset)") { try reader.rows(0..<4, as: Int64.self) }
            }
            #expect(try reader.rows(4..<6, as: Int64.self) == Array(all[(4 * perRow)...]))
            #expect(reader.verify().count == 1)
        }
    }
}

// MARK: - The vector as stored

/// One record as `small.json` lists it (and as the spec reader reports it).
private struct RecordSpec: Equatable, Decodable, CustomStringConvertible {
    let offset: Int, kind: Int, frameLength: Int, position: Int, rows: Int, syncedLength: Int

    enum CodingKeys: String, CodingKey {
        case offset, kind, position, rows
        case frameLength = "frame_length", syncedLength = "synced_length"
    }

    init(offset: Int, kind: Int, frameLength: Int, position: Int, rows: Int, syncedLength: Int) {
        (self.offset, self.kind, self.frameLength, self.position, self.rows, self.syncedLength) =
            (offset, kind, frameLength, position, rows, syncedLength)
    }

    var description: String { "record(\(offset): kind \(kind), position \(position), rows \(rows), frame \(frameLength), synced \(syncedLength))" }
}

/// One live block: `BlockInfo`'s fields, comparable between the library and the spec reader.
private struct BlockSpec: Equatable, Decodable, CustomStringConvertible {
    let position: Int, rows: Int, storedRows: Int, recordOffset: Int, frameOffset: Int, frameLength: Int

    enum CodingKeys: String, CodingKey {
        case position, rows
        case storedRows = "stored_rows", recordOffset = "record_offset", frameOffset = "frame_offset", frameLength = "frame_length"
    }

    init(position: Int, rows: Int, storedRows: Int, recordOffset: Int, frameOffset: Int, frameLength: Int) {
        (self.position, self.rows, self.storedRows, self.recordOffset, self.frameOffset, self.frameLength) =
            (position, rows, storedRows, recordOffset, frameOffset, frameLength)
    }

    init(_ info: BlockInfo) {
        self.init(position: info.position, rows: info.rows, storedRows: info.storedRows, recordOffset: info.recordOffset,
                  frameOffset: info.frameOffset, frameLength: info.frameLength)
    }

    var description: String { "block(\(position)+\(rows)/\(storedRows) @\(recordOffset),\(frameOffset)+\(frameLength))" }
}

private struct ArchiveVector {
    let archivePath: String
    let bytes: [UInt8]
    let schema: Schema
    let metadata: [String: String]
    let blockRows: Int
    let headerBytes: Int
    let headerCRC: UInt32
    let records: [RecordSpec]
    let blocks: [BlockSpec]
    let rows: [[[Int64]]]

    private struct File: Decodable {
        struct SchemaFields: Decodable {
            let layers: Int, topk: Int, experts: Int
            let dense_layers: [Int]
        }
        let name: String
        let schema: SchemaFields
        let metadata: [String: String]
        let block_rows: Int
        let file_bytes: Int
        let header_bytes: Int
        let header_crc: UInt32
        let records: [RecordSpec]
        let blocks: [BlockSpec]
        let rows: [[[Int64]]]
    }

    static func load(_ name: String = "small") throws -> ArchiveVector {
        let directory = ArchiveSpecTests.directory
        let archive = directory.appendingPathComponent("\(name).archive").path
        guard let data = FileManager.default.contents(atPath: archive),
              let json = FileManager.default.contents(atPath: directory.appendingPathComponent("\(name).json").path) else {
            Issue.record("missing spec/vectors/archive/\(name).archive or \(name).json")
            throw CocoaError(.fileNoSuchFile)
        }
        let file = try JSONDecoder().decode(File.self, from: json)
        #expect(file.name == name)
        #expect(file.file_bytes == data.count)
        let schema = try Schema(layers: file.schema.layers, topk: file.schema.topk, experts: file.schema.experts,
                                denseLayers: file.schema.dense_layers)
        return ArchiveVector(archivePath: archive, bytes: Array(data), schema: schema, metadata: file.metadata,
                             blockRows: file.block_rows, headerBytes: file.header_bytes, headerCRC: file.header_crc,
                             records: file.records, blocks: file.blocks, rows: file.rows)
    }
}

// MARK: - A reader written from FORMAT.md Part 2 alone

/// Parses an archive as FORMAT.md Part 2 says: the header (2.3), the commit anchors of version 2
/// (2.3a), the records (2.4), the log replay with its tail-or-damage decision (2.5). Blocks are
/// checked with Part 1's decoder.
private struct SpecArchive {
    struct Header {
        var version = 0
        var layers = 0, topk = 0, experts = 0, blockRows = 0
        var dense: [Int] = []
        var metadata: [(key: String, value: String)] = []
        /// File offset just past the header frame.
        var end = 0
    }

    struct Anchor: Equatable {
        var sequence: UInt64, logEnd: Int, rows: Int, lastRecordCRC: UInt32
    }

    enum Failure: Error { case header(String), damage(offset: Int) }
    enum Outcome: Equatable { case complete, tail(Int) }

    let header: Header
    /// The intact anchors, in slot order (version 2).
    private(set) var anchors: [Anchor] = []
    private(set) var records: [RecordSpec] = []
    private(set) var blocks: [BlockSpec] = []
    private(set) var count = 0
    private(set) var end = 0
    private(set) var outcome = Outcome.complete

    init(_ file: [UInt8]) throws {
        header = try Self.parseHeader(file)
        let schema = try Schema(layers: header.layers, topk: header.topk, experts: header.experts, denseLayers: header.dense)
        var logStart = header.end
        var current: Anchor?
        if header.version == 2 {
            guard file.count >= header.end + 88 else { throw Failure.damage(offset: file.count) }
            let slots = [Self.parseAnchor(file, at: header.end, logStart: header.end + 88),
                         Self.parseAnchor(file, at: header.end + 44, logStart: header.end + 88)]
            anchors = slots.compactMap { $0 }
            // The larger sequence; the first slot on a tie.
            current = slots.compactMap { $0 }.reduce(nil) { best, next in best.map { next.sequence > $0.sequence ? next : $0 } ?? next }
            logStart = header.end + 88
        }
        // 2.5 step 1-2: replay, then decide whether a stop is a tail or damage.
        var replay = try Self.replay(file, limit: file.count, from: logStart, blockRows: header.blockRows, anchor: current)
        if let stop = replay.stop {
            if let current, stop < current.logEnd { throw Failure.damage(offset: stop) }
            if file[stop...].allSatisfy({ $0 == 0 }) {
                replay.stop = nil // slack
            } else {
                var candidate = stop + 1
                while candidate + 44 <= file.count {
                    if let later = Self.parseRecord(file, at: candidate), later.syncedLength > stop { throw Failure.damage(offset: stop) }
                    candidate += 1
                }
            }
        } else if let current, replay.end < current.logEnd {
            throw Failure.damage(offset: replay.end)
        }
        // 2.5 step 3: live blocks at or past the largest claimed synced length are checked whole.
        let synced = max(replay.records.map(\.syncedLength).max() ?? 0, logStart, current?.logEnd ?? 0)
        let decoder = BlockDecoder(schema: schema)
        for block in (replay.blocks + replay.dropped).sorted(by: { $0.recordOffset < $1.recordOffset }) where block.recordOffset >= synced {
            let valid = file[block.frameOffset..<block.frameOffset + block.frameLength].withUnsafeBytes { frame in
                (try? decoder.open(frame, expectedRows: block.storedRows)) != nil
            }
            if !valid {
                replay = try Self.replay(file, limit: block.recordOffset, from: logStart, blockRows: header.blockRows, anchor: current)
                replay.stop = block.recordOffset
                break
            }
        }
        records = replay.records
        blocks = replay.blocks
        count = replay.count
        end = replay.end
        outcome = replay.stop.map { .tail($0) } ?? .complete
    }

    // 2.3a: an anchor frame at `offset`, or nil if it is not intact.
    static func parseAnchor(_ f: [UInt8], at offset: Int, logStart: Int) -> Anchor? {
        guard LE.u32(f, offset) == 0x184D_2A5D, LE.u32(f, offset + 4) == 36 else { return nil }
        let c = offset + 8
        guard crc32c(f[c..<c + 32]) == LE.u32(f, c + 32), LE.u32(f, c + 28) == 0 else { return nil }
        let end = LE.u64(f, c + 8), rows = LE.u64(f, c + 16)
        guard end >= logStart, end < 1 << 62, rows < 1 << 62 else { return nil }
        return Anchor(sequence: LE.u64(f, c), logEnd: Int(end), rows: Int(rows), lastRecordCRC: LE.u32(f, c + 24))
    }

    /// An anchor frame written from 2.3a alone.
    static func anchorFrame(sequence: Int, logEnd: Int, rows: Int, lastRecordCRC: UInt32) -> [UInt8] {
        var c = LE.put32(sequence) + LE.put32(sequence >> 32) + LE.put32(logEnd) + LE.put32(logEnd >> 32)
        c += LE.put32(rows) + LE.put32(rows >> 32) + LE.put32(Int(lastRecordCRC)) + LE.put32(0)
        c += LE.put32(Int(crc32c(c)))
        return LE.put32(0x184D_2A5D) + LE.put32(36) + c
    }

    // 2.3
    static func parseHeader(_ f: [UInt8]) throws -> Header {
        func fail(_ why: String) -> Failure { .header(why) }
        guard f.count >= 8, LE.u32(f, 0) == 0x184D_2A5E else { throw fail("no header frame") }
        let size = Int(LE.u32(f, 4))
        guard size <= 1 << 20, size >= 40, f.count - 8 >= size else { throw fail("header size \(size)") }
        let content = Array(f[8..<(8 + size)])
        guard crc32c(content[..<(size - 4)]) == LE.u32(content, size - 4) else { throw fail("header CRC") }
        guard Array(content[0..<8]) == Array("MOEROUTE".utf8), (1...2).contains(LE.u16(content, 8)), LE.u16(content, 10) == 1 else {
            throw fail("magic, version or codec")
        }
        var h = Header()
        h.version = Int(LE.u16(content, 8))
        h.layers = Int(LE.u32(content, 12)); h.topk = Int(LE.u32(content, 16)); h.experts = Int(LE.u32(content, 20))
        h.blockRows = Int(LE.u32(content, 24))
        guard (1...4096).contains(h.layers), (1...64).contains(h.topk), (2...65536).contains(h.experts) else { throw fail("schema") }
        var at = 28
        let body = size - 4
        func u32() throws -> Int {
            guard body - at >= 4 else { throw fail("field past the header") }
            defer { at += 4 }
            return Int(LE.u32(content, at))
        }
        func string() throws -> String {
            let n = try u32()
            guard body - at >= n, let s = String(validating: content[at..<at + n], as: UTF8.self) else { throw fail("string") }
            at += n
            return s
        }
        let denseCount = try u32()
        guard denseCount < h.layers else { throw fail("dense count") }
        for _ in 0..<denseCount {
            let layer = try u32()
            guard layer < h.layers, h.dense.last.map({ $0 < layer }) ?? true else { throw fail("dense layers") }
            h.dense.append(layer)
        }
        let maxRows = (1 << 26) / ((h.layers - h.dense.count) * h.topk)
        guard (1...maxRows).contains(h.blockRows) else { throw fail("block rows") }
        let entries = try u32()
        guard entries <= 4096 else { throw fail("metadata entries") }
        for _ in 0..<entries {
            let key = try string(), value = try string()
            guard !h.metadata.contains(where: { $0.key == key }) else { throw fail("duplicate key") }
            h.metadata.append((key, value))
        }
        guard at == body else { throw fail("bytes after the metadata") }
        h.end = 8 + size
        return h
    }

    // 2.4: a record frame at `offset`, or nil if it is incomplete or fails a check.
    static func parseRecord(_ f: [UInt8], at offset: Int) -> RecordSpec? {
        guard f.count - offset >= 44, LE.u32(f, offset) == 0x184D_2A5F, LE.u32(f, offset + 4) == 36 else { return nil }
        let c = offset + 8
        guard crc32c(f[c..<c + 32]) == LE.u32(f, c + 32) else { return nil }
        let kind = Int(f[c])
        guard (1...3).contains(kind), f[c + 1] == 0, f[c + 2] == 0, f[c + 3] == 0, LE.u32(f, c + 20) == 0 else { return nil }
        let position = LE.u64(f, c + 8), synced = LE.u64(f, c + 24)
        guard position < 1 << 62, synced < 1 << 62, synced <= offset else { return nil }
        let record = RecordSpec(offset: offset, kind: kind, frameLength: Int(LE.u32(f, c + 4)), position: Int(position),
                                rows: Int(LE.u32(f, c + 16)), syncedLength: Int(synced))
        let isRows = kind == 1
        guard isRows == (record.rows > 0), isRows == (record.frameLength > 0) else { return nil }
        return record
    }

    struct Replay {
        var records: [RecordSpec] = []
        var blocks: [BlockSpec] = []
        /// Blocks a truncation dropped (step 3 checks them too).
        var dropped: [BlockSpec] = []
        var count = 0
        var end = 0
        var stop: Int?
    }

    // 2.5 step 1: the records that chain, from `from` up to `limit`. Where the log reaches the
    // anchor's end it must hold the anchor's rows and end with the anchor's record; no record
    // may span that end.
    static func replay(_ f: [UInt8], limit: Int, from: Int, blockRows: Int, anchor: Anchor?) throws -> Replay {
        let file = Array(f[..<limit])
        var r = Replay(end: from)
        var offset = from
        var lastCRC: UInt32 = 0
        if let anchor, anchor.logEnd == from, anchor.rows != 0 || anchor.lastRecordCRC != 0 { throw Failure.damage(offset: from) }
        while offset < file.count {
            guard let record = parseRecord(file, at: offset), file.count - offset - 44 >= record.frameLength else {
                r.stop = offset
                return r
            }
            switch record.kind {
            case 1:
                guard record.position == r.count, record.rows <= blockRows else { r.stop = offset; return r }
                r.blocks.append(BlockSpec(position: record.position, rows: record.rows, storedRows: record.rows,
                                          recordOffset: offset, frameOffset: offset + 44, frameLength: record.frameLength))
                r.count += record.rows
            case 2:
                guard record.position <= r.count else { r.stop = offset; return r }
                while let last = r.blocks.last, last.position >= record.position { r.dropped.append(r.blocks.removeLast()) }
                if let last = r.blocks.last, last.position + last.rows > record.position {
                    r.blocks[r.blocks.count - 1] = BlockSpec(
                        position: last.position, rows: record.position - last.position, storedRows: last.storedRows,
                        recordOffset: last.recordOffset, frameOffset: last.frameOffset, frameLength: last.frameLength)
                }
                r.count = record.position
            default:
                guard record.position == r.count else { r.stop = offset; return r }
            }
            r.records.append(record)
            lastCRC = LE.u32(file, offset + 40)
            let next = offset + 44 + record.frameLength
            if let anchor, next == anchor.logEnd, r.count != anchor.rows || lastCRC != anchor.lastRecordCRC { throw Failure.damage(offset: offset) }
            if let anchor, offset < anchor.logEnd, next > anchor.logEnd { throw Failure.damage(offset: offset) }
            offset = next
            r.end = offset
        }
        return r
    }

    // 2.2: CRC-32C bit by bit.
    static func crc32c(_ bytes: some Collection<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }

    /// A header frame written from 2.3 alone; `metadata` in the order given.
    static func headerFrame(version: Int, layers: Int, topk: Int, experts: Int, blockRows: Int, dense: [Int],
                            metadata: [(String, String)]) -> [UInt8] {
        var c = Array("MOEROUTE".utf8)
        c += LE.put16(version) + LE.put16(1)
        for v in [layers, topk, experts, blockRows, dense.count] + dense + [metadata.count] { c += LE.put32(v) }
        for (key, value) in metadata {
            c += LE.put32(key.utf8.count) + Array(key.utf8) + LE.put32(value.utf8.count) + Array(value.utf8)
        }
        c += LE.put32(Int(crc32c(c)))
        return LE.put32(0x184D_2A5E) + LE.put32(c.count) + c
    }
}

// MARK: - Helpers

/// Little-endian reads and writes.
private enum LE {
    static func u16(_ p: [UInt8], _ at: Int) -> UInt16 { UInt16(p[at]) | UInt16(p[at + 1]) << 8 }
    static func u32(_ p: [UInt8], _ at: Int) -> UInt32 {
        UInt32(p[at]) | UInt32(p[at + 1]) << 8 | UInt32(p[at + 2]) << 16 | UInt32(p[at + 3]) << 24
    }
    static func u64(_ p: [UInt8], _ at: Int) -> UInt64 { UInt64(u32(p, at)) | UInt64(u32(p, at + 4)) << 32 }
    static func put16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    static func put32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(v >> (8 * $0) & 0xFF) } }
}

/// Replaces the file at `path` with `bytes`, overwriting in place: `Data.write` (and `O_TRUNC`)
/// makes ext4 flush the file on close, a millisecond per variant.
private func replaceFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
    precondition(fd >= 0, "cannot write \(path)")
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { $0.isEmpty ? 0 : pwrite(fd, $0.baseAddress, $0.count, 0) }
    precondition(written == bytes.count && ftruncate(fd, off_t(bytes.count)) == 0, "cannot write \(path)")
}

