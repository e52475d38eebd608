/// Everything NumpyFile refuses or fails at. Every case carries the path (or the name given for
/// a stream) so a message printed by a command-line tool says which file is at fault, and the
/// header cases name the header field.
public enum NumpyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input does not start with the magic string `\x93NUMPY`.
    case notNumpyFile(path: String)
    /// A format version other than 1.0, 2.0 or 3.0.
    case unsupportedVersion(path: String, major: UInt8, minor: UInt8)
    /// The input ended inside the magic, version, header length or header: `expected` bytes
    /// of preamble were announced, only `actual` exist.
    case truncatedHeader(path: String, expected: Int, actual: Int)
    /// The header length field announces more than `limit` bytes: refused before reading it.
    case headerTooLarge(path: String, length: Int, limit: Int)
    /// The data starts at `dataOffset`, not aligned for the dtype, so it cannot be viewed in
    /// place (`withData(as:)`); `forEachChunk` reads it.
    case misalignedHeader(path: String, dataOffset: Int)
    /// The header is not a well-formed Python dict literal ending with a newline.
    case malformedHeader(path: String, reason: String)
    /// One of 'descr', 'fortran_order', 'shape' is absent.
    case missingField(path: String, field: String)
    /// A key other than 'descr', 'fortran_order', 'shape'.
    case unexpectedField(path: String, field: String)
    /// A header field of the wrong type or value; `reason` completes "header field 'x' ...".
    case invalidField(path: String, field: String, reason: String)
    /// A dtype other than the eight little-endian integer types (floats, bools, big-endian, ...).
    case unsupportedDType(path: String, descr: String, reason: String)
    /// `fortran_order: True`: the data is column-major, which this library does not transpose.
    case fortranOrder(path: String)
    /// The data ends `expected - actual` bytes early.
    case truncatedData(path: String, expected: Int, actual: Int)
    /// `extra` bytes follow the `expected` data bytes.
    case trailingData(path: String, expected: Int, extra: Int)
    /// The writer's destination exists and overwriting was not allowed; nothing was written.
    case destinationExists(path: String)
    /// The destination to replace is a `kind` (a FIFO, a device, a symbolic link, a
    /// directory), not a regular file: refused, nothing was written.
    case notRegularFile(path: String, kind: String)
    /// A system call failed; `message` is strerror's text for `errno`.
    case systemCall(path: String, operation: String, errno: Int32, message: String)
    /// The writer was handed more, or committed with fewer, data bytes than the shape needs.
    case wrongByteCount(path: String, expected: Int, written: Int)
    /// The data was accessed as a Swift integer type that is not the array's dtype.
    case typeMismatch(path: String, dtype: NumpyDType, requested: String)
    /// A read or write was cut short by `signal` after ``StopRequest/record(_:)`` asked
    /// for the work to stop.
    case interrupted(path: String, signal: Int32)
    /// An API call that cannot be honoured in the current state (a stream read twice, a
    /// writer used after `abort()`, a chunk size of 0).
    case invalidUse(path: String, reason: String)

    public var description: String {
        switch self {
        case .notNumpyFile(let path):
            return "\(path): not a .npy file (missing the magic string \\x93NUMPY)"
        case let .unsupportedVersion(path, major, minor):
            return "\(path): unsupported .npy format version \(major).\(minor) (supported: 1.0, 2.0, 3.0)"
        case let .truncatedHeader(path, expected, actual):
            return "\(path): input ends inside the header: expected \(expected) bytes, got \(actual)"
        case let .headerTooLarge(path, length, limit):
            return "\(path): header length \(length) exceeds the limit of \(limit) bytes"
        case let .misalignedHeader(path, dataOffset):
            return "\(path): the header puts the data at byte \(dataOffset), not aligned for its dtype: read it in chunks (forEachChunk)"
        case let .malformedHeader(path, reason):
            return "\(path): malformed header: \(reason)"
        case let .missingField(path, field):
            return "\(path): header field '\(field)' is missing"
        case let .unexpectedField(path, field):
            return "\(path): header has unexpected field '\(field)' (only 'descr', 'fortran_order' and 'shape' are allowed)"
        case let .invalidField(path, field, reason):
            return "\(path): header field '\(field)' \(reason)"
        case let .unsupportedDType(path, descr, reason):
            return "\(path): header field 'descr' is \(descr): \(reason)"
        case .fortranOrder(let path):
            return "\(path): header field 'fortran_order' is True: Fortran-order arrays are not supported; save with np.ascontiguousarray"
        case let .truncatedData(path, expected, actual):
            return "\(path): data is truncated: expected \(expected) bytes, got \(actual) (\(expected - actual) missing)"
        case let .trailingData(path, expected, extra):
            return "\(path): \(extra) unexpected bytes follow the \(expected) bytes of array data"
        case .destinationExists(let path):
            return "\(path): file already exists; not overwriting it"
        case let .notRegularFile(path, kind):
            return "\(path): is a \(kind), not a regular file; only a regular file is replaced"
        case let .systemCall(path, operation, _, message):
            return "\(path): \(operation) failed: \(message)"
        case let .wrongByteCount(path, expected, written):
            return "\(path): \(written) bytes of array data written, the shape needs exactly \(expected)"
        case let .typeMismatch(path, dtype, requested):
            return "\(path): array is \(dtype.name) (\(dtype.descr)), accessed as \(requested)"
        case let .interrupted(path, signal):
            return "\(path): interrupted by signal \(signal)"
        case let .invalidUse(path, reason):
            return "\(path): \(reason)"
        }
    }
}
