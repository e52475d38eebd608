import Foundation
import NumpyFile
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Streaming through pipes")
struct StreamTests {
    /// 2.2 MB: far more than a pipe buffer, so writer and reader must take turns.
    static let shape = [23_000, 24, 2]
    static let bytes = pattern(23_000 * 24 * 2 * 2)

    @Test("a writer thread streams into a pipe; the reader reads it in chunks")
    func pipeBetweenThreads() throws {
        let (readEnd, writeEnd) = try makePipe()
        defer { close(readEnd) }
        let writerThread = BackgroundThread {
            defer { close(writeEnd) }
            let writer = try NumpyWriter(fileDescriptor: writeEnd, path: "<pipe out>", dtype: .uint16, shape: Self.shape)
            try write(Self.bytes, to: writer, piece: 100_003)
            try writer.commit()
        }
        let reader = try NumpyReader(fileDescriptor: readEnd, path: "<pipe in>")
        #expect(!reader.isMemoryMapped)
        #expect(reader.shape == Self.shape)
        #expect(reader.dtype == .uint16)
        #expect(try readChunks(reader, rowsPerChunk: 777) == Self.bytes)
        #expect(writerThread.wait() == nil)

        let again = numpyError { try reader.forEachChunk(rowsPerChunk: 1) { _, _ in } }
        #expect(again == .invalidUse(path: "<pipe in>", reason: "the data of a stream can be read only once"))
        guard case .invalidUse = numpyError({ try reader.withData { _ in } }) else {
            Issue.record("withData on a stream must throw invalidUse")
            return
        }
    }

    @Test("typed chunks from a stream")
    func typedStream() throws {
        let values: [Int64] = (0..<3000).map { Int64($0) * -3_000_000_019 }
        let (readEnd, writeEnd) = try makePipe()
        defer { close(readEnd) }
        let writerThread = BackgroundThread {
            defer { close(writeEnd) }
            let writer = try NumpyWriter(fileDescriptor: writeEnd, path: "<pipe>", dtype: .int64, shape: [1000, 3])
            try writer.write(values)
            try writer.commit()
        }
        let reader = try NumpyReader(fileDescriptor: readEnd, path: "<pipe>")
        var seen: [Int64] = []
        try reader.forEachChunk(as: Int64.self, rowsPerChunk: 333) { chunk, _ in seen += chunk }
        #expect(seen == values)
        #expect(writerThread.wait() == nil)
    }

    @Test("a stream ending early names the bytes expected and received")
    func truncatedStream() throws {
        let (readEnd, writeEnd) = try makePipe()
        defer { close(readEnd) }
        let directory = TemporaryDirectory()
        let path = directory.file("full.npy")
        try writeArray(path, dtype: .uint16, shape: [2000, 10], bytes: pattern(40_000))
        let full = try readAll(path)
        let writerThread = BackgroundThread {
            writeAndClose(writeEnd, Array(full.prefix(full.count - 1234)))
        }
        let error = numpyError {
            let reader = try NumpyReader(fileDescriptor: readEnd, path: "<pipe>")
            try reader.forEachChunk(rowsPerChunk: 64) { _, _ in }
        }
        #expect(error == .truncatedData(path: "<pipe>", expected: 40_000, actual: 40_000 - 1234))
        #expect(error?.description == "<pipe>: data is truncated: expected 40000 bytes, got 38766 (1234 missing)")
        #expect(writerThread.wait() == nil)
    }

    @Test("path \"-\" streams standard input")
    func standardInput() throws {
        let directory = TemporaryDirectory()
        let source = directory.file("source.npy")
        try writeArray(source, dtype: .uint32, shape: [500, 3], bytes: pattern(6000))
        let file = try readAll(source)
        let (readEnd, writeEnd) = try makePipe()
        // Standard input is borrowed for the duration of the test; nothing else here reads it.
        let savedStdin = dup(STDIN_FILENO)
        #expect(dup2(readEnd, STDIN_FILENO) == STDIN_FILENO)
        close(readEnd)
        defer {
            dup2(savedStdin, STDIN_FILENO)
            close(savedStdin)
        }
        let writerThread = BackgroundThread { writeAndClose(writeEnd, file) }
        let reader = try NumpyReader(path: "-")
        #expect(reader.path == "<stdin>")
        #expect(!reader.isMemoryMapped)
        #expect(try readChunks(reader, rowsPerChunk: 128) == pattern(6000))
        #expect(writerThread.wait() == nil)
    }

    @Test("a named pipe opened by path is streamed, not mapped")
    func fifoPath() throws {
        let directory = TemporaryDirectory()
        let fifo = directory.file("fifo.npy")
        #expect(mkfifo(fifo, 0o600) == 0)
        let source = directory.file("source.npy")
        try writeArray(source, dtype: .int16, shape: [300, 7], bytes: pattern(4200))
        let file = try readAll(source)
        let writerThread = BackgroundThread {
            let fd = open(fifo, O_WRONLY)  // blocks until the reader opens the other end
            writeAndClose(fd, file)
        }
        let reader = try NumpyReader(path: fifo)
        #expect(!reader.isMemoryMapped)
        #expect(try readChunks(reader, rowsPerChunk: 64) == pattern(4200))
        #expect(writerThread.wait() == nil)
    }
}
