import Archive
import Foundation
import NumpyFile
import Testing
import TraceSynth

/// Modification and status-change times of a file, in nanoseconds: a write or truncation
/// (even one undone) changes them, opening, locking or fsync does not.
func fileTimes(_ path: String) -> [Int] {
    var status = stat()
    guard stat(path, &status) == 0 else { return [] }
    return [status.st_mtim.tv_sec * 1_000_000_000 + status.st_mtim.tv_nsec,
            status.st_ctim.tv_sec * 1_000_000_000 + status.st_ctim.tv_nsec]
}

/// What the command line promises about its arguments, its output streams and its outputs.
@Suite(.tags(.processes)) struct CommandLineTests {
    /// Argument errors are one line with exit 64; `help` of an unknown command too.
    @Test func argumentErrorsAreOneLine() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy")
        try writeNpy(input, smallTrace(rows: 10), shape: [10, 4, 2], dtype: .uint8)
        let cases: [([String], String)] = [
            (["help", "bogus"], "help: no command 'bogus'; the commands are pack, unpack"),
            (["pack"], "Missing expected argument '<input.npy>' (see 'archive-tool pack --help')"),
            (["pack", input, "-o", dir.file("a"), "--frobnicate"], "Unknown option '--frobnicate'"),
            (["pack", input, "-o", dir.file("a"), "--experts"], "Missing value for '--experts <E>'"),
            // A negative value needs no '=': it reaches the range check.
            (["pack", input, "-o", dir.file("a"), "--experts", "-5"], "--experts must be in 2...65536, got -5"),
            (["pack", input, "-o", dir.file("a"), "--append", "--start", "-3"], "--start must be a position (0 or more), got -3"),
            (["truncate", dir.file("a"), "--to", "-1"], "--to must be 0 or more rows, not -1"),
        ]
        for (arguments, message) in cases {
            let result = try tool(arguments)
            expectFailure(result, status: 64, message)
        }
        expectSuccess(try tool(["help", "pack"]))
        #expect(dir.entries() == ["in.npy"])
    }

    /// The help of --block-rows says what pack accepts: any count from 1 to the schema's limit.
    @Test func blockRowsAsTheHelpSays() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy"), archive = dir.file("a.moe")
        let help = try tool(["pack", "--help"])
        let words = help.stdoutText.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(words.contains("Rows per block of a new archive: 1 or more, at most 2^26 stored ids a block"), "\(words)")
        let values = smallTrace(rows: 100)
        try writeNpy(input, values, shape: [100, 4, 2], dtype: .uint8)
        for rows in [1, 24, 100] {
            expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16", "--block-rows", "\(rows)", "--force"]))
            #expect(try ArchiveReader(path: archive).blockRows == rows)
            #expect(try archiveRows(archive) == values)
        }
        expectFailure(try tool(["pack", input, "-o", archive, "--experts", "16", "--block-rows", "\(1 << 24)", "--force"]),
                      status: 1, "block rows must be in 1...8388608")
    }

    /// `rows`, `stat`, `verify`, `models`, `salvage` (and `unpack -o -`) fail with a message when standard
    /// output cannot be written (a full disk: /dev/full).
    @Test func writeErrorsOnStandardOutput() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy"), archive = dir.file("a.moe")
        try writeNpy(input, smallTrace(rows: 100), shape: [100, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16"]))
        for arguments in [["rows", archive], ["stat", archive], ["stat", archive, "--json"], ["verify", archive], ["models"], ["salvage", archive],
                          ["unpack", archive, "-o", "-"]] {
            let result = try tool(arguments, stdoutPath: "/dev/full")
            expectFailure(result, status: 4, "No space left on device")
        }
    }

    /// A reader that closes the pipe early (`| head`) ends `unpack -o -` and `rows` quietly, status 0.
    @Test func closedPipeEndsQuietly() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy"), archive = dir.file("a.moe")
        try writeNpy(input, smallTrace(rows: 40_000), shape: [40_000, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16"]))
        for arguments in [["unpack", archive, "-o", "-"], ["rows", archive]] {
            let process = Process(), output = Pipe()
            process.executableURL = toolURL
            process.arguments = arguments
            process.standardOutput = output
            let errorPath = dir.file("stderr")
            _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: errorPath)
            try process.run()
            // Far less than the output (320 KB as .npy, more as text), more than a pipe holds.
            let head = output.fileHandleForReading.readData(ofLength: 1000)
            #expect(head.count == 1000)
            try output.fileHandleForReading.close()
            process.waitUntilExit()
            #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(arguments)")
            #expect(try String(contentsOfFile: errorPath, encoding: .utf8).isEmpty, "\(arguments): nothing on stderr")
        }
    }

    /// `-o PATH --force` replaces a regular file only: a FIFO or a symbolic link is refused
    /// (exit 2) and left as it was.
    @Test func forceReplacesOnlyRegularFiles() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy"), archive = dir.file("a.moe")
        try writeNpy(input, smallTrace(rows: 10), shape: [10, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16"]))
        let target = dir.file("target")
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: target))
        let fifo = dir.file("fifo"), link = dir.file("link")
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(symlink(target, link) == 0)
        for (path, kind) in [(fifo, "FIFO"), (link, "symbolic link")] {
            for arguments in [["pack", input, "-o", path, "--experts", "16", "--force"],
                              ["unpack", archive, "-o", path, "--force"],
                              ["synth", "--model", "mixtral-8x7b", "--tokens", "10", "-o", path, "--force"],
                              ["salvage", archive, "-o", path, "--force"]] {
                expectFailure(try tool(arguments), status: 2, "\(path): is a \(kind), not a regular file; only a regular file is replaced")
            }
        }
        var status = stat()
        #expect(lstat(fifo, &status) == 0 && (status.st_mode & S_IFMT) == S_IFIFO)
        #expect(lstat(link, &status) == 0 && (status.st_mode & S_IFMT) == S_IFLNK)
        #expect(fileBytes(target) == Data("keep me".utf8))
        #expect(dir.entries() == ["a.moe", "fifo", "in.npy", "link", "target"])
    }

    /// Outputs whose names are 243 to 255 bytes long are written (the temporary names beside
    /// them are cut to fit NAME_MAX).
    @Test func longOutputNames() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy")
        let values = smallTrace(rows: 10)
        try writeNpy(input, values, shape: [10, 4, 2], dtype: .uint8)
        for length in [243, 255] {
            let archive = dir.file(String(repeating: "a", count: length - 4) + ".moe")
            let unpacked = dir.file(String(repeating: "u", count: length - 4) + ".npy")
            let synthesized = dir.file(String(repeating: "s", count: length - 4) + ".npy")
            expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16"]))
            expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16", "--force"]))
            expectSuccess(try tool(["unpack", archive, "-o", unpacked]))
            #expect(try readNpy(unpacked).values == values)
            expectSuccess(try tool(["synth", "--model", "mixtral-8x7b", "--tokens", "10", "-o", synthesized]))
        }
        #expect(dir.entries().count == 7, "\(dir.entries())")
    }

    /// `stat` of an archive without rows shows no ratio (not "0.00x"); --json gives null.
    @Test func emptyArchiveHasNoRatio() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy"), archive = dir.file("a.moe")
        try writeNpy(input, [], shape: [0, 4, 2], dtype: .uint8)
        let packed = try tool(["pack", input, "-o", archive, "--experts", "16"])
        expectSuccess(packed)
        #expect(!packed.stderr.contains("0.00x"), "\(packed.stderr)")
        let text = try tool(["stat", archive])
        expectSuccess(text)
        #expect(!text.stdoutText.contains("0.00x") && text.stdoutText.contains("ratio        none (no rows)"), "\(text.stdoutText)")
        let json = try tool(["stat", archive, "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: json.stdout) as? [String: Any])
        #expect(object["ratio_int32"] is NSNull && object["ratio_fixed_width"] is NSNull)
        #expect(object["rows"] as? Int == 0)
    }

    /// Help and README name archives `.moe`.
    @Test func helpNamesMoeFiles() throws {
        for command in ["pack", "unpack", "stat", "verify", "rows", "truncate"] {
            let help = try tool([command, "--help"])
            #expect(!help.stdoutText.contains(".arch"), "\(command)")
            #expect(help.stdoutText.contains(".moe"), "\(command)")
        }
    }
}

/// Ids on dense layers are not stored: non-zero ones are counted in a warning, or refused
/// with --strict.
@Suite(.tags(.processes)) struct DenseLayerIDTests {
    @Test func warnedOrRefused() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy"), archive = dir.file("a.moe")
        let schema = try Schema(layers: 4, topk: 2, experts: 16, denseLayers: [0, 2])
        var values = PositionalRows(schema: schema, seed: 3).rows(0..<200, as: Int64.self)
        values[150 * 8 + 2 * 2 + 1] = 9  // row 150, layer 2, slot 1
        values[170 * 8 + 0] = 4
        try writeNpy(input, values, shape: [200, 4, 2], dtype: .int16)
        let warned = try tool(["pack", input, "-o", archive, "--experts", "16", "--dense-layers", "0,2"])
        expectSuccess(warned)
        #expect(warned.stderr.contains("archive-tool: warning: \(input): 2 non-zero ids on dense layers 0,2 (the first: id 9 at row 150, layer 2, slot 1) are not stored and read back as 0"),
                "\(warned.stderr)")
        let quiet = try tool(["pack", input, "-o", archive, "--experts", "16", "--dense-layers", "0,2", "--force", "--quiet"])
        #expect(quiet.stderr.contains("warning: \(input): 2 non-zero ids"), "a warning is shown with --quiet")
        let stored = try archiveRows(archive)
        #expect(stored[150 * 8 + 5] == 0 && stored[170 * 8] == 0)

        let entries = dir.entries()
        expectFailure(try tool(["pack", input, "-o", dir.file("strict.moe"), "--experts", "16", "--dense-layers", "0,2", "--strict"]),
                      status: 1, "\(input): 2 non-zero ids on dense layers 0,2 (the first: id 9 at row 150, layer 2, slot 1) would be lost")
        #expect(dir.entries() == entries, "no archive and no temporary file")
        let before = fileBytes(archive), times = fileTimes(archive)
        expectFailure(try tool(["pack", input, "-o", archive, "--append", "--start", "100", "--strict"]),
                      status: 1, "\(input): 2 non-zero ids on dense layers 0,2")
        #expect(fileBytes(archive) == before && fileTimes(archive) == times, "the archive was not written")
        // A clean input passes --strict silently.
        try writeNpy(input, PositionalRows(schema: schema, seed: 3).rows(0..<300, as: Int64.self), shape: [300, 4, 2], dtype: .int16)
        let clean = try tool(["pack", input, "-o", archive, "--append", "--strict"])
        expectSuccess(clean)
        #expect(!clean.stderr.contains("warning"), "\(clean.stderr)")
    }
}

/// `ulimit -f`: a write past the limit fails with EFBIG, reported (exit 4), and undone.
@Suite(.tags(.processes)) struct FileSizeLimitTests {
    @Test func writesPastTheLimitAreUndone() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy"), archive = dir.file("a.moe"), head = dir.file("head.npy")
        let values = smallTrace(rows: 20_000)
        try writeNpy(input, values, shape: [20_000, 4, 2], dtype: .uint8)
        try writeNpy(head, slice(values, rows: 0..<100, perRow: 8), shape: [100, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", head, "-o", archive, "--experts", "16", "--block-rows", "512"]))
        let before = try #require(fileBytes(archive))
        // Room for a block or two more, not for 20,000 rows.
        let blocks = before.count / 512 + 3
        let entries = dir.entries()
        for result in [try toolLimited(fileBlocks: blocks, ["pack", input, "-o", archive, "--append"]),
                       try toolLimited(fileBlocks: blocks, ["pack", "-", "-o", archive, "--append"], stdin: fileBytes(input)),
                       try toolLimited(fileBlocks: blocks, ["pack", input, "-o", dir.file("new.moe"), "--experts", "16", "--block-rows", "512"]),
                       try toolLimited(fileBlocks: 1, ["unpack", archive, "-o", dir.file("out.npy")]),
                       try toolLimited(fileBlocks: 2, ["synth", "--model", "mixtral-8x7b", "--tokens", "1000", "-o", dir.file("s.npy")])] {
            expectFailure(result, status: 4, "File too large")
            #expect(fileBytes(archive) == before, "the archive is as it was")
            #expect(dir.entries() == entries, "no output, no temporary file")
        }
        expectSuccess(try tool(["pack", input, "-o", archive, "--append", "--start", "0"]))
        #expect(try archiveRows(archive) == values)
    }
}
