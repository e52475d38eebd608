import Foundation
import Testing
import Archive
import TraceSynth

/// The schema and seed the `archive-crashtest` processes write with.
let crashSchema = try! Schema(layers: 6, topk: 4, experts: 100, denseLayers: [0])

/// The `archive-crashtest` binary, built beside the test bundle.
func crashTestTool() -> URL {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("archive-crashtest")
}

/// Runs `archive-crashtest` with `arguments`; returns the process (running) and its stdout pipe.
func launchCrashTest(_ arguments: [String], input: Pipe? = nil) throws -> (Process, Pipe) {
    try launch(crashTestTool().path, arguments, input: input)
}

/// Runs `executable` with `arguments` (standard input from `input`, if given); returns the
/// process (running) and its stdout pipe.
func launch(_ executable: String, _ arguments: [String], input: Pipe? = nil) throws -> (Process, Pipe) {
    let process = Process(), output = Pipe()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let input { process.standardInput = input }
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    return (process, output)
}

@Suite(.serialized, .tags(.processes, .slow)) struct CrashSafetyTests {
    /// A writer process killed with SIGKILL at random moments, 20 times in CI, each restart
    /// appending to what the last left: the archive always opens, holds exactly the
    /// deterministic rows (a prefix of what was appended), and keeps every row a completed
    /// sync() covered.
    @Test(.tags(.soak)) func sigkillWhileAppending() throws {
        let dir = TemporaryDirectory(), path = dir.file("killed")
        var random = SplitMix64(seed: 50)
        let truth = PositionalRows(schema: crashSchema, seed: 7)
        let kills = soakSetting("ARCHIVE_SOAK_KILLS", default: 20)
        // The deterministic rows, made once and extended as the archive grows.
        var expected: [Int32] = []
        var survived = 0
        for _ in 0..<kills {
            let (process, output) = try launchCrashTest(["write", path, "7"])
            // The kill comes at a random moment after the writer has opened the archive (its
            // first line): timed from the launch, a loaded machine (a sanitizer build beside
            // other work) started some writers too late for them to create the file at all.
            var said = output.fileHandleForReading.availableData
            usleep(UInt32.random(in: 30_000...120_000, using: &random))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            said.append(output.fileHandleForReading.readDataToEndOfFile())
            let lines = String(decoding: said, as: UTF8.self).split(separator: "\n")
            let synced = lines.compactMap { $0.hasPrefix("synced ") ? Int($0.dropFirst(7)) : nil }.max() ?? 0
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let writer = try ArchiveWriter.open(at: path)
            #expect(writer.count >= synced, "rows covered by a completed sync survive")
            let count = writer.count
            try writer.close()
            let reader = try ArchiveReader(path: path)
            #expect(reader.count == count)
            let have = expected.count / crashSchema.idsPerRow
            if count > have { expected += truth.rows(have..<count, as: Int32.self) }
            #expect(try reader.rows(0..<count, as: Int32.self) == Array(expected[..<(count * crashSchema.idsPerRow)]))
            survived += 1
        }
        #expect(survived >= kills * 9 / 10)
        print("kill table: a library writer killed \(kills) times, \(survived) archives checked")
    }

    /// A reader in this process refreshes while a writer process appends and flushes: it sees
    /// a growing, consistent prefix and never a torn record.
    @Test func readerSeesAConsistentPrefixWhileAnotherProcessWrites() throws {
        let dir = TemporaryDirectory(), path = dir.file("shared")
        let truth = PositionalRows(schema: crashSchema, seed: 3)
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 64)
        try writer.close()
        let (process, _) = try launchCrashTest(["flush", path, "3", "20000"])
        let reader = try ArchiveReader(path: path)
        var seen = 0, refreshes = 0
        while process.isRunning || seen < 20000 {
            try reader.refresh()
            #expect(reader.count >= seen)
            if reader.count > seen {
                #expect(try reader.rows(seen..<reader.count, as: Int32.self) == truth.rows(seen..<reader.count, as: Int32.self))
                seen = reader.count
                refreshes += 1
            }
            if !process.isRunning && reader.count == seen { try reader.refresh(); if reader.count == seen { break } }
        }
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(seen == 20000)
        #expect(refreshes > 1, "the reader saw the archive grow")
    }

    /// The same while the writer also truncates (rolls back) and appends the rows again: every
    /// refresh shows a prefix of the same rows, never a torn or stale record; and a second
    /// writer meanwhile is refused. The writer's first rollback waits for the reader to see the
    /// rows before it and after it (the writer says when: no timing is assumed).
    @Test func readerSeesAConsistentPrefixWhileAnotherProcessTruncates() throws {
        let dir = TemporaryDirectory(), path = dir.file("churned")
        let truth = PositionalRows(schema: crashSchema, seed: 8)
        try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16).close()
        let input = Pipe()
        let writer = try LineSource(launchCrashTest(["churn", path, "8", "6000", "handshake"], input: input))
        let process = writer.process
        let reader = try ArchiveReader(path: path)
        var shrinks = 0, refreshes = 0, last = 0, refusedWriters = 0
        /// The count the writer printed after `prefix`, once the reader sees exactly that many rows.
        func see(_ prefix: String) throws -> Int {
            let line = try #require(writer.next { $0.hasPrefix(prefix) }, "the writer said \(writer.said)")
            let count = try #require(Int(line.dropFirst(prefix.count)))
            try reader.refresh()
            #expect(reader.count == count)
            #expect(try reader.rows(0..<reader.count, as: Int32.self) == truth.rows(0..<reader.count, as: Int32.self))
            // A second writer, in this process, while the other process holds the archive: refused.
            #expect(throws: ArchiveError.locked(path: path)) { try ArchiveWriter.open(at: path) }
            refusedWriters += 1
            input.fileHandleForWriting.write(Data("\n".utf8))
            return count
        }
        let before = try see("before "), after = try see("truncated ")
        #expect(after < before, "the rollback took rows away")
        (shrinks, refreshes, last) = (1, 2, after)
        repeat {
            let running = process.isRunning
            try reader.refresh()
            if reader.count != last {
                refreshes += 1
                if reader.count < last { shrinks += 1 }
                #expect(try reader.rows(0..<reader.count, as: Int32.self) == truth.rows(0..<reader.count, as: Int32.self))
                last = reader.count
            }
            if !running { break }
        } while true
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(writer.next { $0.hasPrefix("closed ") } == "closed 6000")
        try reader.refresh()
        #expect(reader.count == 6000 && refreshes > 1)
        #expect(shrinks > 0, "the reader saw a truncation")
        #expect(refusedWriters == 2, "a second writer was tried while the first wrote")
        print("concurrency: a reader refreshed \(refreshes) times (\(shrinks) after a truncation) while another process wrote")
    }

    /// A real file-size limit (RLIMIT_FSIZE) in a writer process: the write that crosses it fails
    /// with EFBIG and a clear error, the archive keeps every synced row and nothing else changed,
    /// and a writer without the limit goes on from there.
    @Test func fileSizeLimitFailsCleanly() throws {
        let dir = TemporaryDirectory(), path = dir.file("limited")
        let truth = PositionalRows(schema: crashSchema, seed: 12)
        let (process, output) = try launchCrashTest(["limit", path, "12", "20000"])
        process.waitUntilExit()
        let lines = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        #expect(process.terminationStatus == 3)
        let synced = lines.compactMap { $0.hasPrefix("synced ") ? Int($0.dropFirst(7)) : nil }.max() ?? 0
        let failure = try #require(lines.last)
        #expect(failure.hasPrefix("failed after ") && failure.contains(path) && failure.contains("File too large"), "\(failure)")
        #expect(synced > 0)
        let bytes = fileBytes(path)
        #expect(bytes.count <= 20000)
        let writer = try ArchiveWriter.open(at: path)
        #expect(writer.recoveredTail == nil, "the failed write was cut back")
        #expect(writer.count == synced)
        #expect(try writer.rows(0..<synced, as: Int32.self) == truth.rows(0..<synced, as: Int32.self))
        try writer.append(truth.rows(synced..<synced + 500, as: Int32.self))
        try writer.close()
        #expect(try ArchiveReader(path: path).rows(0..<synced + 500, as: Int32.self) == truth.rows(0..<synced + 500, as: Int32.self))
    }

    /// Readers in other processes read every row again and again while writers fail, die and
    /// truncate beside them: writer processes killed with SIGKILL after a sync (the next one
    /// discards their torn tails), one that truncates and appends again, one stopped by a
    /// file-size limit (its failed writes discarded), and rollbacks in this process. No reader
    /// crashes (a writer never shrinks the file while a reader has it mapped), none reads a
    /// wrong row, none reports an error on the healthy archive.
    @Test func readersSurviveWritersThatFailDieAndTruncate() throws {
        let dir = TemporaryDirectory(), path = dir.file("shared")
        let seed = "9", truth = PositionalRows(schema: crashSchema, seed: 9)
        let setup = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16)
        try setup.append(truth.rows(0..<200, as: Int32.self))
        try setup.close()
        let readers = try (0..<2).map { _ in try LineSource(launchCrashTest(["read", path, seed])) }
        /// Each reader has read the archive once more since this call (a reader that died fails here).
        func readersReadAgain(_ phase: String) throws {
            for reader in readers {
                reader.skipPrinted()
                _ = try #require(reader.next { $0.hasPrefix("read ") }, "a reader stopped during \(phase): \(reader.said.suffix(300))")
            }
        }
        try readersReadAgain("start")
        var random = SplitMix64(seed: 90)
        for kill in 0..<6 {
            let writer = try LineSource(launchCrashTest(["write", path, seed]))
            for _ in 0...(random.next() % 3) { _ = try #require(writer.next { $0.hasPrefix("synced ") }, "writer \(kill)") }
            Foundation.kill(writer.process.processIdentifier, SIGKILL)
            writer.process.waitUntilExit()
            try readersReadAgain("kill \(kill)")
        }
        let count = try ArchiveReader(path: path).count
        let churn = try LineSource(launchCrashTest(["churn", path, seed, "\(count + 600)"]))
        churn.process.waitUntilExit()
        #expect(churn.process.terminationStatus == 0)
        try readersReadAgain("churn")
        let limited = try LineSource(launchCrashTest(["limit", path, seed, "\(fileBytes(path).count + 20_000)"]))
        limited.process.waitUntilExit()
        #expect(limited.process.terminationStatus == 3, "the limited writer stopped at its limit: \(limited.said)")
        try readersReadAgain("file-size limit")
        // The command line beside them: an append refused for an id out of range in its last
        // row (nothing written), the same rows appended, and a durable truncation.
        let tool = crashTestTool().deletingLastPathComponent().appendingPathComponent("archive-tool").path
        let stored = try ArchiveReader(path: path).count
        var input = truth.rows(stored..<stored + 300, as: Int32.self)
        input[input.count - 1] = 100
        try writeInt32Npy(dir.file("bad.npy"), input, shape: [300, crashSchema.layers, crashSchema.topk])
        let before = fileBytes(path)
        let refused = try LineSource(launch(tool, ["pack", dir.file("bad.npy"), "-o", path, "--append", "--quiet"]))
        refused.process.waitUntilExit()
        #expect(refused.process.terminationStatus == 1 && fileBytes(path) == before, "a refused append changes nothing")
        try writeInt32Npy(dir.file("good.npy"), truth.rows(stored..<stored + 300, as: Int32.self), shape: [300, crashSchema.layers, crashSchema.topk])
        for arguments in [["pack", dir.file("good.npy"), "-o", path, "--append", "--quiet"], ["truncate", path, "--to", "\(stored + 100)", "--quiet"]] {
            let run = try LineSource(launch(tool, arguments))
            run.process.waitUntilExit()
            #expect(run.process.terminationStatus == 0, "\(arguments)")
            try readersReadAgain(arguments[0])
        }
        let writer = try ArchiveWriter.open(at: path)
        for _ in 0..<4 {
            let mark = writer.checkpoint()
            try writer.append(truth.rows(writer.count..<writer.count + 40, as: Int32.self))
            try writer.flush()
            try readersReadAgain("rows to be rolled back")
            try writer.rollback(to: mark)
            try readersReadAgain("rollback")
        }
        try writer.truncate(to: writer.count - 30)
        try writer.close()
        try readersReadAgain("truncate")
        try Data().write(to: URL(fileURLWithPath: path + ".stop"))
        var passes = 0
        for reader in readers {
            let last = reader.next { $0.hasPrefix("passes ") }
            reader.process.waitUntilExit()
            #expect(reader.process.terminationReason == .exit && reader.process.terminationStatus == 0, "reader: \(reader.said.suffix(300))")
            passes += Int(last?.dropFirst(7) ?? "") ?? 0
        }
        #expect(try ArchiveReader(path: path).verify().isEmpty)
        print("reader table: 2 reader processes, \(passes) full reads, 0 crashes, 0 wrong rows, beside 6 killed writers, a truncating one, one stopped by a file-size limit, archive-tool pack --append refused and done, archive-tool truncate, and 4 rollbacks")
    }

    /// A reader refreshing across a writer's rollback (a truncate record, as the reader keeps the
    /// writer from cutting the file) and new rows written where the old ones were: it sees the
    /// shorter archive, then the new rows, never the old.
    @Test func readerFollowsARollback() throws {
        let dir = TemporaryDirectory(), path = dir.file("rolled")
        let first = PositionalRows(schema: crashSchema, seed: 30), second = PositionalRows(schema: crashSchema, seed: 31)
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16)
        try writer.append(first.rows(0..<40, as: Int32.self))
        try writer.flush()
        let checkpoint = writer.checkpoint()
        try writer.append(first.rows(40..<100, as: Int32.self))
        try writer.flush()
        let reader = try ArchiveReader(path: path)
        #expect(reader.count == 100)
        _ = try reader.rows(60..<61, as: Int32.self) // a block of the rows to be rolled back is open
        try writer.rollback(to: checkpoint)
        #expect(try reader.refresh())
        #expect(reader.count == 40)
        #expect(try reader.rows(0..<40, as: Int32.self) == first.rows(0..<40, as: Int32.self))
        // New rows where the old ones were.
        try writer.append(second.rows(40..<100, as: Int32.self))
        try writer.flush()
        #expect(try reader.refresh())
        #expect(reader.count == 100)
        #expect(try reader.rows(40..<100, as: Int32.self) == second.rows(40..<100, as: Int32.self))
        // Rolled back again and rewritten before the reader looks: still seen.
        let again = writer.checkpoint()
        try writer.append(first.rows(100..<120, as: Int32.self))
        try writer.flush()
        #expect(try reader.refresh() && reader.count == 120)
        try writer.rollback(to: again)
        try writer.append(second.rows(100..<120, as: Int32.self))
        try writer.flush()
        #expect(try reader.refresh())
        #expect(try reader.rows(100..<120, as: Int32.self) == second.rows(100..<120, as: Int32.self))
        #expect(try !reader.refresh(), "nothing changed since")
        try writer.close()
    }

    /// An archive whose last record is cut at every byte opens with exactly the rows before it.
    @Test func cutAtEveryByteOfTheLastRecord() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let truth = PositionalRows(schema: crashSchema, seed: 1)
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 32)
        try writer.append(truth.rows(0..<100, as: Int32.self))
        try writer.sync()
        let before = writer.fileBytes, kept = writer.flushedCount
        try writer.append(truth.rows(100..<132, as: Int32.self))
        try writer.flush()
        let whole = fileBytes(path)
        try writer.close()
        for length in before..<whole.count {
            let cut = dir.file("cut")
            writeFile(cut, Array(whole[..<length]))
            let reader = try ArchiveReader(path: cut)
            #expect(reader.count == kept, "cut at \(length)")
            let recovered = try ArchiveWriter.open(at: cut)
            #expect(recovered.count == kept && recovered.fileBytes == before)
            #expect((recovered.recoveredTail != nil) == (length > before))
            try recovered.append(truth.rows(kept..<kept + 5, as: Int32.self))
            try recovered.close()
            let reopened = try ArchiveReader(path: cut)
            #expect(try reopened.rows(0..<reopened.count, as: Int32.self) == truth.rows(0..<kept + 5, as: Int32.self))
        }
    }

    /// Unsynced writes garbled by a crash (a zeroed page in the middle of them) are cut, even
    /// when intact records follow; synced rows stay.
    @Test func garbledUnsyncedWritesAreCut() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let truth = PositionalRows(schema: crashSchema, seed: 2)
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16)
        try writer.append(truth.rows(0..<64, as: Int32.self))
        try writer.sync()
        let synced = writer.fileBytes
        try writer.append(truth.rows(64..<200, as: Int32.self))
        try writer.flush()
        var bytes = fileBytes(path)
        try writer.close()
        for i in synced + 10..<synced + 60 { bytes[i] = 0 }
        writeFile(path, bytes)
        let recovered = try ArchiveWriter.open(at: path)
        #expect(recovered.count == 64)
        #expect(try recovered.rows(0..<64, as: Int32.self) == truth.rows(0..<64, as: Int32.self))
    }

    /// Damage in synced data is never dropped silently: opening fails naming the offset, and
    /// verify names the damaged block and its rows.
    @Test func damageBeforeTheTailFailsWithItsOffset() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let truth = PositionalRows(schema: crashSchema, seed: 4)
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 16)
        for start in stride(from: 0, to: 160, by: 16) {
            try writer.append(truth.rows(start..<start + 16, as: Int32.self))
            try writer.sync()
        }
        try writer.close()
        let clean = fileBytes(path)
        let blocks = try ArchiveReader(path: path).blocks
        // A flipped bit in a record header: the log cannot be replayed past it; the commit
        // record sync() wrote right after the block vouches that it had been synced.
        var damaged = clean
        damaged[blocks[3].recordOffset + 12] ^= 0x10
        writeFile(path, damaged)
        let failure = #expect(throws: ArchiveError.self) { try ArchiveWriter.open(at: path) }
        guard case .corrupt(_, let offset, let reason)? = failure else { Issue.record("\(String(describing: failure))"); return }
        #expect(offset == blocks[3].recordOffset && reason.hasPrefix("record checksum mismatch; the commit anchor at byte "), "\(reason)")
        #expect(fileBytes(path) == damaged, "a failed open changes nothing")
        // A flipped bit inside a block frame: reads of that block fail naming it; others work.
        damaged = clean
        damaged[blocks[5].frameOffset + blocks[5].frameLength / 2] ^= 0x01
        writeFile(path, damaged)
        let reader = try ArchiveReader(path: path)
        #expect(throws: ArchiveError.self) { try reader.rows(80..<81, as: Int32.self) }
        #expect(try reader.rows(0..<80, as: Int32.self) == truth.rows(0..<80, as: Int32.self))
        #expect(try reader.rows(96..<160, as: Int32.self) == truth.rows(96..<160, as: Int32.self))
        let problems = reader.verify()
        #expect(problems.count == 1)
        #expect("\(problems.first!)".contains("rows 80..<96"))
    }

    @Test func hostileHeadersAreRefused() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, metadata: ["k": "v"])
        try writer.append(PositionalRows(schema: crashSchema, seed: 5).rows(0..<10, as: Int32.self))
        try writer.close() // the last record is the commit
        let clean = fileBytes(path)
        func refuses(_ bytes: [UInt8], _ why: String) {
            writeFile(path, bytes)
            #expect(throws: ArchiveError.self, "\(why)") { try ArchiveReader(path: path) }
        }
        refuses([], "empty file")
        refuses(Array(clean[..<7]), "short")
        var b = clean; b[0] = 0x51; refuses(b, "magic")
        b = clean; b[4...7] = [0xFF, 0xFF, 0xFF, 0x7F]; refuses(b, "header size near 2^31")
        b = clean; b[12] ^= 1; refuses(b, "header checksum")
        b = clean; b[b.count - 1] ^= 1
        writeFile(path, b)
        #expect(try ArchiveReader(path: path).ignoredTail != nil, "a damaged last record is a torn tail")
    }
}

/// The lines a child process prints, read as they come.
final class LineSource {
    let process: Process
    private let descriptor: Int32
    private var buffer: [UInt8] = []
    private var lines: [Substring] = []
    private var closed = false
    /// Everything read so far, for messages.
    private(set) var said = ""

    init(_ launched: (Process, Pipe)) {
        process = launched.0
        descriptor = launched.1.fileHandleForReading.fileDescriptor
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
    }

    /// Reads what the process has printed so far; with `wait`, waits for at least one line
    /// (or the end of its output).
    private func fill(wait: Bool) {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while !closed {
            let n = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n > 0 {
                buffer += chunk[..<n]
                while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: buffer[..<newline], as: UTF8.self)
                    buffer.removeSubrange(...newline)
                    said += line + "\n"
                    lines.append(Substring(line))
                }
            } else if n == 0 {
                closed = true
            } else if errno == EAGAIN {
                if !wait || !lines.isEmpty { return }
                var request = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                _ = poll(&request, 1, -1)
            } else if errno != EINTR {
                closed = true
            }
        }
    }

    /// Forgets every line printed so far: the next one asked for is printed after this call.
    func skipPrinted() {
        fill(wait: false)
        lines.removeAll()
    }

    /// The next line that satisfies `wanted`, or nil when the process closes its output first.
    func next(where wanted: (Substring) -> Bool) -> Substring? {
        while true {
            if lines.isEmpty { fill(wait: true) }
            if lines.isEmpty { return nil }
            let line = lines.removeFirst()
            if wanted(line) { return line }
        }
    }
}

/// Writes `ids` as a `.npy` 1.0 file of little-endian int32 of `shape` (numpy's format: magic,
/// version, header length, a dict padded with spaces to a multiple of 64 bytes, the data).
func writeInt32Npy(_ path: String, _ ids: [Int32], shape: [Int]) throws {
    var header = "{'descr': '<i4', 'fortran_order': False, 'shape': (\(shape.map(String.init).joined(separator: ", ")),), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
    bytes += Array(header.utf8)
    for id in ids { withUnsafeBytes(of: id.littleEndian) { bytes += $0 } }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}
