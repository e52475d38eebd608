import Archive
import Foundation
import NumpyFile
import Testing
import TraceSynth

/// A small schema for fast tests: 4 layers x top-2 of 16 experts.
let smallSchema = try! Schema(layers: 4, topk: 2, experts: 16)

/// `rows` realistic rows of `smallSchema`, token-major.
func smallTrace(rows: Int, seed: UInt64 = 1) -> [Int64] {
    var synthesizer = TraceSynthesizer(schema: smallSchema, seed: seed)
    return synthesizer.rows(rows, as: Int64.self)
}

/// Every row of an archive, read with the library.
func archiveRows(_ path: String) throws -> [Int64] {
    let reader = try ArchiveReader(path: path)
    return try reader.rows(0..<reader.count, as: Int64.self)
}

@Suite(.tags(.processes)) struct RowsTests {
    @Test func rowSlices() throws {
        let dir = TemporaryDirectory(), input = dir.file("t.npy"), archive = dir.file("t.arch")
        let values = smallTrace(rows: 1000)
        try writeNpy(input, values, shape: [1000, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16", "--block-rows", "64"]))
        let cases: [(String, Range<Int>)] = [
            (":100", 0..<100), ("5:", 5..<1000), ("10:20", 10..<20), ("-7:", 993..<1000), ("-10:-5", 990..<995),
            ("3:3", 3..<3), (":", 0..<1000), ("63:65", 63..<65), ("0:1000", 0..<1000),
        ]
        for (text, range) in cases {
            let output = dir.file("slice.npy")
            expectSuccess(try tool(["unpack", archive, "-o", output, "--rows", text, "--force"]))
            let back = try readNpy(output)
            #expect(back.shape == [range.count, 4, 2], "--rows \(text)")
            #expect(back.values == slice(values, rows: range, perRow: 8), "--rows \(text)")
        }
        // The = form too.
        let output = dir.file("eq.npy")
        expectSuccess(try tool(["unpack", archive, "-o", output, "--rows=-3:"]))
        #expect(try readNpy(output).values == slice(values, rows: 997..<1000, perRow: 8))

        // The rows command prints the same ids as text.
        let text = try tool(["rows", archive, "--rows", "998:"])
        expectSuccess(text)
        var expected = ""
        for position in 998..<1000 {
            var layers: [String] = []
            for layer in 0..<4 {
                let ids: [String] = (0..<2).map { slot in String(values[position * 8 + layer * 2 + slot]) }
                layers.append(ids.joined(separator: " "))
            }
            expected += "\(position): " + layers.joined(separator: " | ") + "\n"
        }
        #expect(text.stdoutText == expected)
    }
}

/// The append scenarios of DOMAIN.md (LMDeploy #4599), through the command line: one layer,
/// top-2, batch row i of rows(n) is [2i, 2i+1].
@Suite(.tags(.processes)) struct AppendTests {
    func rows(_ n: Int) -> [Int64] { (0..<n).flatMap { [Int64(2 * $0), Int64(2 * $0 + 1)] } }

    /// Packs `batch` at `start` (creating the archive for the first batch).
    @discardableResult
    func append(_ batch: [Int64], at start: Int, to archive: String, in dir: TemporaryDirectory) throws -> RunResult {
        let input = dir.file("batch.npy")
        try writeNpy(input, batch, shape: [batch.count / 2, 1, 2], dtype: .int32)
        if !FileManager.default.fileExists(atPath: archive) {
            precondition(start == 0)
            return try tool(["pack", input, "-o", archive, "--experts", "16"])
        }
        return try tool(["pack", input, "-o", archive, "--append", "--start", "\(start)"])
    }

    @Test func evictThenReprefill() throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.arch")
        expectSuccess(try append(rows(3), at: 0, to: archive, in: dir))
        expectSuccess(try append(rows(3), at: 3, to: archive, in: dir))
        let last = try append(rows(7), at: 0, to: archive, in: dir)
        expectSuccess(last)
        #expect(last.stderr.contains("appended 1 rows of \(dir.file("batch.npy")) as positions 6..<7"), "\(last.stderr)")
        #expect(last.stderr.contains("skipped 6 (positions 0..<6) already stored (3 of them differ; the stored rows are kept)"), "\(last.stderr)")
        #expect(try archiveRows(archive) == rows(3) + rows(3) + [12, 13])
    }

    @Test func reprefillThenClippedDecode() throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.arch")
        try append(rows(3), at: 0, to: archive, in: dir)
        try append(rows(4), at: 0, to: archive, in: dir)
        expectSuccess(try append(Array(rows(3)[..<4]), at: 4, to: archive, in: dir))
        #expect(try archiveRows(archive) == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3])
    }

    @Test func autoregressiveEvictLongerReprefill() throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.arch")
        try append(rows(3), at: 0, to: archive, in: dir)
        try append(rows(1), at: 3, to: archive, in: dir)
        try append(rows(5), at: 0, to: archive, in: dir)
        #expect(try archiveRows(archive) == [0, 1, 2, 3, 4, 5, 0, 1, 8, 9])
    }

    @Test func chunkedPrefillFullCover() throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.arch")
        try append(rows(3), at: 0, to: archive, in: dir)
        try append(rows(3), at: 3, to: archive, in: dir)
        let before = fileBytes(archive)
        let covered = try append(rows(1), at: 5, to: archive, in: dir)
        expectSuccess(covered)
        #expect(covered.stderr.contains("appended 0 rows: all 1 of \(dir.file("batch.npy")) (positions 5..<6) are already stored (1 of them differ"),
                "\(covered.stderr)")
        #expect(try archiveRows(archive) == rows(3) + rows(3))
        #expect(fileBytes(archive) == before, "a covered batch changes nothing")
    }

    @Test func gapIsRefused() throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.arch")
        try append(rows(3), at: 0, to: archive, in: dir)
        let before = fileBytes(archive)
        let gap = try append(rows(2), at: 5, to: archive, in: dir)
        expectFailure(gap, status: 2, "batch starts at position 5 but the archive holds 3 rows")
        #expect(fileBytes(archive) == before)
        #expect(try archiveRows(archive) == rows(3))
    }

    /// Default --start: the archive's row count; overlapping identical rows count as not differing.
    @Test func appendAtTheEndAndIdenticalOverlap() throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.arch")
        let values = smallTrace(rows: 3000)
        let first = dir.file("first.npy"), second = dir.file("second.npy"), overlap = dir.file("overlap.npy")
        try writeNpy(first, slice(values, rows: 0..<1000, perRow: 8), shape: [1000, 4, 2], dtype: .uint8)
        try writeNpy(second, slice(values, rows: 1000..<2000, perRow: 8), shape: [1000, 4, 2], dtype: .int64)
        try writeNpy(overlap, slice(values, rows: 1500..<3000, perRow: 8), shape: [1500, 4, 2], dtype: .uint16)
        expectSuccess(try tool(["pack", first, "-o", archive, "--experts", "16"]))
        let atEnd = try tool(["pack", second, "-o", archive, "--append"])
        expectSuccess(atEnd)
        #expect(atEnd.stderr.contains("appended 1,000 rows of \(second) as positions 1000..<2000; now 2,000 rows (was 1,000)"), "\(atEnd.stderr)")
        let overlapping = try tool(["pack", overlap, "-o", archive, "--append", "--start", "1500"])
        expectSuccess(overlapping)
        #expect(overlapping.stderr.contains("appended 1,000 rows of \(overlap) as positions 2000..<3000"), "\(overlapping.stderr)")
        #expect(overlapping.stderr.contains("skipped 500 (positions 1500..<2000) already stored (0 of them differ"), "\(overlapping.stderr)")
        #expect(try archiveRows(archive) == values)
        // Quiet: nothing on stderr.
        let quiet = try tool(["pack", overlap, "-o", archive, "--append", "--start", "1500", "--quiet"])
        expectSuccess(quiet)
        #expect(quiet.stderr.isEmpty)
    }

    /// A 2-D input [tokens, layers*topk] appends with the archive's layer count.
    @Test func flatInput() throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.arch"), flat = dir.file("flat.npy")
        let values = smallTrace(rows: 750)
        try writeNpy(flat, slice(values, rows: 0..<500, perRow: 8), shape: [500, 8], dtype: .int16)
        expectSuccess(try tool(["pack", flat, "-o", archive, "--experts", "16", "--layers", "4"]))
        #expect(try ArchiveReader(path: archive).schema == smallSchema)
        try writeNpy(flat, slice(values, rows: 250..<750, perRow: 8), shape: [500, 8], dtype: .uint32)
        expectSuccess(try tool(["pack", flat, "-o", archive, "--append", "--start", "250"]))
        #expect(try archiveRows(archive) == values)
    }
}

@Suite(.tags(.processes)) struct StreamTests {
    @Test func packFromStdinUnpackToStdout() throws {
        let dir = TemporaryDirectory(), archive = dir.file("s.arch"), file = dir.file("s.npy"), input = dir.file("in.npy")
        let values = smallTrace(rows: 6000, seed: 9)
        try writeNpy(input, slice(values, rows: 0..<4000, perRow: 8), shape: [4000, 4, 2], dtype: .uint16)
        let packed = try tool(["pack", "-", "-o", archive, "--experts", "16"], stdin: fileBytes(input))
        expectSuccess(packed)
        #expect(try archiveRows(archive) == slice(values, rows: 0..<4000, perRow: 8))
        #expect(try ArchiveReader(path: archive).metadata["source"] == "<stdin>")

        // Append from stdin, overlapping: no --experts needed.
        try writeNpy(input, slice(values, rows: 3000..<6000, perRow: 8), shape: [3000, 4, 2], dtype: .int64)
        let appended = try tool(["pack", "-", "-o", archive, "--append", "--start", "3000"], stdin: fileBytes(input))
        expectSuccess(appended)
        #expect(appended.stderr.contains("appended 2,000 rows of <stdin> as positions 4000..<6000, skipped 1,000 (positions 3000..<4000)"),
                "\(appended.stderr)")
        #expect(try archiveRows(archive) == values)

        let piped = try tool(["unpack", archive, "-o", "-", "--dtype", "int32"])
        expectSuccess(piped)
        expectSuccess(try tool(["unpack", archive, "-o", file, "--dtype", "int32"]))
        #expect(piped.stdout == fileBytes(file), "stdout holds the same .npy as the file")
        #expect(try readNpy(piped.stdout) == NumpyArray(dtype: .int32, shape: [6000, 4, 2], values: values))
    }

    @Test func stdinNeedsExperts() throws {
        let dir = TemporaryDirectory(), archive = dir.file("s.arch"), input = dir.file("in.npy")
        try writeNpy(input, smallTrace(rows: 10), shape: [10, 4, 2], dtype: .uint8)
        let result = try tool(["pack", "-", "-o", archive], stdin: fileBytes(input))
        #expect(result.status == 64)
        #expect(result.stderr.contains("reading standard input needs --experts"))
        #expect(!FileManager.default.fileExists(atPath: archive))
    }

    /// A stream that ends early after several chunks (the input is over 16 MiB): the append is
    /// undone, the archive is byte for byte as before.
    @Test func truncatedStreamAfterSeveralChunksRollsBack() throws {
        let dir = TemporaryDirectory()
        let (input, archive, values) = try wideFixture(dir, rows: 1100)
        let before = try #require(fileBytes(archive))
        var data = try #require(fileBytes(input))
        data.removeLast(200_000)
        let result = try tool(["pack", "-", "-o", archive, "--append", "--start", "0"], stdin: data)
        expectFailure(result, status: 1, "<stdin>: data is truncated")
        #expect(fileBytes(archive) == before, "the archive is as it was")
        #expect(try archiveRows(archive) == slice(values, rows: 0..<100, perRow: 4096))
    }
}

/// A wide schema (64 layers x top-64 of 300 experts, rows of 32 KiB as int64: 512 rows a
/// 16 MiB chunk) and an input of `rows` rows over several chunks; the archive holds its first 100.
func wideFixture(_ dir: TemporaryDirectory, rows: Int) throws -> (input: String, archive: String, values: [Int64]) {
    // Arithmetic ids (the synthesizer is slow on 64 slots in a debug build).
    var values = [Int64](repeating: 0, count: rows * 4096)
    var state: UInt64 = 5
    for i in values.indices {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        values[i] = Int64((state >> 33) % 300)
    }
    let input = dir.file("wide.npy"), head = dir.file("head.npy"), archive = dir.file("wide.arch")
    try writeNpy(input, values, shape: [rows, 64, 64], dtype: .int64)
    try writeNpy(head, slice(values, rows: 0..<100, perRow: 4096), shape: [100, 64, 64], dtype: .uint16)
    expectSuccess(try tool(["pack", head, "-o", archive, "--experts", "300"]))
    return (input, archive, values)
}
