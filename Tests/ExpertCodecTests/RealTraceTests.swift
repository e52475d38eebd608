import Foundation
import NumpyFile
import Testing
import TraceSynth
@testable import ExpertCodec

/// `../shared/data` beside the package: real traces, present in CI, absent from a user's clone.
let sharedData = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../../shared/data").standardized.path
let hasSharedData = FileManager.default.fileExists(atPath: "\(sharedData)/llama4-maverick-mmlu.npy")

@Suite(.enabled(if: hasSharedData, "the real traces of ../shared/data are not beside this clone"), .tags(.realTraces, .slow))
struct RealTraceTests {
    /// Both real traces, in blocks of the archive's default size: bit for bit, from uint8 and
    /// int32 input, into int32; and the ratio at least the best LZ4-family peer's
    /// (5.01 and 5.32, ../shared/bench/peers.py).
    @Test(arguments: [("llama4-maverick-mmlu", 5.01), ("deepseek-v2-lite-prefill", 5.32)])
    func realTracesRoundTripAndBeatTheLZ4Peers(name: String, peerRatio: Double) throws {
        let reader = try NumpyReader(path: "\(sharedData)/\(name).npy")
        let ids: [UInt8] = try reader.withData(as: UInt8.self) { Array($0) }
        let shape = reader.header.shape
        let schema = try Schema(layers: shape[1], topk: shape[2], experts: Int(ids.max()!) + 1)
        let encoder = BlockEncoder(schema: schema), decoder = BlockDecoder(schema: schema)
        let blockRows = BlockEncoder.defaultBlockRows(for: schema), perRow = schema.idsPerRow
        var stored = 0
        for start in stride(from: 0, to: shape[0], by: blockRows) {
            let rows = Array(ids[start * perRow..<min(shape[0], start + blockRows) * perRow])
            let frame = try encoder.encode(rows)
            #expect(try encoder.encode(rows.map { Int32($0) }) == frame)
            #expect(try decoder.decode(frame, as: Int32.self) == rows.map { Int32($0) }, "rows from \(start)")
            stored += frame.count
        }
        let ratio = Double(ids.count * 4) / Double(stored)
        #expect(ratio >= peerRatio, "ratio \(ratio)")
    }
}

/// The `lz4` command line accepts every block: `lz4 -t` checks it, `lz4 -d` returns the payload.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/lz4"), "the lz4 command is not installed"), .tags(.processes))
struct LZ4CommandLineTests {
    @Test func lz4ChecksAndDecompressesBlocks() throws {
        let schema = try Schema(layers: 6, topk: 4, experts: 300, denseLayers: [2])
        var random = SplitMix64(seed: 3)
        let rows = Fixtures.rows(schema, count: 5000, &random)
        let frame = try BlockEncoder(schema: schema).encode(rows)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("block-\(UUID().uuidString).lz4").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(frame)))
        #expect(try run("/usr/bin/lz4", ["-t", path]).status == 0)
        let decompressed = try run("/usr/bin/lz4", ["-dc", path])
        #expect(decompressed.status == 0)
        #expect(Array(decompressed.output) == (try payloadOf(frame)))
        var damaged = frame
        damaged[frame.count / 2] ^= 0x20
        #expect(FileManager.default.createFile(atPath: path, contents: Data(damaged)))
        #expect(try run("/usr/bin/lz4", ["-t", path]).status != 0)
    }

    private func run(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: Data) {
        let process = Process(), pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}
