import Foundation
import Testing
@_spi(Faults) import Archive
import TraceSynth

/// Format version 2's commit anchors, and what a writer may and may not do to the bytes of a
/// file that others read: a durable truncation never comes undone, a refused call changes no
/// byte, a failed write leaves nothing a reader can see, and no reader loses a mapped page.
@Suite struct CommitAnchorTests {
    let truth = PositionalRows(schema: crashSchema, seed: 40)

    /// Fails the `n`-th write with `errno` (the system call is not made).
    final class FailingWrite: FileFaults {
        let n: Int, errno: Int32
        private(set) var writes = 0
        init(_ n: Int, errno: Int32 = ENOSPC) { (self.n, self.errno) = (n, errno) }
        func before(_ operation: FileOperation) throws {
            guard case .write = operation else { return }
            writes += 1
            if writes == n { throw InjectedFailure(errno: errno) }
        }
    }

    /// 10,000 rows, a durable `truncate(to: 4000)`, 10 new rows, closed; then the truncate record
    /// and everything after it zeroed. Version 1 would read 10,000 rows (the rolled-back ones
    /// among them) as if a torn tail had been cut; the anchor says the log reached further, so
    /// the archive does not open, and salvage keeps only rows a truncation cannot have replaced.
    @Test func aDurableTruncateNeverComesUndone() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 256)
        try writer.append(truth.rows(0..<10_000, as: Int32.self))
        try writer.flush()
        let truncateRecord = writer.fileBytes
        try writer.truncate(to: 4000)
        let replacement = PositionalRows(schema: crashSchema, seed: 41).rows(4000..<4010, as: Int32.self)
        try writer.append(replacement, at: 4000)
        try writer.close()
        var bytes = fileBytes(path)
        for i in truncateRecord..<bytes.count { bytes[i] = 0 }
        writeFile(path, bytes)

        let failure = #expect(throws: ArchiveError.self) { try ArchiveReader(path: path) }
        guard case .corrupt(_, let offset, let reason)? = failure else { Issue.record("\(String(describing: failure))"); return }
        #expect(offset == truncateRecord && reason.contains("commit anchor"), "\(reason)")
        #expect(throws: ArchiveError.self) { try ArchiveWriter.open(at: path) }
        #expect(fileBytes(path) == bytes, "a refused open changes nothing")

        let report = try Salvage.scan(path)
        #expect(report.recoverable == 4000, "rows 4000 on may have been rolled back: the truncation was lost")
        #expect(report.lostRows == [4000..<4010])
        #expect(try Salvage.write(report, to: dir.file("saved")) == 4000)
        let saved = try ArchiveReader(path: dir.file("saved"))
        #expect(try saved.rows(0..<saved.count, as: Int32.self) == truth.rows(0..<4000, as: Int32.self))
    }

    /// Salvage of a healthy archive that was truncated and appended again gives its rows, the
    /// appended ones and not the rolled-back ones; a copy of the file's own records appended after
    /// it (a torn tail that looks like an old log) changes nothing.
    @Test func salvageReplaysTheLogAsReadersDo() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 64)
        try writer.append(truth.rows(0..<1000, as: Int32.self))
        try writer.truncate(to: 400)
        let replacement = PositionalRows(schema: crashSchema, seed: 42).rows(400..<700, as: Int32.self)
        try writer.append(replacement, at: 400)
        try writer.close()
        let expected = truth.rows(0..<400, as: Int32.self) + replacement
        let clean = fileBytes(path)
        for bytes in [clean, clean + clean[200...]] {
            writeFile(path, bytes)
            let report = try Salvage.scan(path)
            #expect(report.recoverable == 700 && report.lostRows.isEmpty && report.damaged.isEmpty)
            #expect((report.ignoredTail != nil) == (bytes.count > clean.count))
            let saved = dir.file("saved-\(bytes.count)")
            #expect(try Salvage.write(report, to: saved) == 700)
            #expect(try ArchiveReader(path: saved).rows(0..<700, as: Int32.self) == expected)
        }
    }

    /// A torn tail, then calls that are refused (a gap, a truncation past the rows, an id out of
    /// range, a bad shape) and a writer that writes nothing: the file is byte for byte as it was.
    @Test func refusedCallsChangeNoByte() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16)
        try writer.append(truth.rows(0..<100, as: Int32.self))
        try writer.close()
        var random = SplitMix64(seed: 3)
        let torn = fileBytes(path) + (0..<300).map { _ in UInt8(truncatingIfNeeded: random.next()) | 1 }
        writeFile(path, torn)
        let again = try ArchiveWriter.open(at: path)
        #expect(again.recoveredTail != nil)
        #expect(throws: ArchiveError.self) { try again.append(truth.rows(105..<110, as: Int32.self), at: 105) }
        #expect(throws: ArchiveError.self) { try again.truncate(to: 101) }
        var bad = truth.rows(100..<120, as: Int32.self)
        bad[bad.count - 1] = 100
        #expect(throws: ArchiveError.self) { try again.append(bad, at: 100) }
        #expect(throws: ArchiveError.self) { try again.append([Int32](repeating: 1, count: 5), at: 100) }
        try again.close()
        #expect(fileBytes(path) == torn)
        // The first write discards the tail (no reader: cut) and lands at the log's end.
        let appender = try ArchiveWriter.open(at: path)
        try appender.append(truth.rows(100..<120, as: Int32.self))
        try appender.close()
        let reader = try ArchiveReader(path: path)
        #expect(reader.count == 120 && reader.verify().isEmpty && fileBytes(path).count == reader.fileBytes)
    }

    /// A write that fails after part of it reached the file (the first record's magic is written
    /// last, and that write fails), with a reader open: the reader never sees the batch, keeps
    /// reading every page it mapped, and the writer zeroes what landed instead of cutting it.
    /// Without a reader the same failure cuts the file back byte for byte.
    @Test(arguments: [true, false])
    func aFailedWriteLeavesNothingAReaderCanSee(readerOpen: Bool) throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let setup = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16)
        try setup.append(truth.rows(0..<160, as: Int32.self))
        try setup.close()
        let before = fileBytes(path)
        let reader = readerOpen ? try ArchiveReader(path: path) : nil
        let faults = FailingWrite(2)
        let writer = try ArchiveWriter.open(at: path, faults: faults)
        #expect(throws: ArchiveError.self) { try writer.append(truth.rows(160..<400, as: Int32.self)) }
        #expect(faults.writes >= 2)
        if let reader {
            #expect(try !reader.refresh() && reader.count == 160)
            #expect(try reader.rows(0..<160, as: Int32.self) == truth.rows(0..<160, as: Int32.self))
            let after = fileBytes(path)
            #expect(Array(after[..<before.count]) == before && after[before.count...].allSatisfy { $0 == 0 }, "zeroed, not cut")
            #expect(try ArchiveReader(path: path).verify().isEmpty, "zero bytes after the log are slack")
        } else {
            #expect(fileBytes(path) == before, "cut back byte for byte")
        }
        try writer.append(truth.rows(160..<200, as: Int32.self))
        try writer.close()
        if let reader {
            #expect(try reader.refresh() && reader.count == 200)
            #expect(try reader.rows(0..<200, as: Int32.self) == truth.rows(0..<200, as: Int32.self))
        }
        #expect(try ArchiveReader(path: path).verify().isEmpty)
    }

    /// `create(overwrite: true)` replaces the file by a rename: a reader of the old one goes on
    /// reading all of it (emptying it in place would take its pages), and new readers see the new.
    @Test func overwriteKeepsReadersOfTheOldFileWhole() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let old = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16)
        try old.append(truth.rows(0..<300, as: Int32.self))
        try old.close()
        let reader = try ArchiveReader(path: path)
        let replacement = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16, overwrite: true)
        #expect(throws: ArchiveError.locked(path: path)) {
            try ArchiveWriter.create(at: path, schema: crashSchema, overwrite: true)
        }
        try replacement.append(truth.rows(0..<10, as: Int32.self))
        try replacement.close()
        #expect(try reader.rows(0..<300, as: Int32.self) == truth.rows(0..<300, as: Int32.self))
        #expect(reader.verify().isEmpty)
        #expect(try ArchiveReader(path: path).count == 10)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0 != "a" }
        #expect(leftovers.isEmpty, "no temporary file left: \(leftovers)")
    }

    /// One damaged anchor: the other is used, `verify()` reports the damaged one, and the
    /// writer's next commit rewrites it.
    @Test func aDamagedAnchorIsReportedAndRewritten() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16)
        try writer.append(truth.rows(0..<50, as: Int32.self))
        try writer.sync()
        try writer.append(truth.rows(50..<90, as: Int32.self))
        try writer.close()
        let header = try ArchiveReader(path: path).blocks[0].recordOffset - 88
        for slot in 0..<2 {
            var bytes = fileBytes(path)
            bytes[header + slot * 44 + 20] ^= 0x01
            writeFile(path, bytes)
            let reader = try ArchiveReader(path: path)
            #expect(reader.count == 90 + slot)
            #expect(reader.verify().count == 1, "slot \(slot): \(reader.verify())")
            let repair = try ArchiveWriter.open(at: path)
            try repair.append(truth.rows(90 + slot..<91 + slot, as: Int32.self))
            try repair.close()
            #expect(try ArchiveReader(path: path).verify().isEmpty, "slot \(slot) rewritten")
        }
    }

    /// Reads far outside the rows are refused, not trapped on an overflow.
    @Test func hugeRangesAreRefused() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16)
        try writer.append(truth.rows(0..<20, as: Int32.self))
        try writer.close()
        let reader = try ArchiveReader(path: path)
        #expect(throws: ArchiveError.outOfRange(path: path, requested: 0..<Int.max, count: 20)) {
            try reader.rows(0..<Int.max, as: Int32.self)
        }
        #expect(throws: ArchiveError.self) { try reader.rows((Int.min + 1)..<0, as: Int32.self) }
        #expect(throws: ArchiveError.self) { try reader.forEachBlock(in: 10..<Int.max, as: Int32.self) { _, _ in } }
    }
}
