#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SystemFile

#if !_endian(little)
#error("NumpyFile hands out .npy data (little-endian) as native integers: it needs a little-endian host")
#endif

/// Reads a `.npy` file of integers without loading it into memory.
///
/// A regular file is memory-mapped and validated when opened: header, dtype and the exact data
/// length (a truncated or over-long file fails here, before any data is handed out). Standard
/// input (`"-"`), pipes and other descriptors are streamed: the header is parsed when opened,
/// the data is read once, chunk by chunk, and its length can only be checked as it arrives.
///
/// `forEachChunk` works for both; `withData` only for mapped files. Data is little-endian and
/// 16-byte aligned, so the typed variants view it as the dtype's Swift type without copying.
public final class NumpyReader {
    /// The path given, or `<stdin>`, or the name given for a descriptor: used in errors.
    public let path: String
    public let header: NumpyHeader

    private enum Source {
        case mapped(MemoryMap)
        case stream(ByteStream)
    }
    private let source: Source

    public var dtype: NumpyDType { header.dtype }
    public var shape: [Int] { header.shape }
    /// True when the data is a mapping of a regular file: `withData` works and the data can
    /// be read any number of times.
    public var isMemoryMapped: Bool {
        if case .mapped = source { return true }
        return false
    }

    /// Opens `path`: memory-maps a regular file, streams anything else (a FIFO, `/dev/stdin`);
    /// `"-"` is standard input.
    public init(path: String) throws {
        if path == "-" {
            self.path = "<stdin>"
            let stream = ByteStream(FileDescriptor(rawValue: STDIN_FILENO, path: self.path), ownsDescriptor: false)
            header = try Self.readHeader(from: stream, path: self.path)
            source = .stream(stream)
            return
        }
        self.path = path
        let file = try numpyCall { () throws(SystemCallError) in try FileDescriptor.open(path, .readOnly) }
        let status: stat
        do {
            status = try numpyCall { () throws(SystemCallError) in try file.status() }
        } catch {
            try? file.close()
            throw error
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            let stream = ByteStream(file, ownsDescriptor: true)
            header = try Self.readHeader(from: stream, path: path)
            source = .stream(stream)
            return
        }
        // The mapping stays valid after the descriptor is closed.
        defer { try? file.close() }
        (header, source) = try Self.map(file, size: Int(status.st_size), path: path)
    }

    /// Memory-maps the regular file open on `fileDescriptor` (read access is enough), which
    /// stays the caller's: the mapping does not need it once this returns. `path` names the
    /// input in errors.
    public init(mappingFileDescriptor fileDescriptor: Int32, path: String) throws {
        self.path = path
        let file = FileDescriptor(rawValue: fileDescriptor, path: path)
        let status = try numpyCall { () throws(SystemCallError) in try file.status() }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw NumpyError.invalidUse(path: path, reason: "not a regular file, which cannot be mapped")
        }
        (header, source) = try Self.map(file, size: Int(status.st_size), path: path)
    }

    /// Maps `size` bytes of `file`, decodes the header and checks the data length.
    private static func map(_ descriptor: FileDescriptor, size: Int, path: String) throws -> (NumpyHeader, Source) {
        // Private: nobody is expected to change an input while it is read.
        let mapping = try numpyCall { () throws(SystemCallError) in try MemoryMap(descriptor, count: size, .private) }
        let file = mapping.bytes
        var cursor = 0
        let header = try HeaderDecoder.decode(path: path) { count in
            let end = min(cursor + count, file.count)
            defer { cursor = end }
            return Array(file[cursor..<end])
        }
        let available = size - header.dataOffset
        if available < header.dataByteCount {
            throw NumpyError.truncatedData(path: path, expected: header.dataByteCount, actual: available)
        }
        if available > header.dataByteCount {
            throw NumpyError.trailingData(path: path, expected: header.dataByteCount, extra: available - header.dataByteCount)
        }
        return (header, .mapped(mapping))
    }

    /// A reader of the same array that can be read any number of times: this reader itself
    /// when it maps a file; for a stream, one mapping a copy of the rest of the stream, written
    /// to a temporary file in the directory of `path` (a file there, such as the destination
    /// of the data, so that the copy lands on the same filesystem) that is removed (unlinked) as soon as it is created,
    /// so that nothing is left behind whatever happens to the process. Memory use stays one
    /// chunk of `maxChunkBytes`. The stream's length is checked as it is copied; a stop
    /// requested with ``StopRequest`` ends the copy with ``NumpyError/interrupted(path:signal:)``.
    public func spooled(inDirectoryOf path: String, maxChunkBytes: Int = 16 << 20) throws -> NumpyReader {
        guard case .stream = source else { return self }
        let file = try UnlinkedFile(in: TemporaryName.split(path).directory, purpose: "a copy of \(self.path)")
        let writer = try NumpyWriter(fileDescriptor: file.descriptor.rawValue, path: file.description, dtype: header.dtype, shape: header.shape)
        try forEachChunk(rowsPerChunk: header.rowsPerChunk(maxBytes: maxChunkBytes)) { chunk, _ in
            if let signal = StopRequest.signal { throw NumpyError.interrupted(path: self.path, signal: signal) }
            try writer.write(chunk)
        }
        try writer.commit()
        return try NumpyReader(mappingFileDescriptor: file.descriptor.rawValue, path: self.path)
    }

    /// Streams from `fileDescriptor` (a pipe, a socket, standard input), which stays the
    /// caller's: it is not closed, and must stay open while the reader is used. The header is
    /// read now. `path` names the input in errors.
    public init(fileDescriptor: Int32, path: String) throws {
        self.path = path
        let stream = ByteStream(FileDescriptor(rawValue: fileDescriptor, path: path), ownsDescriptor: false)
        header = try Self.readHeader(from: stream, path: path)
        source = .stream(stream)
    }

    private static func readHeader(from stream: ByteStream, path: String) throws -> NumpyHeader {
        try HeaderDecoder.decode(path: path) { count in try stream.read(count) }
    }

    /// Calls `body` with all the data bytes (little-endian, C order) of a memory-mapped file.
    /// The buffer is valid only during the call. A stream throws `invalidUse`.
    public func withData<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard case .mapped(let mapping) = source else {
            throw NumpyError.invalidUse(path: path, reason: "input is a stream, not a file that can be mapped; read it with forEachChunk")
        }
        let start = header.dataOffset
        return try body(UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<start + header.dataByteCount]))
    }

    /// `withData`, viewing the data as `T`, which must be the dtype's type. Data that a header
    /// without padding left unaligned for `T` throws `misalignedHeader` (read it with
    /// `forEachChunk`, which copies it out aligned).
    public func withData<T: FixedWidthInteger, R>(as type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) throws -> R {
        try checkElementType(T.self)
        guard header.dataOffset % MemoryLayout<T>.alignment == 0 else {
            throw NumpyError.misalignedHeader(path: path, dataOffset: header.dataOffset)
        }
        return try withData { raw in try raw.withMemoryRebound(to: T.self, body) }
    }

    /// Calls `body` with consecutive chunks of up to `rowsPerChunk` whole rows (slices along
    /// the first axis) and the range of rows each holds, in order; the buffer is valid only
    /// during the call. An array with no rows makes no call. A mapped file can be read any
    /// number of times; a stream once (a second call throws `invalidUse`).
    ///
    /// A stream's memory use is one chunk (`header.rowsPerChunk(maxBytes:)` picks a size). If
    /// the stream ends early, `truncatedData` is thrown in place of the incomplete chunk; if
    /// bytes follow the data, `trailingData` after the last chunk. Chunks already handed out
    /// stay handed out, so treat a throw as failure of the whole read.
    public func forEachChunk(
        rowsPerChunk: Int, _ body: (UnsafeRawBufferPointer, Range<Int>) throws -> Void
    ) throws {
        guard rowsPerChunk > 0 else {
            throw NumpyError.invalidUse(path: path, reason: "rowsPerChunk must be at least 1, not \(rowsPerChunk)")
        }
        switch source {
        case .mapped(let mapping):
            mapping.adviseSequential()
            // Data a header without padding left unaligned is copied out, a chunk at a time,
            // into memory aligned for any integer type.
            let aligned = header.dataOffset % MemoryLayout<UInt64>.alignment == 0
            let copy = aligned ? nil : ChunkBuffer(capacity: min(rowsPerChunk, header.rowCount) * header.rowByteCount)
            try withData { data in
                try forEachRowRange(rowsPerChunk: rowsPerChunk) { rows in
                    let bytes = rows.lowerBound * header.rowByteCount..<rows.upperBound * header.rowByteCount
                    let chunk = UnsafeRawBufferPointer(rebasing: data[bytes])
                    if let copy {
                        copy.storage.copyMemory(from: chunk)
                        try body(UnsafeRawBufferPointer(rebasing: copy.storage[..<chunk.count]), rows)
                    } else {
                        try body(chunk, rows)
                    }
                    mapping.releaseBehind(header.dataOffset + bytes.lowerBound..<header.dataOffset + bytes.upperBound)
                }
            }
        case .stream(let stream):
            try readChunks(of: stream, rowsPerChunk: rowsPerChunk, body)
        }
    }

    /// `forEachChunk`, viewing each chunk as `T`, which must be the dtype's type.
    public func forEachChunk<T: FixedWidthInteger>(
        as type: T.Type, rowsPerChunk: Int, _ body: (UnsafeBufferPointer<T>, Range<Int>) throws -> Void
    ) throws {
        try checkElementType(T.self)
        try forEachChunk(rowsPerChunk: rowsPerChunk) { raw, rows in
            try raw.withMemoryRebound(to: T.self) { try body($0, rows) }
        }
    }

    private func readChunks(
        of stream: ByteStream, rowsPerChunk: Int, _ body: (UnsafeRawBufferPointer, Range<Int>) throws -> Void
    ) throws {
        guard !stream.isConsumed else {
            throw NumpyError.invalidUse(path: path, reason: "the data of a stream can be read only once")
        }
        stream.isConsumed = true
        let buffer = ChunkBuffer()
        var received = 0
        try forEachRowRange(rowsPerChunk: rowsPerChunk) { rows in
            let wanted = rows.count * header.rowByteCount
            let got = try buffer.fill(from: stream, count: wanted)
            received += got
            guard got == wanted else {
                throw NumpyError.truncatedData(path: path, expected: header.dataByteCount, actual: received)
            }
            try body(UnsafeRawBufferPointer(rebasing: buffer.storage[..<wanted]), rows)
        }
        let extra = try stream.drain()
        if extra > 0 {
            throw NumpyError.trailingData(path: path, expected: header.dataByteCount, extra: extra)
        }
    }

    /// Splits `0..<rowCount` into consecutive ranges of at most `rowsPerChunk` rows.
    private func forEachRowRange(rowsPerChunk: Int, _ body: (Range<Int>) throws -> Void) throws {
        var start = 0
        while start < header.rowCount {
            let end = start + min(rowsPerChunk, header.rowCount - start)
            try body(start..<end)
            start = end
        }
    }

    private func checkElementType<T: FixedWidthInteger>(_ type: T.Type) throws {
        guard NumpyDType(integerType: T.self) == header.dtype else {
            throw NumpyError.typeMismatch(path: path, dtype: header.dtype, requested: "\(T.self)")
        }
    }
}
