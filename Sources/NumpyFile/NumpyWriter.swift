#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SystemFile

/// Writes a `.npy` file of integers in pieces: the header numpy's `np.save` would write for
/// the dtype and shape, then data appended by any number of `write` calls, then `commit()`.
/// Memory use is a fixed 1 MiB buffer, whatever the array size.
///
/// To a path, it writes a hidden temporary file in the destination's directory and renames it
/// over the destination on `commit()`, so readers never see a partial file. Any error,
/// `abort()`, or release without `commit()` removes the temporary file and leaves the
/// destination as it was. To standard output (`"-"`) or a descriptor it writes directly;
/// nothing can be taken back there.
///
/// Data bytes are little-endian in C order. `commit()` fails unless exactly
/// `header.dataByteCount` bytes were written.
public final class NumpyWriter {
    /// The destination path, `<stdout>`, or the name given for a descriptor: used in errors.
    public let path: String
    public let header: NumpyHeader
    /// Data bytes written so far, not counting the header.
    public private(set) var bytesWritten = 0

    private enum State { case open, committed, aborted }
    private var state = State.open
    private let temporaryFile: TemporaryFile?
    private let overwrite: Bool
    private let durable: Bool
    private let output: OutputBuffer

    /// Starts writing `path` (`"-"` for standard output). With `overwrite` false an existing
    /// destination is refused with `destinationExists` before anything is written; with
    /// `overwrite` only a regular file is replaced (`notRegularFile`). With
    /// `durable`, `commit()` fsyncs the data and the directory before and after the rename;
    /// without, it only renames (as `cp` and `lz4 -d` write): atomic, but a power cut soon
    /// after may lose the file.
    public convenience init(path: String, dtype: NumpyDType, shape: [Int], overwrite: Bool = false,
                            durable: Bool = true) throws {
        if path == "-" {
            try self.init(fileDescriptor: STDOUT_FILENO, path: "<stdout>", dtype: dtype, shape: shape)
            return
        }
        let encoded = try HeaderEncoder.encode(dtype: dtype, shape: shape, path: path)
        if !overwrite && FileSystem.exists(path) {
            throw NumpyError.destinationExists(path: path)
        }
        do {
            try FileSystem.checkReplaceable(path)
        } catch {
            throw NumpyError(error)
        }
        let file = try TemporaryFile(destination: path)
        try self.init(path: path, encoded: encoded, fd: file.descriptor.rawValue, temporaryFile: file, overwrite: overwrite, durable: durable)
    }

    /// Writes to `fileDescriptor` (standard output, a pipe), which stays the caller's: it is
    /// flushed on `commit()` but not closed. `path` names the output in errors.
    public convenience init(fileDescriptor: Int32, path: String, dtype: NumpyDType, shape: [Int]) throws {
        let encoded = try HeaderEncoder.encode(dtype: dtype, shape: shape, path: path)
        try self.init(path: path, encoded: encoded, fd: fileDescriptor, temporaryFile: nil, overwrite: true, durable: false)
    }

    private init(
        path: String, encoded: (header: NumpyHeader, bytes: [UInt8]), fd: Int32,
        temporaryFile: TemporaryFile?, overwrite: Bool, durable: Bool
    ) throws {
        self.path = path
        self.durable = durable
        self.header = encoded.header
        self.overwrite = overwrite
        self.temporaryFile = temporaryFile
        self.output = OutputBuffer(FileDescriptor(rawValue: fd, path: path))
        try writeHeader(encoded.bytes)
    }

    deinit {
        abort()
    }

    private func writeHeader(_ bytes: [UInt8]) throws {
        try failing { try bytes.withUnsafeBytes { raw in try output.append(raw) } }
    }

    /// Appends raw data bytes: little-endian elements of the dtype, in C order. Pieces need
    /// not be whole elements or rows. More bytes than the shape holds is an error.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try checkOpen()
        let total = bytesWritten + bytes.count
        guard total <= header.dataByteCount else {
            abort()
            throw NumpyError.wrongByteCount(path: path, expected: header.dataByteCount, written: total)
        }
        try failing { try output.append(bytes) }
        bytesWritten = total
    }

    /// Appends elements; `T` must be the dtype's Swift type.
    public func write<T: FixedWidthInteger>(_ values: UnsafeBufferPointer<T>) throws {
        try checkOpen()
        guard NumpyDType(integerType: T.self) == header.dtype else {
            abort()
            throw NumpyError.typeMismatch(path: path, dtype: header.dtype, requested: "\(T.self)")
        }
        // The host is little-endian (checked at compile time), so memory order is file order.
        try write(UnsafeRawBufferPointer(values))
    }

    /// Appends elements; `T` must be the dtype's Swift type.
    public func write<T: FixedWidthInteger>(_ values: [T]) throws {
        try values.withUnsafeBufferPointer { try write($0) }
    }

    /// Checks the data length, flushes, and for a path makes the file durable and renames it
    /// into place. On error the temporary file is removed and the writer is aborted.
    public func commit() throws {
        try checkOpen()
        guard bytesWritten == header.dataByteCount else {
            abort()
            throw NumpyError.wrongByteCount(path: path, expected: header.dataByteCount, written: bytesWritten)
        }
        try failing {
            try output.flush()
            try temporaryFile?.commit(overwrite: overwrite, durable: durable)
        }
        state = .committed
    }

    /// Gives up: removes the temporary file (a descriptor's output cannot be taken back).
    /// Does nothing after `commit()` or a previous abort.
    public func abort() {
        guard state == .open else { return }
        state = .aborted
        temporaryFile?.discard()
    }

    /// Runs `step`; if it throws, aborts before rethrowing, so no error leaves a temporary file.
    private func failing(_ step: () throws -> Void) throws {
        do {
            try step()
        } catch {
            abort()
            throw error
        }
    }

    private func checkOpen() throws(NumpyError) {
        switch state {
        case .open: return
        case .committed: throw .invalidUse(path: path, reason: "the writer was already committed")
        case .aborted: throw .invalidUse(path: path, reason: "the writer was aborted (after an error or abort())")
        }
    }
}
