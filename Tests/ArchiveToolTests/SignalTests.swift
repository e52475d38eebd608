import Archive
import Foundation
import NumpyFile
import Testing
import TraceSynth

/// SIGINT or SIGTERM sent twice (as GNU `timeout` does) at random moments: the tool undoes
/// its work and exits 130 or 143, or, when the signals came after the work was complete,
/// keeps it and exits 0. Never anything in between, never a temporary file left.
///
/// The tool has installed its handlers once it reads its standard input (or has created its
/// temporary file): the tests wait for that, never for a time. The delays below only choose
/// the moments the signals land at.
@Suite(.serialized, .tags(.processes, .slow)) struct SignalTests {
    static let rounds = 10

    /// A running `archive-tool` with its standard input on a pipe and stderr in a file.
    final class Child {
        let process = Process()
        let input = Pipe()
        let errorPath: String

        init(_ arguments: [String], in dir: TemporaryDirectory) throws {
            ignoreBrokenPipes
            process.executableURL = toolURL
            process.arguments = arguments
            process.standardInput = input
            process.standardOutput = FileHandle.nullDevice
            errorPath = dir.file("stderr-\(UUID().uuidString)")
            _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: errorPath)
            try process.run()
        }

        /// Writes `data` to the child's standard input; false when the child stopped reading.
        @discardableResult
        func feed(_ data: Data) -> Bool {
            (try? input.fileHandleForWriting.write(contentsOf: data)) != nil
        }

        func closeInput() { try? input.fileHandleForWriting.close() }

        /// Sends `signal` if the child has not exited yet.
        func send(_ signal: Int32) {
            if process.isRunning { kill(process.processIdentifier, signal) }
        }

        /// Waits for the exit; the status, and stderr (removed).
        func finish() -> (status: Int32, byExit: Bool, stderr: String) {
            closeInput()
            process.waitUntilExit()
            let stderr = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(atPath: errorPath)
            return (process.terminationStatus, process.terminationReason == .exit, stderr)
        }
    }

    /// Sends `signal` twice, a random moment apart.
    static func signalTwice(_ child: Child, _ signal: Int32, _ random: inout SplitMix64) {
        child.send(signal)
        usleep(UInt32(random.next() % 20_000))
        child.send(signal)
    }

    /// `pack - --append` from a pipe: signalled twice while its input arrives (a prefix of
    /// random length written, which the tool has partly read) or after (a random delay within
    /// the time a whole run takes). Undone means the archive is byte for byte as before, and
    /// the same input sent again appends correctly.
    @Test func packAppendSignalledTwice() throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.moe"), input = dir.file("in.npy"), head = dir.file("head.npy")
        let total = 150_000
        let truth = smallTrace(rows: total, seed: 4)
        try writeNpy(input, truth, shape: [total, 4, 2], dtype: .uint8)
        try writeNpy(head, slice(truth, rows: 0..<1000, perRow: 8), shape: [1000, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", head, "-o", archive, "--experts", "16", "--block-rows", "4096"]))
        let data = try #require(fileBytes(input))
        let arguments = ["pack", "-", "-o", archive, "--append", "--start", "0"]

        let timed = Date()
        expectSuccess(try tool(arguments, stdin: data))
        let window = UInt64(max(0.05, Date().timeIntervalSince(timed)) * 1_000_000)
        try Self.truncate(archive, to: 1000)

        var random = SplitMix64(seed: 11)
        var undone = 0, kept = 0
        for round in 0..<Self.rounds {
            let before = try #require(fileBytes(archive))
            let entries = dir.entries()
            let signal = round % 2 == 0 ? SIGINT : SIGTERM
            let child = try Child(arguments, in: dir)
            if round % 3 != 2 {
                // More than a pipe holds: once written, the tool has read part of it.
                let prefix = 256 << 10 + Int(random.next() % UInt64(data.count - (256 << 10)))
                child.feed(data.prefix(prefix))
                Self.signalTwice(child, signal, &random)
                child.feed(data.dropFirst(prefix))
            } else {
                child.feed(data)
                child.closeInput()
                usleep(UInt32(random.next() % window))
                Self.signalTwice(child, signal, &random)
            }
            let result = child.finish()
            #expect(result.byExit, "round \(round): the tool exited, not killed by the signal")
            if result.status == 0 {
                kept += 1
                #expect(try archiveRows(archive) == truth, "round \(round): completed, every row kept")
            } else {
                undone += 1
                #expect(result.status == 128 + signal, "round \(round): \(result.stderr)")
                #expect(result.stderr.contains("interrupted by \(signal == SIGINT ? "SIGINT" : "SIGTERM")"), "\(result.stderr)")
                #expect(fileBytes(archive) == before, "round \(round): the archive is byte for byte as before")
            }
            #expect(dir.entries() == entries, "round \(round): no temporary file left")
            // The same input again appends where the archive stands.
            expectSuccess(try tool(arguments, stdin: data))
            #expect(try archiveRows(archive) == truth, "round \(round): re-sent input appended correctly")
            try Self.truncate(archive, to: 1000)
        }
        #expect(undone >= Self.rounds / 2, "signals land while the tool works (\(undone) undone, \(kept) kept)")
        print("signal table: pack --append signalled twice \(Self.rounds) times: \(undone) undone (exit 130/143), \(kept) complete first (exit 0), 0 wrong")
    }

    /// A pipe that goes silent (its writer neither writes nor closes): one SIGINT still stops
    /// `pack -` at once, as the signal cuts the read short. (Were it retried, the tool would
    /// wait for input forever: the safety net below closes the pipe after a minute, and the
    /// test then fails.)
    @Test func silentPipeIsInterrupted() throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.moe"), input = dir.file("in.npy")
        let values = smallTrace(rows: 100_000, seed: 6)
        try writeNpy(input, values, shape: [100_000, 4, 2], dtype: .uint8)
        try writeNpy(dir.file("head.npy"), slice(values, rows: 0..<10, perRow: 8), shape: [10, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", dir.file("head.npy"), "-o", archive, "--experts", "16"]))
        let before = try #require(fileBytes(archive))
        let data = try #require(fileBytes(input))
        for (arguments, signal) in [(["pack", "-", "-o", archive, "--append"], SIGINT),
                                    (["pack", "-", "-o", dir.file("new.moe"), "--experts", "16"], SIGTERM)] {
            let child = try Child(arguments, in: dir)
            child.feed(data.prefix(256 << 10))  // more than a pipe holds: the tool is reading
            child.send(signal)
            let exited = DispatchSemaphore(value: 0)
            let process = child.process
            DispatchQueue.global().async { process.waitUntilExit(); exited.signal() }
            let stoppedBySignal = exited.wait(timeout: .now() + 60) == .success
            let result = child.finish()
            #expect(stoppedBySignal, "\(arguments): the signal stopped a read from a silent pipe")
            #expect(result.status == 128 + signal, "\(result.stderr)")
            #expect(fileBytes(archive) == before)
            #expect(dir.entries() == ["a.moe", "head.npy", "in.npy"], "\(dir.entries())")
        }
    }

    /// A new `pack`, `unpack` and `synth` signalled twice: the output is either absent (130,
    /// 143) or complete (0), and no temporary file remains.
    @Test func newOutputsSignalledTwice() throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.moe"), input = dir.file("in.npy")
        let values = smallTrace(rows: 150_000, seed: 5)
        try writeNpy(input, values, shape: [150_000, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16"]))
        let data = try #require(fileBytes(input))
        var random = SplitMix64(seed: 12)
        var undone = 0
        for round in 0..<6 {
            let signal = round % 2 == 0 ? SIGINT : SIGTERM
            let output: String, child: Child
            switch round % 3 {
            case 0:
                output = dir.file("new.moe")
                child = try Child(["pack", "-", "-o", output, "--experts", "16"], in: dir)
                let prefix = 256 << 10 + Int(random.next() % UInt64(data.count - (256 << 10)))
                child.feed(data.prefix(prefix))
                Self.signalTwice(child, signal, &random)
                child.feed(data.dropFirst(prefix))
            case 1:
                output = dir.file("out.npy")
                child = try Child(["unpack", archive, "-o", output], in: dir)
                Self.waitForTemporaryFile(of: child, in: dir)
                Self.signalTwice(child, signal, &random)
            default:
                output = dir.file("synth.npy")
                child = try Child(["synth", "--model", "mixtral-8x7b", "--tokens", "100000", "-o", output], in: dir)
                Self.waitForTemporaryFile(of: child, in: dir)
                Self.signalTwice(child, signal, &random)
            }
            let result = child.finish()
            #expect(result.byExit, "round \(round): the tool exited, not killed by the signal")
            if result.status == 0 {
                #expect(FileManager.default.fileExists(atPath: output), "round \(round): complete output kept")
                if round % 3 == 0 { #expect(try archiveRows(output) == values) }
                if round % 3 == 1 { #expect(try readNpy(output).values == values) }
            } else {
                undone += 1
                #expect(result.status == 128 + signal, "round \(round): \(result.stderr)")
                #expect(!FileManager.default.fileExists(atPath: output), "round \(round): no output")
            }
            #expect(dir.entries() == ["a.moe", "in.npy"] + (result.status == 0 ? [output.split(separator: "/").last.map(String.init)!] : []),
                    "round \(round): no temporary file: \(dir.entries())")
            try? FileManager.default.removeItem(atPath: output)
        }
        #expect(undone >= 3, "signals land while the tools work (\(undone) of 6 undone)")
    }

    /// Waits until the child has created a hidden temporary file (its handlers are installed
    /// by then) or has exited.
    static func waitForTemporaryFile(of child: Child, in dir: TemporaryDirectory) {
        while child.process.isRunning && !dir.entries().contains(where: { $0.hasPrefix(".") }) {
            usleep(1000)
        }
    }

    static func truncate(_ archive: String, to rows: Int) throws {
        let writer = try ArchiveWriter.open(at: archive)
        try writer.truncate(to: rows)
        try writer.close()
    }
}
