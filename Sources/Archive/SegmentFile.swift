#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SystemFile

/// The archive's file: ``SystemFile``'s calls with the archive's own errors
/// (``ArchiveError/io(path:operation:errno:message:)`` naming the file), its two locks, and the
/// fault hook the tests put under writes, syncs and truncations.
struct SegmentFile: ~Copyable {
    let file: FileDescriptor
    var path: String { file.path }
    /// Sees writes, syncs and truncations first (tests only; nil otherwise).
    private let faults: (any FileFaults)?

    enum Mode { case read, readWrite, create(overwrite: Bool) }

    init(path: String, mode: Mode, faults: (any FileFaults)? = nil) throws {
        do {
            switch mode {
            case .read: file = try .open(path, .readOnly)
            case .readWrite: file = try .open(path, .readWrite)
            // No O_TRUNC: an overwrite empties the file only once it holds the writer's lock.
            case .create(let overwrite): file = try .open(path, .readWrite, options: overwrite ? [.create] : [.create, .exclusive])
            }
        } catch {
            if error.errno == EEXIST { throw ArchiveError.exists(path: path) }
            throw ArchiveError(error)
        }
        self.faults = faults
    }

    /// Unlocks before closing: a child process forked at this moment shares the open file
    /// description (and so the lock) until it execs, and closing alone would leave the archive
    /// locked for that long. Unlocking an unlocked file does nothing.
    deinit {
        file.unlock()
        try? file.close()
    }

    /// Takes the writer's advisory lock without waiting; a second writer gets ``ArchiveError/locked(path:)``.
    func lockExclusive() throws {
        let locked = try archiveCall { () throws(SystemCallError) in try file.tryLockExclusive() }
        guard locked else { throw ArchiveError.locked(path: path) }
    }

    /// Whether a writer, in any process, holds the archive at `path` open (false when there is
    /// no such file). Takes the writer's lock for an instant to find out.
    static func isWriterActive(at path: String) -> Bool {
        guard let file = try? FileDescriptor.open(path, .readOnly) else { return false }
        defer { try? file.close() }
        do {
            guard try file.tryLockExclusive() else { return true }
        } catch {
            return false
        }
        file.unlock()
        return false
    }

    /// Releases the writer's lock before the descriptor closes (a closed writer holds none).
    func unlock() {
        file.unlock()
    }

    // MARK: Readers and shrinking
    //
    // A reader maps the file; touching a mapped page past a shrunk file's end raises SIGBUS.
    // So every reader holds a shared open-file-description lock on one byte far past any
    // file's end for as long as its mapping lives, and the writer shrinks the file only while
    // it holds that byte exclusively, which it tries without waiting: while anyone reads, the
    // writer zeroes bytes instead of cutting them (spec 2.7). OFD locks belong to the open file
    // description, not the process, so a reader and a writer in one process exclude each other
    // too, and closing one descriptor does not drop another's lock.

    /// The byte the reader lock covers: beyond any archive, never read or written.
    private static let readerLockByte = 1 << 62

    /// Announces a reader: the writer will not shrink the file while this descriptor is open.
    /// Waits only while a writer is cutting (one `ftruncate`). Where the system has no OFD
    /// locks the writer never sees a reader lock either way, and never cuts (see ``cutIfUnread``).
    func holdReaderLock() throws {
        do {
            _ = try file.lockByte(at: SegmentFile.readerLockByte, .shared, wait: true)
        } catch where error.errno == ENOTSUP || error.errno == EINVAL {
        } catch {
            throw ArchiveError(error)
        }
    }

    /// Cuts the file to `length` if no reader holds it open, and says whether it did.
    func cutIfUnread(to length: Int) throws -> Bool {
        guard (try? file.lockByte(at: SegmentFile.readerLockByte, .exclusive, wait: false)) == true else { return false }
        defer { _ = try? file.lockByte(at: SegmentFile.readerLockByte, .unlocked, wait: false) }
        try truncate(to: length)
        return true
    }

    /// Writes zeros over `range`: how bytes past the log are discarded while readers have the
    /// file mapped (spec 2.7: zero bytes after the log are slack, not a record).
    func zero(_ range: Range<Int>) throws {
        let chunk = [UInt8](repeating: 0, count: min(range.count, 1 << 20))
        var offset = range.lowerBound
        while offset < range.upperBound {
            let count = min(chunk.count, range.upperBound - offset)
            try chunk.withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[..<count]), at: offset) }
            offset += count
        }
    }

    func size() throws -> Int {
        try archiveCall { () throws(SystemCallError) in try file.size() }
    }

    /// Lets the fault hook see `operation` first; an injected failure becomes the error the
    /// system call would have given.
    private func check(_ operation: FileOperation, _ name: String) throws {
        guard let faults else { return }
        do {
            try faults.before(operation)
        } catch let failure as InjectedFailure {
            throw ArchiveError(SystemCallError(path: path, operation: name, errno: failure.errno))
        }
    }

    /// Writes all of `bytes` at `offset`.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        try check(.write(offset: offset, bytes: bytes), "write")
        try archiveCall { () throws(SystemCallError) in try file.write(bytes, at: offset) }
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Reads `count` bytes at `offset`, fewer only where the file ends (for the header,
    /// before anything is mapped).
    func read(count: Int, at offset: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let done = try bytes.withUnsafeMutableBytes { buffer in
            try archiveCall { () throws(SystemCallError) in try file.read(into: buffer, at: offset) }
        }
        return Array(bytes[..<done])
    }

    func sync() throws {
        try check(.sync, "fsync")
        try archiveCall { () throws(SystemCallError) in try file.sync() }
    }

    /// Creates a new archive file at `path`, locked for writing, and has `initialize` write
    /// its first bytes before the name appears durably. Without `overwrite` an existing file
    /// is refused. With it, an existing file is replaced by renaming a new one over it (after
    /// taking the old one's lock, so that a writer still at work is refused): readers of the
    /// old file keep reading it whole, where emptying it in place would pull pages from under
    /// their mappings. A failed create leaves no file behind (and the old one in place).
    static func createLocked(path: String, overwrite: Bool, faults: (any FileFaults)?,
                             _ initialize: (borrowing SegmentFile) throws -> Void) throws -> SegmentFile {
        do {
            let file = try SegmentFile(path: path, mode: .create(overwrite: false), faults: faults)
            do {
                try file.lockExclusive()
                try initialize(file)
                try syncDirectory(of: path)
            } catch {
                FileSystem.remove(path)
                throw error
            }
            return file
        } catch ArchiveError.exists(let existing) where overwrite {
            let old = try SegmentFile(path: existing, mode: .read)
            try old.lockExclusive()
            let temporary = temporaryName(beside: path)
            let file = try SegmentFile(path: temporary, mode: .create(overwrite: false), faults: faults)
            do {
                try file.lockExclusive()
                try initialize(file)
                try archiveCall { () throws(SystemCallError) in try FileSystem.rename(temporary, to: path) }
            } catch {
                FileSystem.remove(temporary)
                throw error
            }
            try syncDirectory(of: path)
            return file
        }
    }

    /// A short, unlikely name in the directory of `path` (short: `path`'s own name may be
    /// near the file-name limit).
    static func temporaryName(beside path: String) -> String {
        let directory = path.contains("/") ? String(path[...path.lastIndex(of: "/")!]) : ""
        return directory + ".archive-\(String(UInt32.random(in: 0...UInt32.max), radix: 16)).tmp"
    }

    /// Makes the file's directory entry durable (after creating it).
    static func syncDirectory(of path: String) throws {
        try archiveCall { () throws(SystemCallError) in try FileSystem.syncDirectory(of: path) }
    }

    func truncate(to length: Int) throws {
        try check(.truncate(length: length), "ftruncate")
        try archiveCall { () throws(SystemCallError) in try file.resize(to: length) }
    }
}

extension ArchiveError {
    /// A failed system call as the archive reports it.
    init(_ error: SystemCallError) {
        self = .io(path: error.path, operation: error.operation, errno: error.errno, message: error.message)
    }
}

/// Runs a ``SystemFile`` call, its failure an ``ArchiveError``.
func archiveCall<T>(_ call: () throws(SystemCallError) -> T) throws(ArchiveError) -> T {
    do {
        return try call()
    } catch {
        throw ArchiveError(error)
    }
}

/// A read-only shared mapping of the first `count` bytes of a file, unmapped on deinit; or a
/// caller's buffer, borrowed (never unmapped nor released). Readers decode blocks straight from
/// it; nothing compressed is copied through `read`.
final class Mapping {
    let bytes: UnsafeRawBufferPointer
    /// The mapping that made `bytes`, which may drop their pages; nil when they are borrowed.
    private let map: MemoryMap?

    init(file: borrowing SegmentFile, count: Int) throws {
        let map = try archiveCall { () throws(SystemCallError) in try MemoryMap(file.file, count: count, .shared) }
        self.map = map
        bytes = map.bytes
    }

    /// `bytes`, owned by the caller, who keeps them alive and unchanged while this mapping lives.
    init(borrowing bytes: UnsafeRawBufferPointer) {
        map = nil
        self.bytes = bytes
    }

    /// Drops the pages of `range`, just read front to back, from this process's resident memory
    /// (they stay in the page cache), with those a fault may have mapped again behind it
    /// (``MemoryMap/releaseBehind(_:)``): so that reading a large archive does not count it all
    /// as resident.
    func releaseBehind(_ range: Range<Int>) {
        // A borrowed buffer may be private memory, where MADV_DONTNEED would zero the pages.
        map?.releaseBehind(range)
    }
}
