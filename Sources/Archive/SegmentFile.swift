#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thin, typed wrappers over the system calls the archive uses, each failure an
/// ``ArchiveError/io(path:operation:errno:message:)`` naming the file.
struct SegmentFile: ~Copyable {
    let path: String
    let descriptor: Int32
    /// Sees writes, syncs and truncations first (tests only; nil otherwise).
    private let faults: (any FileFaults)?

    enum Mode { case read, readWrite, create(overwrite: Bool) }

    init(path: String, mode: Mode, faults: (any FileFaults)? = nil) throws {
        let flags: Int32
        switch mode {
        case .read: flags = O_RDONLY
        case .readWrite: flags = O_RDWR
        // No O_TRUNC: an overwrite empties the file only once it holds the writer's lock.
        case .create(let overwrite): flags = O_RDWR | O_CREAT | (overwrite ? 0 : O_EXCL)
        }
        let fd = open(path, flags | O_CLOEXEC, 0o644)
        if fd < 0 {
            if errno == EEXIST { throw ArchiveError.exists(path: path) }
            throw SegmentFile.error(path, "open")
        }
        self.path = path
        descriptor = fd
        self.faults = faults
    }

    /// Unlocks before closing: a child process forked at this moment shares the open file
    /// description (and so the lock) until it execs, and closing alone would leave the archive
    /// locked for that long. Unlocking an unlocked file does nothing.
    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    static func error(_ path: String, _ operation: String, _ code: Int32 = errno) -> ArchiveError {
        .io(path: path, operation: operation, errno: code, message: String(cString: strerror(code)))
    }

    /// Takes the writer's advisory lock without waiting; a second writer gets ``ArchiveError/locked(path:)``.
    func lockExclusive() throws {
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK { throw ArchiveError.locked(path: path) }
            throw SegmentFile.error(path, "flock")
        }
    }

    /// Whether a writer, in any process, holds the archive at `path` open (false when there is
    /// no such file). Takes the writer's lock for an instant to find out.
    static func isWriterActive(at path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return errno == EWOULDBLOCK }
        flock(fd, LOCK_UN)
        return false
    }

    /// Releases the writer's lock before the descriptor closes (a closed writer holds none).
    func unlock() {
        flock(descriptor, LOCK_UN)
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
    private static let readerLockByte = off_t(1) << 62

    private func readerLock(_ type: Int32, wait: Bool) -> Int32 {
        #if os(Linux)
        var lock = flock()
        lock.l_type = Int16(type)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = SegmentFile.readerLockByte
        lock.l_len = 1
        let F_OFD_SETLK: Int32 = 37, F_OFD_SETLKW: Int32 = 38
        while true {
            if fcntl(descriptor, wait ? F_OFD_SETLKW : F_OFD_SETLK, &lock) == 0 { return 0 }
            if errno != EINTR { return errno }
        }
        #else
        return ENOTSUP
        #endif
    }

    /// Announces a reader: the writer will not shrink the file while this descriptor is open.
    /// Waits only while a writer is cutting (one `ftruncate`). Where the system has no OFD
    /// locks the writer never sees a reader lock either way, and never cuts (see ``cutIfUnread``).
    func holdReaderLock() throws {
        let code = readerLock(Int32(F_RDLCK), wait: true)
        guard code == 0 || code == ENOTSUP || code == EINVAL else { throw SegmentFile.error(path, "fcntl(F_OFD_SETLKW)", code) }
    }

    /// Cuts the file to `length` if no reader holds it open, and says whether it did.
    func cutIfUnread(to length: Int) throws -> Bool {
        guard readerLock(Int32(F_WRLCK), wait: false) == 0 else { return false }
        defer { _ = readerLock(Int32(F_UNLCK), wait: false) }
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
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw SegmentFile.error(path, "fstat") }
        return Int(info.st_size)
    }

    /// Lets the fault hook see `operation` first; an injected failure becomes the error the
    /// system call would have given.
    private func check(_ operation: FileOperation, _ name: String) throws {
        guard let faults else { return }
        do {
            try faults.before(operation)
        } catch let failure as InjectedFailure {
            throw SegmentFile.error(path, name, failure.errno)
        }
    }

    /// Writes all of `bytes` at `offset`, retrying short writes and interruptions.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        try check(.write(offset: offset, bytes: bytes), "write")
        var done = 0
        while done < bytes.count {
            let n = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SegmentFile.error(path, "write")
            }
            if n == 0 { throw SegmentFile.error(path, "write", EIO) }
            done += n
        }
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Reads exactly `count` bytes at `offset` (for the header, before anything is mapped).
    func read(count: Int, at offset: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SegmentFile.error(path, "read")
            }
            if n == 0 { break }
            done += n
        }
        return Array(bytes[..<done])
    }

    func sync() throws {
        try check(.sync, "fsync")
        if fsync(descriptor) != 0 { throw SegmentFile.error(path, "fsync") }
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
                unlink(path)
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
                guard rename(temporary, path) == 0 else { throw SegmentFile.error(path, "rename") }
            } catch {
                unlink(temporary)
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
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let fd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw error(directory, "open directory") }
        defer { close(fd) }
        if fsync(fd) != 0 { throw error(directory, "fsync directory") }
    }

    func truncate(to length: Int) throws {
        try check(.truncate(length: length), "ftruncate")
        if ftruncate(descriptor, off_t(length)) != 0 { throw SegmentFile.error(path, "ftruncate") }
    }
}

/// A read-only shared mapping of the first `count` bytes of a file, unmapped on deinit; or a
/// caller's buffer, borrowed (never unmapped nor released). Readers decode blocks straight from
/// it; nothing compressed is copied through `read`.
final class Mapping {
    let bytes: UnsafeRawBufferPointer
    /// Whether this mapping made `bytes` (mmap) and so may drop or unmap them.
    private let owned: Bool

    init(file: borrowing SegmentFile, count: Int) throws {
        owned = true
        guard count > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let address = mmap(nil, count, PROT_READ, MAP_SHARED, file.descriptor, 0)
        guard let address, address != MAP_FAILED else { throw SegmentFile.error(file.path, "mmap") }
        bytes = UnsafeRawBufferPointer(start: address, count: count)
    }

    /// `bytes`, owned by the caller, who keeps them alive and unchanged while this mapping lives.
    init(borrowing bytes: UnsafeRawBufferPointer) {
        owned = false
        self.bytes = bytes
    }

    deinit {
        if owned, let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }

    /// Drops the whole pages of `range` from this process's resident memory (they stay in the
    /// page cache): a reader going front to back calls it behind itself, so that reading a
    /// large archive does not count it all as resident.
    func release(_ range: Range<Int>) {
        // A borrowed buffer may be private memory, where MADV_DONTNEED would zero the pages.
        guard owned else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page, end = range.upperBound / page * page
        guard end > start, let base = bytes.baseAddress else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }
}
