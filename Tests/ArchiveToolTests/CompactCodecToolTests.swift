import Archive
import Foundation
import NumpyFile
import Testing

@Suite(.tags(.processes)) struct CompactCodecToolTests {
    /// synth → pack --codec compact → stat → verify → append → unpack: the same rows, smaller.
    @Test func packCompactStatVerifyAppendUnpack() throws {
        let dir = TemporaryDirectory()
        let trace = dir.file("trace.npy"), more = dir.file("more.npy"), fast = dir.file("fast.moe")
        let compact = dir.file("compact.moe"), back = dir.file("back.npy")
        expectSuccess(try tool(["synth", "--model", "qwen3-30b-a3b", "--tokens", "3000", "--seed", "3", "-o", trace]))
        expectSuccess(try tool(["synth", "--model", "qwen3-30b-a3b", "--tokens", "4000", "--seed", "3", "-o", more]))
        expectSuccess(try tool(["pack", trace, "-o", fast, "--experts", "128"]))
        let pack = try tool(["pack", trace, "-o", compact, "--experts", "128", "--codec", "compact"])
        expectSuccess(pack)

        let stat = try tool(["stat", compact, "--json"])
        expectSuccess(stat)
        let json = try #require(try JSONSerialization.jsonObject(with: stat.stdout) as? [String: Any])
        #expect(json["codec"] as? String == "compact v2 (rANS) in LZ4 frames")
        #expect(json["rows"] as? Int == 3000)
        let fastJSON = try #require(try JSONSerialization.jsonObject(with: try tool(["stat", fast, "--json"]).stdout) as? [String: Any])
        #expect(fastJSON["codec"] as? String == "column bit-planes v1 in LZ4 frames")

        expectSuccess(try tool(["verify", compact]))
        // Appending keeps the archive's codec; --codec cannot change it.
        let refused = try tool(["pack", more, "-o", compact, "--append", "--codec", "fast"])
        #expect(refused.status == 64, "\(refused.stderr)")
        let append = try tool(["pack", more, "-o", compact, "--append", "--start", "0"])
        expectSuccess(append)
        #expect(try ArchiveReader(path: compact).codec == .compact)
        expectSuccess(try tool(["unpack", compact, "-o", back]))
        #expect(try readNpy(back) == (try readNpy(more)))

        let bad = try tool(["pack", trace, "-o", dir.file("x.moe"), "--experts", "128", "--codec", "zstd"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("--codec must be 'fast' or 'compact'"), "\(bad.stderr)")
    }
}
