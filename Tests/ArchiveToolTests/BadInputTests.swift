import Archive
import Foundation
import NumpyFile
import Testing
import TraceSynth

/// Every refusal: one `archive-tool: error:` line naming the file and what is at fault, a
/// documented exit status, and nothing changed on disk.
@Suite(.tags(.processes)) struct BadInputTests {
    struct Case {
        let name: String
        let arguments: [String]
        var stdin: Data? = nil
        let status: Int32
        let message: String
    }

    @Test func refusalsTable() throws {
        let dir = TemporaryDirectory()
        func path(_ name: String) -> String { dir.file(name) }
        let values = smallTrace(rows: 100)
        try writeNpy(path("base.npy"), values, shape: [100, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", path("base.npy"), "-o", path("base.arch"), "--experts", "16"]))
        expectSuccess(try tool(["pack", path("base.npy"), "-o", path("wide.arch"), "--experts", "300"]))
        let good = slice(values, rows: 0..<50, perRow: 8)
        try writeNpy(path("good.npy"), good, shape: [50, 4, 2], dtype: .uint8)
        var truncated = try #require(fileBytes(path("good.npy")))
        truncated.removeLast(10)
        try truncated.write(to: URL(fileURLWithPath: path("truncated.npy")))
        try rawNpy(shape: "(2, 4, 2)", data: Array(repeating: 1, count: 16), magic: Array("XNUMPY".utf8))
            .write(to: URL(fileURLWithPath: path("magic.npy")))
        try rawNpy(shape: "(50, 4, 2)", data: Array(repeating: 1, count: 100)).write(to: URL(fileURLWithPath: path("liar.npy")))
        try rawNpy(descr: "<f4", shape: "(2, 4, 2)", data: Array(repeating: 0, count: 64)).write(to: URL(fileURLWithPath: path("float.npy")))
        try rawNpy(fortran: true, shape: "(2, 4, 2)", data: Array(repeating: 1, count: 16)).write(to: URL(fileURLWithPath: path("fortran.npy")))
        try rawNpy(shape: "(2, 4, 2)", data: Array(repeating: 1, count: 16), major: 4).write(to: URL(fileURLWithPath: path("v4.npy")))
        try rawNpy(descr: ">i4", shape: "(2, 4, 2)", data: Array(repeating: 0, count: 64)).write(to: URL(fileURLWithPath: path("bigendian.npy")))
        var negative = good
        negative[17 * 8 + 2 * 2 + 1] = -1
        try writeNpy(path("negative.npy"), negative, shape: [50, 4, 2], dtype: .int16)
        var tooLarge = good
        tooLarge[5 * 8] = 16
        try writeNpy(path("large.npy"), tooLarge, shape: [50, 4, 2], dtype: .int32)
        try writeNpy(path("topk3.npy"), Array(repeating: 1, count: 50 * 12), shape: [50, 4, 3], dtype: .uint8)
        try writeNpy(path("flat.npy"), good, shape: [50, 8], dtype: .uint8)
        try writeNpy(path("flat7.npy"), Array(good[..<350]), shape: [50, 7], dtype: .uint8)
        try writeNpy(path("vector.npy"), Array(good[..<8]), shape: [8], dtype: .uint8)
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path("existing.arch")))
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path("existing.npy")))

        let cases: [Case] = [
            Case(name: "truncated npy", arguments: ["pack", path("truncated.npy"), "-o", path("new.arch"), "--experts", "16"],
                 status: 1, message: "truncated.npy: data is truncated: expected 400 bytes, got 390"),
            Case(name: "truncated npy, append", arguments: ["pack", path("truncated.npy"), "-o", path("base.arch"), "--append"],
                 status: 1, message: "truncated.npy: data is truncated"),
            Case(name: "wrong magic", arguments: ["pack", path("magic.npy"), "-o", path("new.arch"), "--experts", "16"],
                 status: 1, message: "magic.npy: not a .npy file"),
            Case(name: "header lies about the shape", arguments: ["pack", path("liar.npy"), "-o", path("base.arch"), "--append"],
                 status: 1, message: "liar.npy: data is truncated: expected 400 bytes, got 100"),
            Case(name: "float dtype", arguments: ["pack", path("float.npy"), "-o", path("new.arch"), "--experts", "16"],
                 status: 1, message: "float.npy: header field 'descr' is '<f4': float32 is not an integer type"),
            Case(name: "big-endian dtype", arguments: ["pack", path("bigendian.npy"), "-o", path("new.arch")],
                 status: 1, message: "big-endian int32 is not supported"),
            Case(name: "Fortran order", arguments: ["pack", path("fortran.npy"), "-o", path("new.arch"), "--experts", "16"],
                 status: 1, message: "fortran.npy: header field 'fortran_order' is True"),
            Case(name: "unsupported version", arguments: ["pack", path("v4.npy"), "-o", path("new.arch"), "--experts", "16"],
                 status: 1, message: "v4.npy: unsupported .npy format version 4.0"),
            Case(name: "negative id", arguments: ["pack", path("negative.npy"), "-o", path("new.arch"), "--experts", "16"],
                 status: 1, message: "negative.npy row 17: expert id -1 at layer 2, slot 1 is outside [0, 16)"),
            Case(name: "negative id, append", arguments: ["pack", path("negative.npy"), "-o", path("base.arch"), "--append"],
                 status: 1, message: "negative.npy row 17: expert id -1 at layer 2, slot 1 is outside [0, 16) (position 117 of"),
            Case(name: "id >= experts", arguments: ["pack", path("large.npy"), "-o", path("new.arch"), "--experts", "16"],
                 status: 1, message: "large.npy row 5: expert id 16 at layer 0, slot 0 is outside [0, 16)"),
            Case(name: "id >= experts, append", arguments: ["pack", path("large.npy"), "-o", path("base.arch"), "--append", "--start", "100"],
                 status: 1, message: "large.npy row 5: expert id 16 at layer 0, slot 0 is outside [0, 16) (position 105 of"),
            Case(name: "schema mismatch on append", arguments: ["pack", path("topk3.npy"), "-o", path("base.arch"), "--append"],
                 status: 2, message: "topk3.npy: rows of 4 layers x top-3 do not match the schema of"),
            Case(name: "experts mismatch on append", arguments: ["pack", path("good.npy"), "-o", path("base.arch"), "--append", "--experts", "32"],
                 status: 2, message: "--experts 32 does not match the schema of"),
            Case(name: "dense layers mismatch on append", arguments: ["pack", path("good.npy"), "-o", path("base.arch"), "--append", "--dense-layers", "0"],
                 status: 2, message: "--dense-layers 0 does not match the schema of"),
            Case(name: "gap on append", arguments: ["pack", path("good.npy"), "-o", path("base.arch"), "--append", "--start", "101"],
                 status: 2, message: "batch starts at position 101 but the archive holds 100 rows; appending it would leave a gap of 1 rows"),
            Case(name: "append to a missing archive", arguments: ["pack", path("good.npy"), "-o", path("missing.arch"), "--append"],
                 status: 4, message: "missing.arch: no such archive"),
            Case(name: "unwritable pack output", arguments: ["pack", path("good.npy"), "-o", path("no/such/dir/x.arch"), "--experts", "16"],
                 status: 4, message: "no/such/dir/x.arch: open failed: No such file or directory"),
            Case(name: "unwritable unpack output", arguments: ["unpack", path("base.arch"), "-o", path("no/such/dir/x.npy")],
                 status: 4, message: "no/such/dir/x.npy"),
            Case(name: "existing pack output", arguments: ["pack", path("good.npy"), "-o", path("existing.arch"), "--experts", "16"],
                 status: 2, message: "existing.arch: already exists; pass --force"),
            Case(name: "existing unpack output", arguments: ["unpack", path("base.arch"), "-o", path("existing.npy")],
                 status: 2, message: "existing.npy: file already exists; pass --force"),
            Case(name: "existing synth output", arguments: ["synth", "--model", "mixtral-8x7b", "--tokens", "10", "-o", path("existing.npy")],
                 status: 2, message: "existing.npy: file already exists; pass --force"),
            Case(name: "--rows out of range", arguments: ["unpack", path("base.arch"), "-o", path("x.npy"), "--rows", "50:101"],
                 status: 1, message: "base.arch: --rows 50:101 is outside the archive's 100 rows"),
            Case(name: "--rows reversed", arguments: ["unpack", path("base.arch"), "-o", path("x.npy"), "--rows", "20:10"],
                 status: 1, message: "base.arch: --rows 20:10 is reversed: it starts at position 20, after its end 10"),
            Case(name: "--rows reversed from the end", arguments: ["rows", path("base.arch"), "--rows=-5:-10"],
                 status: 1, message: "base.arch: --rows -5:-10 is reversed: it starts at position 95, after its end 90"),
            Case(name: "--dtype too narrow", arguments: ["unpack", path("wide.arch"), "-o", path("x.npy"), "--dtype", "uint8"],
                 status: 1, message: "wide.arch: --dtype uint8 cannot hold its expert ids (up to 299); use uint16 or wider"),
            Case(name: "--dtype too narrow for synth", arguments: ["synth", "--model", "kimi-k2", "--tokens", "10", "-o", path("x.npy"), "--dtype", "int8"],
                 status: 1, message: "--dtype int8 cannot hold the ids of kimi-k2 (up to 383)"),
            Case(name: "1-D input", arguments: ["pack", path("vector.npy"), "-o", path("new.arch"), "--experts", "16"],
                 status: 1, message: "vector.npy: shape (8,) is not [tokens, layers, topk]"),
            Case(name: "2-D input without --layers", arguments: ["pack", path("flat.npy"), "-o", path("new.arch"), "--experts", "16"],
                 status: 64, message: "flat.npy: shape (50, 8) is 2-D; pass --layers L"),
            Case(name: "2-D input, row not a multiple of --layers", arguments: ["pack", path("flat7.npy"), "-o", path("new.arch"), "--experts", "16", "--layers", "4"],
                 status: 1, message: "flat7.npy: shape (50, 7): a row of 7 ids is not 4 layers of equal top-k"),
            Case(name: "not an archive", arguments: ["unpack", path("good.npy"), "-o", path("x.npy")],
                 status: 3, message: "good.npy: damaged at byte 0: not an expert-trace archive"),
            Case(name: "verify not an archive", arguments: ["verify", path("good.npy")],
                 status: 3, message: "good.npy: damaged at byte 0"),
            Case(name: "stat of a missing archive", arguments: ["stat", path("missing.arch")],
                 status: 4, message: "missing.arch"),
            Case(name: "block rows too large", arguments: ["pack", path("good.npy"), "-o", path("new.arch"), "--experts", "16", "--block-rows", "100000000"],
                 status: 1, message: "block rows must be in 1..."),
        ]

        let guarded = ["base.arch", "wide.arch", "existing.arch", "existing.npy"].map(path)
        for item in cases {
            let before = guarded.map(fileBytes)
            let entries = dir.entries()
            let result = try tool(item.arguments, stdin: item.stdin)
            #expect(result.status == item.status, "\(item.name): exit status; stderr: \(result.stderr)")
            #expect(result.errorLines.count == 1 && result.stderr.hasPrefix("archive-tool: error: "),
                    "\(item.name): one error line: \(result.stderr)")
            #expect(result.stderr.contains(item.message), "\(item.name): '\(item.message)' in \(result.stderr)")
            #expect(result.stdout.isEmpty, "\(item.name): nothing on stdout")
            #expect(guarded.map(fileBytes) == before, "\(item.name): files unchanged")
            #expect(dir.entries() == entries, "\(item.name): no file created or left behind")
        }
    }

    /// ArgumentParser's usage errors (and ours found before running) exit 64.
    @Test func usageErrors() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy")
        try writeNpy(input, smallTrace(rows: 10), shape: [10, 4, 2], dtype: .uint8)
        let cases: [([String], String)] = [
            (["pack", input, "-o", dir.file("a"), "--meta", "novalue"], "--meta 'novalue' has no '='"),
            (["pack", input, "-o", dir.file("a"), "--meta", "k=1", "--meta", "k=2"], "--meta key 'k' is given twice"),
            (["pack", input, "-o", dir.file("a"), "--start", "5"], "--start applies to --append"),
            (["pack", input, "-o", dir.file("a"), "--append", "--force"], "--append never overwrites"),
            (["pack", input, "-o", dir.file("a"), "--dense-layers", "0,x"], "'x' is not one"),
            (["pack", input, "-o", dir.file("a"), "--experts", "1"], "--experts must be in 2...65536"),
            (["pack", input, "-o", "-"], "cannot be written to standard output"),
            (["unpack", dir.file("a"), "-o", dir.file("b"), "--dtype", "float32"], "unknown dtype 'float32'"),
            (["unpack", dir.file("a"), "-o", dir.file("b"), "--rows", "5"], "--rows"),
            (["synth", "--model", "gpt-5", "--tokens", "10", "-o", dir.file("b")], "unknown model 'gpt-5'"),
            (["frobnicate"], "frobnicate"),
        ]
        for (arguments, message) in cases {
            let result = try tool(arguments)
            #expect(result.status == 64, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(message), "\(arguments): '\(message)' in \(result.stderr)")
        }
        #expect(dir.entries() == ["in.npy"])
    }

    /// Another process holds the archive's writer lock: pack --append is refused, exit 2.
    @Test func lockedArchive() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy"), archive = dir.file("a.arch")
        try writeNpy(input, smallTrace(rows: 10), shape: [10, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16"]))
        let before = fileBytes(archive)
        let writer = try ArchiveWriter.open(at: archive)
        expectFailure(try tool(["pack", input, "-o", archive, "--append", "--start", "0"]), status: 2,
                      "a.arch: another writer has the archive open")
        expectFailure(try tool(["pack", input, "-o", archive, "--experts", "16", "--force"]), status: 2,
                      "a.arch: another writer has the archive open; not replacing it")
        try writer.close()
        #expect(fileBytes(archive) == before)
        expectSuccess(try tool(["pack", input, "-o", archive, "--append", "--start", "0"]))
    }

    /// An id out of range in the last row, three 16 MiB chunks in: the whole input is checked
    /// before any of it is written, from a file or from standard input, so the archive is not
    /// even touched (its modification time stays); a new archive leaves no file.
    @Test func badIdInTheLastRowIsRefusedBeforeWriting() throws {
        let dir = TemporaryDirectory()
        let (input, archive, values) = try wideFixture(dir, rows: 1100)
        var bad = values
        bad[1099 * 4096 + 7 * 64 + 3] = 300
        try writeNpy(input, bad, shape: [1100, 64, 64], dtype: .int64)
        let before = try #require(fileBytes(archive))
        let times = fileTimes(archive)
        let entries = dir.entries()
        expectFailure(try tool(["pack", input, "-o", archive, "--append", "--start", "0"]), status: 1,
                      "wide.npy row 1099: expert id 300 at layer 7, slot 3 is outside [0, 300)")
        #expect(fileBytes(archive) == before && fileTimes(archive) == times, "the archive was not written")
        expectFailure(try tool(["pack", "-", "-o", archive, "--append", "--start", "50"], stdin: fileBytes(input)), status: 1,
                      "<stdin> row 1099: expert id 300 at layer 7, slot 3 is outside [0, 300) (position 1149 of \(archive))")
        #expect(fileBytes(archive) == before && fileTimes(archive) == times, "the archive was not written")
        expectFailure(try tool(["pack", input, "-o", dir.file("new.moe"), "--experts", "300"]), status: 1,
                      "wide.npy row 1099: expert id 300 at layer 7, slot 3")
        #expect(dir.entries() == entries, "no archive and no temporary file left")
        // The same append without the bad id then works.
        try writeNpy(input, values, shape: [1100, 64, 64], dtype: .int64)
        expectSuccess(try tool(["pack", input, "-o", archive, "--append", "--start", "0", "--quiet"]))
        #expect(try archiveRows(archive) == values)
    }
}
