import ExpertCodec

/// Everything the archive refuses or fails at, each naming the file and the position at fault.
public enum ArchiveError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A batch starting past the stored rows: it would leave a gap. Nothing was stored.
    case gap(path: String, start: Int, count: Int)
    /// Another writer holds the archive.
    case locked(path: String)
    /// A system call failed.
    case io(path: String, operation: String, errno: Int32, message: String)
    /// The file is damaged or not an archive; `offset` is the byte offset of the damage.
    case corrupt(path: String, offset: Int, reason: String)
    /// The rows handed over do not fit the archive (an id out of range, a bad shape); nothing was stored.
    case invalidRows(path: String, position: Int?, reason: String)
    /// A read or truncation outside the stored rows.
    case outOfRange(path: String, requested: Range<Int>, count: Int)
    /// A create that would replace an existing file.
    case exists(path: String)
    /// Bad arguments: a schema, block size or metadata the archive cannot hold.
    case invalidArgument(String)
    /// The writer was closed.
    case closed(path: String)

    /// `error` as an ArchiveError: itself, or a system or codec error as I/O trouble at `path`.
    static func wrapping(_ error: any Error, path: String) -> ArchiveError {
        if let error = error as? ArchiveError { return error }
        return .corrupt(path: path, offset: 0, reason: "\(error)")
    }

    public var description: String {
        switch self {
        case let .gap(path, start, count):
            return "\(path): batch starts at position \(start) but the archive holds \(count) rows; appending it would leave a gap of \(start - count) rows"
        case .locked(let path):
            return "\(path): another writer has the archive open"
        case let .io(path, operation, errno, message):
            return "\(path): \(operation) failed: \(message) (errno \(errno))"
        case let .corrupt(path, offset, reason):
            return "\(path): damaged at byte \(offset): \(reason)"
        case let .invalidRows(path, position, reason):
            return "\(path): \(position.map { "rows at position \($0): " } ?? "")\(reason)"
        case let .outOfRange(path, requested, count):
            return "\(path): rows \(requested.lowerBound)..<\(requested.upperBound) requested, the archive holds \(count)"
        case .exists(let path):
            return "\(path): already exists"
        case .invalidArgument(let why):
            return why
        case .closed(let path):
            return "\(path): the writer is closed"
        }
    }
}
