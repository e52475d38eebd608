import Archive
import Foundation
import NumpyFile
import Testing
import TraceSynth

/// The clean-room Python reader written from spec/FORMAT.md alone (spec/reference/moe_reader.py).
let pythonReader = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("spec/reference/moe_reader.py").path
let specVectorDirectory = URL(fileURLWithPath: pythonReader).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("vectors").path

/// Runs the Python reader with `arguments`.
func pythonRead(_ arguments: [String]) throws -> RunResult {
    try runProcess("/usr/bin/env", ["python3", pythonReader] + arguments)
}

/// The independent Python reader agrees with `archive-tool unpack`, bit for bit, on archives the
/// tool writes, and refuses damage.
@Suite(.enabled(if: numpyAvailable, "python3 with numpy is not available: skipped"))
struct PythonReaderTests {
    /// A shape, a codec and the rows of one generated archive.
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let layers: Int, topk: Int, experts: Int
        let dense: [Int]
        let codec: String
        let rows: Int
        let blockRows: Int
        var testDescription: String { "\(name) \(codec)" }
    }

    static let cases: [Case] = [
        Case(name: "small", layers: 4, topk: 2, experts: 16, dense: [], codec: "fast", rows: 300, blockRows: 64),
        Case(name: "small", layers: 4, topk: 2, experts: 16, dense: [], codec: "compact", rows: 300, blockRows: 64),
        Case(name: "top1-e2", layers: 3, topk: 1, experts: 2, dense: [], codec: "fast", rows: 200, blockRows: 64),
        Case(name: "top1-e2", layers: 3, topk: 1, experts: 2, dense: [], codec: "compact", rows: 200, blockRows: 64),
        Case(name: "dense-e300", layers: 5, topk: 4, experts: 300, dense: [0, 3], codec: "fast", rows: 250, blockRows: 128),
        Case(name: "dense-e300", layers: 5, topk: 4, experts: 300, dense: [0, 3], codec: "compact", rows: 250, blockRows: 128),
        Case(name: "e2048", layers: 2, topk: 8, experts: 2048, dense: [1], codec: "compact", rows: 200, blockRows: 64),
        Case(name: "e2049", layers: 2, topk: 8, experts: 2049, dense: [], codec: "compact", rows: 100, blockRows: 64),
        Case(name: "e65535", layers: 2, topk: 3, experts: 65535, dense: [], codec: "fast", rows: 150, blockRows: 64),
        Case(name: "e65536", layers: 3, topk: 2, experts: 65536, dense: [], codec: "fast", rows: 150, blockRows: 64),
        Case(name: "e65536", layers: 3, topk: 2, experts: 65536, dense: [], codec: "compact", rows: 150, blockRows: 64),
    ]

    /// `rows` realistic rows of a schema (repeats, skewed popularity), int32.
    func trace(_ c: Case, seed: UInt64 = 7) throws -> [Int64] {
        var synthesizer = TraceSynthesizer(
            schema: try Schema(layers: c.layers, topk: c.topk, experts: c.experts, denseLayers: c.dense), seed: seed)
        return synthesizer.rows(c.rows, as: Int64.self)
    }

    /// Unpacks `archive` with the tool and with the Python reader; both as int32.
    func expectSameRows(_ archive: String, in dir: TemporaryDirectory, _ label: String,
                        sourceLocation: SourceLocation = #_sourceLocation) throws {
        let reference = dir.file("reference.npy"), python = dir.file("python.npy")
        expectSuccess(try tool(["unpack", archive, "-o", reference, "--dtype", "int32", "--force", "--quiet"]),
                      sourceLocation: sourceLocation)
        let result = try pythonRead([archive, "-o", python, "--dtype", "int32"])
        #expect(result.status == 0, "\(label): python reader: \(result.stderr)", sourceLocation: sourceLocation)
        let expected = try readNpy(reference), actual = try readNpy(python)
        #expect(actual == expected, "\(label): the Python reader's rows differ from unpack's", sourceLocation: sourceLocation)
    }

    @Test(arguments: cases)
    func sameRowsAsUnpack(_ c: Case) throws {
        let dir = TemporaryDirectory(), input = dir.file("t.npy"), archive = dir.file("t.moe")
        try writeNpy(input, try trace(c), shape: [c.rows, c.layers, c.topk], dtype: .int32)
        var arguments = ["pack", input, "-o", archive, "--experts", "\(c.experts)", "--codec", c.codec,
                         "--block-rows", "\(c.blockRows)", "--quiet"]
        if !c.dense.isEmpty { arguments += ["--dense-layers", c.dense.map(String.init).joined(separator: ",")] }
        expectSuccess(try tool(arguments))
        try expectSameRows(archive, in: dir, c.testDescription)
    }

    /// A real model's shape from `synth` (dense layers 0-2, top-8 of 256), both codecs: the
    /// compact codec codes columns with rANS tables here (ids, slot deltas, split columns).
    @Test(arguments: ["fast", "compact"])
    func synthesizedDeepSeek(_ codec: String) throws {
        let dir = TemporaryDirectory(), input = dir.file("ds.npy"), archive = dir.file("ds.moe")
        expectSuccess(try tool(["synth", "--model", "deepseek-v3", "--tokens", "160", "-o", input, "--quiet"]))
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "256", "--dense-layers", "0,1,2",
                                "--codec", codec, "--block-rows", "64", "--quiet"]))
        try expectSameRows(archive, in: dir, "deepseek-v3 \(codec)")
    }

    /// An archive built by several appends, with overlaps (rows already stored are kept) and
    /// short blocks and commit records between them.
    @Test(arguments: ["fast", "compact"])
    func appendsWithOverlaps(_ codec: String) throws {
        let dir = TemporaryDirectory(), archive = dir.file("a.moe")
        let c = Case(name: "append", layers: 3, topk: 2, experts: 300, dense: [], codec: codec, rows: 600, blockRows: 64)
        let first = try trace(c, seed: 1), second = try trace(c, seed: 2)
        let perRow = c.layers * c.topk
        // (start, rows, source): the second source differs, so an overlap that kept it would show.
        let batches: [(Int, Range<Int>, [Int64])] = [
            (0, 0..<150, first), (120, 120..<300, second), (300, 300..<310, first),
            (200, 200..<420, first), (410, 410..<600, second),
        ]
        for (index, (start, range, source)) in batches.enumerated() {
            let input = dir.file("batch\(index).npy")
            try writeNpy(input, slice(source, rows: range, perRow: perRow), shape: [range.count, c.layers, c.topk], dtype: .int32)
            var arguments = ["pack", input, "-o", archive, "--quiet"]
            arguments += index == 0 ? ["--experts", "300", "--codec", codec, "--block-rows", "64"] : ["--append", "--start", "\(start)"]
            expectSuccess(try tool(arguments))
        }
        try expectSameRows(archive, in: dir, "appends \(codec)")
        #expect(try readNpy(dir.file("python.npy")).shape == [600, 3, 2])
    }

    /// One flipped byte in the middle of a block frame: one line on stderr naming the offset, exit 1.
    @Test(arguments: ["fast", "compact"])
    func flippedByteInABlockIsRefused(_ codec: String) throws {
        let dir = TemporaryDirectory(), input = dir.file("t.npy"), archive = dir.file("t.moe")
        let c = Case(name: "flip", layers: 4, topk: 2, experts: 16, dense: [], codec: codec, rows: 300, blockRows: 64)
        try writeNpy(input, try trace(c), shape: [300, 4, 2], dtype: .int32)
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "16", "--codec", codec,
                                "--block-rows", "64", "--quiet"]))
        let block = try #require(try ArchiveReader(path: archive).blocks.dropFirst(2).first)
        var bytes = try #require(fileBytes(archive))
        bytes[block.frameOffset + block.frameLength / 2] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: archive))
        let result = try pythonRead([archive, "-o", dir.file("out.npy")])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.errorLines.count == 1, "\(result.stderr)")
        #expect(result.stderr.contains("damaged at byte "), "\(result.stderr)")
        #expect(result.stderr.contains("block of rows 128..<192"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out.npy")), "no output on an error")
        // The tool refuses the same rows.
        #expect(try tool(["unpack", archive, "-o", dir.file("ref.npy")]).status == 3)
    }

    /// The spec's vectors: every block vector (payload and rows) and the archive vector.
    @Test func specVectors() throws {
        let fm = FileManager.default
        var blocks: [String] = []
        for sub in ["", "compact/"] {
            for name in try fm.contentsOfDirectory(atPath: specVectorDirectory + "/" + sub) where name.hasSuffix(".lz4") {
                blocks.append(specVectorDirectory + "/" + sub + name)
            }
        }
        #expect(blocks.count == 13)
        for block in blocks {
            let json = String(block.dropLast(4)) + ".json"
            let result = try pythonRead(["--block", block, "--schema", json])
            #expect(result.status == 0, "\(block): \(result.stderr)")
        }
        let archive = specVectorDirectory + "/archive/small.archive"
        let result = try pythonRead([archive, "--expect-json", specVectorDirectory + "/archive/small.json"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdoutText.contains("6 rows in 3 blocks"), "\(result.stdoutText)")
    }
}
