import Archive
import Foundation
import NumpyFile
import Testing
import TraceSynth

@Suite(.tags(.processes)) struct DemoFlowTests {
    /// synth → pack → stat --json → unpack → the synth output again.
    @Test func synthPackStatUnpack() throws {
        let dir = TemporaryDirectory(), trace = dir.file("trace.npy"), archive = dir.file("trace.arch"), back = dir.file("back.npy")
        let synth = try tool(["synth", "--model", "deepseek-v3", "--tokens", "5000", "--seed", "7", "-o", trace])
        expectSuccess(synth)
        #expect(synth.stderr.contains("dense layers 0,1,2 hold zeros: pack with --dense-layers 0,1,2 --experts 256"), "\(synth.stderr)")
        let generated = try readNpy(trace)
        #expect(generated.dtype == .uint8 && generated.shape == [5000, 61, 8])
        // The same rows as the library's synthesizer: written in chunks, not changed by them.
        let shape = try #require(ModelShape.named("deepseek-v3"))
        var synthesizer = TraceSynthesizer(schema: try shape.schema(), seed: 7)
        #expect(generated.values == synthesizer.rows(5000, as: Int64.self))

        let pack = try tool(["pack", trace, "-o", archive, "--experts", "256", "--dense-layers", "0,1,2",
                             "--meta", "model=deepseek-v3", "--meta", "note=a=b"])
        expectSuccess(pack)
        #expect(pack.stderr.contains("packed 5,000 rows"), "\(pack.stderr)")

        let stat = try tool(["stat", archive, "--json"])
        expectSuccess(stat)
        let json = try #require(try JSONSerialization.jsonObject(with: stat.stdout) as? [String: Any])
        let size = try #require(try FileManager.default.attributesOfItem(atPath: archive)[.size] as? NSNumber).intValue
        #expect(json["rows"] as? Int == 5000)
        #expect(json["layers"] as? Int == 61)
        #expect(json["topk"] as? Int == 8)
        #expect(json["experts"] as? Int == 256)
        #expect(json["bit_width"] as? Int == 8)
        #expect(json["dense_layers"] as? [Int] == [0, 1, 2])
        #expect(json["file_bytes"] as? Int == size)
        let blocks = try #require(json["blocks"] as? Int), blockRows = try #require(json["block_rows"] as? Int)
        #expect(blocks == (5000 + blockRows - 1) / blockRows)
        #expect(json["codec"] as? String == "column bit-planes v1 in LZ4 frames")
        let ratio = try #require(json["ratio_int32"] as? Double)
        #expect(abs(ratio - Double(5000 * 61 * 8 * 4) / Double(size)) < 0.001)
        let fixed = try #require(json["ratio_fixed_width"] as? Double)
        #expect(abs(fixed - Double(5000 * 58 * 8) / Double(size)) < 0.001)
        #expect(ratio > 4, "realistic traces compress well below int32")
        #expect(json["metadata"] as? [String: String] == ["source": "trace.npy", "model": "deepseek-v3", "note": "a=b"])

        let text = try tool(["stat", archive])
        expectSuccess(text)
        for needle in ["61 layers x top-8 of 256 experts, 8-bit ids", "0,1,2", "5,000", "column bit-planes v1 in LZ4 frames",
                       "MiB (", "bytes)", "(as int32: 9.31 MiB (9,760,000 bytes))", "at the fixed width of 8 bits", "model = deepseek-v3", "source = trace.npy"] {
            #expect(text.stdoutText.contains(needle), "stat shows '\(needle)': \(text.stdoutText)")
        }

        let verify = try tool(["verify", archive])
        expectSuccess(verify)
        #expect(verify.stdoutText == "\(archive): 5,000 rows in \(blocks) blocks, all checksums good\n")

        expectSuccess(try tool(["unpack", archive, "-o", back, "--sync"]))
        #expect(try readNpy(back) == generated)
    }

    @Test func synthDefaultsToTheNarrowestDType() throws {
        let dir = TemporaryDirectory(), trace = dir.file("kimi.npy")
        let synth = try tool(["synth", "--model", "kimi-k2", "--tokens", "100", "-o", trace])
        expectSuccess(synth)
        #expect(synth.stderr.contains("dense layers 0 hold zeros: pack with --dense-layers 0 --experts 384"))
        let generated = try readNpy(trace)
        #expect(generated.dtype == .uint16 && generated.shape == [100, 61, 8])
        #expect(generated.values.prefix(8).allSatisfy { $0 == 0 }, "dense layer 0 holds zeros")
        #expect(generated.values.max()! < 384)
        // int32 on request, same values.
        let wide = dir.file("kimi32.npy")
        expectSuccess(try tool(["synth", "--model", "kimi-k2", "--tokens", "100", "-o", wide, "--dtype", "int32", "--quiet"]))
        #expect(try readNpy(wide).values == generated.values)
        // To stdout.
        let piped = try tool(["synth", "--model", "kimi-k2", "--tokens", "100", "-o", "-", "--quiet"])
        expectSuccess(piped)
        #expect(piped.stdout == fileBytes(trace))
    }

    @Test func models() throws {
        let result = try tool(["models"])
        expectSuccess(result)
        for shape in ModelShape.all {
            #expect(result.stdoutText.contains(shape.name))
        }
        #expect(result.stdoutText.contains("464"), "deepseek-v3 packs to 464 B/token")
    }

    /// Every command's help has examples and the exit status table.
    @Test func help() throws {
        for command in ["pack", "unpack", "stat", "verify", "salvage", "rows", "truncate", "synth", "models"] {
            let result = try tool([command, "--help"])
            expectSuccess(result)
            #expect(result.stdoutText.contains("EXAMPLES:"), "\(command) --help has examples")
            #expect(result.stdoutText.contains("EXIT STATUS:"), "\(command) --help has exit statuses")
        }
        let root = try tool(["--help"])
        for command in ["pack", "unpack", "stat", "verify", "salvage", "rows", "truncate", "synth", "models"] {
            #expect(root.stdoutText.contains(command))
        }
    }
}

@Suite(.tags(.processes)) struct DamageTests {
    /// A byte flipped inside a block frame: verify exits 3 naming the byte range and the rows;
    /// unpack of those rows exits 3, of the others works.
    @Test func flippedByteInABlock() throws {
        let dir = TemporaryDirectory(), input = dir.file("t.npy"), archive = dir.file("t.arch")
        let values = smallTrace(rows: 1000)
        try writeNpy(input, values, shape: [1000, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16", "--block-rows", "64"]))
        let block = try #require(try ArchiveReader(path: archive).blocks.dropFirst(3).first)
        #expect(block.position == 192)
        var bytes = try #require(fileBytes(archive))
        bytes[block.frameOffset + block.frameLength / 2] ^= 0x5A
        try bytes.write(to: URL(fileURLWithPath: archive))

        let verify = try tool(["verify", archive])
        #expect(verify.status == 3, "\(verify.stderr)")
        #expect(verify.stdoutText.contains("holding rows 192..<256"), "\(verify.stdoutText)")
        #expect(verify.stdoutText.contains("bytes \(block.recordOffset)..<\(block.frameOffset + block.frameLength) damaged"), "\(verify.stdoutText)")
        #expect(verify.errorLines.count == 1)
        #expect(verify.stderr.contains("t.arch: 1 damaged range, 64 of 1,000 rows unreadable"), "\(verify.stderr)")

        let entries = dir.entries()
        expectFailure(try tool(["unpack", archive, "-o", dir.file("all.npy")]), status: 3, "t.arch: damaged at byte")
        #expect(dir.entries() == entries, "no partial output")
        expectSuccess(try tool(["unpack", archive, "-o", dir.file("head.npy"), "--rows", ":192"]))
        #expect(try readNpy(dir.file("head.npy")).values == slice(values, rows: 0..<192, perRow: 8))
        expectFailure(try tool(["pack", input, "-o", archive, "--append", "--start", "0"]), status: 3, "t.arch")
    }

    /// A damaged record header makes the archive unopenable; salvage reports the damaged
    /// bytes and lost rows, exits 3, and writes the whole rows before the hole to a new archive.
    @Test func salvageAfterADamagedRecordHeader() throws {
        let dir = TemporaryDirectory(), input = dir.file("t.npy"), archive = dir.file("t.arch")
        let values = smallTrace(rows: 1000)
        try writeNpy(input, values, shape: [1000, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16", "--block-rows", "64"]))
        let block = try #require(try ArchiveReader(path: archive).blocks.dropFirst(3).first)
        var bytes = try #require(fileBytes(archive))
        bytes[block.recordOffset + 16] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: archive))
        expectFailure(try tool(["unpack", archive, "-o", dir.file("x.npy")]), status: 3, "t.arch: damaged at byte \(block.recordOffset)")

        let salvage = try tool(["salvage", archive, "-o", dir.file("saved.arch")])
        expectFailure(salvage, status: 3, "t.arch: 1 damaged range, 64 rows lost")
        #expect(salvage.stdoutText.contains("rows 192..<256 lost"), "\(salvage.stdoutText)")
        #expect(salvage.stdoutText.contains("wrote \(dir.file("saved.arch")): 192 rows"), "\(salvage.stdoutText)")
        #expect(try archiveRows(dir.file("saved.arch")) == slice(values, rows: 0..<192, perRow: 8))
    }

    /// Bytes after the last record (a crashed writer's torn write): verify exits 3 saying no
    /// stored row is affected; the next append discards them (with a warning) and verify passes.
    @Test func tornTail() throws {
        let dir = TemporaryDirectory(), input = dir.file("t.npy"), archive = dir.file("t.arch")
        let values = smallTrace(rows: 200)
        try writeNpy(input, slice(values, rows: 0..<100, perRow: 8), shape: [100, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16"]))
        var bytes = try #require(fileBytes(archive))
        let size = bytes.count
        bytes += [UInt8](repeating: 0xAB, count: 300)
        try bytes.write(to: URL(fileURLWithPath: archive))
        let verify = try tool(["verify", archive])
        expectFailure(verify, status: 3, "t.arch: a torn tail of 300 bytes follows the archive; all 100 stored rows are good")
        #expect(verify.stdoutText.contains("bytes \(size)..<\(size + 300) are a torn tail"), "\(verify.stdoutText)")
        try writeNpy(input, slice(values, rows: 100..<200, perRow: 8), shape: [100, 4, 2], dtype: .uint8)
        let append = try tool(["pack", input, "-o", archive, "--append"])
        expectSuccess(append)
        #expect(append.stderr.contains("archive-tool: warning: \(archive): discarded 300 bytes at byte \(size)"), "\(append.stderr)")
        expectSuccess(try tool(["verify", archive]))
        #expect(try archiveRows(archive) == values)
    }

    /// A damaged header: the archive cannot be opened; verify says so and exits 3.
    @Test func damagedHeader() throws {
        let dir = TemporaryDirectory(), input = dir.file("t.npy"), archive = dir.file("t.arch")
        try writeNpy(input, smallTrace(rows: 10), shape: [10, 4, 2], dtype: .uint8)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16"]))
        var bytes = try #require(fileBytes(archive))
        bytes[20] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: archive))
        expectFailure(try tool(["verify", archive]), status: 3, "t.arch: damaged at byte")
        expectFailure(try tool(["stat", archive]), status: 3, "t.arch: damaged at byte")
    }
}
