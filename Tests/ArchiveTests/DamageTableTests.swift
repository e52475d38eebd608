import Foundation
import Testing
import Archive
import TraceSynth

// Damage tables: every single-bit flip of a small archive, every cut, every zeroed page, bytes
// appended, and random flips on a large archive. Each damaged copy must be detected (open fails,
// or `verify()` names a damaged block or an ignored tail) and must never read back a wrong row.
// scripts/soak raises the random flips (ARCHIVE_SOAK_FLIPS).
let soakFlips = soakSetting("ARCHIVE_SOAK_FLIPS", default: 1000)

/// How one damaged copy fared.
enum DamageOutcome: Equatable {
    /// Opening refused it.
    case refused
    /// It opened, and `verify()` reported the damage.
    case reported
    /// It opened clean with correct rows: only possible for a cut that falls exactly between two
    /// frames, which is an archive that ended there (a state it went through).
    case earlierState(rows: Int)
    /// It opened clean and something was wrong: the failure this table exists to rule out.
    case missed(String)
}

/// Opens `bytes`, a damaged copy of an archive of `intactLength` bytes, and checks it against
/// `truth`, the rows at positions 0, 1, ... (as many as the archive ever held).
/// With `damaged`, the file range that was changed, only the blocks it touches are read
/// (a large archive is verified a block, not a file, at a time); otherwise `verify()` runs.
func damageOutcome(_ bytes: [UInt8], at path: String, truth: [Int32], intactLength: Int, damaged: Range<Int>? = nil) -> DamageOutcome {
    writeFile(path, bytes)
    return damageOutcome(ofFileAt: path, length: bytes.count, truth: truth, intactLength: intactLength, damaged: damaged)
}

/// The same for the damaged copy already at `path`, `length` bytes long.
func damageOutcome(ofFileAt path: String, length: Int, truth: [Int32], intactLength: Int, damaged: Range<Int>? = nil) -> DamageOutcome {
    let reader: ArchiveReader
    do { reader = try ArchiveReader(path: path) } catch { return .refused }
    if let damaged {
        if reader.ignoredTail != nil { return .reported }
        let touched = reader.blocks.filter { $0.recordOffset < damaged.upperBound && damaged.lowerBound < $0.frameOffset + $0.frameLength }
        for block in touched {
            let rows = block.position..<block.position + block.rows, perRow = reader.schema.idsPerRow
            guard let read = try? reader.rows(rows, as: Int32.self) else { return .reported }
            if read != Array(truth[(rows.lowerBound * perRow)..<(rows.upperBound * perRow)]) { return .missed("wrong rows") }
        }
    } else {
        if !reader.verify().isEmpty { return .reported }
        do {
            let rows = try reader.rows(0..<reader.count, as: Int32.self)
            guard rows.count <= truth.count, Array(truth[..<rows.count]) == rows else { return .missed("wrong rows") }
        } catch {
            return .missed("verify() passed but reading failed: \(error)")
        }
    }
    guard length < intactLength else { return .missed("damage not detected") }
    return .earlierState(rows: reader.count)
}

@Suite(.tags(.soak, .slow)) struct DamageTableTests {
    /// A small archive: metadata, dense layer, a few blocks over several syncs, closed.
    static func smallArchive(at path: String) throws -> (bytes: [UInt8], rows: [Int32], recordEnds: Set<Int>) {
        let truth = PositionalRows(schema: crashSchema, seed: 11)
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, metadata: ["model": "damage-table"], blockRows: 16)
        try writer.append(truth.rows(0..<40, as: Int32.self))
        try writer.sync()
        try writer.append(truth.rows(30..<52, as: Int32.self), at: 30)
        try writer.truncate(to: 45)
        try writer.append(truth.rows(45..<70, as: Int32.self))
        try writer.sync()
        try writer.truncate(to: 50) // discards the whole block of rows 64..<70
        try writer.append(truth.rows(50..<60, as: Int32.self))
        try writer.close()
        let bytes = fileBytes(path)
        return (bytes, truth.rows(0..<70, as: Int32.self), frameEnds(bytes))
    }

    /// Where each frame of the file ends, walked by the LZ4 frame format alone (skippable
    /// frames: magic, size, content; LZ4 frames: header, blocks, end mark, checksums).
    static func frameEnds(_ f: [UInt8]) -> Set<Int> {
        func u32(_ at: Int) -> Int { Int(f[at]) | Int(f[at + 1]) << 8 | Int(f[at + 2]) << 16 | Int(f[at + 3]) << 24 }
        var ends: Set<Int> = [], at = 0
        while at < f.count {
            if u32(at) & 0xFFFF_FFF0 == 0x184D_2A50 {
                at += 8 + u32(at + 4)
            } else {
                precondition(u32(at) == 0x184D_2204, "not a frame at \(at)")
                let flags = f[at + 4]
                at += 4 + 2 + (flags & 0x08 != 0 ? 8 : 0) + 1
                while u32(at) != 0 { at += 4 + u32(at) & 0x7FFF_FFFF + (flags & 0x10 != 0 ? 4 : 0) }
                at += 4 + (flags & 0x04 != 0 ? 4 : 0)
            }
            ends.insert(at)
        }
        return ends
    }

    /// Every bit of every byte of a small archive flipped: every copy detected.
    @Test func everyBitFlipOfASmallArchiveIsDetected() throws {
        let dir = TemporaryDirectory()
        let archive = try Self.smallArchive(at: dir.file("small"))
        var tried = 0, detected = 0
        for offset in archive.bytes.indices {
            for bit in 0..<8 {
                var damaged = archive.bytes
                damaged[offset] ^= 1 << bit
                let outcome = damageOutcome(damaged, at: dir.file("flipped"), truth: archive.rows, intactLength: archive.bytes.count)
                tried += 1
                if outcome == .refused || outcome == .reported { detected += 1 } else {
                    Issue.record("bit \(bit) of byte \(offset) of \(archive.bytes.count): \(outcome)")
                }
            }
        }
        #expect(detected == tried)
        print("damage table: \(tried) bit flips of a \(archive.bytes.count)-byte archive, \(detected) detected")
    }

    /// Every cut length of a small archive: detected, except a cut exactly at the end of a
    /// record, which is an archive that ended there and reads back as its correct prefix.
    @Test func everyCutOfASmallArchiveIsDetectedOrAnEarlierState() throws {
        let dir = TemporaryDirectory()
        let archive = try Self.smallArchive(at: dir.file("small"))
        var detected = 0, earlier = 0
        for length in 0..<archive.bytes.count {
            switch damageOutcome(Array(archive.bytes[..<length]), at: dir.file("cut"), truth: archive.rows, intactLength: archive.bytes.count) {
            case .refused, .reported: detected += 1
            case .earlierState:
                earlier += 1
                #expect(archive.recordEnds.contains(length), "a cut at \(length), inside a frame, opened clean")
            case .missed(let why): Issue.record("cut at \(length): \(why)")
            }
        }
        #expect(detected + earlier == archive.bytes.count)
        #expect(earlier > 0 && earlier < archive.recordEnds.count, "only cuts between frames read clean (\(earlier))")
        print("damage table: \(archive.bytes.count) cuts, \(detected) detected, \(earlier) at record boundaries read as a correct earlier state")
    }

    /// Bytes appended to a closed archive are reported as an ignored tail; the rows stay.
    /// Zero bytes are slack (what a writer leaves when readers keep it from cutting), not a tail.
    @Test func bytesAppendedAreReported() throws {
        let dir = TemporaryDirectory()
        let archive = try Self.smallArchive(at: dir.file("small"))
        var random = SplitMix64(seed: 9)
        for length in [1, 3, 8, 36, 100, 4096] {
            for fill in ["zeros", "random", "copy of the file's start"] {
                let tail: [UInt8] = switch fill {
                case "zeros": [UInt8](repeating: 0, count: length)
                case "random": (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                default: Array(Array(repeating: archive.bytes, count: length / archive.bytes.count + 1).joined().prefix(length))
                }
                let outcome = damageOutcome(archive.bytes + tail, at: dir.file("longer"), truth: archive.rows, intactLength: archive.bytes.count)
                let reader = try ArchiveReader(path: dir.file("longer"))
                if fill == "zeros" {
                    #expect(reader.verify().isEmpty && reader.ignoredTail == nil, "\(length) zero bytes appended: \(reader.verify())")
                } else {
                    #expect(outcome == .reported, "\(length) bytes of \(fill) appended: \(outcome)")
                }
                #expect(try reader.rows(0..<reader.count, as: Int32.self) == Array(archive.rows[..<(60 * crashSchema.idsPerRow)]))
            }
        }
    }

    /// A large archive (12,000 Qwen3-30B-A3B rows, 3 MB): every page zeroed in turn, and random
    /// single-bit flips: every copy detected.
    @Test func zeroedPagesAndRandomFlipsOfALargeArchiveAreDetected() throws {
        let dir = TemporaryDirectory(), path = dir.file("large")
        let schema = try #require(ModelShape.named("qwen3-30b-a3b")).schema()
        var synthesizer = TraceSynthesizer(schema: schema, seed: 5)
        let writer = try ArchiveWriter.create(at: path, schema: schema)
        for _ in 0..<8 {
            try writer.append(synthesizer.nextRows(1500))
            try writer.sync()
        }
        try writer.close()
        let clean = fileBytes(path)
        let truth = try ArchiveReader(path: path).rows(0..<12_000, as: Int32.self)
        var tried = 0, detected = 0
        // One copy of the archive, damaged in place and restored after each check: the file
        // checked is byte for byte the archive with that one change.
        let damagedPath = dir.file("damaged")
        writeFile(damagedPath, clean)
        let file = try #require(FileHandle(forUpdatingAtPath: damagedPath))
        defer { try? file.close() }
        func overwrite(_ offset: Int, _ bytes: some Collection<UInt8>) throws {
            try file.seek(toOffset: UInt64(offset))
            try file.write(contentsOf: Data(bytes))
        }
        func check(_ range: Range<Int>, with bytes: [UInt8], _ what: String) throws {
            guard bytes[...] != clean[range] else { return }
            try overwrite(range.lowerBound, bytes)
            let outcome = damageOutcome(ofFileAt: damagedPath, length: clean.count, truth: truth, intactLength: clean.count, damaged: range)
            try overwrite(range.lowerBound, clean[range])
            tried += 1
            if outcome == .refused || outcome == .reported { detected += 1 } else { Issue.record("\(what): \(outcome)") }
        }
        for page in stride(from: 0, to: clean.count, by: 4096) {
            let range = page..<min(page + 4096, clean.count)
            try check(range, with: [UInt8](repeating: 0, count: range.count), "page at \(page) zeroed")
        }
        let pages = tried
        var random = SplitMix64(seed: 1000)
        for _ in 0..<soakFlips {
            let offset = Int(random.next() % UInt64(clean.count)), bit = Int(random.next() % 8)
            try check(offset..<offset + 1, with: [clean[offset] ^ 1 << bit], "bit \(bit) of byte \(offset)")
        }
        #expect(fileBytes(damagedPath) == clean, "every change was undone")
        #expect(detected == tried)
        print("damage table: \(pages) zeroed pages and \(tried - pages) random bit flips of a \(clean.count)-byte archive, \(detected) detected")
    }
}
