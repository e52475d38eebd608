import Archive
import Foundation
import NumpyFile
import Testing
import TraceSynth

/// Kills per SIGKILL test: a few dozen in CI; scripts/soak raises it (ARCHIVE_SOAK_KILLS).
let soakKills = soakSetting("ARCHIVE_SOAK_KILLS", default: 30)

@Suite(.serialized, .tags(.processes, .soak, .slow)) struct KillTests {
    /// `archive-tool pack --append` killed with SIGKILL at random moments, again and again, each
    /// run re-sending the whole input from position 0 (a re-prefill) so that it appends where the
    /// last one stopped; now and then the test truncates the archive back. After every kill
    /// the archive opens, keeps every row the previous run left, and holds exactly the input's
    /// rows: never a wrong one.
    @Test func packAppendKilledAtRandomMoments() throws {
        let dir = TemporaryDirectory(), archive = dir.file("killed.arch"), input = dir.file("input.npy")
        let schema = try Schema(layers: 6, topk: 4, experts: 100, denseLayers: [0])
        let total = 120_000
        let truth = PositionalRows(schema: schema, seed: 17).rows(0..<total, as: Int64.self)
        // int64, 23 MB: pack appends 16 MiB of input at a time, so a kill can land between two appends.
        try writeNpy(input, truth, shape: [total, 6, 4], dtype: .int64)
        // A new archive holding the first 1000 rows.
        try writeNpy(dir.file("head.npy"), Array(truth[..<(1000 * 24)]), shape: [1000, 6, 4], dtype: .uint8)
        expectSuccess(try tool(["pack", dir.file("head.npy"), "-o", archive, "--experts", "100", "--dense-layers", "0"]))

        // Kills land anywhere in a whole run: the window is the time one uninterrupted run
        // takes here (a debug or sanitizer build is many times slower than a release one).
        let timed = Date()
        expectSuccess(try tool(["pack", input, "-o", archive, "--append", "--start", "0"]))
        let window = UInt64(max(0.3, Date().timeIntervalSince(timed) * 1.1) * 1_000_000)
        let reset = try ArchiveWriter.open(at: archive)
        try reset.truncate(to: 1000)
        try reset.close()

        var random = SplitMix64(seed: 99)
        var kills = 0, finished = 0, previous = 1000, killedMidway = 0
        while kills < soakKills {
            let process = Process()
            process.executableURL = toolURL
            process.arguments = ["pack", input, "-o", archive, "--append", "--start", "0"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            let sizeBefore = fileSize(archive)
            try process.run()
            if random.next() % 3 == 0 {
                // Every third run is killed once the archive has grown, a random moment later:
                // while rows are being appended, however slow the machine.
                while process.isRunning && fileSize(archive) <= sizeBefore { usleep(1_000) }
                usleep(UInt32(random.next() % 20_000))
            } else {
                usleep(UInt32(random.next() % window))
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            if process.terminationReason == .uncaughtSignal { kills += 1 } else {
                #expect(process.terminationStatus == 0)
                finished += 1
            }
            let writer = try ArchiveWriter.open(at: archive)
            let count = writer.count
            #expect(count >= previous, "rows left by the previous run survive")
            if process.terminationReason == .uncaughtSignal && count > previous && count < total { killedMidway += 1 }
            let stored = try writer.rows(0..<count, as: Int64.self)
            #expect(stored == Array(truth[..<(count * 24)]), "after kill \(kills): the rows are the input's")
            // Now and then a rollback, so that the next run has work to do.
            if count == total || random.next() % 4 == 0 {
                try writer.truncate(to: Int(random.next() % UInt64(count + 1)))
            }
            previous = writer.count
            try writer.close()
        }
        #expect(killedMidway >= kills / 20, "kills land while rows are being appended (\(killedMidway))")
        print("kill table: archive-tool pack --append killed \(kills) times (\(killedMidway) after appending part of its input, \(finished) runs finished first)")
    }
}

/// The size of the file at `path`, 0 when there is none.
private func fileSize(_ path: String) -> Int {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : 0
}
