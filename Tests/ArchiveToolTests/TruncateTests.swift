import Archive
import Foundation
import Testing

/// `archive-tool truncate`: a rollback through the command line.
@Suite(.tags(.processes)) struct TruncateTests {
    /// Rows from the position on are gone, for readers too; the next append continues there,
    /// and re-sending the whole input from 0 restores every row.
    @Test func truncateThenAppendAgain() throws {
        let dir = TemporaryDirectory(), input = dir.file("t.npy"), archive = dir.file("t.arch")
        let values = smallTrace(rows: 1000)
        try writeNpy(input, values, shape: [1000, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16", "--block-rows", "64"]))

        let cut = try tool(["truncate", archive, "--to", "300"])
        expectSuccess(cut)
        #expect(cut.stdoutText.contains("1,000 -> 300 rows (700 discarded)"), "\(cut.stdoutText)")
        #expect(try archiveRows(archive) == slice(values, rows: 0..<300, perRow: 8))
        #expect(try ArchiveWriter.open(at: archive).count == 300)

        // A cut inside a block (300 is not a multiple of 64), then to 0, then the input again.
        expectSuccess(try tool(["truncate", archive, "--to", "0", "--quiet"]))
        #expect(try archiveRows(archive).isEmpty)
        let append = try tool(["pack", input, "-o", archive, "--append", "--start", "0"])
        expectSuccess(append)
        #expect(try archiveRows(archive) == values)
        expectSuccess(try tool(["verify", archive, "--quiet"]))
    }

    /// Refusals name the archive and leave it byte for byte as it was.
    @Test func refusalsLeaveTheArchiveAsItWas() throws {
        let dir = TemporaryDirectory(), input = dir.file("t.npy"), archive = dir.file("a.arch")
        try writeNpy(input, smallTrace(rows: 100), shape: [100, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16"]))
        let before = fileBytes(archive)

        expectFailure(try tool(["truncate", archive, "--to", "101"]), status: 1,
                      "a.arch: cannot truncate to 101 rows, the archive holds 100")
        // A usage error (ArgumentParser's, with the usage line after it).
        let negative = try tool(["truncate", archive, "--to=-1"])
        #expect(negative.status == 64 && negative.stderr.contains("--to must be 0 or more rows, not -1"), "\(negative.stderr)")
        let writer = try ArchiveWriter.open(at: archive)
        expectFailure(try tool(["truncate", archive, "--to", "10"]), status: 2, "a.arch: another writer has the archive open")
        try writer.close()
        #expect(fileBytes(archive) == before)
        expectFailure(try tool(["truncate", dir.file("missing.arch"), "--to", "0"]), status: 4, "missing.arch")
    }
}
