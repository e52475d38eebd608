/// A hook under the writer's file operations, for tests that simulate crashes and failing disks
/// the way SQLite's crash VFS does (`src/test6.c`): it sees every write, fsync and truncation
/// before the system does, and may make it fail. Production code never installs one.
@_spi(Faults) public protocol FileFaults: AnyObject {
    /// Called before each operation on the archive file. Throw ``InjectedFailure`` to make the
    /// call fail as the system would (the writer sees an ordinary I/O error with that errno);
    /// any other error stops the operation and reaches the caller unchanged (a simulated crash).
    func before(_ operation: FileOperation) throws
}

/// One operation the writer is about to apply to its file.
@_spi(Faults) public enum FileOperation {
    /// `bytes` is valid only during the call to ``FileFaults/before(_:)``.
    case write(offset: Int, bytes: UnsafeRawBufferPointer)
    case sync
    case truncate(length: Int)
}

/// Makes a file operation fail with `errno` (`ENOSPC`, `EIO`, `EFBIG`, ...).
@_spi(Faults) public struct InjectedFailure: Error {
    public let errno: Int32
    public init(errno: Int32) { self.errno = errno }
}
