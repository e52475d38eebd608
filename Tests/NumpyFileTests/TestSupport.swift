import Foundation
@_exported import TestSupport
import NumpyFile
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension TemporaryDirectory {
    func write(_ bytes: [UInt8], to name: String) throws -> String {
        let target = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: target))
        return target
    }
}

/// The deterministic data every test writes and expects: byte `i` is `(i * 131 + 7) mod 256`,
/// which spreads over all byte values (sign bits included). Python computes the same bytes.
func pattern(_ count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
}

let pythonPattern = "def pattern(n):\n    return bytes((i * 131 + 7) & 255 for i in range(n))\n"

func readAll(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// The `NumpyError` `body` throws; records an issue if it throws nothing or something else.
func numpyError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> NumpyError? {
    do {
        try body()
        Issue.record("expected a NumpyError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as NumpyError {
        return error
    } catch {
        Issue.record("expected a NumpyError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Writes `bytes` (pieces of at most `piece` bytes, to exercise appending) as an array.
func writeArray(
    _ path: String, dtype: NumpyDType, shape: [Int], bytes: [UInt8], piece: Int = 1000, overwrite: Bool = false
) throws {
    let writer = try NumpyWriter(path: path, dtype: dtype, shape: shape, overwrite: overwrite)
    try write(bytes, to: writer, piece: piece)
    try writer.commit()
}

func write(_ bytes: [UInt8], to writer: NumpyWriter, piece: Int) throws {
    try bytes.withUnsafeBytes { raw in
        var start = 0
        while start < raw.count {
            let end = min(start + piece, raw.count)
            try writer.write(UnsafeRawBufferPointer(rebasing: raw[start..<end]))
            start = end
        }
    }
}

/// All chunks of `reader`, concatenated, checking that the row ranges tile `0..<rowCount`.
func readChunks(_ reader: NumpyReader, rowsPerChunk: Int, sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
    var bytes: [UInt8] = []
    var nextRow = 0
    try reader.forEachChunk(rowsPerChunk: rowsPerChunk) { chunk, rows in
        #expect(rows.lowerBound == nextRow, sourceLocation: sourceLocation)
        #expect(rows.count >= 1 && rows.count <= rowsPerChunk, sourceLocation: sourceLocation)
        #expect(chunk.count == rows.count * reader.header.rowByteCount, sourceLocation: sourceLocation)
        nextRow = rows.upperBound
        bytes += chunk
    }
    #expect(nextRow == reader.header.rowCount, sourceLocation: sourceLocation)
    return bytes
}

/// A pipe(2) pair, close-on-exec so python processes other tests spawn meanwhile do not
/// inherit (and keep open) its write end. SIGPIPE is ignored so a reader closing early makes the writer fail with
/// EPIPE instead of killing the test process.
func makePipe() throws -> (read: Int32, write: Int32) {
    signal(SIGPIPE, SIG_IGN)
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return (fds[0], fds[1])
}

/// Writes `bytes` fully to `fd` and closes it; for inputs smaller than a pipe's buffer.
func writeAndClose(_ fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
            if n <= 0 { break }
            done += n
        }
    }
    close(fd)
}

/// Runs work on its own thread (not the cooperative pool, where blocking on a pipe could
/// starve the reader) and hands back its error, if any, on `wait()`.
final class BackgroundThread: Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let failure = Mutex<String?>(nil)

    init(_ work: @escaping @Sendable () throws -> Void) {
        let thread = Thread { [done, self] in
            do {
                try work()
            } catch {
                self.failure.withLock { $0 = "\(error)" }
            }
            done.signal()
        }
        thread.start()
    }

    /// Waits for the work to finish; returns its error's description, or nil.
    func wait() -> String? {
        done.wait()
        return failure.withLock { $0 }
    }
}

/// A `python3` with numpy, for interoperability tests.
enum Python {
    static let hasNumpy: Bool = (try? run("import numpy").status) == 0

    struct Result {
        var status: Int32
        var output: String
        var errors: String
    }

    /// Runs `script` with `arguments` as `sys.argv[1:]`, feeding it no input.
    static func run(_ script: String, arguments: [String] = []) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            output: String(decoding: outputData, as: UTF8.self),
            errors: String(decoding: errorData, as: UTF8.self))
    }
}
