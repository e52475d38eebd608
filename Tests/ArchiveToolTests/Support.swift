import Foundation
@_exported import TestSupport
import NumpyFile
import Testing

/// The `archive-tool` binary, built beside the test bundle.
let toolURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("archive-tool")

/// The real traces of `../shared/data` beside the package (absent in a user's clone).
let dataDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("../shared/data").standardizedFileURL.path
let llama4Trace = dataDirectory + "/llama4-maverick-mmlu.npy"
let deepseekTrace = dataDirectory + "/deepseek-v2-lite-prefill.npy"
let realTracesPresent = FileManager.default.fileExists(atPath: llama4Trace)
    && FileManager.default.fileExists(atPath: deepseekTrace)

/// Whether `python3 -c "import numpy"` works.
let numpyAvailable: Bool = {
    guard let result = try? runProcess("/usr/bin/env", ["python3", "-c", "import numpy"]) else { return false }
    return result.status == 0
}()

/// What a finished process left.
struct RunResult {
    let status: Int32
    let stdout: Data
    let stderr: String

    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    /// Lines of stderr.
    var errorLines: [Substring] { stderr.split(separator: "\n") }
}

/// Runs `archive-tool` with `arguments`; `stdin` is fed through a pipe (else /dev/null),
/// stdout is read from a pipe.
@discardableResult
func tool(_ arguments: [String], stdin: Data? = nil, stdoutPath: String? = nil) throws -> RunResult {
    try runProcess(toolURL.path, arguments, stdin: stdin, stdoutPath: stdoutPath)
}

/// Runs `archive-tool` under `ulimit -f blocks` (512-byte blocks), through sh.
func toolLimited(fileBlocks blocks: Int, _ arguments: [String], stdin: Data? = nil) throws -> RunResult {
    let quoted = arguments.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
    return try runProcess("/bin/sh", ["-c", "ulimit -f \(blocks) && exec '\(toolURL.path)' \(quoted)"], stdin: stdin)
}

/// Writing to a tool that exited (on an error) must fail with EPIPE, not kill the tests.
let ignoreBrokenPipes: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

/// `stdoutPath`: a file stdout is opened on for writing (`/dev/full`), instead of a pipe.
func runProcess(_ executable: String, _ arguments: [String], stdin: Data? = nil, stdoutPath: String? = nil) throws -> RunResult {
    ignoreBrokenPipes
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    let outputFile = stdoutPath.flatMap { FileHandle(forWritingAtPath: $0) }
    process.standardOutput = outputFile ?? output
    // stderr to a file: no second pipe to drain concurrently.
    let errorPath = FileManager.default.temporaryDirectory.appendingPathComponent("archive-tool-stderr-\(UUID().uuidString)").path
    _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errorPath) }
    let errorHandle = FileHandle(forWritingAtPath: errorPath)!
    process.standardError = errorHandle
    let input = Pipe()
    process.standardInput = stdin == nil ? FileHandle.nullDevice : input
    try process.run()
    try? errorHandle.close()
    try? outputFile?.close()
    if outputFile != nil { try? output.fileHandleForWriting.close() }
    if let stdin {
        let writer = input.fileHandleForWriting
        DispatchQueue.global().async {
            // The tool may stop reading early (an error): a broken pipe is expected then.
            try? writer.write(contentsOf: stdin)
            try? writer.close()
        }
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
    return RunResult(status: process.terminationStatus, stdout: data, stderr: errors)
}


func fileBytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

// MARK: .npy files

/// An array read back: its dtype, shape and values widened to Int64.
struct NumpyArray: Equatable {
    let dtype: NumpyDType
    let shape: [Int]
    let values: [Int64]
}

/// Writes `values` as `dtype` (each value converted, wrapping like numpy's astype).
func writeNpy(_ path: String, _ values: [Int64], shape: [Int], dtype: NumpyDType) throws {
    try dtype.accept(WriteArray(path: path, values: values, shape: shape))
}

private struct WriteArray: NumpyIntegerVisitor {
    let path: String, values: [Int64], shape: [Int]
    func visit<T: FixedWidthInteger & Sendable>(_ type: T.Type) throws {
        let writer = try NumpyWriter(path: path, dtype: NumpyDType(integerType: T.self)!, shape: shape, overwrite: true)
        try writer.write(values.map { T(truncatingIfNeeded: $0) })
        try writer.commit()
    }
}

func readNpy(_ path: String) throws -> NumpyArray {
    let reader = try NumpyReader(path: path)
    return NumpyArray(dtype: reader.dtype, shape: reader.shape, values: try reader.dtype.accept(ReadArray(reader: reader)))
}

/// Reads a .npy from bytes (what a tool wrote to stdout).
func readNpy(_ data: Data) throws -> NumpyArray {
    let dir = TemporaryDirectory(), path = dir.file("stdout.npy")
    try data.write(to: URL(fileURLWithPath: path))
    return try readNpy(path)
}

private struct ReadArray: NumpyIntegerVisitor {
    let reader: NumpyReader
    func visit<T: FixedWidthInteger & Sendable>(_ type: T.Type) throws -> [Int64] {
        try reader.withData(as: T.self) { $0.map { Int64(truncatingIfNeeded: $0) } }
    }
}

/// A hand-made .npy: any descr, flags, shape text and data, to build broken inputs.
func rawNpy(descr: String = "|u1", fortran: Bool = false, shape: String, data: [UInt8],
            major: UInt8 = 1, magic: [UInt8]? = nil) -> Data {
    var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }"
    let lengthBytes = major == 1 ? 2 : 4
    let preamble = 6 + 2 + lengthBytes
    while (preamble + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var bytes: [UInt8] = magic ?? ([0x93] + Array("NUMPY".utf8))
    bytes += [major, 0]
    let length = header.utf8.count
    bytes += lengthBytes == 2 ? [UInt8(length & 0xFF), UInt8(length >> 8)]
        : [UInt8(length & 0xFF), UInt8((length >> 8) & 0xFF), UInt8((length >> 16) & 0xFF), UInt8(length >> 24)]
    bytes += Array(header.utf8) + data
    return Data(bytes)
}

/// The rows `range` of token-major `values` with `perRow` ids a row.
func slice(_ values: [Int64], rows range: Range<Int>, perRow: Int) -> [Int64] {
    Array(values[(range.lowerBound * perRow)..<(range.upperBound * perRow)])
}

/// Expects a failure: the given status, exactly one `archive-tool: error:` line on stderr
/// holding `message`.
func expectFailure(_ result: RunResult, status: Int32, _ message: String,
                   sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status == status, "exit status; stderr: \(result.stderr)", sourceLocation: sourceLocation)
    #expect(result.errorLines.count == 1, "one line on stderr: \(result.stderr)", sourceLocation: sourceLocation)
    #expect(result.stderr.hasPrefix("archive-tool: error: "), "\(result.stderr)", sourceLocation: sourceLocation)
    #expect(result.stderr.contains(message), "stderr names '\(message)': \(result.stderr)", sourceLocation: sourceLocation)
}

/// Expects success (status 0), showing stderr otherwise.
func expectSuccess(_ result: RunResult, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status == 0, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
}
