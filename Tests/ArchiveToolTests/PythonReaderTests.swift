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
@Suite(.enabled(if: numpyAvailable, "python3 with numpy is not available: skipped"), .tags(.processes))
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

    /// Packs case `c` into `archive` (a new archive).
    func pack(_ c: Case, to archive: String, in dir: TemporaryDirectory) throws {
        let input = dir.file("\(c.name)-\(c.codec).npy")
        try writeNpy(input, try trace(c), shape: [c.rows, c.layers, c.topk], dtype: .int32)
        var arguments = ["pack", input, "-o", archive, "--experts", "\(c.experts)", "--codec", c.codec,
                         "--block-rows", "\(c.blockRows)", "--quiet"]
        if !c.dense.isEmpty { arguments += ["--dense-layers", c.dense.map(String.init).joined(separator: ",")] }
        expectSuccess(try tool(arguments))
    }

    /// A real model's shape from `synth` (dense layers 0-2, top-8 of 256): the compact codec
    /// codes columns with rANS tables here (ids, slot deltas, split columns).
    func packDeepSeek(codec: String, to archive: String, in dir: TemporaryDirectory) throws {
        let input = dir.file("ds-\(codec).npy")
        expectSuccess(try tool(["synth", "--model", "deepseek-v3", "--tokens", "96", "-o", input, "--quiet"]))
        expectSuccess(try tool(["pack", input, "-o", archive, "--experts", "256", "--dense-layers", "0,1,2",
                                "--codec", codec, "--block-rows", "64", "--quiet"]))
    }

    /// An archive built by several appends, with overlaps (rows already stored are kept) and
    /// short blocks and commit records between them.
    func packAppends(codec: String, to archive: String, in dir: TemporaryDirectory) throws {
        let c = Case(name: "append", layers: 3, topk: 2, experts: 300, dense: [], codec: codec, rows: 600, blockRows: 64)
        let first = try trace(c, seed: 1), second = try trace(c, seed: 2)
        let perRow = c.layers * c.topk
        // (start, rows, source): the second source differs, so an overlap that kept it would show.
        let batches: [(Int, Range<Int>, [Int64])] = [
            (0, 0..<150, first), (120, 120..<300, second), (300, 300..<310, first),
            (200, 200..<420, first), (410, 410..<600, second),
        ]
        for (index, (start, range, source)) in batches.enumerated() {
            let input = dir.file("batch-\(codec)-\(index).npy")
            try writeNpy(input, slice(source, rows: range, perRow: perRow), shape: [range.count, c.layers, c.topk], dtype: .int32)
            var arguments = ["pack", input, "-o", archive, "--quiet"]
            arguments += index == 0 ? ["--experts", "300", "--codec", codec, "--block-rows", "64"] : ["--append", "--start", "\(start)"]
            expectSuccess(try tool(arguments))
        }
    }

    /// Every generated archive, read by `archive-tool unpack` and by the Python reader (one
    /// Python process for all, numpy's start-up is the slow part): the same rows, bit for bit.
    @Test func sameRowsAsUnpack() throws {
        let dir = TemporaryDirectory()
        var archives: [(label: String, path: String)] = []
        for c in Self.cases {
            let archive = dir.file("\(c.name)-\(c.codec).moe")
            try pack(c, to: archive, in: dir)
            archives.append((c.testDescription, archive))
        }
        for codec in ["fast", "compact"] {
            let ds = dir.file("ds-\(codec).moe"), appended = dir.file("append-\(codec).moe")
            try packDeepSeek(codec: codec, to: ds, in: dir)
            try packAppends(codec: codec, to: appended, in: dir)
            archives += [("deepseek-v3 \(codec)", ds), ("appends \(codec)", appended)]
        }
        var arguments = ["--dtype", "int32"]
        for (_, path) in archives { arguments += [path, "-o", path + ".python.npy"] }
        let result = try pythonRead(arguments)
        #expect(result.status == 0, "python reader: \(result.stderr)")
        for (label, path) in archives {
            expectSuccess(try tool(["unpack", path, "-o", path + ".reference.npy", "--dtype", "int32", "--quiet"]))
            let expected = try readNpy(path + ".reference.npy"), actual = try readNpy(path + ".python.npy")
            // Compared without printing the arrays: a summary says where they differ.
            let firstDifference = zip(actual.values, expected.values).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            let same = actual.dtype == expected.dtype && actual.shape == expected.shape && firstDifference == nil
            #expect(same, """
                \(label): the Python reader's rows differ from unpack's: shape \(actual.shape) vs \(expected.shape), \
                first differing id at flat index \(firstDifference.map(String.init) ?? "none")
                """)
        }
        #expect(try readNpy(dir.file("append-compact.moe.python.npy")).shape == [600, 3, 2])
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

    /// The spec's vectors: every block vector (payload and rows), every archive vector, and the
    /// outcome vectors of FORMAT.md Appendix B (malformed blocks, damaged archives).
    @Test func specVectors() throws {
        let result = try pythonRead(["--vectors", specVectorDirectory])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdoutText.contains("13 block vectors, 3 archive vectors, 12 block outcome vectors and 27 damaged archives match"),
                "\(result.stdoutText)")
    }
}
