import Archive
import Foundation
import NumpyFile
import Testing

/// On an archive with a torn tail (bytes an interrupted writer left after its last record),
/// a refused command leaves the file byte for byte as it was: the tail is cut by the first
/// write, never by a command that writes nothing.
@Suite(.tags(.processes)) struct TornTailRefusalTests {
    @Test func refusalsLeaveTheTornTail() throws {
        let dir = TemporaryDirectory(), input = dir.file("in.npy"), archive = dir.file("a.moe")
        let values = smallTrace(rows: 300)
        try writeNpy(input, slice(values, rows: 0..<100, perRow: 8), shape: [100, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16"]))
        let handle = try #require(FileHandle(forWritingAtPath: archive))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data((0..<37).map { UInt8(truncatingIfNeeded: $0 &* 97) }))
        try handle.close()
        let torn = try #require(fileBytes(archive))
        #expect(try ArchiveReader(path: archive).ignoredTail != nil)

        var bad = values
        bad[299 * 8 + 3] = 16
        try writeNpy(dir.file("bad.npy"), bad, shape: [300, 4, 2], dtype: .uint8)
        try writeNpy(dir.file("topk3.npy"), Array(repeating: 1, count: 30), shape: [10, 1, 3], dtype: .uint8)
        try writeNpy(dir.file("good.npy"), values, shape: [300, 4, 2], dtype: .uint8)
        let cases: [([String], Int32, String)] = [
            (["pack", dir.file("good.npy"), "-o", archive, "--append", "--start", "101"], 2, "appending it would leave a gap"),
            (["pack", dir.file("topk3.npy"), "-o", archive, "--append"], 2, "do not match the schema of"),
            (["pack", dir.file("good.npy"), "-o", archive, "--append", "--experts", "32"], 2, "--experts 32 does not match"),
            (["pack", dir.file("bad.npy"), "-o", archive, "--append", "--start", "0"], 1, "bad.npy row 299: expert id 16"),
            (["pack", "-", "-o", archive, "--append", "--start", "0"], 1, "<stdin> row 299: expert id 16"),
            (["truncate", archive, "--to", "101"], 1, "cannot truncate to 101 rows"),
        ]
        for (arguments, status, message) in cases {
            let result = try tool(arguments, stdin: arguments[1] == "-" ? fileBytes(dir.file("bad.npy")) : nil)
            expectFailure(result, status: status, message)
            #expect(fileBytes(archive) == torn, "\(arguments): the file is byte for byte as it was")
        }
        // A covered append writes nothing either; the first real one discards the tail, and says so.
        let covered = try tool(["pack", input, "-o", archive, "--append", "--start", "0"])
        expectSuccess(covered)
        #expect(!covered.stderr.contains("warning"), "\(covered.stderr)")
        #expect(fileBytes(archive) == torn, "a covered append writes nothing")
        let appended = try tool(["pack", dir.file("good.npy"), "-o", archive, "--append", "--start", "0"])
        expectSuccess(appended)
        #expect(appended.stderr.contains("warning: \(archive): discarded 37 bytes at byte \(torn.count - 37) that an interrupted writer left"),
                "\(appended.stderr)")
        #expect(try archiveRows(archive) == values)
        #expect(try ArchiveReader(path: archive).ignoredTail == nil)
    }
}
