import Foundation
import Testing
@testable import Archive
import TraceSynth

/// Files made by someone else than the writer: every checksum right, the numbers hostile
/// (sizes near 2^32 and 2^62, positions out of order, blocks claiming more rows than they hold,
/// claims of synced bytes the record cannot know). Each is refused or its bad part left out as a
/// reported tail, before anything is sized from its numbers; the good rows stay readable.
@Suite struct HostileFileTests {
    /// A closed archive of 40 rows in blocks of 16, and its bytes.
    static func archive(at path: String) throws -> (bytes: [UInt8], blocks: [BlockInfo]) {
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16)
        try writer.append(PositionalRows(schema: crashSchema, seed: 21).rows(0..<40, as: Int32.self))
        try writer.close()
        return (fileBytes(path), try ArchiveReader(path: path).blocks)
    }

    static func record(_ kind: RecordHeader.Kind, frameLength: Int = 0, position: Int, rows: Int = 0, synced: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        RecordHeader(kind: kind, frameLength: frameLength, position: position, rows: rows, syncedLength: synced).encoded(into: &bytes)
        return bytes
    }

    @Test func hostileRecordsAreLeftOutAsATail() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let (clean, blocks) = try Self.archive(at: path)
        let end = clean.count, block0 = Array(clean[blocks[0].frameOffset..<blocks[0].frameOffset + blocks[0].frameLength])
        let cases: [(String, [UInt8])] = [
            ("a block claiming 2^32-1 rows", Self.record(.rows, frameLength: block0.count, position: 40, rows: Int(UInt32.max), synced: end) + block0),
            ("a block claiming one row more than block rows", Self.record(.rows, frameLength: block0.count, position: 40, rows: 17, synced: end) + block0),
            ("a block claiming fewer rows than it holds", Self.record(.rows, frameLength: block0.count, position: 40, rows: 15, synced: 0) + block0),
            ("a block at position 0 again (overlap)", Self.record(.rows, frameLength: block0.count, position: 0, rows: 16, synced: end) + block0),
            ("a block after a gap", Self.record(.rows, frameLength: block0.count, position: 140, rows: 16, synced: end) + block0),
            ("a block frame of 4 GiB", Self.record(.rows, frameLength: Int(UInt32.max), position: 40, rows: 16, synced: end) + block0),
            ("a truncation past the end", Self.record(.truncate, position: 41, synced: end)),
            ("a truncation to 2^62 - 1", Self.record(.truncate, position: (1 << 62) - 1, synced: end)),
            ("a commit of other rows", Self.record(.commit, position: 39, synced: end)),
            ("a record vouching for bytes after itself", Self.record(.commit, position: 40, synced: end + 1000)),
            ("a synced length of 2^62", Self.record(.commit, position: 40, synced: 1 << 62)),
        ]
        for (name, bytes) in cases {
            writeFile(path, clean + bytes)
            let reader = try ArchiveReader(path: path)
            #expect(reader.count == 40, "\(name)")
            #expect(reader.ignoredTail?.offset == end, "\(name): \(String(describing: reader.ignoredTail))")
            #expect(reader.verify().count == 1, "\(name): the tail is reported")
            var seen = 0
            try reader.forEachBlock(as: UInt8.self) { rows, _ in seen += rows.count }
            #expect(seen == 40, "\(name)")
            let writer = try ArchiveWriter.open(at: path)
            #expect(writer.count == 40 && writer.recoveredTail?.offset == end, "\(name)")
            try writer.close()
        }
    }

    /// A crash can leave a garbled block followed by an intact truncation record that drops it
    /// (pages reach the disk out of order): nothing vouches for either, so the log ends at the
    /// garbled block, a torn tail, rather than counting the truncation (a soak finding).
    @Test func aGarbledBlockDroppedByAnUnvouchedTruncationIsATornTail() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let (clean, blocks) = try Self.archive(at: path)
        let end = clean.count
        var frame = Array(clean[blocks[0].frameOffset..<blocks[0].frameOffset + blocks[0].frameLength])
        frame[frame.count / 2] ^= 0x40
        let block = Self.record(.rows, frameLength: frame.count, position: 40, rows: 16, synced: end) + frame
        let truncation = Self.record(.truncate, position: 38, synced: end)
        writeFile(path, clean + block + truncation)
        let reader = try ArchiveReader(path: path)
        #expect(reader.count == 40 && reader.ignoredTail?.offset == end)
        #expect(reader.verify().count == 1, "only the tail is reported")
        let writer = try ArchiveWriter.open(at: path)
        #expect(writer.count == 40 && writer.fileBytes == end)
        try writer.close()
    }

    /// The same records followed by an intact record that says they had been synced: damage,
    /// and opening fails naming the offset where the log breaks.
    @Test func hostileRecordsVouchedForAreDamage() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let (clean, _) = try Self.archive(at: path)
        let end = clean.count
        let bad = Self.record(.truncate, position: 41, synced: end)
        let voucher = Self.record(.commit, position: 40, synced: end + bad.count)
        writeFile(path, clean + bad + voucher)
        #expect(throws: ArchiveError.corrupt(path: path, offset: end, reason: "truncation to 41 rows, but the archive holds 40; the record at byte \(end + bad.count) shows this data had been synced")) {
            try ArchiveReader(path: path)
        }
    }

    /// Header frames with a valid checksum and hostile numbers: each refused.
    @Test func hostileHeadersWithValidChecksumsAreRefused() throws {
        let dir = TemporaryDirectory(), path = dir.file("h")
        func header(layers: UInt32 = 6, topk: UInt32 = 4, experts: UInt32 = 100, blockRows: UInt32 = 16,
                    dense: [UInt32] = [], denseCount: UInt32? = nil, entries: UInt32 = 0, tail: [UInt8] = []) -> [UInt8] {
            var content = Array("MOEROUTE".utf8)
            content.appendLE(UInt16(1)); content.appendLE(UInt16(1))
            for value in [layers, topk, experts, blockRows, denseCount ?? UInt32(dense.count)] + dense + [entries] { content.appendLE(value) }
            content += tail
            content.appendLE(CRC32C.checksum(content))
            var frame: [UInt8] = []
            frame.appendLE(UInt32(0x184D_2A5E)); frame.appendLE(UInt32(content.count))
            return frame + content
        }
        // The builder makes a valid header when nothing is hostile.
        writeFile(path, header())
        #expect(try ArchiveReader(path: path).count == 0)
        let cases: [(String, [UInt8])] = [
            ("2^32-1 layers", header(layers: .max)),
            ("0 layers", header(layers: 0)),
            ("top-k 2^32-1", header(topk: .max)),
            ("2^32-1 experts", header(experts: .max)),
            ("1 expert", header(experts: 1)),
            ("2^32-1 block rows", header(blockRows: .max)),
            ("0 block rows", header(blockRows: 0)),
            ("2^32-1 dense layers", header(denseCount: .max)),
            ("a dense layer past the last", header(dense: [6])),
            ("2^32-1 metadata entries", header(entries: .max)),
            ("a metadata key of 2^32-1 bytes", header(entries: 1, tail: [0xFF, 0xFF, 0xFF, 0xFF, 0x41])),
            ("a header frame of 2^32-1 bytes", [0x5E, 0x2A, 0x4D, 0x18, 0xFF, 0xFF, 0xFF, 0xFF] + header().dropFirst(8)),
        ]
        for (name, bytes) in cases {
            writeFile(path, bytes)
            #expect(throws: ArchiveError.self, "\(name)") { try ArchiveReader(path: path) }
            #expect(throws: ArchiveError.self, "\(name)") { try ArchiveWriter.open(at: path) }
            #expect(fileBytes(path) == bytes, "\(name): a refused file is not changed")
        }
    }
}
